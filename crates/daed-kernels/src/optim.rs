//! The optimizer's element-wise updates as one parallel pass each: AdamW (moments and
//! parameter) and the EMA of the weights.
//!
//! Why: written as tensor operations, one AdamW update is about fifteen passes over each
//! parameter (scale, square, two multiply-adds, divide, square root, ...), and flex runs every
//! one of them on the calling thread; a sampled timeline of the CIFAR-10 training step found
//! flex's element-wise operations among the work that runs while the other core idles. Here each
//! element goes through the same f32 operations in the same order as the tensor version (no
//! fused multiply-adds), in two passes (the moments, then the parameter from them), so the
//! result has the same bits, and elements are independent, so the
//! thread count does not matter either. Used on flex without autodiff (the optimizer works on the
//! parameters' inner tensors); elsewhere the callers keep the tensor operations.
use std::mem::MaybeUninit;

use burn::tensor::Tensor;
use rayon::prelude::*;

use crate::zeros::{fill_from, written};

/// Elements per parallel task.
const CHUNK: usize = 1 << 16;

/// One AdamW update's constants, as the tensor version passes them (each scalar is rounded to
/// f32 once, as a tensor-scalar operation rounds it).
#[derive(Clone, Copy, Debug)]
pub struct AdamStep {
    /// Gradient scale from clipping (1: none).
    pub clip: f64,
    /// First-moment decay.
    pub beta1: f64,
    /// Second-moment decay.
    pub beta2: f64,
    /// `1 - beta2^t`.
    pub bc2: f64,
    /// Denominator epsilon.
    pub eps: f64,
    /// The decoupled weight decay's factor `1 - lr * weight_decay` (None: no decay).
    pub decay: Option<f64>,
    /// `lr / (1 - beta1^t)`.
    pub step_size: f64,
}

/// The f32 constants of [`AdamStep`].
#[derive(Clone, Copy)]
struct Consts {
    clip: Option<f32>,
    b1: f32,
    omb1: f32,
    b2: f32,
    omb2: f32,
    bc2: f32,
    eps: f32,
    decay: Option<f32>,
    step: f32,
}

impl AdamStep {
    fn consts(&self) -> Consts {
        Consts {
            clip: (self.clip != 1.0).then_some(self.clip as f32),
            b1: self.beta1 as f32,
            omb1: (1.0 - self.beta1) as f32,
            b2: self.beta2 as f32,
            omb2: (1.0 - self.beta2) as f32,
            bc2: self.bc2 as f32,
            eps: self.eps as f32,
            decay: self.decay.map(|d| d as f32),
            step: self.step_size as f32,
        }
    }
}

/// One element's moments after the update, from the gradient `g` and the moments before
/// (`None` on the first step).
#[inline(always)]
fn moments_one(c: &Consts, g: f32, mv: Option<(f32, f32)>) -> (f32, f32) {
    let g = match c.clip {
        Some(s) => g * s,
        None => g,
    };
    match mv {
        Some((m, v)) => (m * c.b1 + g * c.omb1, v * c.b2 + g * g * c.omb2),
        None => (g * c.omb1, g * g * c.omb2),
    }
}

/// One parameter element after the update, from the new moments.
#[inline(always)]
fn param_one(c: &Consts, p: f32, m: f32, v: f32) -> f32 {
    let denom = (v / c.bc2).sqrt() + c.eps;
    let p = match c.decay {
        Some(d) => p * d,
        None => p,
    };
    p - m / denom * c.step
}

