//! Square max and average pooling (average without the padding in the count, TensorFlow's
//! `SAME`) for inference on flex, parallel over channel planes.
//!
//! A profile of the FID Inception showed 27% of its time in burn-flex's pooling (scalar index
//! arithmetic with integer divisions per element); this does the same windows directly. Under
//! autodiff, on other backends, and with `DAED_POOL=burn`, burn's pooling is used.
use burn::tensor::module::{avg_pool2d, max_pool2d};
use burn::tensor::ops::{AvgPoolOptions, MaxPoolOptions};
use burn::tensor::Tensor;
use rayon::prelude::*;

/// Which reduction a window takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reduce {
    /// The largest value. NaN inputs are skipped where the window has a number (or, at the
    /// border, padding: the padding counts as minus infinity).
    Max,
    /// The mean over the window's cells inside the image.
    MeanInside,
}

/// Square window geometry: kernel size, stride and padding, equal along both axes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
}

impl Window {
    /// Output length along an axis of `len` (floor mode), or `None` when the window does not fit.
    pub fn out_len(&self, len: usize) -> Option<usize> {
        if self.stride == 0 || self.kernel == 0 || self.padding >= self.kernel {
            return None;
        }
        (len + 2 * self.padding)
            .checked_sub(self.kernel)
            .map(|r| r / self.stride + 1)
    }

    /// Input range `[lo, hi)` covered by output position `o`, clipped to `0..len`.
    fn span(&self, o: usize, len: usize) -> (usize, usize) {
        let start = o * self.stride;
        let lo = start.saturating_sub(self.padding);
        let hi = (start + self.kernel).saturating_sub(self.padding).min(len);
        (lo, hi.max(lo))
    }
}

/// Input and output plane sizes with the window.
struct PlaneGeo {
    h: usize,
    w: usize,
    ho: usize,
    wo: usize,
    win: Window,
}

impl PlaneGeo {
    /// Pools the planes of `xs` into `ys`: per output row, the window's input rows are combined
    /// into the padded row `acc` (`fill` in the padding), then the `kernel` columns of each
    /// window (shifted whole-row passes at stride 1). `cols` (cells per output column) turns
    /// sums into means.
    fn planes<F: Fn(f32, f32) -> f32>(
        &self,
        xs: &[f32],
        ys: &mut [f32],
        fill: f32,
        combine: F,
        cols: Option<&[f32]>,
    ) {
        let Self { h, w, ho, wo, win } = *self;
        let (k, st, pad) = (win.kernel, win.stride, win.padding);
        let mut acc = vec![fill; w + 2 * pad];
        for (yp, xp) in ys.chunks_mut(ho * wo).zip(xs.chunks(h * w)) {
            for (oy, yrow) in yp.chunks_mut(wo).enumerate() {
                let (y0, y1) = win.span(oy, h);
                let inner = &mut acc[pad..pad + w];
                inner.copy_from_slice(&xp[y0 * w..][..w]);
                for iy in y0 + 1..y1 {
                    let row = &xp[iy * w..][..w];
                    inner
                        .iter_mut()
                        .zip(row)
                        .for_each(|(a, &v)| *a = combine(*a, v));
                }
                if st == 1 {
                    yrow.copy_from_slice(&acc[..wo]);
                    for j in 1..k {
                        let shifted = &acc[j..j + wo];
                        yrow.iter_mut()
                            .zip(shifted)
                            .for_each(|(o, &v)| *o = combine(*o, v));
                    }
                } else {
                    for (ox, o) in yrow.iter_mut().enumerate() {
                        let cells = &acc[ox * st..ox * st + k];
                        *o = cells[1..].iter().fold(cells[0], |m, &v| combine(m, v));
                    }
                }
                if let Some(cols) = cols {
                    let rows = (y1 - y0) as f32;
                    yrow.iter_mut().zip(cols).for_each(|(o, &c)| *o /= rows * c);
                }
            }
        }
    }
}

/// Pools each `h x w` plane of `x` (`planes * h * w` values).
pub fn pool_planes(x: &[f32], [h, w]: [usize; 2], win: Window, reduce: Reduce) -> Option<Vec<f32>> {
    let (ho, wo) = (win.out_len(h)?, win.out_len(w)?);
    if h * w == 0 || !x.len().is_multiple_of(h * w) {
        return None;
    }
    let planes = x.len() / (h * w);
    let mut y = crate::zeros::zeros(planes * ho * wo);
    let per = (16 * 1024usize).div_ceil(h * w).max(1);
    // Cells of each output column inside the image (for the mean).
    let cols: Vec<f32> = (0..wo)
        .map(|ox| {
            let (x0, x1) = win.span(ox, w);
            (x1 - x0) as f32
        })
        .collect();
    let geo = PlaneGeo { h, w, ho, wo, win };
    y.par_chunks_mut(ho * wo * per)
        .zip(x.par_chunks(h * w * per))
        .for_each(|(ys, xs)| match reduce {
            Reduce::Max => geo.planes(xs, ys, f32::NEG_INFINITY, f32::max, None),
            Reduce::MeanInside => geo.planes(xs, ys, 0.0, |a, b| a + b, Some(&cols)),
        });
    Some(y)
}

