//! Sample-quality metrics on the FID Inception-v3: the network ([`inception`]), its weights
//! ([`weights`]), the input convention ([`preprocess`]) and batched feature extraction
//! ([`extract`]). The statistics (FID, sFID, IS, precision/recall, PRD) are in `daed_eval`.
pub mod compare;
pub mod curve;
pub mod evaluate;
pub mod inception;
pub mod preprocess;
pub mod weights;

use std::path::PathBuf;

use burn::tensor::Tensor;
use daed_io::images::ImageSet;

pub use inception::{FidInception, InceptionFeatures, LOGITS_DIM, POOL_DIM, SPATIAL_DIM};
pub use preprocess::Preprocess;

use crate::{Error, Result};

/// Environment variable naming the Inception weight file.
pub const INCEPTION_ENV: &str = "DAED_INCEPTION";

/// File name of the FID Inception weights with TensorFlow names.
pub const INCEPTION_FILE: &str = "fid_inception_2015-12-05_pool3.safetensors";

/// The Inception weight file: `$DAED_INCEPTION`, else `inception/INCEPTION_FILE` under
/// `./shared/data`, `../shared/data` or `../../shared/data`; `None` when none exists.
pub fn default_weights() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(INCEPTION_ENV) {
        return Some(PathBuf::from(p));
    }
    [
        "shared/data",
        "../shared/data",
        "../../shared/data",
        "../../../shared/data",
    ]
    .iter()
    .map(|d| PathBuf::from(d).join("inception").join(INCEPTION_FILE))
    .find(|p| p.exists())
}

/// Host copies of one batch's features, row-major.
#[derive(Clone, Debug, Default)]
pub struct BatchFeatures {
    /// Number of images.
    pub n: usize,
    /// `n x 2048` pool_3 features.
    pub pool: Vec<f32>,
    /// `n x 2023` sFID features.
    pub spatial: Vec<f32>,
    /// `n x 1008` logits (no bias), when the network has the layer.
    pub logits: Option<Vec<f32>>,
}

impl BatchFeatures {
    /// Appends another batch.
    pub fn extend(&mut self, b: &BatchFeatures) {
        self.n += b.n;
        self.pool.extend_from_slice(&b.pool);
        self.spatial.extend_from_slice(&b.spatial);
        match (&mut self.logits, &b.logits) {
            (Some(l), Some(x)) => l.extend_from_slice(x),
            (None, Some(x)) if self.n == b.n => self.logits = Some(x.clone()),
            _ => self.logits = None,
        }
    }
}

fn host(t: Tensor<2>) -> Result<Vec<f32>> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| Error::Invalid(format!("tensor read-back failed: {e:?}")))
}

/// Runs `net` over `set` in batches of `batch_size`, calling `on_batch` with each batch's
/// features and `progress(done, total)` after each.
pub fn extract_with(
    net: &FidInception,
    pre: Preprocess,
    set: &ImageSet,
    batch_size: usize,
    on_batch: &mut dyn FnMut(&BatchFeatures) -> Result<()>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<()> {
    if set.is_empty() {
        return Err(Error::Invalid("no images to evaluate (empty set)".into()));
    }
    if batch_size == 0 {
        return Err(Error::Invalid("batch size must be at least 1".into()));
    }
    let total = set.len();
    let mut done = 0;
    while done < total {
        let n = batch_size.min(total - done);
        let x = pre.batch(set, done, n, net.device())?;
        let f = net.forward_inference(x);
        let b = BatchFeatures {
            n,
            pool: host(f.pool)?,
            spatial: host(f.spatial)?,
            logits: f.logits.map(host).transpose()?,
        };
        on_batch(&b)?;
        done += n;
        progress(done, total);
    }
    Ok(())
}

/// All features of `set` (see [`extract_with`]).
pub fn extract(
    net: &FidInception,
    pre: Preprocess,
    set: &ImageSet,
    batch_size: usize,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<BatchFeatures> {
    let mut all = BatchFeatures::default();
    extract_with(
        net,
        pre,
        set,
        batch_size,
        &mut |b| {
            all.extend(b);
            Ok(())
        },
        progress,
    )?;
    Ok(all)
}
