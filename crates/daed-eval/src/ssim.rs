//! SSIM and MS-SSIM of host images, following the conventions of pytorch-msssim.
//!
//! An image is one `C x H x W` slice of `f32` (NCHW order, one image). Internally everything is
//! computed in `f64`. The Gaussian window is separable and applied as a "valid" convolution (no
//! padding); local statistics use `sigma^2 = E[x^2] - mu^2`; the SSIM and contrast-structure (cs)
//! maps are averaged per channel, then over channels. Non-finite pixels propagate to a NaN result.
//!
//! SSIM's luminance term `(2 mu_x mu_y + C1) / (mu_x^2 + mu_y^2 + C1)` assumes non-negative
//! intensities and is not shift-invariant: on zero-centred data it is hypersensitive wherever the
//! local means are near 0. So pixels are first shifted by `-data_min` onto `[0, data_range]`
//! ([`SsimOptions::data_min`], -1 by default): with the defaults, SSIM of [-1, 1] images equals
//! pytorch-msssim's `ssim(x01, y01, data_range=1)` of the same images mapped to [0, 1].

use crate::error::{invalid, Result};
use crate::stats::mean_std;

/// The standard MS-SSIM scale weights (Wang et al. 2003), finest scale first.
pub const MS_SSIM_WEIGHTS: [f64; 5] = [0.0448, 0.2856, 0.3001, 0.2363, 0.1333];

/// The smallest window the MS-SSIM small-image adaptation shrinks to (see [`ms_ssim_plan`]).
pub const MIN_ADAPTED_WINDOW: usize = 5;

/// Single-scale SSIM settings.
#[derive(Clone, Debug, PartialEq)]
pub struct SsimOptions {
    /// Dynamic range L of the pixel values (2.0 for images in [-1, 1]).
    pub data_range: f64,
    /// The value of black: pixels are shifted by `-data_min` onto `[0, data_range]` before anything
    /// else (-1.0 for images in [-1, 1]; 0.0 reproduces pytorch-msssim on the raw values).
    pub data_min: f64,
    /// Gaussian window size in pixels (odd).
    pub win_size: usize,
    /// Gaussian window standard deviation in pixels.
    pub sigma: f64,
    /// Luminance constant K1 (C1 = (K1 L)^2).
    pub k1: f64,
    /// Contrast constant K2 (C2 = (K2 L)^2).
    pub k2: f64,
}

impl Default for SsimOptions {
    /// Images in [-1, 1] (data_range 2.0, data_min -1.0), an 11-px window with sigma 1.5, K1 0.01,
    /// K2 0.03.
    fn default() -> Self {
        SsimOptions {
            data_range: 2.0,
            data_min: -1.0,
            win_size: 11,
            sigma: 1.5,
            k1: 0.01,
            k2: 0.03,
        }
    }
}

/// MS-SSIM settings: the per-scale SSIM options and an optional fixed number of scales.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct MsSsimOptions {
    /// SSIM options used at every scale (`win_size` may be shrunk for small images, see [`ms_ssim_plan`]).
    pub ssim: SsimOptions,
    /// Number of scales (1..=5); `None` chooses from the image size (see [`ms_ssim_plan`]).
    pub scales: Option<usize>,
}

/// What MS-SSIM does for one image size: number of scales, window size and (renormalised) weights.
#[derive(Clone, Debug, PartialEq)]
pub struct MsSsimPlan {
    /// Number of scales (the image is average-pooled `scales - 1` times).
    pub scales: usize,
    /// Gaussian window size used at every scale (sigma is kept as given).
    pub win_size: usize,
    /// The first `scales` standard weights, renormalised to sum to 1 (as published when `scales` = 5).
    pub weights: Vec<f64>,
}

/// The 1-D Gaussian window of `size` taps (centred at `size / 2`), normalised to sum to 1.
pub fn gaussian_window(size: usize, sigma: f64) -> Vec<f64> {
    let c = (size / 2) as f64;
    let g: Vec<f64> = (0..size)
        .map(|i| (-((i as f64 - c).powi(2)) / (2.0 * sigma * sigma)).exp())
        .collect();
    let s: f64 = g.iter().sum();
    g.into_iter().map(|v| v / s).collect()
}