/// Max pooling of `x` `[B, C, H, W]`.
pub fn max_pool(x: Tensor<4>, win: Window) -> Tensor<4> {
    #[cfg(feature = "flex")]
    if ext::applies(&x) {
        return ext::pool(x, win, Reduce::Max);
    }
    max_pool2d(
        x,
        MaxPoolOptions::new([win.kernel; 2])
            .with_stride([win.stride; 2])
            .with_padding([win.padding; 2]),
    )
}

/// Average pooling of `x` `[B, C, H, W]` counting only the cells inside the image.
pub fn avg_pool_inside(x: Tensor<4>, win: Window) -> Tensor<4> {
    #[cfg(feature = "flex")]
    if ext::applies(&x) {
        return ext::pool(x, win, Reduce::MeanInside);
    }
    avg_pool2d(
        x,
        AvgPoolOptions::new([win.kernel; 2])
            .with_stride([win.stride; 2])
            .with_padding([win.padding; 2])
            .with_count_include_pad(false),
    )
}

#[cfg(feature = "flex")]
mod ext {
    use burn::backend::flex::FlexTensor;
    use burn::backend::tensor::FloatTensor;
    use burn::backend::{backend_extension, Backend, Dispatch, Flex, TensorMetadata};
    use burn::tensor::{Shape, Tensor};
    use std::sync::OnceLock;

    use crate::flex_ops::{dense, enabled, f32s, flex_tensor, on_flex};

    use super::{pool_planes, Reduce, Window};

    /// Pooling as a backend operation daed implements itself (inference only).
    #[backend_extension(Flex)]
    pub trait PoolExt: Backend {
        /// Square pooling of `[B, C, H, W]`; `max` picks max pooling, else the inside mean.
        fn daed_pool2d(
            x: FloatTensor<Self>,
            kernel: usize,
            stride: usize,
            padding: usize,
            max: bool,
        ) -> FloatTensor<Self>;
    }

    /// f32 on flex without autodiff, and not turned off by `DAED_POOL=burn`.
    pub(super) fn applies(x: &Tensor<4>) -> bool {
        static ENABLED: OnceLock<bool> = OnceLock::new();
        enabled(&ENABLED, "DAED_POOL") && on_flex(x, false)
    }

    pub(super) fn pool(x: Tensor<4>, win: Window, reduce: Reduce) -> Tensor<4> {
        Tensor::from_dispatch(<Dispatch as PoolExt>::daed_pool2d(
            x.into_dispatch(),
            win.kernel,
            win.stride,
            win.padding,
            reduce == Reduce::Max,
        ))
    }

    impl PoolExt for Flex {
        fn daed_pool2d(
            x: FlexTensor,
            kernel: usize,
            stride: usize,
            padding: usize,
            max: bool,
        ) -> FlexTensor {
            let shape = x.shape();
            let x = dense(x);
            let win = Window {
                kernel,
                stride,
                padding,
            };
            let reduce = if max { Reduce::Max } else { Reduce::MeanInside };
            let values = f32s(&x);
            let (h, w) = (shape[2], shape[3]);
            let (Some(y), Some(ho), Some(wo)) = (
                pool_planes(values, [h, w], win, reduce),
                win.out_len(h),
                win.out_len(w),
            ) else {
                panic!("daed pool: window {win:?} does not fit a {h}x{w} input")
            };
            flex_tensor(y, Shape::new([shape[0], shape[1], ho, wo]))
        }
    }
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use super::*;
    use burn::tensor::{Device, Distribution};

    #[test]
    fn pools_equal_burns() {
        let d = Device::flex();
        let x = Tensor::<4>::random([2, 3, 9, 8], Distribution::Normal(0.0, 1.0), &d);
        assert!(ext::applies(&x));
        for win in [
            Window {
                kernel: 3,
                stride: 1,
                padding: 1,
            },
            Window {
                kernel: 3,
                stride: 2,
                padding: 0,
            },
            Window {
                kernel: 2,
                stride: 2,
                padding: 1,
            },
        ] {
            let opts_max = MaxPoolOptions::new([win.kernel; 2])
                .with_stride([win.stride; 2])
                .with_padding([win.padding; 2]);
            let opts_avg = AvgPoolOptions::new([win.kernel; 2])
                .with_stride([win.stride; 2])
                .with_padding([win.padding; 2])
                .with_count_include_pad(false);
            let pairs = [
                (max_pool(x.clone(), win), max_pool2d(x.clone(), opts_max)),
                (
                    avg_pool_inside(x.clone(), win),
                    avg_pool2d(x.clone(), opts_avg),
                ),
            ];
            for (ours, theirs) in pairs {
                assert_eq!(ours.dims(), theirs.dims(), "{win:?}");
                let diff = (ours - theirs).abs().max().into_scalar::<f32>();
                assert!(diff < 1e-6, "{win:?}: {diff}");
            }
        }
    }

    #[test]
    fn windows_that_do_not_fit_are_refused() {
        let bad = Window {
            kernel: 3,
            stride: 0,
            padding: 0,
        };
        assert!(pool_planes(&[0.0; 9], [3, 3], bad, Reduce::Max).is_none());
        let big = Window {
            kernel: 5,
            stride: 1,
            padding: 0,
        };
        assert!(pool_planes(&[0.0; 9], [3, 3], big, Reduce::Max).is_none());
    }
}
