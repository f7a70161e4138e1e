//! Downsampled ImageNet (Chrabaszcz et al. 2017, "A Downsampled Variant of ImageNet") in its published
//! `.npz` form: `train_data_batch_1.npz` ... `train_data_batch_10.npz` and `val_data.npz`, each with
//! `data` (uint8, `(N, 3*S*S)` rows of R, G and B planes of S x S row-major, the CIFAR layout, or
//! `(N, 3, S, S)`) and `labels` (`(N,)` integers 1..1000, 1-based); any other key (`mean`) is ignored.

use crate::error::{read_file, Error, Result};
use crate::images::ImageSet;
use crate::npz::{npz_from_bytes_keys, npz_keys_from_bytes, NpyArray, NpyData};
use std::path::Path;

/// Number of ImageNet classes; labels in the files are 1..=1000, loaded as 0..1000.
pub const IMAGENET_CLASSES: usize = 1000;

/// numpy's name for the dtype an array was read as.
fn dtype_name(d: &NpyData) -> &'static str {
    match d {
        NpyData::U8(_) => "uint8",
        NpyData::F32(_) => "float32",
        NpyData::F64(_) => "float64",
        NpyData::I64(_) => "a wider integer type (int16/int32/int64)",
    }
}

/// `Some(k)` when `n` values are one 3 x k x k image.
fn rgb_side(n: usize) -> Option<usize> {
    if n == 0 || !n.is_multiple_of(3) {
        return None;
    }
    let k = ((n / 3) as f64).sqrt().round() as usize;
    (k * k * 3 == n).then_some(k)
}

/// Explains an image size `k` that is not the expected `size`.
fn wrong_size(size: usize, k: usize, got: String) -> String {
    let hint = match k {
        32 | 64 if k != size => format!(" (an Imagenet{k} file: load it as imagenet{k})"),
        _ => String::new(),
    };
    format!(
        "{got} {k}x{k} RGB images{hint}, but imagenet{size} needs 3x{size}x{size} = {} values per image",
        3 * size * size
    )
}

/// Checks `data`'s dtype and shape for `size` x `size` images; returns the image count and pixels.
fn check_data(data: NpyArray, size: usize, origin: &Path) -> Result<(usize, Vec<u8>)> {
    let bad = |m: String| Error::format(origin, m);
    let NpyData::U8(pixels) = data.data else {
        return Err(bad(format!(
            "`data` is {}, expected uint8 pixels (|u1)",
            dtype_name(&data.data)
        )));
    };
    let per = 3 * size * size;
    let n = match data.shape[..] {
        [n, d] if d == per => Ok(n),
        [_, d] => Err(bad(match rgb_side(d) {
            Some(k) => wrong_size(size, k, format!("`data` rows of {d} values are")),
            None => format!(
                "`data` rows have {d} values, expected 3x{size}x{size} = {per} for imagenet{size}"
            ),
        })),
        [n, 3, h, w] if h == size && w == size => Ok(n),
        [_, 3, h, w] if h == w => Err(bad(wrong_size(
            size,
            h,
            format!("`data` of shape {:?} holds", data.shape),
        ))),
        [_, h, w, 3] if h == w => Err(bad(format!(
            "`data` of shape {:?} is channels-last (N, H, W, 3); expected (N, {per}) or (N, 3, {size}, {size}) \
             with R, G, B planes as published",
            data.shape
        ))),
        _ => Err(bad(format!(
            "`data` has shape {:?}, expected (N, {per}) or (N, 3, {size}, {size})",
            data.shape
        ))),
    }?;
    Ok((n, pixels))
}

/// Checks `labels` (one 1-based integer per image) and converts them to 0-based.
fn check_labels(labels: &NpyArray, n: usize, origin: &Path) -> Result<Vec<u16>> {
    let bad = |m: String| Error::format(origin, m);
    if labels.len() != n || labels.shape.len() > 2 || labels.shape.iter().skip(1).any(|&d| d != 1) {
        return Err(bad(format!(
            "`labels` has shape {:?} ({} values) but `data` has {n} images",
            labels.shape,
            labels.len()
        )));
    }
    let values: Vec<i64> = match &labels.data {
        NpyData::I64(v) => v.clone(),
        NpyData::U8(v) => v.iter().map(|&x| x as i64).collect(),
        d => {
            return Err(bad(format!(
                "`labels` is {}, expected integers 1..={IMAGENET_CLASSES}",
                dtype_name(d)
            )))
        }
    };
    values
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            if (1..=IMAGENET_CLASSES as i64).contains(&v) {
                Ok((v - 1) as u16)
            } else {
                let zero = if v == 0 {
                    " (is this file already 0-based?)"
                } else {
                    ""
                };
                Err(bad(format!(
                    "labels[{i}] = {v} is outside 1..={IMAGENET_CLASSES} \
                     (downsampled-ImageNet labels are 1-based){zero}"
                )))
            }
        })
        .collect()
}

/// Parses one downsampled-ImageNet `.npz` (bytes of `origin`) of `size` x `size` images, keeping at most
/// `keep` of them.
pub fn read_imagenet_npz_bytes(
    bytes: &[u8],
    size: usize,
    keep: Option<usize>,
    origin: &Path,
) -> Result<ImageSet> {
    if !bytes.starts_with(b"PK") {
        return Err(Error::format(
            origin,
            "not an .npz (zip) file; daed reads the npz release of downsampled ImageNet \
             (Imagenet32_train_npz / Imagenet64_train_npz, *_val_npz), not the pickled batches",
        ));
    }
    let mut arrays = npz_from_bytes_keys(bytes, origin, &["data", "labels"])?;
    let mut take = |key: &str| match arrays.remove(key) {
        Some(a) => Ok(a),
        None => {
            let found = npz_keys_from_bytes(bytes, origin)?.join(", ");
            Err(Error::format(
                origin,
                format!(
                    "no `{key}` array (keys: {}); a downsampled-ImageNet npz holds `data` and `labels`",
                    if found.is_empty() { "none" } else { &found }
                ),
            ))
        }
    };
    let (data, labels) = (take("data")?, take("labels")?);
    let (n, mut pixels) = check_data(data, size, origin)?;
    let mut labels = check_labels(&labels, n, origin)?;
    if let Some(k) = keep.filter(|&k| k < n) {
        pixels.truncate(k * 3 * size * size);
        labels.truncate(k);
    }
    ImageSet::new(3, size, size, pixels, Some(labels))
}

/// Reads and concatenates downsampled-ImageNet `.npz` files of `size` x `size` images (32 or 64), in the
/// order given, with 0-based labels; with a `limit`, stops reading once that many images are loaded.
pub fn read_imagenet_npz<P: AsRef<Path>>(
    paths: &[P],
    size: usize,
    limit: Option<usize>,
) -> Result<ImageSet> {
    if paths.is_empty() {
        return Err(Error::Invalid(
            "no downsampled-ImageNet npz files given".into(),
        ));
    }
    let mut set = ImageSet {
        channels: 3,
        height: size,
        width: size,
        pixels: Vec::new(),
        labels: Some(Vec::new()),
    };
    for p in paths {
        let left = limit.map(|l| l.saturating_sub(set.len()));
        if left == Some(0) {
            break;
        }
        let p = p.as_ref();
        let batch = read_imagenet_npz_bytes(&read_file(p)?, size, left, p)?;
        if set.is_empty() {
            set = batch;
        } else {
            set.extend(&batch)?;
        }
    }
    Ok(set)
}
