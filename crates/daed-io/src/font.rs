//! A tiny RGB canvas with an embedded 5x7 bitmap font (printable ASCII), used by plots and grids.

use crate::atomic::write_atomic;
use crate::error::{Error, Result};
use std::path::Path;

/// Glyph width in pixels (at scale 1).
pub const GLYPH_W: usize = 5;
/// Glyph height in pixels (at scale 1).
pub const GLYPH_H: usize = 7;
/// Rows below the baseline used by descenders (g, j, p, q, y) at scale 1.
pub const GLYPH_DESCENT: usize = 2;
/// Horizontal advance per character (glyph plus one pixel of spacing) at scale 1.
pub const ADVANCE: usize = 6;

/// Columns of each glyph for ASCII 0x20..=0x7E; bit 0 is the top row.
const FONT: [[u8; 5]; 95] = [
    [0x00, 0x00, 0x00, 0x00, 0x00],
    [0x00, 0x00, 0x5F, 0x00, 0x00],
    [0x00, 0x07, 0x00, 0x07, 0x00],
    [0x14, 0x7F, 0x14, 0x7F, 0x14],
    [0x24, 0x2A, 0x7F, 0x2A, 0x12],
    [0x23, 0x13, 0x08, 0x64, 0x62],
    [0x36, 0x49, 0x56, 0x20, 0x50],
    [0x00, 0x00, 0x07, 0x00, 0x00],
    [0x00, 0x1C, 0x22, 0x41, 0x00],
    [0x00, 0x41, 0x22, 0x1C, 0x00],
    [0x2A, 0x1C, 0x7F, 0x1C, 0x2A],
    [0x08, 0x08, 0x3E, 0x08, 0x08],
    [0x00, 0x50, 0x30, 0x00, 0x00],
    [0x08, 0x08, 0x08, 0x08, 0x08],
    [0x00, 0x60, 0x60, 0x00, 0x00],
    [0x20, 0x10, 0x08, 0x04, 0x02],
    [0x3E, 0x51, 0x49, 0x45, 0x3E],
    [0x00, 0x42, 0x7F, 0x40, 0x00],
    [0x42, 0x61, 0x51, 0x49, 0x46],
    [0x21, 0x41, 0x45, 0x4B, 0x31],
    [0x18, 0x14, 0x12, 0x7F, 0x10],
    [0x27, 0x45, 0x45, 0x45, 0x39],
    [0x3C, 0x4A, 0x49, 0x49, 0x30],
    [0x01, 0x71, 0x09, 0x05, 0x03],
    [0x36, 0x49, 0x49, 0x49, 0x36],
    [0x06, 0x49, 0x49, 0x29, 0x1E],
    [0x00, 0x36, 0x36, 0x00, 0x00],
    [0x00, 0x56, 0x36, 0x00, 0x00],
    [0x08, 0x14, 0x22, 0x41, 0x00],
    [0x14, 0x14, 0x14, 0x14, 0x14],
    [0x00, 0x41, 0x22, 0x14, 0x08],
    [0x02, 0x01, 0x51, 0x09, 0x06],
    [0x32, 0x49, 0x79, 0x41, 0x3E],
    [0x7E, 0x11, 0x11, 0x11, 0x7E],
    [0x7F, 0x49, 0x49, 0x49, 0x36],
    [0x3E, 0x41, 0x41, 0x41, 0x22],
    [0x7F, 0x41, 0x41, 0x22, 0x1C],
    [0x7F, 0x49, 0x49, 0x49, 0x41],
    [0x7F, 0x09, 0x09, 0x09, 0x01],
    [0x3E, 0x41, 0x49, 0x49, 0x7A],
    [0x7F, 0x08, 0x08, 0x08, 0x7F],
    [0x00, 0x41, 0x7F, 0x41, 0x00],
    [0x20, 0x40, 0x41, 0x3F, 0x01],
    [0x7F, 0x08, 0x14, 0x22, 0x41],
    [0x7F, 0x40, 0x40, 0x40, 0x40],
    [0x7F, 0x02, 0x0C, 0x02, 0x7F],
    [0x7F, 0x04, 0x08, 0x10, 0x7F],
    [0x3E, 0x41, 0x41, 0x41, 0x3E],
    [0x7F, 0x09, 0x09, 0x09, 0x06],
    [0x3E, 0x41, 0x51, 0x21, 0x5E],
    [0x7F, 0x09, 0x19, 0x29, 0x46],
    [0x46, 0x49, 0x49, 0x49, 0x31],
    [0x01, 0x01, 0x7F, 0x01, 0x01],
    [0x3F, 0x40, 0x40, 0x40, 0x3F],
    [0x1F, 0x20, 0x40, 0x20, 0x1F],
    [0x3F, 0x40, 0x38, 0x40, 0x3F],
    [0x63, 0x14, 0x08, 0x14, 0x63],
    [0x07, 0x08, 0x70, 0x08, 0x07],
    [0x61, 0x51, 0x49, 0x45, 0x43],
    [0x00, 0x7F, 0x41, 0x41, 0x00],
    [0x02, 0x04, 0x08, 0x10, 0x20],
    [0x00, 0x41, 0x41, 0x7F, 0x00],
    [0x04, 0x02, 0x01, 0x02, 0x04],
    [0x40, 0x40, 0x40, 0x40, 0x40],
    [0x00, 0x01, 0x02, 0x04, 0x00],
    [0x20, 0x54, 0x54, 0x54, 0x78],
    [0x7F, 0x48, 0x44, 0x44, 0x38],
    [0x38, 0x44, 0x44, 0x44, 0x20],
    [0x38, 0x44, 0x44, 0x48, 0x7F],
    [0x38, 0x54, 0x54, 0x54, 0x18],
    [0x08, 0x7E, 0x09, 0x01, 0x02],
    [0x0C, 0x52, 0x52, 0x52, 0x3E],
    [0x7F, 0x08, 0x04, 0x04, 0x78],
    [0x00, 0x44, 0x7D, 0x40, 0x00],
    [0x20, 0x40, 0x44, 0x3D, 0x00],
    [0x7F, 0x10, 0x28, 0x44, 0x00],
    [0x00, 0x41, 0x7F, 0x40, 0x00],
    [0x7C, 0x04, 0x18, 0x04, 0x78],
    [0x7C, 0x08, 0x04, 0x04, 0x78],
    [0x38, 0x44, 0x44, 0x44, 0x38],
    [0x7C, 0x14, 0x14, 0x14, 0x08],
    [0x08, 0x14, 0x14, 0x18, 0x7C],
    [0x7C, 0x08, 0x04, 0x04, 0x08],
    [0x48, 0x54, 0x54, 0x54, 0x20],
    [0x04, 0x3F, 0x44, 0x40, 0x20],
    [0x3C, 0x40, 0x40, 0x20, 0x7C],
    [0x1C, 0x20, 0x40, 0x20, 0x1C],
    [0x3C, 0x40, 0x30, 0x40, 0x3C],
    [0x44, 0x28, 0x10, 0x28, 0x44],
    [0x0C, 0x50, 0x50, 0x50, 0x3C],
    [0x44, 0x64, 0x54, 0x4C, 0x44],
    [0x00, 0x08, 0x36, 0x41, 0x00],
    [0x00, 0x00, 0x7F, 0x00, 0x00],
    [0x00, 0x41, 0x36, 0x08, 0x00],
    [0x08, 0x04, 0x08, 0x10, 0x08],
];

