//! A small self-contained PNG line-plot renderer: panels side by side, nice ticks, legends, shaded
//! bands, log-y axes and horizontal reference lines, with text from the embedded bitmap font.

use crate::error::{Error, Result};
use crate::font::{text_width, Canvas, Rgb, GLYPH_H};
use std::path::Path;

/// Series colours (the "tab10" palette), used in order.
pub const PALETTE: [Rgb; 10] = [
    [31, 119, 180],
    [255, 127, 14],
    [44, 160, 44],
    [214, 39, 40],
    [148, 103, 189],
    [140, 86, 75],
    [227, 119, 194],
    [127, 127, 127],
    [188, 189, 34],
    [23, 190, 207],
];

/// One line, optionally with a shaded band (e.g. mean +- std).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Series {
    /// Legend entry (empty: not in the legend).
    pub name: String,
    /// X coordinates.
    pub xs: Vec<f64>,
    /// Y coordinates (non-finite values break the line).
    pub ys: Vec<f64>,
    /// (lower, upper) y values per x, drawn as a translucent band.
    pub band: Option<(Vec<f64>, Vec<f64>)>,
}

impl Series {
    /// A named line through (xs[i], ys[i]).
    pub fn new(name: impl Into<String>, xs: Vec<f64>, ys: Vec<f64>) -> Series {
        Series {
            name: name.into(),
            xs,
            ys,
            band: None,
        }
    }

    /// Adds a shaded band between `lower` and `upper`.
    pub fn with_band(mut self, lower: Vec<f64>, upper: Vec<f64>) -> Series {
        self.band = Some((lower, upper));
        self
    }
}

/// One set of axes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Panel {
    /// Title above the axes.
    pub title: String,
    /// X-axis label.
    pub x_label: String,
    /// Y-axis label.
    pub y_label: String,
    /// The lines.
    pub series: Vec<Series>,
    /// Logarithmic y axis (non-positive values are skipped).
    pub log_y: bool,
    /// Horizontal dashed reference lines at these y values.
    pub hlines: Vec<f64>,
}

impl Panel {
    /// An empty panel with a title and axis labels.
    pub fn new(
        title: impl Into<String>,
        x_label: impl Into<String>,
        y_label: impl Into<String>,
    ) -> Panel {
        Panel {
            title: title.into(),
            x_label: x_label.into(),
            y_label: y_label.into(),
            ..Default::default()
        }
    }

    /// Adds a series (builder style).
    pub fn with(mut self, s: Series) -> Panel {
        self.series.push(s);
        self
    }
}

/// A figure of panels laid out side by side.
#[derive(Clone, Debug, PartialEq)]
pub struct Figure {
    /// The panels, left to right.
    pub panels: Vec<Panel>,
    /// Total width in pixels.
    pub width: usize,
    /// Total height in pixels.
    pub height: usize,
}

impl Figure {
    /// A figure of the given panels with a default size of 640 px per panel by 440 px.
    pub fn new(panels: Vec<Panel>) -> Figure {
        let n = panels.len().max(1);
        Figure {
            panels,
            width: 640 * n,
            height: 440,
        }
    }

    /// Draws the figure on a white canvas.
    pub fn render(&self) -> Result<Canvas> {
        if self.width < 100 || self.height < 100 || self.width > 20000 || self.height > 20000 {
            return Err(Error::Invalid(format!(
                "figure size {}x{} out of range (100..20000)",
                self.width, self.height
            )));
        }
        let mut cv = Canvas::new(self.width, self.height, [255, 255, 255]);
        let n = self.panels.len().max(1);
        let pw = self.width / n;
        for (i, p) in self.panels.iter().enumerate() {
            draw_panel(&mut cv, p, (i * pw) as i64, pw as i64, self.height as i64)?;
        }
        Ok(cv)
    }

    /// Renders and writes the figure as a PNG file (atomically).
    pub fn save_png(&self, path: impl AsRef<Path>) -> Result<()> {
        self.render()?.save_png(path)
    }
}

/// About five "nice" tick values (1, 2, 2.5 or 5 times a power of ten) covering [lo, hi].
pub fn nice_ticks(lo: f64, hi: f64, target: usize) -> Vec<f64> {
    if !(lo.is_finite() && hi.is_finite()) || hi <= lo {
        return vec![lo];
    }
    let raw = (hi - lo) / target.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    (first..=last).map(|k| k as f64 * step).collect()
}