/// AdamW's moments over slices: `[m'; v']` (`2 n` values) from the gradient `g` and the
/// moments before `mv`.
pub fn moments_slices(g: &[f32], mv: Option<(&[f32], &[f32])>, s: &AdamStep) -> Vec<f32> {
    let n = g.len();
    assert!(
        mv.is_none_or(|(m, v)| m.len() == n && v.len() == n),
        "adamw: gradient and moments differ in length"
    );
    let c = s.consts();
    let fill = |out: &mut [MaybeUninit<f32>]| {
        let (mo, vo) = out.split_at_mut(n);
        (mo.par_chunks_mut(CHUNK), vo.par_chunks_mut(CHUNK))
            .into_par_iter()
            .enumerate()
            .for_each(|(k, (mo, vo))| {
                for (j, (mo, vo)) in mo.iter_mut().zip(vo).enumerate() {
                    let i = k * CHUNK + j;
                    let (m, v) = moments_one(&c, g[i], mv.map(|(m, v)| (m[i], v[i])));
                    mo.write(m);
                    vo.write(v);
                }
            });
    };
    // SAFETY: every slot of both halves is written above.
    unsafe { written(2 * n, fill) }
}

/// AdamW's parameter over slices, from `p` and the new moments `m`, `v`.
pub fn param_slices(p: &[f32], m: &[f32], v: &[f32], s: &AdamStep) -> Vec<f32> {
    assert!(
        m.len() == p.len() && v.len() == p.len(),
        "adamw: parameter and moments differ in length"
    );
    let c = s.consts();
    let fill = |out: &mut [MaybeUninit<f32>]| {
        out.par_chunks_mut(CHUNK).enumerate().for_each(|(k, o)| {
            let at = k * CHUNK;
            fill_from(
                o,
                (at..at + o.len()).map(|i| param_one(&c, p[i], m[i], v[i])),
            );
        })
    };
    // SAFETY: `fill_from` writes every slot of each chunk (it checks the count).
    unsafe { written(p.len(), fill) }
}

/// The EMA update over slices: `e + (p - e) * (1 - rate)` per element (exact where `p == e`).
pub fn ema_slices(e: &[f32], p: &[f32], rate: f64) -> Vec<f32> {
    assert_eq!(
        e.len(),
        p.len(),
        "ema: shadow and parameter differ in length"
    );
    let w = (1.0 - rate) as f32;
    let fill = |out: &mut [MaybeUninit<f32>]| {
        out.par_chunks_mut(CHUNK)
            .zip(e.par_chunks(CHUNK).zip(p.par_chunks(CHUNK)))
            .for_each(|(o, (e, p))| {
                fill_from(o, e.iter().zip(p).map(|(&e, &p)| e + (p - e) * w));
            })
    };
    // SAFETY: `fill_from` writes every slot of each chunk (it checks the count).
    unsafe { written(e.len(), fill) }
}

/// One AdamW update of a parameter: `(p', m', v')` from `p`, its gradient `g` and its moments
/// (`None` on the first step). On f32 flex tensors without autodiff, two fused parallel passes
/// (the moments, then the parameter); elsewhere the same operations on tensors
/// ([`adamw_tensor_ops`]). Both give the same bits.
pub fn adamw(
    p: Tensor<1>,
    g: Tensor<1>,
    mv: Option<(Tensor<1>, Tensor<1>)>,
    s: &AdamStep,
) -> (Tensor<1>, Tensor<1>, Tensor<1>) {
    #[cfg(feature = "flex")]
    {
        let moments_fit = mv
            .as_ref()
            .is_none_or(|(m, v)| ext::applies(m) && ext::applies(v));
        if ext::applies(&p) && ext::applies(&g) && moments_fit {
            let n = p.dims()[0];
            let both = ext::moments(g, mv, s);
            let (m, v) = (both.clone().narrow(0, 0, n), both.narrow(0, n, n));
            let p = ext::param(p, m.clone(), v.clone(), s);
            return (p, m, v);
        }
    }
    adamw_tensor_ops(p, g, mv, s)
}