/// Lower-case letters with descenders, redrawn on 9 rows (bit 8 is two rows below the baseline).
const DESCENDERS: [(char, [u16; 5]); 5] = [
    ('g', [0x038, 0x144, 0x144, 0x144, 0x0FC]),
    ('j', [0x080, 0x100, 0x104, 0x0FD, 0x000]),
    ('p', [0x1FC, 0x044, 0x044, 0x044, 0x038]),
    ('q', [0x038, 0x044, 0x044, 0x044, 0x1FC]),
    ('y', [0x03C, 0x140, 0x140, 0x140, 0x0FC]),
];

/// The column bitmap of `c` (bit 0 = top row, rows 7-8 for descenders); characters outside
/// printable ASCII draw as `?`.
pub fn glyph(c: char) -> [u16; 5] {
    if let Some((_, g)) = DESCENDERS.iter().find(|(d, _)| *d == c) {
        return *g;
    }
    let i = c as u32;
    let g = if (0x20..=0x7E).contains(&i) {
        FONT[(i - 0x20) as usize]
    } else {
        FONT[(b'?' - 0x20) as usize]
    };
    g.map(|b| b as u16)
}

/// Width in pixels of `text` drawn at `scale`.
pub fn text_width(text: &str, scale: usize) -> usize {
    let n = text.chars().count();
    if n == 0 {
        0
    } else {
        (n * ADVANCE - 1) * scale
    }
}

