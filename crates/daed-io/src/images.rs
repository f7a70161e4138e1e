//! [`ImageSet`]: a batch of same-sized `u8` images in NCHW order, with optional labels.

use crate::error::{Error, Result};

/// A set of `len()` images of `channels x height x width` bytes each, stored NCHW.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageSet {
    /// Channels per image: 1 (gray) or 3 (RGB).
    pub channels: usize,
    /// Image height in pixels.
    pub height: usize,
    /// Image width in pixels.
    pub width: usize,
    /// All pixels, image after image, each as C planes of H rows of W bytes (NCHW).
    pub pixels: Vec<u8>,
    /// One class label per image, when the dataset has labels.
    pub labels: Option<Vec<u16>>,
}

impl ImageSet {
    /// Builds a set, checking that `pixels` holds a whole number of images and `labels` one per image.
    pub fn new(
        channels: usize,
        height: usize,
        width: usize,
        pixels: Vec<u8>,
        labels: Option<Vec<u16>>,
    ) -> Result<ImageSet> {
        let per = channels * height * width;
        if per == 0 {
            return Err(Error::Invalid(format!(
                "image size {channels}x{height}x{width} has no pixels"
            )));
        }
        if !pixels.len().is_multiple_of(per) {
            return Err(Error::Invalid(format!(
                "{} bytes is not a whole number of {channels}x{height}x{width} images",
                pixels.len()
            )));
        }
        if let Some(l) = &labels {
            if l.len() != pixels.len() / per {
                return Err(Error::Invalid(format!(
                    "{} labels for {} images",
                    l.len(),
                    pixels.len() / per
                )));
            }
        }
        Ok(ImageSet {
            channels,
            height,
            width,
            pixels,
            labels,
        })
    }

    /// Bytes per image (`channels * height * width`).
    pub fn image_size(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.pixels
            .len()
            .checked_div(self.image_size())
            .unwrap_or(0)
    }

    /// True when the set holds no images.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The CHW bytes of image `i`. Panics if `i >= len()`, like slice indexing.
    pub fn image(&self, i: usize) -> &[u8] {
        let per = self.image_size();
        &self.pixels[i * per..(i + 1) * per]
    }

    /// Label of image `i`, if the set has labels and `i` is in range.
    pub fn label(&self, i: usize) -> Option<u16> {
        self.labels.as_ref().and_then(|l| l.get(i).copied())
    }

    /// The first `n` images (all of them if `n >= len()`).
    pub fn take(&self, n: usize) -> ImageSet {
        let n = n.min(self.len());
        ImageSet {
            channels: self.channels,
            height: self.height,
            width: self.width,
            pixels: self.pixels[..n * self.image_size()].to_vec(),
            labels: self.labels.as_ref().map(|l| l[..n].to_vec()),
        }
    }

    /// The images at `indices`, in that order (repeats allowed). Panics on an index out of range.
    pub fn select(&self, indices: &[usize]) -> ImageSet {
        let mut pixels = Vec::with_capacity(indices.len() * self.image_size());
        for &i in indices {
            pixels.extend_from_slice(self.image(i));
        }
        ImageSet {
            channels: self.channels,
            height: self.height,
            width: self.width,
            pixels,
            labels: self
                .labels
                .as_ref()
                .map(|l| indices.iter().map(|&i| l[i]).collect()),
        }
    }

    /// Appends the images of `other`, which must have the same shape. Labels are kept only if both have them.
    pub fn extend(&mut self, other: &ImageSet) -> Result<()> {
        if (other.channels, other.height, other.width) != (self.channels, self.height, self.width) {
            return Err(Error::Invalid(format!(
                "cannot join {}x{}x{} images to {}x{}x{} images",
                other.channels, other.height, other.width, self.channels, self.height, self.width
            )));
        }
        self.pixels.extend_from_slice(&other.pixels);
        self.labels = match (self.labels.take(), &other.labels) {
            (Some(mut a), Some(b)) => {
                a.extend_from_slice(b);
                Some(a)
            }
            _ => None,
        };
        Ok(())
    }

    /// The images at `indices` as NCHW floats scaled to [-1, 1] (`x / 127.5 - 1`).
    pub fn to_f32(&self, indices: &[usize]) -> Vec<f32> {
        let mut out = Vec::with_capacity(indices.len() * self.image_size());
        for &i in indices {
            out.extend(self.image(i).iter().map(|&x| x as f32 / 127.5 - 1.0));
        }
        out
    }

    /// All images as NCHW floats in [-1, 1].
    pub fn to_f32_all(&self) -> Vec<f32> {
        self.pixels
            .iter()
            .map(|&x| x as f32 / 127.5 - 1.0)
            .collect()
    }

    /// Inverse of [`to_f32`](Self::to_f32): `((x + 1) * 127.5).round().clamp(0, 255)`; NaN maps to 0.
    /// The image count is `data.len() / (c*h*w)`; panics if that is not a whole number.
    pub fn from_f32(c: usize, h: usize, w: usize, data: &[f32]) -> ImageSet {
        let per = c * h * w;
        assert!(
            per > 0 && data.len().is_multiple_of(per),
            "from_f32: {} values is not a whole number of {c}x{h}x{w} images",
            data.len()
        );
        let pixels = data
            .iter()
            .map(|&x| {
                let v = ((x + 1.0) * 127.5).round();
                if v.is_nan() {
                    0
                } else {
                    v.clamp(0.0, 255.0) as u8
                }
            })
            .collect();
        ImageSet {
            channels: c,
            height: h,
            width: w,
            pixels,
            labels: None,
        }
    }