/// [`adamw`] as tensor operations (any backend).
pub fn adamw_tensor_ops(
    p: Tensor<1>,
    g: Tensor<1>,
    mv: Option<(Tensor<1>, Tensor<1>)>,
    s: &AdamStep,
) -> (Tensor<1>, Tensor<1>, Tensor<1>) {
    let g = if s.clip != 1.0 {
        g.mul_scalar(s.clip)
    } else {
        g
    };
    let (m, v) = match mv {
        Some((m, v)) => (
            m.mul_scalar(s.beta1) + g.clone().mul_scalar(1.0 - s.beta1),
            v.mul_scalar(s.beta2) + g.square().mul_scalar(1.0 - s.beta2),
        ),
        None => (
            g.clone().mul_scalar(1.0 - s.beta1),
            g.square().mul_scalar(1.0 - s.beta2),
        ),
    };
    let denom = v.clone().div_scalar(s.bc2).sqrt().add_scalar(s.eps);
    let p = match s.decay {
        Some(d) => p.mul_scalar(d),
        None => p,
    };
    (p - (m.clone() / denom).mul_scalar(s.step_size), m, v)
}

/// The EMA update `e + (p - e) * (1 - rate)` (exact where `p == e`): one fused parallel pass on
/// f32 flex tensors without autodiff, else tensor operations; the same bits.
pub fn ema(e: Tensor<1>, p: Tensor<1>, rate: f64) -> Tensor<1> {
    #[cfg(feature = "flex")]
    if ext::applies(&e) && ext::applies(&p) {
        return ext::ema(e, p, rate);
    }
    ema_tensor_ops(e, p, rate)
}

/// [`ema`] as tensor operations (any backend).
pub fn ema_tensor_ops(e: Tensor<1>, p: Tensor<1>, rate: f64) -> Tensor<1> {
    e.clone() + (p - e).mul_scalar(1.0 - rate)
}

#[cfg(feature = "flex")]
mod ext {
    use burn::backend::flex::FlexTensor;
    use burn::backend::tensor::FloatTensor;
    use burn::backend::{backend_extension, Backend, Dispatch, Flex};
    use burn::tensor::{Shape, Tensor};

    use super::{ema_slices, moments_slices, param_slices, AdamStep};
    use crate::flex_ops::{dense, f32s, flex_tensor, on_flex};

    /// The optimizer's updates as backend operations daed implements itself (no gradients).
    #[backend_extension(Flex)]
    pub trait OptimExt: Backend {
        /// `[m'; v']` of one AdamW update; `first`: no moments yet (`m`, `v` unused).
        fn daed_adam_moments(
            g: FloatTensor<Self>,
            m: FloatTensor<Self>,
            v: FloatTensor<Self>,
            first: bool,
            s: AdamStep,
        ) -> FloatTensor<Self>;
        /// `p'` of one AdamW update from the new moments.
        fn daed_adam_param(
            p: FloatTensor<Self>,
            m: FloatTensor<Self>,
            v: FloatTensor<Self>,
            s: AdamStep,
        ) -> FloatTensor<Self>;
        /// `e + (p - e) * (1 - rate)`.
        fn daed_ema(e: FloatTensor<Self>, p: FloatTensor<Self>, rate: f64) -> FloatTensor<Self>;
    }

    /// f32 on flex without autodiff.
    pub(super) fn applies(x: &Tensor<1>) -> bool {
        on_flex(x, false)
    }

    pub(super) fn moments(
        g: Tensor<1>,
        mv: Option<(Tensor<1>, Tensor<1>)>,
        s: &AdamStep,
    ) -> Tensor<1> {
        let first = mv.is_none();
        let (m, v) = mv.unwrap_or_else(|| (g.clone(), g.clone()));
        Tensor::from_dispatch(<Dispatch as OptimExt>::daed_adam_moments(
            g.into_dispatch(),
            m.into_dispatch(),
            v.into_dispatch(),
            first,
            *s,
        ))
    }

    pub(super) fn param(p: Tensor<1>, m: Tensor<1>, v: Tensor<1>, s: &AdamStep) -> Tensor<1> {
        Tensor::from_dispatch(<Dispatch as OptimExt>::daed_adam_param(
            p.into_dispatch(),
            m.into_dispatch(),
            v.into_dispatch(),
            *s,
        ))
    }