/// An RGB8 image being drawn on (row-major, 3 bytes per pixel).
#[derive(Clone, Debug, PartialEq)]
pub struct Canvas {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// RGB bytes, `width * height * 3`.
    pub pixels: Vec<u8>,
}

/// An RGB colour.
pub type Rgb = [u8; 3];

impl Canvas {
    /// A canvas filled with `bg`.
    pub fn new(width: usize, height: usize, bg: Rgb) -> Canvas {
        let mut pixels = Vec::with_capacity(width * height * 3);
        for _ in 0..width * height {
            pixels.extend_from_slice(&bg);
        }
        Canvas {
            width,
            height,
            pixels,
        }
    }

    /// Sets pixel (x, y); coordinates outside the canvas are ignored.
    pub fn set(&mut self, x: i64, y: i64, c: Rgb) {
        self.blend(x, y, c, 1.0);
    }

    /// Blends `c` over pixel (x, y) with opacity `alpha` in [0, 1]; outside pixels are ignored.
    pub fn blend(&mut self, x: i64, y: i64, c: Rgb, alpha: f32) {
        if x < 0 || y < 0 || x as usize >= self.width || y as usize >= self.height || alpha <= 0.0 {
            return;
        }
        let a = alpha.min(1.0);
        let i = (y as usize * self.width + x as usize) * 3;
        for (px, &ck) in self.pixels[i..i + 3].iter_mut().zip(c.iter()) {
            let o = *px as f32;
            *px = (o + (ck as f32 - o) * a).round() as u8;
        }
    }

    /// Fills the rectangle [x0, x1) x [y0, y1) with `c` at opacity `alpha`.
    pub fn fill_rect(&mut self, x0: i64, y0: i64, x1: i64, y1: i64, c: Rgb, alpha: f32) {
        for y in y0.max(0)..y1.min(self.height as i64) {
            for x in x0.max(0)..x1.min(self.width as i64) {
                self.blend(x, y, c, alpha);
            }
        }
    }

