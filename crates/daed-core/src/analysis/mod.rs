//! Where a DDGM switches from generating to denoising: reconstruction from step t and the
//! per-step loss terms (the SNR analysis needs no model and lives in daed-eval).
pub mod losses;
pub mod recon;
pub mod switch;
pub mod transfer;

use daed_io::images::ImageSet;

use crate::{Error, Result};

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