/// Formats a tick value compactly, with as many decimals as the tick `step` needs.
pub fn fmt_tick(v: f64, step: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let a = v.abs();
    if !(1e-3..1e5).contains(&a) {
        let e = a.log10().floor() as i32;
        let m = v / 10f64.powi(e);
        let ms = format!("{m:.1}");
        let ms = ms.trim_end_matches('0').trim_end_matches('.');
        return format!("{ms}e{e}");
    }
    let dec = if step > 0.0 {
        (-step.log10().floor()).clamp(0.0, 6.0) as usize
    } else {
        2
    };
    let dec = if (step * 10f64.powi(dec as i32)).fract().abs() > 1e-6 {
        dec + 1
    } else {
        dec
    };
    format!("{v:.dec$}")
}

struct Axis {
    lo: f64,
    hi: f64,
    log: bool,
}

impl Axis {
    fn t(&self, v: f64) -> f64 {
        let (v, lo, hi) = if self.log {
            (v.log10(), self.lo.log10(), self.hi.log10())
        } else {
            (v, self.lo, self.hi)
        };
        (v - lo) / (hi - lo)
    }
}

fn range(vals: impl Iterator<Item = f64>, log: bool) -> Option<(f64, f64)> {
    let mut r: Option<(f64, f64)> = None;
    for v in vals.filter(|v| v.is_finite() && (!log || *v > 0.0)) {
        r = Some(r.map_or((v, v), |(a, b)| (a.min(v), b.max(v))));
    }
    r
}

fn pad_range((lo, hi): (f64, f64), log: bool, frac: f64) -> (f64, f64) {
    if log {
        let (a, b) = (lo.log10(), hi.log10());
        let (a, b) = if b - a < 1e-9 {
            (a - 0.5, b + 0.5)
        } else {
            (a - (b - a) * frac, b + (b - a) * frac)
        };
        (10f64.powf(a), 10f64.powf(b))
    } else if hi - lo < 1e-12 * lo.abs().max(1.0) {
        let d = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
        (lo - d, hi + d)
    } else {
        (lo - (hi - lo) * frac, hi + (hi - lo) * frac)
    }
}

fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let (a, b) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
    let span = hi.log10() - lo.log10();
    let mults: &[f64] = if span <= 2.5 {
        &[1.0, 2.0, 5.0]
    } else if span <= 4.0 {
        &[1.0, 3.0]
    } else {
        &[1.0]
    };
    let stride = ((b - a) as usize / 6).max(1);
    let mut t = Vec::new();
    for e in (a..=b).step_by(stride) {
        for m in mults {
            let v = m * 10f64.powi(e);
            if v >= lo * (1.0 - 1e-9) && v <= hi * (1.0 + 1e-9) {
                t.push(v);
            }
        }
    }
    t
}

