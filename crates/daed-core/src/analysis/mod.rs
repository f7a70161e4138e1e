//! Where a DDGM switches from generating to denoising: reconstruction from step t and the
//! per-step loss terms (the SNR analysis needs no model and lives in daed-eval).
pub mod losses;
pub mod recon;
pub mod switch;
pub mod transfer;

use std::path::Path;

use daed_io::datasets::{self, DatasetSpec};
use daed_io::images::ImageSet;

use crate::{Error, Result};

/// Loads `split` of the dataset `name` (from `path`, or the usual places), at most `limit` images.
pub fn load_set(
    name: &str,
    path: Option<&Path>,
    split: &str,
    limit: Option<usize>,
) -> Result<ImageSet> {
    let mut spec = DatasetSpec::new(name.parse()?);
    spec.split = split.parse()?;
    spec.path = path.map(Path::to_path_buf);
    spec.limit = limit;
    let set = datasets::load(&spec)?;
    if set.is_empty() {
        return Err(Error::Invalid(format!("dataset `{name}` has no images")));
    }
    Ok(set)
}

/// Named image sets, each converted to the model's `shape`; the notes say what was converted.
pub struct NamedSets {
    /// (name, images) in order.
    pub sets: Vec<(String, ImageSet)>,
    /// One line per converted set.
    pub notes: Vec<String>,
}

impl NamedSets {
    /// Conforms each of `sets` to `shape`.
    pub fn conformed(sets: Vec<(String, ImageSet)>, shape: [usize; 3]) -> Result<Self> {
        let mut out = NamedSets {
            sets: Vec::new(),
            notes: Vec::new(),
        };
        for (name, set) in sets {
            let (set, note) = conform(&set, shape, &name)?;
            out.notes.extend(note);
            out.sets.push((name, set));
        }
        Ok(out)
    }
}

/// Converts `set` to the model's channels and size; returns the set and a note when it changed.
pub fn conform(
    set: &ImageSet,
    shape: [usize; 3],
    name: &str,
) -> Result<(ImageSet, Option<String>)> {
    let [c, h, w] = shape;
    if set.is_empty() {
        return Err(Error::Invalid(format!("dataset `{name}` has no images")));
    }
    let mut out = set.clone();
    let mut notes = Vec::new();
    if out.channels != c {
        notes.push(format!("{} -> {} channels", out.channels, c));
        out = out.to_channels(c)?;
    }
    if out.height != h || out.width != w {
        notes.push(format!(
            "resized {}x{} -> {h}x{w} (bilinear)",
            out.height, out.width
        ));
        out = out.resize(h, w);
    }
    let note = (!notes.is_empty()).then(|| format!("{name}: {}", notes.join(", ")));
    Ok((out, note))
}

/// One batch of a dataset: its index, the host pixels in [-1, 1] and the same as a tensor.
pub struct ImageBatch {
    /// Batch number (keys the noise).
    pub index: u64,
    /// Pixels, NCHW, scaled to [-1, 1].
    pub host: Vec<f32>,
    /// The same pixels on the device, [b, C, H, W].
    pub x0: burn::tensor::Tensor<4>,
}

/// The images of `set` in batches of `batch`, in order, on `device`.
pub fn image_batches<'a>(
    set: &'a ImageSet,
    batch: usize,
    device: &'a burn::tensor::Device,
) -> impl Iterator<Item = ImageBatch> + 'a {
    let [c, h, w] = [set.channels, set.height, set.width];
    let n = set.len();
    (0..n)
        .step_by(batch.max(1))
        .enumerate()
        .map(move |(bi, start)| {
            let idx: Vec<usize> = (start..(start + batch).min(n)).collect();
            let host = set.to_f32(&idx);
            let data = burn::tensor::TensorData::new(host.clone(), [idx.len(), c, h, w]);
            ImageBatch {
                index: bi as u64,
                host,
                x0: burn::tensor::Tensor::from_data(data, device),
            }
        })
}
