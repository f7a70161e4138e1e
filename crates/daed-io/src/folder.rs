//! Folders of PNG/JPEG images (CelebA's `img_align_celeba/`, or any user folder) -> [`ImageSet`].

use crate::error::{read_file, Error, Result};
use crate::images::ImageSet;
use image::imageops::FilterType;
use image::{DynamicImage, ImageFormat, ImageReader};
use std::io::Cursor;
use std::path::{Path, PathBuf};

/// How to turn each image file into a fixed-size array.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FolderOptions {
    /// Centre square crop of this side (pixels) before resizing; `None` keeps the whole image.
    pub crop: Option<u32>,
    /// Resize to (height, width) after cropping (bilinear, image's Triangle filter); `None` keeps the
    /// size, and then all images must already have the same size.
    pub size: Option<(u32, u32)>,
    /// Output channels: 1 (gray, ITU-R 601 luma) or 3 (RGB).
    pub channels: usize,
}

impl Default for FolderOptions {
    /// No crop, no resize, 3 channels.
    fn default() -> Self {
        FolderOptions {
            crop: None,
            size: None,
            channels: 3,
        }
    }
}

/// Default centre-crop side for CelebA's 178x218 aligned images.
pub const CELEBA_DEFAULT_CROP: u32 = 140;

impl FolderOptions {
    /// The usual CelebA-64 preprocessing: centre crop `crop` (140 by default), resize to 64x64, RGB.
    pub fn celeba(crop: u32) -> Self {
        FolderOptions {
            crop: Some(crop),
            size: Some((64, 64)),
            channels: 3,
        }
    }
}

/// True for file names ending in .png, .jpg or .jpeg (any case).
pub fn is_image_name(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .map(|e| matches!(e.to_ascii_lowercase().as_str(), "png" | "jpg" | "jpeg"))
        .unwrap_or(false)
}

/// The regular, non-hidden files of `dir`, sorted by file name.
pub fn list_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let rd = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut files = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let path = entry.path();
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        if !hidden && path.is_file() {
            files.push(path);
        }
    }
    files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    Ok(files)
}

/// True when JPEG bytes end with the end-of-image marker `FF D9`, after any trailing padding (zero
/// bytes or ASCII whitespace). The decoder fills a JPEG cut short with gray without an error, so a
/// truncated download would otherwise enter a dataset silently.
pub fn has_jpeg_end(bytes: &[u8]) -> bool {
    // A trailer after the marker (padding, a vendor's appended data) is allowed up to 4 KiB.
    const TRAILER: usize = 4096;
    let tail = &bytes[bytes.len().saturating_sub(TRAILER + 2)..];
    tail.windows(2).any(|w| w == [0xff, 0xd9])
}

/// Decodes one image file and applies crop, resize and channel conversion; returns CHW bytes and (h, w).
/// A JPEG without its end-of-image marker (a truncated file) is refused.
pub fn load_image_file(path: &Path, opts: &FolderOptions) -> Result<(Vec<u8>, u32, u32)> {
    if opts.channels != 1 && opts.channels != 3 {
        return Err(Error::Invalid(format!(
            "channels must be 1 or 3, got {}",
            opts.channels
        )));
    }
    let bytes = read_file(path)?;
    // The content decides the format; the extension only when the content is not recognised.
    let format = image::guess_format(&bytes)
        .or_else(|_| ImageFormat::from_path(path))
        .ok();
    if format == Some(ImageFormat::Jpeg) && !has_jpeg_end(&bytes) {
        return Err(Error::format(
            path,
            "truncated JPEG: no end-of-image marker (FF D9) at the end of the file",
        ));
    }
    let mut reader = ImageReader::new(Cursor::new(&bytes));
    if let Some(f) = format {
        reader.set_format(f);
    }
    let mut img: DynamicImage = reader
        .decode()
        .map_err(|e| Error::format(path, format!("cannot decode image: {e}")))?;
    if let Some(side) = opts.crop {
        let (w, h) = (img.width(), img.height());
        if side == 0 || side > w || side > h {
            return Err(Error::format(
                path,
                format!("cannot centre-crop {side}x{side} from a {w}x{h} image"),
            ));
        }
        img = img.crop_imm((w - side) / 2, (h - side) / 2, side, side);
    }
    if let Some((h, w)) = opts.size {
        if h == 0 || w == 0 {
            return Err(Error::Invalid(format!("resize target {h}x{w} is empty")));
        }
        if (img.height(), img.width()) != (h, w) {
            img = img.resize_exact(w, h, FilterType::Triangle);
        }
    }
    let (w, h) = (img.width(), img.height());
    let gray_source = matches!(img.color().channel_count(), 1 | 2);
    let chw = if opts.channels == 1 && gray_source {
        img.to_luma8().into_raw()
    } else {
        let rgb = img.to_rgb8().into_raw();
        let set = ImageSet::from_nhwc_u8(1, h as usize, w as usize, 3, &rgb);
        set.to_channels(opts.channels)?.pixels
    };
    Ok((chw, h, w))
}

/// Loads the images at `files` in order into one set (no labels); `origin` names the folder in errors.
pub fn load_image_files(
    files: &[PathBuf],
    opts: &FolderOptions,
    origin: &Path,
) -> Result<ImageSet> {
    let Some(first) = files.first() else {
        return Err(Error::format(
            origin,
            "no PNG/JPEG images found in this folder",
        ));
    };
    let mut pixels = Vec::new();
    let mut shape = None;
    for f in files {
        if !is_image_name(f) {
            return Err(Error::format(
                f,
                "not a PNG/JPEG image (expected .png, .jpg or .jpeg)",
            ));
        }
        let (chw, h, w) = load_image_file(f, opts)?;
        match shape {
            None => shape = Some((h, w)),
            Some(s) if s != (h, w) => {
                return Err(Error::format(
                    f,
                    format!(
                        "image is {w}x{h} but {} is {}x{}; pass a resize size to mix sizes",
                        first.display(),
                        s.1,
                        s.0
                    ),
                ))
            }
            Some(_) => {}
        }
        pixels.extend_from_slice(&chw);
    }
    let (h, w) = shape.unwrap_or((0, 0));
    Ok(ImageSet {
        channels: opts.channels,
        height: h as usize,
        width: w as usize,
        pixels,
        labels: None,
    })
}

/// Loads every image of `dir` (sorted by file name) into one set; `limit` keeps the first N files.
/// Every non-hidden file must be a PNG or JPEG image; subdirectories are ignored.
pub fn read_folder_limit(
    dir: impl AsRef<Path>,
    opts: &FolderOptions,
    limit: Option<usize>,
) -> Result<ImageSet> {
    let dir = dir.as_ref();
    let mut files = list_files(dir)?;
    if let Some(n) = limit {
        files.truncate(n);
    }
    load_image_files(&files, opts, dir)
}

/// Loads every image of `dir` (sorted by file name) into one set.
pub fn read_folder(dir: impl AsRef<Path>, opts: &FolderOptions) -> Result<ImageSet> {
    read_folder_limit(dir, opts, None)
}