fn draw_panel(cv: &mut Canvas, p: &Panel, x0: i64, pw: i64, h: i64) -> Result<()> {
    for s in &p.series {
        if s.xs.len() != s.ys.len() {
            return Err(Error::Invalid(format!(
                "series '{}': {} xs but {} ys",
                s.name,
                s.xs.len(),
                s.ys.len()
            )));
        }
        if let Some((l, u)) = &s.band {
            if l.len() != s.xs.len() || u.len() != s.xs.len() {
                return Err(Error::Invalid(format!(
                    "series '{}': band length differs from xs",
                    s.name
                )));
            }
        }
    }
    let sc = if h >= 360 { 2 } else { 1 };
    let ch = (GLYPH_H * sc) as i64;
    let black = [0, 0, 0];
    // Ranges.
    let xr = range(p.series.iter().flat_map(|s| s.xs.iter().copied()), false).unwrap_or((0.0, 1.0));
    let ys = p.series.iter().flat_map(|s| {
        let band = s
            .band
            .iter()
            .flat_map(|(l, u)| l.iter().chain(u.iter()).copied());
        s.ys.iter().copied().chain(band)
    });
    let yr = range(ys.chain(p.hlines.iter().copied()), p.log_y).unwrap_or(if p.log_y {
        (1.0, 10.0)
    } else {
        (0.0, 1.0)
    });
    let (xlo, xhi) = pad_range(xr, false, 0.02);
    let (ylo, yhi) = pad_range(yr, p.log_y, 0.05);
    let xa = Axis {
        lo: xlo,
        hi: xhi,
        log: false,
    };
    let ya = Axis {
        lo: ylo,
        hi: yhi,
        log: p.log_y,
    };
    let xt = nice_ticks(xlo, xhi, 5);
    let yt = if p.log_y {
        log_ticks(ylo, yhi)
    } else {
        nice_ticks(ylo, yhi, 5)
    };
    let xstep = if xt.len() > 1 {
        xt[1] - xt[0]
    } else {
        xhi - xlo
    };
    let ystep = if yt.len() > 1 {
        yt[1] - yt[0]
    } else {
        yhi - ylo
    };
    let ylabels: Vec<String> = yt
        .iter()
        .map(|&v| {
            if p.log_y {
                fmt_tick(v, v)
            } else {
                fmt_tick(v, ystep)
            }
        })
        .collect();
    let ylw = ylabels.iter().map(|s| text_width(s, sc)).max().unwrap_or(0) as i64;
    // Plot area.
    let left = x0 + 8 + if p.y_label.is_empty() { 0 } else { ch + 8 } + ylw + 8;
    let right = x0 + pw - 16;
    let top = 10 + if p.title.is_empty() { 0 } else { ch + 10 };
    let bottom = h - 10 - ch - 8 - if p.x_label.is_empty() { 0 } else { ch + 8 };
    if right - left < 20 || bottom - top < 20 {
        return Err(Error::Invalid(format!(
            "panel '{}' is too small to draw",
            p.title
        )));
    }
    let px = |v: f64| left as f64 + xa.t(v) * (right - left) as f64;
    let py = |v: f64| bottom as f64 - ya.t(v) * (bottom - top) as f64;
    let clip = (left, top, right, bottom);
    // Grid and ticks.
    let grid = [225, 225, 225];
    for (v, label) in yt.iter().zip(&ylabels) {
        let y = py(*v).round() as i64;
        cv.fill_rect(left, y, right, y + 1, grid, 1.0);
        cv.fill_rect(left - 5, y, left, y + 1, black, 1.0);
        cv.text(
            left - 8 - text_width(label, sc) as i64,
            y - ch / 2,
            label,
            sc,
            black,
        );
    }
    for v in &xt {
        let x = px(*v).round() as i64;
        cv.fill_rect(x, top, x + 1, bottom, grid, 1.0);
        cv.fill_rect(x, bottom, x + 1, bottom + 5, black, 1.0);
        let label = fmt_tick(*v, xstep);
        cv.text(
            x - text_width(&label, sc) as i64 / 2,
            bottom + 8,
            &label,
            sc,
            black,
        );
    }
    // Reference lines (dashed grey).
    for &v in &p.hlines {
        if v.is_finite() && (!p.log_y || v > 0.0) {
            let y = py(v);
            let mut x = left as f64;
            while x < right as f64 {
                cv.line(
                    x,
                    y,
                    (x + 8.0).min(right as f64),
                    y,
                    1.5,
                    [90, 90, 90],
                    clip,
                );
                x += 14.0;
            }
        }
    }
    // Bands, then lines.
    let ok = |x: f64, y: f64| x.is_finite() && y.is_finite() && (!p.log_y || y > 0.0);
    for (k, s) in p.series.iter().enumerate() {
        let Some((lo, up)) = &s.band else { continue };
        let c = PALETTE[k % PALETTE.len()];
        for i in 1..s.xs.len() {
            let (xa0, xa1) = (s.xs[i - 1], s.xs[i]);
            if !(ok(xa0, lo[i - 1]) && ok(xa0, up[i - 1]) && ok(xa1, lo[i]) && ok(xa1, up[i])) {
                continue;
            }
            let (c0, c1) = (px(xa0), px(xa1));
            let (cl, cr) = (c0.min(c1), c0.max(c1));
            // Half-open pixel columns so that adjacent segments do not overlap.
            for col in (cl.round() as i64).max(left)..(cr.round() as i64).min(right) {
                let t = if c1 != c0 {
                    ((col as f64 + 0.5 - c0) / (c1 - c0)).clamp(0.0, 1.0)
                } else {
                    0.0
                };
                let yl = py(lo[i - 1]) + (py(lo[i]) - py(lo[i - 1])) * t;
                let yu = py(up[i - 1]) + (py(up[i]) - py(up[i - 1])) * t;
                let (a, b) = (yl.min(yu).round() as i64, yl.max(yu).round() as i64);
                cv.fill_rect(col, a.max(top), col + 1, b.min(bottom), c, 0.22);
            }
        }
    }
    for (k, s) in p.series.iter().enumerate() {
        let c = PALETTE[k % PALETTE.len()];
        let pts: Vec<Option<(f64, f64)>> =
            s.xs.iter()
                .zip(&s.ys)
                .map(|(&x, &y)| ok(x, y).then(|| (px(x), py(y))))
                .collect();
        for i in 0..pts.len() {
            let prev = if i > 0 { pts[i - 1] } else { None };
            let next = pts.get(i + 1).copied().flatten();
            match (pts[i], next) {
                (Some(a), Some(b)) => cv.line(a.0, a.1, b.0, b.1, 2.2, c, clip),
                (Some(a), None) if prev.is_none() => cv.line(a.0, a.1, a.0, a.1, 5.0, c, clip),
                _ => {}
            }
        }
    }
    // Frame.
    cv.fill_rect(left, top, right + 1, top + 1, black, 1.0);
    cv.fill_rect(left, bottom, right + 1, bottom + 1, black, 1.0);
    cv.fill_rect(left, top, left + 1, bottom + 1, black, 1.0);
    cv.fill_rect(right, top, right + 1, bottom + 1, black, 1.0);
    // Labels.
    if !p.title.is_empty() {
        let tw = text_width(&p.title, sc) as i64;
        cv.text((left + right) / 2 - tw / 2, 10, &p.title, sc, black);
    }
    if !p.x_label.is_empty() {
        let tw = text_width(&p.x_label, sc) as i64;
        cv.text(
            (left + right) / 2 - tw / 2,
            h - 10 - ch,
            &p.x_label,
            sc,
            black,
        );
    }
    if !p.y_label.is_empty() {
        let tw = text_width(&p.y_label, sc) as i64;
        cv.text_vertical(x0 + 8, (top + bottom) / 2 - tw / 2, &p.y_label, sc, black);
    }
    draw_legend(cv, p, sc, (left, top, right, bottom));
    Ok(())
}