    /// Resizes every image to `h x w` with bilinear interpolation (align_corners = false, like PyTorch).
    pub fn resize(&self, h: usize, w: usize) -> ImageSet {
        if (h, w) == (self.height, self.width) {
            return self.clone();
        }
        if self.height == 0 || self.width == 0 || h == 0 || w == 0 {
            let labels = self.labels.clone();
            return ImageSet {
                channels: self.channels,
                height: h,
                width: w,
                pixels: Vec::new(),
                labels,
            };
        }
        let ys = axis_weights(self.height, h);
        let xs = axis_weights(self.width, w);
        let mut pixels = Vec::with_capacity(self.len() * self.channels * h * w);
        let plane = self.height * self.width;
        for p in self.pixels.chunks_exact(plane.max(1)) {
            for &(y0, y1, fy) in &ys {
                for &(x0, x1, fx) in &xs {
                    let a = p[y0 * self.width + x0] as f32;
                    let b = p[y0 * self.width + x1] as f32;
                    let c = p[y1 * self.width + x0] as f32;
                    let d = p[y1 * self.width + x1] as f32;
                    let top = a + (b - a) * fx;
                    let bot = c + (d - c) * fx;
                    pixels.push((top + (bot - top) * fy).round().clamp(0.0, 255.0) as u8);
                }
            }
        }
        ImageSet {
            channels: self.channels,
            height: h,
            width: w,
            pixels,
            labels: self.labels.clone(),
        }
    }

    /// Converts to `c` channels: 1 -> 3 repeats the gray plane, 3 -> 1 takes ITU-R 601 luma
    /// (0.299 R + 0.587 G + 0.114 B); other conversions are an error.
    pub fn to_channels(&self, c: usize) -> Result<ImageSet> {
        if c == self.channels {
            return Ok(self.clone());
        }
        let plane = self.height * self.width;
        let mut pixels = Vec::with_capacity(self.len() * c * plane);
        match (self.channels, c) {
            (1, 3) => {
                for p in self.pixels.chunks_exact(plane) {
                    for _ in 0..3 {
                        pixels.extend_from_slice(p);
                    }
                }
            }
            (3, 1) => {
                for img in self.pixels.chunks_exact(3 * plane) {
                    let (r, rest) = img.split_at(plane);
                    let (g, b) = rest.split_at(plane);
                    for i in 0..plane {
                        let y = 0.299 * r[i] as f32 + 0.587 * g[i] as f32 + 0.114 * b[i] as f32;
                        pixels.push(y.round().clamp(0.0, 255.0) as u8);
                    }
                }
            }
            (from, to) => {
                return Err(Error::Invalid(format!(
                    "cannot convert {from}-channel images to {to} channels (supported: 1 <-> 3)"
                )))
            }
        }
        Ok(ImageSet {
            channels: c,
            height: self.height,
            width: self.width,
            pixels,
            labels: self.labels.clone(),
        })
    }

    /// All pixels in NHWC order (interleaved channels), e.g. for PNG encoders.
    pub fn to_nhwc_u8(&self) -> Vec<u8> {
        let (c, plane) = (self.channels, self.height * self.width);
        let mut out = vec![0u8; self.pixels.len()];
        for (img_in, img_out) in self
            .pixels
            .chunks_exact(c * plane)
            .zip(out.chunks_exact_mut(c * plane))
        {
            for ch in 0..c {
                for i in 0..plane {
                    img_out[i * c + ch] = img_in[ch * plane + i];
                }
            }
        }
        out
    }

    /// Builds a set from `n` NHWC images; panics if `data.len() != n*h*w*c`.
    pub fn from_nhwc_u8(n: usize, h: usize, w: usize, c: usize, data: &[u8]) -> ImageSet {
        assert_eq!(
            data.len(),
            n * h * w * c,
            "from_nhwc_u8: {n}x{h}x{w}x{c} needs {} bytes",
            n * h * w * c
        );
        let plane = h * w;
        let mut pixels = vec![0u8; data.len()];
        for (img_in, img_out) in data
            .chunks_exact((c * plane).max(1))
            .zip(pixels.chunks_exact_mut((c * plane).max(1)))
        {
            for i in 0..plane {
                for ch in 0..c {
                    img_out[ch * plane + i] = img_in[i * c + ch];
                }
            }
        }
        ImageSet {
            channels: c,
            height: h,
            width: w,
            pixels,
            labels: None,
        }
    }
}

/// For each output index: (lower source index, upper source index, weight of upper), align_corners=false.
fn axis_weights(src: usize, dst: usize) -> Vec<(usize, usize, f32)> {
    let scale = src as f32 / dst as f32;
    (0..dst)
        .map(|o| {
            let s = ((o as f32 + 0.5) * scale - 0.5).max(0.0);
            let i0 = (s.floor() as usize).min(src - 1);
            let i1 = (i0 + 1).min(src - 1);
            (i0, i1, s - i0 as f32)
        })
        .collect()
}
