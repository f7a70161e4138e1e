//! IDX files (MNIST, Fashion-MNIST), raw or gzip-compressed.

use crate::error::{read_file, Error, Result};
use crate::images::ImageSet;
use flate2::read::MultiGzDecoder;
use std::io::Read;
use std::path::Path;

/// IDX magic of a `u8` 3-d array (images).
pub const IDX_IMAGES_MAGIC: u32 = 0x0000_0803;
/// IDX magic of a `u8` 1-d array (labels).
pub const IDX_LABELS_MAGIC: u32 = 0x0000_0801;

/// Returns `bytes` decompressed when they start with the gzip magic `1f 8b`, else borrowed as they are.
/// `origin` names the source in errors.
pub fn maybe_gunzip<'a>(bytes: &'a [u8], origin: &Path) -> Result<std::borrow::Cow<'a, [u8]>> {
    if bytes.len() >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b {
        let mut out = Vec::new();
        MultiGzDecoder::new(bytes)
            .read_to_end(&mut out)
            .map_err(|e| Error::format(origin, format!("corrupt or truncated gzip data: {e}")))?;
        Ok(out.into())
    } else {
        Ok(bytes.into())
    }
}

fn be_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Parses the header: checks the magic and returns the dimensions and the payload.
fn parse<'a>(data: &'a [u8], magic: u32, origin: &Path) -> Result<(Vec<usize>, &'a [u8])> {
    let what = if magic == IDX_IMAGES_MAGIC {
        "IDX images"
    } else {
        "IDX labels"
    };
    if data.len() < 4 {
        return Err(Error::format(
            origin,
            format!("too short for an {what} file ({} bytes)", data.len()),
        ));
    }
    let got = be_u32(data, 0);
    if got != magic {
        return Err(Error::format(
            origin,
            format!("bad magic number 0x{got:08x} for {what} (expected 0x{magic:08x})"),
        ));
    }
    let ndim = (magic & 0xff) as usize;
    let header = 4 + 4 * ndim;
    if data.len() < header {
        return Err(Error::format(
            origin,
            format!(
                "truncated header: expected {header} bytes, got {}",
                data.len()
            ),
        ));
    }
    let dims: Vec<usize> = (0..ndim)
        .map(|i| be_u32(data, 4 + 4 * i) as usize)
        .collect();
    let expected = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| Error::format(origin, format!("dimensions {dims:?} overflow")))?;
    let payload = &data[header..];
    if payload.len() != expected {
        let kind = if payload.len() < expected {
            "truncated"
        } else {
            "trailing data"
        };
        return Err(Error::format(
            origin,
            format!(
                "{kind}: dimensions {dims:?} need {expected} data bytes after the {header}-byte header, got {}",
                payload.len()
            ),
        ));
    }
    Ok((dims, payload))
}

/// Parses IDX images (magic 0x00000803, dims N x H x W) from raw or gzipped bytes into a 1-channel set.
pub fn read_idx_images_from_bytes(bytes: &[u8], origin: &Path) -> Result<ImageSet> {
    let data = maybe_gunzip(bytes, origin)?;
    let (dims, payload) = parse(&data, IDX_IMAGES_MAGIC, origin)?;
    if dims[1] == 0 || dims[2] == 0 {
        return Err(Error::format(
            origin,
            format!("image dimensions {}x{} are empty", dims[1], dims[2]),
        ));
    }
    Ok(ImageSet {
        channels: 1,
        height: dims[1],
        width: dims[2],
        pixels: payload.to_vec(),
        labels: None,
    })
}

/// Parses IDX labels (magic 0x00000801) from raw or gzipped bytes.
pub fn read_idx_labels_from_bytes(bytes: &[u8], origin: &Path) -> Result<Vec<u16>> {
    let data = maybe_gunzip(bytes, origin)?;
    let (_, payload) = parse(&data, IDX_LABELS_MAGIC, origin)?;
    Ok(payload.iter().map(|&b| b as u16).collect())
}

/// Reads an IDX images file (gzip detected by its magic).
pub fn read_idx_images(path: impl AsRef<Path>) -> Result<ImageSet> {
    let path = path.as_ref();
    read_idx_images_from_bytes(&read_file(path)?, path)
}

/// Reads an IDX labels file (gzip detected by its magic).
pub fn read_idx_labels(path: impl AsRef<Path>) -> Result<Vec<u16>> {
    let path = path.as_ref();
    read_idx_labels_from_bytes(&read_file(path)?, path)
}

/// Joins images and labels, checking that the counts agree (`labels_origin` names the labels in errors).
pub fn attach_labels(
    mut images: ImageSet,
    labels: Vec<u16>,
    labels_origin: &Path,
) -> Result<ImageSet> {
    if labels.len() != images.len() {
        return Err(Error::format(
            labels_origin,
            format!(
                "label count {} does not match image count {}",
                labels.len(),
                images.len()
            ),
        ));
    }
    images.labels = Some(labels);
    Ok(images)
}

/// Reads an images file and its labels file, checking that the counts agree.
pub fn load_idx_pair(images: impl AsRef<Path>, labels: impl AsRef<Path>) -> Result<ImageSet> {
    let (ip, lp) = (images.as_ref(), labels.as_ref());
    let set = read_idx_images(ip)?;
    let l = read_idx_labels(lp)?;
    if l.len() != set.len() {
        return Err(Error::format(
            lp,
            format!(
                "label count {} does not match image count {} in {}",
                l.len(),
                set.len(),
                ip.display()
            ),
        ));
    }
    attach_labels(set, l, lp)
}

/// Parses an images/labels pair from in-memory bytes (used for the embedded demo data).
pub fn load_idx_pair_from_bytes(images: &[u8], labels: &[u8], origin: &Path) -> Result<ImageSet> {
    let set = read_idx_images_from_bytes(images, origin)?;
    let l = read_idx_labels_from_bytes(labels, origin)?;
    attach_labels(set, l, origin)
}