    pub(super) fn ema(e: Tensor<1>, p: Tensor<1>, rate: f64) -> Tensor<1> {
        Tensor::from_dispatch(<Dispatch as OptimExt>::daed_ema(
            e.into_dispatch(),
            p.into_dispatch(),
            rate,
        ))
    }

    /// A flat flex tensor of `values`.
    fn flat(values: Vec<f32>) -> FlexTensor {
        let len = values.len();
        flex_tensor(values, Shape::new([len]))
    }

    impl OptimExt for Flex {
        fn daed_adam_moments(
            g: FlexTensor,
            m: FlexTensor,
            v: FlexTensor,
            first: bool,
            s: AdamStep,
        ) -> FlexTensor {
            let (g, m, v) = (dense(g), dense(m), dense(v));
            let mv = (!first).then(|| (f32s(&m), f32s(&v)));
            flat(moments_slices(f32s(&g), mv, &s))
        }

        fn daed_adam_param(p: FlexTensor, m: FlexTensor, v: FlexTensor, s: AdamStep) -> FlexTensor {
            let (p, m, v) = (dense(p), dense(m), dense(v));
            flat(param_slices(f32s(&p), f32s(&m), f32s(&v), &s))
        }

        fn daed_ema(e: FlexTensor, p: FlexTensor, rate: f64) -> FlexTensor {
            let (e, p) = (dense(e), dense(p));
            flat(ema_slices(f32s(&e), f32s(&p), rate))
        }
    }
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use super::*;
    use burn::tensor::{Device, Distribution};

    fn bits(t: Tensor<1>) -> Vec<u32> {
        let v = t.into_data().try_to_vec::<f32>().unwrap();
        v.iter().map(|x| x.to_bits()).collect()
    }

    /// The fused pass gives the bits of the tensor operations: first and later steps, with and
    /// without clipping and weight decay, at 1 and 2 threads, over more than one chunk.
    #[test]
    fn fused_updates_have_the_bits_of_the_tensor_operations() {
        let dev = Device::flex();
        let n = 3 * CHUNK + 17;
        let r = |m: f64, s: f64| Tensor::<1>::random([n], Distribution::Normal(m, s), &dev);
        let (p, g, m, v) = (r(0.0, 0.1), r(0.0, 0.01), r(0.0, 0.01), r(0.0, 1e-4).abs());
        assert!(ext::applies(&p), "the fused path runs on these tensors");
        for (clip, decay) in [(1.0, None), (0.37, Some(1.0 - 1e-4 * 0.01))] {
            let s = AdamStep {
                clip,
                beta1: 0.9,
                beta2: 0.999,
                bc2: 1.0 - 0.999f64.powi(3),
                eps: 1e-8,
                decay,
                step_size: 1e-4 / (1.0 - 0.9f64.powi(3)),
            };
            for mv in [None, Some((m.clone(), v.clone()))] {
                let (wp, wm, wv) = adamw_tensor_ops(p.clone(), g.clone(), mv.clone(), &s);
                let want = [wp, wm, wv].map(bits);
                for threads in [1, 2] {
                    let got = crate::parallel::on_threads(threads, || {
                        adamw(p.clone(), g.clone(), mv.clone(), &s)
                    });
                    let got = [got.0, got.1, got.2].map(bits);
                    assert!(
                        got == want,
                        "clip {clip}, decay {decay:?}, moments {}, {threads} threads",
                        mv.is_some()
                    );
                }
            }
        }
        let rate = 0.9999;
        let want = bits(ema_tensor_ops(p.clone(), g.clone(), rate));
        assert!(bits(ema(p.clone(), g, rate)) == want, "ema");
        assert!(
            bits(ema(p.clone(), p.clone(), rate)) == bits(p),
            "ema of equal weights"
        );
    }
}