    /// Draws an anti-aliased line of `width` pixels from (x0, y0) to (x1, y1), clipped to `clip`
    /// (x_min, y_min, x_max, y_max), by coverage of each pixel centre's distance to the segment.
    #[allow(clippy::too_many_arguments)]
    pub fn line(
        &mut self,
        x0: f64,
        y0: f64,
        x1: f64,
        y1: f64,
        width: f64,
        c: Rgb,
        clip: (i64, i64, i64, i64),
    ) {
        let r = width / 2.0 + 0.5;
        let bx0 = ((x0.min(x1) - r).floor() as i64).max(clip.0);
        let bx1 = ((x0.max(x1) + r).ceil() as i64).min(clip.2);
        let by0 = ((y0.min(y1) - r).floor() as i64).max(clip.1);
        let by1 = ((y0.max(y1) + r).ceil() as i64).min(clip.3);
        let (dx, dy) = (x1 - x0, y1 - y0);
        let len2 = dx * dx + dy * dy;
        for y in by0..=by1 {
            for x in bx0..=bx1 {
                let (px, py) = (x as f64 + 0.5, y as f64 + 0.5);
                let t = if len2 > 0.0 {
                    (((px - x0) * dx + (py - y0) * dy) / len2).clamp(0.0, 1.0)
                } else {
                    0.0
                };
                let (qx, qy) = (x0 + t * dx - px, y0 + t * dy - py);
                let d = (qx * qx + qy * qy).sqrt();
                let cov = (width / 2.0 + 0.5 - d).clamp(0.0, 1.0);
                if cov > 0.0 {
                    self.blend(x, y, c, cov as f32);
                }
            }
        }
    }

    /// Draws `text` with its top-left corner at (x, y), each font pixel a `scale` x `scale` block.
    pub fn text(&mut self, x: i64, y: i64, text: &str, scale: usize, c: Rgb) {
        let s = scale as i64;
        for (k, ch) in text.chars().enumerate() {
            let g = glyph(ch);
            let gx = x + (k * ADVANCE) as i64 * s;
            for (col, bits) in g.iter().enumerate() {
                for row in 0..GLYPH_H + GLYPH_DESCENT {
                    if bits >> row & 1 == 1 {
                        self.fill_rect(
                            gx + col as i64 * s,
                            y + row as i64 * s,
                            gx + (col as i64 + 1) * s,
                            y + (row as i64 + 1) * s,
                            c,
                            1.0,
                        );
                    }
                }
            }
        }
    }

    /// Draws `text` rotated 90 degrees counter-clockwise (reading bottom to top); (x, y) is the
    /// top-left of its bounding box, which is `GLYPH_H*scale` wide and `text_width` tall.
    pub fn text_vertical(&mut self, x: i64, y: i64, text: &str, scale: usize, c: Rgb) {
        let s = scale as i64;
        let h = text_width(text, scale) as i64;
        for (k, ch) in text.chars().enumerate() {
            let g = glyph(ch);
            for (col, bits) in g.iter().enumerate() {
                for row in 0..GLYPH_H + GLYPH_DESCENT {
                    if bits >> row & 1 == 1 {
                        let along = (k * ADVANCE + col) as i64 * s; // distance from the text start
                        let px = x + row as i64 * s;
                        let py = y + h - along - s;
                        self.fill_rect(px, py, px + s, py + s, c, 1.0);
                    }
                }
            }
        }
    }

    /// Copies an RGB block of `w x h` pixels with its top-left at (x, y).
    pub fn blit(&mut self, x: usize, y: usize, w: usize, h: usize, rgb: &[u8]) {
        for row in 0..h.min(self.height.saturating_sub(y)) {
            let n = w.min(self.width.saturating_sub(x));
            let dst = ((y + row) * self.width + x) * 3;
            let src = row * w * 3;
            self.pixels[dst..dst + n * 3].copy_from_slice(&rgb[src..src + n * 3]);
        }
    }

    /// Encodes the canvas as PNG bytes.
    pub fn to_png(&self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        let enc = image::codecs::png::PngEncoder::new(&mut out);
        image::ImageEncoder::write_image(
            enc,
            &self.pixels,
            self.width as u32,
            self.height as u32,
            image::ExtendedColorType::Rgb8,
        )
        .map_err(|e| Error::Invalid(format!("PNG encoding failed: {e}")))?;
        Ok(out)
    }

    /// Writes the canvas as a PNG file, atomically.
    pub fn save_png(&self, path: impl AsRef<Path>) -> Result<()> {
        write_atomic(path, &self.to_png()?)
    }
}