fn check_options(o: &SsimOptions) -> Result<()> {
    if !(o.data_range.is_finite() && o.data_range > 0.0) {
        return Err(invalid!(
            "SSIM data_range must be > 0, got {}",
            o.data_range
        ));
    }
    if !o.data_min.is_finite() {
        return Err(invalid!("SSIM data_min must be finite, got {}", o.data_min));
    }
    if o.win_size == 0 || o.win_size.is_multiple_of(2) {
        return Err(invalid!("SSIM window size must be odd, got {}", o.win_size));
    }
    if !(o.sigma.is_finite() && o.sigma > 0.0) {
        return Err(invalid!("SSIM window sigma must be > 0, got {}", o.sigma));
    }
    if !(o.k1.is_finite() && o.k1 > 0.0 && o.k2.is_finite() && o.k2 > 0.0) {
        return Err(invalid!(
            "SSIM constants K1, K2 must be > 0, got {}, {}",
            o.k1,
            o.k2
        ));
    }
    Ok(())
}

/// Checks that `a` and `b` are each exactly one `c x h x w` image.
fn check_pair(a: &[f32], b: &[f32], c: usize, h: usize, w: usize) -> Result<()> {
    let per = c
        .checked_mul(h)
        .and_then(|v| v.checked_mul(w))
        .ok_or_else(|| invalid!("image shape {c}x{h}x{w} overflows"))?;
    if per == 0 {
        return Err(invalid!("image shape {c}x{h}x{w} has no pixels"));
    }
    if a.len() != per || b.len() != per {
        return Err(invalid!(
            "expected two {c}x{h}x{w} images ({per} values each), got {} and {} values",
            a.len(),
            b.len()
        ));
    }
    Ok(())
}

/// Valid (unpadded) separable convolution of one `h x w` plane with `win` along both axes.
fn blur(src: &[f64], h: usize, w: usize, win: &[f64]) -> Vec<f64> {
    let k = win.len();
    let (oh, ow) = (h + 1 - k, w + 1 - k);
    let mut tmp = vec![0.0; h * ow];
    for r in 0..h {
        let row = &src[r * w..(r + 1) * w];
        for j in 0..ow {
            tmp[r * ow + j] = win.iter().zip(&row[j..j + k]).map(|(g, x)| g * x).sum();
        }
    }
    let mut out = vec![0.0; oh * ow];
    for i in 0..oh {
        for (d, g) in win.iter().enumerate() {
            let src_row = &tmp[(i + d) * ow..(i + d + 1) * ow];
            for (o, x) in out[i * ow..(i + 1) * ow].iter_mut().zip(src_row) {
                *o += g * x;
            }
        }
    }
    out
}

/// Per-channel SSIM and contrast-structure (cs) of two `c x h x w` f64 images; needs `h, w >= win.len()`.
pub(crate) fn ssim_and_cs(
    a: &[f64],
    b: &[f64],
    (c, h, w): (usize, usize, usize),
    win: &[f64],
    o: &SsimOptions,
) -> (Vec<f64>, Vec<f64>) {
    let c1 = (o.k1 * o.data_range).powi(2);
    let c2 = (o.k2 * o.data_range).powi(2);
    let plane = h * w;
    let (mut ssim_pc, mut cs_pc) = (Vec::with_capacity(c), Vec::with_capacity(c));
    for ch in 0..c {
        let x = &a[ch * plane..(ch + 1) * plane];
        let y = &b[ch * plane..(ch + 1) * plane];
        let xx: Vec<f64> = x.iter().map(|v| v * v).collect();
        let yy: Vec<f64> = y.iter().map(|v| v * v).collect();
        let xy: Vec<f64> = x.iter().zip(y).map(|(p, q)| p * q).collect();
        let (mu1, mu2) = (blur(x, h, w, win), blur(y, h, w, win));
        let (exx, eyy, exy) = (
            blur(&xx, h, w, win),
            blur(&yy, h, w, win),
            blur(&xy, h, w, win),
        );
        let (mut s_sum, mut cs_sum) = (0.0, 0.0);
        for i in 0..mu1.len() {
            let (m1, m2) = (mu1[i], mu2[i]);
            let s1 = exx[i] - m1 * m1;
            let s2 = eyy[i] - m2 * m2;
            let s12 = exy[i] - m1 * m2;
            let cs = (2.0 * s12 + c2) / (s1 + s2 + c2);
            cs_sum += cs;
            s_sum += (2.0 * m1 * m2 + c1) / (m1 * m1 + m2 * m2 + c1) * cs;
        }
        let n = mu1.len() as f64;
        ssim_pc.push(s_sum / n);
        cs_pc.push(cs_sum / n);
    }
    (ssim_pc, cs_pc)
}

