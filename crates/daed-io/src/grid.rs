//! Image grids as PNG: one set in a grid, or several captioned grids side by side.
//!
//! Padding between cells is WHITE (255); gray images are drawn as RGB with R = G = B.

use crate::error::{Error, Result};
use crate::font::{text_width, Canvas, GLYPH_H};
use crate::images::ImageSet;
use std::path::Path;

/// Draws `set` as a grid of `ncol` columns with `pad` white pixels around and between the cells.
pub fn grid_image(set: &ImageSet, ncol: usize, pad: usize) -> Result<Canvas> {
    if set.is_empty() {
        return Err(Error::Invalid(
            "cannot draw a grid of an empty image set".into(),
        ));
    }
    if set.channels != 1 && set.channels != 3 {
        return Err(Error::Invalid(format!(
            "grid needs 1 or 3 channels, got {}",
            set.channels
        )));
    }
    let ncol = ncol.clamp(1, set.len());
    let nrow = set.len().div_ceil(ncol);
    let (h, w) = (set.height, set.width);
    let mut cv = Canvas::new(
        pad + ncol * (w + pad),
        pad + nrow * (h + pad),
        [255, 255, 255],
    );
    let rgb = if set.channels == 1 {
        set.to_channels(3)?
    } else {
        set.clone()
    };
    let nhwc = rgb.to_nhwc_u8();
    for i in 0..set.len() {
        let (r, c) = (i / ncol, i % ncol);
        let img = &nhwc[i * h * w * 3..(i + 1) * h * w * 3];
        cv.blit(pad + c * (w + pad), pad + r * (h + pad), w, h, img);
    }
    Ok(cv)
}

/// Saves `set` as a PNG grid of `ncol` columns with `pad` white pixels of padding.
pub fn save_grid_png(
    path: impl AsRef<Path>,
    set: &ImageSet,
    ncol: usize,
    pad: usize,
) -> Result<()> {
    grid_image(set, ncol, pad)?.save_png(path)
}

/// Enlarges a canvas by an integer factor (nearest neighbour), e.g. to make 28x28 grids readable.
pub fn upscale(cv: &Canvas, factor: usize) -> Canvas {
    let f = factor.max(1);
    let mut out = Canvas::new(cv.width * f, cv.height * f, [0, 0, 0]);
    for y in 0..out.height {
        for x in 0..out.width {
            let s = ((y / f) * cv.width + x / f) * 3;
            let d = (y * out.width + x) * 3;
            out.pixels[d..d + 3].copy_from_slice(&cv.pixels[s..s + 3]);
        }
    }
    out
}

/// Places canvases left to right with `gap` white pixels between them, aligned at the top.
pub fn concat_grids_horizontally(parts: &[Canvas], gap: usize) -> Canvas {
    let w = parts.iter().map(|c| c.width).sum::<usize>() + gap * parts.len().saturating_sub(1);
    let h = parts.iter().map(|c| c.height).max().unwrap_or(0);
    let mut out = Canvas::new(w.max(1), h.max(1), [255, 255, 255]);
    let mut x = 0;
    for c in parts {
        out.blit(x, 0, c.width, c.height, &c.pixels);
        x += c.width + gap;
    }
    out
}

/// Draws several captioned grids (e.g. one per model) side by side; small images are upscaled so
/// that each grid is at least ~200 px wide. Padding is 2 px, white.
pub fn side_by_side_image(items: &[(&str, &ImageSet)], ncol: usize) -> Result<Canvas> {
    if items.is_empty() {
        return Err(Error::Invalid("no grids to draw".into()));
    }
    let mut parts = Vec::new();
    for (caption, set) in items {
        let g = grid_image(set, ncol, 2)?;
        let factor = (200 / g.width.max(1)).clamp(1, 4);
        let g = upscale(&g, factor);
        let sc = 2;
        let ch = GLYPH_H * sc;
        let tw = text_width(caption, sc);
        let mut part = Canvas::new(g.width.max(tw + 4), g.height + ch + 8, [255, 255, 255]);
        part.text(((part.width - tw) / 2) as i64, 3, caption, sc, [0, 0, 0]);
        part.blit(0, ch + 8, g.width, g.height, &g.pixels);
        parts.push(part);
    }
    let row = concat_grids_horizontally(&parts, 16);
    let mut out = Canvas::new(row.width + 16, row.height + 16, [255, 255, 255]);
    out.blit(8, 8, row.width, row.height, &row.pixels);
    Ok(out)
}

/// Saves several captioned grids side by side as one PNG.
pub fn save_grids_side_by_side(
    path: impl AsRef<Path>,
    items: &[(&str, &ImageSet)],
    ncol: usize,
) -> Result<()> {
    side_by_side_image(items, ncol)?.save_png(path)
}