fn draw_legend(
    cv: &mut Canvas,
    p: &Panel,
    sc: usize,
    (_left, top, right, _bottom): (i64, i64, i64, i64),
) {
    let items: Vec<(usize, &str)> = p
        .series
        .iter()
        .enumerate()
        .filter(|(_, s)| !s.name.is_empty())
        .map(|(k, s)| (k, s.name.as_str()))
        .collect();
    if items.is_empty() {
        return;
    }
    let ch = (GLYPH_H * sc) as i64;
    let row = ch + 6;
    let sw = 22; // line sample width
    let tw = items
        .iter()
        .map(|(_, n)| text_width(n, sc))
        .max()
        .unwrap_or(0) as i64;
    let (w, hgt) = (8 + sw + 6 + tw + 8, 6 + row * items.len() as i64);
    let (bx, by) = (right - 8 - w, top + 8);
    cv.fill_rect(bx, by, bx + w, by + hgt, [255, 255, 255], 0.85);
    for (x0, y0, x1, y1) in [
        (bx, by, bx + w, by + 1),
        (bx, by + hgt - 1, bx + w, by + hgt),
        (bx, by, bx + 1, by + hgt),
        (bx + w - 1, by, bx + w, by + hgt),
    ] {
        cv.fill_rect(x0, y0, x1, y1, [170, 170, 170], 1.0);
    }
    let all = (0, 0, cv.width as i64, cv.height as i64);
    for (i, (k, name)) in items.iter().enumerate() {
        let y = by + 6 + row * i as i64;
        let c = PALETTE[k % PALETTE.len()];
        let ly = (y + ch / 2) as f64;
        cv.line((bx + 8) as f64, ly, (bx + 8 + sw) as f64, ly, 2.2, c, all);
        cv.text(bx + 8 + sw + 6, y, name, sc, [0, 0, 0]);
    }
}