/// The pixels as f64, shifted by `-data_min` onto `[0, data_range]`.
fn to_f64(x: &[f32], o: &SsimOptions) -> Vec<f64> {
    x.iter().map(|&v| v as f64 - o.data_min).collect()
}

/// SSIM of one `c x h x w` image pair: mean SSIM map per channel, then the mean over channels.
/// Errors when the shapes disagree, an option is invalid, or `h` or `w` is below the window size.
pub fn ssim(a: &[f32], b: &[f32], c: usize, h: usize, w: usize, opts: &SsimOptions) -> Result<f64> {
    check_pair(a, b, c, h, w)?;
    check_options(opts)?;
    if h < opts.win_size || w < opts.win_size {
        return Err(invalid!(
            "image {h}x{w} is smaller than the {}-px SSIM window",
            opts.win_size
        ));
    }
    let win = gaussian_window(opts.win_size, opts.sigma);
    let (s, _) = ssim_and_cs(&to_f64(a, opts), &to_f64(b, opts), (c, h, w), &win, opts);
    Ok(s.iter().sum::<f64>() / c as f64)
}

/// Side length after `scales - 1` pools of kernel 2 with padding `n % 2`, i.e. repeated `ceil(n / 2)`.
fn coarsest_side(n: usize, scales: usize) -> usize {
    (1..scales).fold(n, |m, _| m.div_ceil(2))
}

/// Chooses scales and window for an `h x w` image. With `opts.scales = Some(s)` (1..=5): `s` scales and
/// window `min(win_size, largest odd <= coarsest side)`. By default: the largest `s <= 5` whose coarsest
/// side (`ceil(side / 2^(s-1))`, side = min(h, w)) is `>= win_size`, keeping the window, if that gives
/// at least 3 scales; otherwise 3 scales with the window shrunk to `min(win_size, largest odd <= coarsest
/// side)`. Sigma is never changed. A window shrunk below [`MIN_ADAPTED_WINDOW`] (5) is an error naming
/// the size. With the default options: 28 px gets 3 scales (28, 14, 7) with a 7-px window; 32 px gets
/// 3 scales (32, 16, 8) with a 7-px window; 64 px gets 3 scales (64, 32, 16) with the 11-px window;
/// 161 px and larger get the standard 5 scales with the 11-px window. Images under 17 px are too small.
/// The weights are the first `s` of [`MS_SSIM_WEIGHTS`] renormalised to sum 1 (unchanged at 5 scales,
/// as in pytorch-msssim).
pub fn ms_ssim_plan(h: usize, w: usize, opts: &MsSsimOptions) -> Result<MsSsimPlan> {
    check_options(&opts.ssim)?;
    let side = h.min(w);
    let win0 = opts.ssim.win_size;
    let fit = |scales: usize| -> Result<usize> {
        let cs = coarsest_side(side, scales);
        let odd = if cs % 2 == 1 {
            cs
        } else {
            cs.saturating_sub(1)
        };
        let win = win0.min(odd);
        if win < win0.min(MIN_ADAPTED_WINDOW) {
            return Err(invalid!(
                "image {h}x{w} is too small for MS-SSIM with {scales} scales: the coarsest scale is \
                 {cs} px, below the {}-px minimum window; use fewer scales (MsSsimOptions::scales) \
                 or larger images",
                win0.min(MIN_ADAPTED_WINDOW)
            ));
        }
        Ok(win)
    };
    let (scales, win_size) = match opts.scales {
        Some(s) if (1..=5).contains(&s) => (s, fit(s)?),
        Some(s) => return Err(invalid!("MS-SSIM scales must be 1..=5, got {s}")),
        None => match (1..=5usize).rev().find(|&s| coarsest_side(side, s) >= win0) {
            Some(s) if s >= 3 => (s, win0),
            _ => (3, fit(3)?),
        },
    };
    // The standard weights sum to 1.0001; keep them exactly as published at 5 scales.
    let total: f64 = if scales == 5 {
        1.0
    } else {
        MS_SSIM_WEIGHTS[..scales].iter().sum()
    };
    let weights = MS_SSIM_WEIGHTS[..scales]
        .iter()
        .map(|v| v / total)
        .collect();
    Ok(MsSsimPlan {
        scales,
        win_size,
        weights,
    })
}

