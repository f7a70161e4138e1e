//! Where a DDGM switches from generating to denoising: reconstruction from step t and the
//! per-step loss terms (the SNR analysis needs no model and lives in daed-eval).
pub mod losses;
pub mod recon;
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