/// 2x2 average pooling of each channel with padding `(h % 2, w % 2)` counted as zeros (PyTorch's
/// `avg_pool2d(kernel_size=2, padding=...)`, `count_include_pad=True`).
fn avg_pool(x: &[f64], c: usize, h: usize, w: usize) -> (Vec<f64>, usize, usize) {
    let (ph, pw) = (h % 2, w % 2);
    let (oh, ow) = ((h + 2 * ph - 2) / 2 + 1, (w + 2 * pw - 2) / 2 + 1);
    let mut out = vec![0.0; c * oh * ow];
    for ch in 0..c {
        let src = &x[ch * h * w..(ch + 1) * h * w];
        for i in 0..oh {
            for j in 0..ow {
                let mut s = 0.0;
                for r in (2 * i).saturating_sub(ph)..(2 * i + 2 - ph).min(h) {
                    for q in (2 * j).saturating_sub(pw)..(2 * j + 2 - pw).min(w) {
                        s += src[r * w + q];
                    }
                }
                out[ch * oh * ow + i * ow + j] = s / 4.0;
            }
        }
    }
    (out, oh, ow)
}

/// MS-SSIM of one `c x h x w` image pair: relu(cs) at every scale but the last, relu(ssim) at the last,
/// combined per channel as a product of weighted powers, then averaged over channels. The scales,
/// window and weights come from [`ms_ssim_plan`] (which documents the small-image adaptation).
pub fn ms_ssim(
    a: &[f32],
    b: &[f32],
    c: usize,
    h: usize,
    w: usize,
    opts: &MsSsimOptions,
) -> Result<f64> {
    check_pair(a, b, c, h, w)?;
    let plan = ms_ssim_plan(h, w, opts)?;
    let win = gaussian_window(plan.win_size, opts.ssim.sigma);
    let (mut x, mut y, mut hh, mut ww) = (to_f64(a, &opts.ssim), to_f64(b, &opts.ssim), h, w);
    let mut prod = vec![1.0; c];
    for (level, wt) in plan.weights.iter().enumerate() {
        let (s, cs) = ssim_and_cs(&x, &y, (c, hh, ww), &win, &opts.ssim);
        let last = level + 1 == plan.scales;
        let vals = if last { s } else { cs };
        for (p, v) in prod.iter_mut().zip(vals) {
            *p *= v.max(0.0).powf(*wt);
        }
        if !last {
            let (nx, nh, nw) = avg_pool(&x, c, hh, ww);
            y = avg_pool(&y, c, hh, ww).0;
            (x, hh, ww) = (nx, nh, nw);
        }
    }
    Ok(prod.iter().sum::<f64>() / c as f64)
}

/// Per-image values of a metric over a batch, with their mean and population std.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchStats {
    /// One value per image, in batch order.
    pub values: Vec<f64>,
    /// Mean of `values`.
    pub mean: f64,
    /// Population standard deviation (divisor N) of `values`.
    pub std: f64,
}

/// Applies `metric` to each image pair of two flat NCHW batches of `c x h x w` images (N >= 1).
/// Errors if the batches differ in length or are not a whole, non-zero number of images.
pub fn batch_mean_std<F>(
    a: &[f32],
    b: &[f32],
    c: usize,
    h: usize,
    w: usize,
    mut metric: F,
) -> Result<BatchStats>
where
    F: FnMut(&[f32], &[f32]) -> Result<f64>,
{
    let per = c
        .checked_mul(h)
        .and_then(|v| v.checked_mul(w))
        .filter(|&p| p > 0)
        .ok_or_else(|| invalid!("image shape {c}x{h}x{w} is empty or overflows"))?;
    if a.len() != b.len() {
        return Err(invalid!(
            "the two batches differ in length: {} vs {} values",
            a.len(),
            b.len()
        ));
    }
    if a.is_empty() || !a.len().is_multiple_of(per) {
        return Err(invalid!(
            "{} values is not a whole, non-zero number of {c}x{h}x{w} images",
            a.len()
        ));
    }
    let values = a
        .chunks_exact(per)
        .zip(b.chunks_exact(per))
        .map(|(x, y)| metric(x, y))
        .collect::<Result<Vec<f64>>>()?;
    let (mean, std) = mean_std(&values);
    Ok(BatchStats { values, mean, std })
}
