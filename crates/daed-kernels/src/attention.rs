//! `softmax(q k^T * scale) v` over `[B, heads, T, d]`: for inference on flex, one fused pass per
//! block of query rows; elsewhere the operations written out.
//!
//! Written out, the attention of the Fashion-MNIST U-Net at 28x28 materialises `B * heads`
//! score matrices of 784 x 784: a profile of its sampling forward had, besides the softmax,
//! 18% of the samples in those two products and about 10% in zeroing, copying and page-faulting
//! their outputs (flex allocates a matmul's output as bytes and then copies it to realign it).
//! Here each task takes [`QUERY_BLOCK`] query rows of one head: their scores (`rows x T`, about
//! 200 KB, in cache) are computed, turned into probabilities in place and multiplied by `v`,
//! and only the `rows x d` result is written out. Each output row is computed by one task with
//! single-threaded products, so the bits do not depend on the thread count.
//!
//! Under autodiff (training), on other backends and with `DAED_ATTENTION=burn` the operations
//! are written out, with daed's softmax.
use burn::tensor::Tensor;
use rayon::prelude::*;

use crate::conv::kernel::{matmul_strided, Engine, Mat};
use crate::softmax::softmax_last;

/// Query rows per task.
pub const QUERY_BLOCK: usize = 64;

/// `softmax(q k^T * scale) v` for `q`, `k`, `v` of shape `[B, heads, T, d]`.
pub fn attend(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, scale: f64) -> Tensor<4> {
    #[cfg(feature = "flex")]
    if ext::applies(&q) {
        return ext::attend(q, k, v, scale);
    }
    written_out(q, k, v, scale)
}

/// The operations written out, the scale applied to `q` (`T x d`) rather than to the `T x T`
/// scores: one pass less over the largest tensor of the step.
pub fn written_out(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, scale: f64) -> Tensor<4> {
    softmax_last(q.mul_scalar(scale).matmul(k.swap_dims(2, 3))).matmul(v)
}

/// Lengths of `q`, `k` and `v` checked against `[bh, t, d]`.
fn check(q: &[f32], k: &[f32], v: &[f32], [bh, t, d]: [usize; 3]) {
    let len = bh * t * d;
    assert!(
        q.len() == len && k.len() == len && v.len() == len,
        "attention: lengths"
    );
}

/// The fused forward on row-major `[bh, t, d]` slices: the `[bh, t, d]` result.
pub fn forward(q: &[f32], k: &[f32], v: &[f32], dims: [usize; 3], scale: f32) -> Vec<f32> {
    check(q, k, v, dims);
    let [_, t, d] = dims;
    let mut out = crate::zeros::zeros(q.len());
    if out.is_empty() {
        return out;
    }
    let q = &scaled(q, scale);
    out.par_chunks_mut(t * d)
        .zip(q.par_chunks(t * d))
        .zip(k.par_chunks(t * d).zip(v.par_chunks(t * d)))
        .for_each(|((o, q), (k, v))| {
            o.par_chunks_mut(QUERY_BLOCK * d)
                .zip(q.par_chunks(QUERY_BLOCK * d))
                .for_each(|(o, q)| {
                    let mut s = vec![0.0f32; o.len() / d * t];
                    query_block(o, &mut s, q, [k, v], [t, d]);
                });
        });
    out
}

/// The forward for training: the `[bh, t, d]` result and the `[bh, t, t]` probabilities the
/// backward step needs (written block by block where the scores are computed).
pub fn forward_keeping_probs(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    dims: [usize; 3],
    scale: f32,
) -> (Vec<f32>, Vec<f32>) {
    check(q, k, v, dims);
    let [bh, t, d] = dims;
    let mut out = crate::zeros::zeros(q.len());
    let mut p = crate::zeros::zeros(bh * t * t);
    if out.is_empty() {
        return (out, p);
    }
    let q = &scaled(q, scale);
    out.par_chunks_mut(t * d)
        .zip(p.par_chunks_mut(t * t))
        .zip(q.par_chunks(t * d))
        .zip(k.par_chunks(t * d).zip(v.par_chunks(t * d)))
        .for_each(|(((o, p), q), (k, v))| {
            o.par_chunks_mut(QUERY_BLOCK * d)
                .zip(p.par_chunks_mut(QUERY_BLOCK * t))
                .zip(q.par_chunks(QUERY_BLOCK * d))
                .for_each(|((o, s), q)| query_block(o, s, q, [k, v], [t, d]));
        });
    (out, p)
}

/// `q * scale`, computed once per call: the forward's blocks and the backward's `dk` use it.
fn scaled(q: &[f32], scale: f32) -> Vec<f32> {
    q.iter().map(|&x| x * scale).collect()
}

/// One block of scaled query rows `qs` (`rows x d`) of one head against all of its `k` and `v`
/// (`t x d`): the probabilities into `s` (`rows x t`), the result into `o` (`rows x d`).
fn query_block(o: &mut [f32], s: &mut [f32], qs: &[f32], [k, v]: [&[f32]; 2], [t, d]: [usize; 2]) {
    let rows = qs.len() / d;
    let single = Engine::F32;
    let qk = [rows, t, d];
    let (q_mat, kt) = (Mat::rows(qs, d), Mat::transposed(k, d));
    matmul_strided(s, t, qk, false, q_mat, kt, single);
    crate::vexp::softmax_in_place(s, t);
    let pv = [rows, d, t];
    matmul_strided(o, d, pv, false, Mat::rows(s, t), Mat::rows(v, d), single);
}

/// Gradients of [`forward_keeping_probs`] with respect to `q`, `k` and `v` (`[bh, t, d]` each),
/// from the probabilities `p` and the output gradient `dout`. Each head is one task and its
/// query blocks are summed into `dk` in order: the same bits at any thread count.
pub fn backward<'a>(
    [q, k, v]: [&'a [f32]; 3],
    p: &[f32],
    dout: &'a [f32],
    dims: [usize; 3],
    scale: f32,
) -> [Vec<f32>; 3] {
    check(q, k, v, dims);
    let [bh, t, d] = dims;
    assert!(
        p.len() == bh * t * t && dout.len() == q.len(),
        "attention backward: lengths"
    );
    let mut grads = [0; 3].map(|_| crate::zeros::zeros(q.len()));
    if q.is_empty() {
        return grads;
    }
    let engine = Engine::for_jobs(bh);
    let [dq, dk, dv] = &mut grads;
    dq.par_chunks_mut(t * d)
        .zip(dk.par_chunks_mut(t * d))
        .zip(dv.par_chunks_mut(t * d))
        .zip(p.par_chunks(t * t))
        .enumerate()
        .for_each(|(i, (((dq, dk), dv), p))| {
            let part = |x: &'a [f32]| &x[i * t * d..][..t * d];
            let head = Head {
                q: part(q),
                k: part(k),
                v: part(v),
                dout: part(dout),
                p,
                t,
                d,
                scale,
                engine,
            };
            head.backward(dq, dk, dv);
        });
    grads
}

/// One head's tensors for the backward step.
struct Head<'a> {
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    dout: &'a [f32],
    p: &'a [f32],
    t: usize,
    d: usize,
    scale: f32,
    engine: Engine,
}

impl Head<'_> {
    /// `dv = p^T dout`; per query block: `ds = softmax'(dout v^T)`, `dq = scale ds k`,
    /// `dk += ds^T (scale q)`.
    fn backward(&self, dq: &mut [f32], dk: &mut [f32], dv: &mut [f32]) {
        let Self { t, d, scale, .. } = *self;
        let e = self.engine;
        matmul_strided(
            dv,
            d,
            [t, d, t],
            false,
            Mat::transposed(self.p, t),
            Mat::rows(self.dout, d),
            e,
        );
        let mut ds = vec![0.0f32; QUERY_BLOCK * t];
        let qs = scaled(self.q, scale);
        for (j, dq) in dq.chunks_mut(QUERY_BLOCK * d).enumerate() {
            let rows = dq.len() / d;
            let (r0, ds) = (j * QUERY_BLOCK, &mut ds[..rows * t]);
            let dout = &self.dout[r0 * d..][..rows * d];
            let dp = [rows, t, d];
            matmul_strided(
                ds,
                t,
                dp,
                false,
                Mat::rows(dout, d),
                Mat::transposed(self.v, d),
                e,
            );
            crate::vexp::softmax_backward_in_place(&self.p[r0 * t..][..rows * t], ds, t);
            let dqk = [rows, d, t];
            matmul_strided(dq, d, dqk, false, Mat::rows(ds, t), Mat::rows(self.k, d), e);
            dq.iter_mut().for_each(|x| *x *= scale);
            let dkq = [t, d, rows];
            let (ds_t, qs) = (Mat::transposed(ds, t), &qs[r0 * d..][..rows * d]);
            matmul_strided(dk, d, dkq, j > 0, ds_t, Mat::rows(qs, d), e);
        }
    }
}

#[cfg(feature = "flex")]
mod ext {
    use burn::backend::autodiff::checkpoint::base::Checkpointer;
    use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
    use burn::backend::autodiff::grads::Gradients;
    use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
    use burn::backend::flex::FlexTensor;
    use burn::backend::tensor::FloatTensor;
    use burn::backend::{backend_extension, Autodiff, Backend, Dispatch, Flex, TensorMetadata};
    use burn::tensor::Tensor;
    use std::sync::OnceLock;

    use crate::flex_ops::{dense, enabled, f32s, flex_tensor, on_flex};

    /// Attention as a backend operation daed implements itself, with its backward step.
    #[backend_extension(Flex, Autodiff)]
    pub trait AttentionExt: Backend {
        /// `softmax(q k^T * scale) v` over `[B, heads, T, d]`.
        fn daed_attention(
            q: FloatTensor<Self>,
            k: FloatTensor<Self>,
            v: FloatTensor<Self>,
            scale: f64,
        ) -> FloatTensor<Self>;
    }

    /// f32 on flex (with or without autodiff), and not turned off by `DAED_ATTENTION=burn`.
    pub(super) fn applies(q: &Tensor<4>) -> bool {
        static ENABLED: OnceLock<bool> = OnceLock::new();
        enabled(&ENABLED, "DAED_ATTENTION") && on_flex(q, true)
    }

    pub(super) fn attend(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, scale: f64) -> Tensor<4> {
        Tensor::from_dispatch(<Dispatch as AttentionExt>::daed_attention(
            q.into_dispatch(),
            k.into_dispatch(),
            v.into_dispatch(),
            scale,
        ))
    }

    /// `[B, heads, T, d]` of `q`, checked against `k` and `v`.
    fn dims(q: &FlexTensor, k: &FlexTensor, v: &FlexTensor) -> [usize; 4] {
        let shape = q.shape();
        assert!(
            shape.num_dims() == 4 && k.shape() == shape && v.shape() == shape,
            "attention: q, k and v must share one [B, heads, T, d] shape"
        );
        [shape[0], shape[1], shape[2], shape[3]]
    }

    impl AttentionExt for Flex {
        fn daed_attention(q: FlexTensor, k: FlexTensor, v: FlexTensor, scale: f64) -> FlexTensor {
            let [b, h, t, d] = dims(&q, &k, &v);
            let (q, k, v) = (dense(q), dense(k), dense(v));
            let (q, k, v) = (f32s(&q), f32s(&k), f32s(&v));
            let out = super::forward(q, k, v, [b * h, t, d], scale as f32);
            flex_tensor(out, [b, h, t, d])
        }
    }

    /// What the backward step keeps: dense `q`, `k`, `v`, the probabilities and the scale.
    #[derive(Clone, Debug)]
    struct Saved {
        qkv: [FlexTensor; 3],
        p: FlexTensor,
        dims: [usize; 4],
        scale: f32,
    }

    /// The backward step of [`AttentionExt::daed_attention`] under autodiff.
    #[derive(Debug)]
    struct AttentionBackward;

    impl Backward<Flex, 3> for AttentionBackward {
        type State = Saved;

        fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
            let grad = dense(grads.consume::<Flex>(&ops.node));
            let Saved {
                qkv,
                p,
                dims: [b, h, t, d],
                scale,
            } = ops.state;
            let [q, k, v] = &qkv;
            let qkv = [f32s(q), f32s(k), f32s(v)];
            let dims = [b * h, t, d];
            let g = super::backward(qkv, f32s(&p), f32s(&grad), dims, scale);
            for (node, g) in ops.parents.into_iter().zip(g) {
                if let Some(node) = node {
                    grads.register::<Flex>(node.id, flex_tensor(g, [b, h, t, d]));
                }
            }
        }
    }

    impl<C: CheckpointStrategy> AttentionExt for Autodiff<Flex, C> {
        fn daed_attention(
            q: FloatTensor<Self>,
            k: FloatTensor<Self>,
            v: FloatTensor<Self>,
            scale: f64,
        ) -> FloatTensor<Self> {
            let nodes = [q.node(), k.node(), v.node()];
            match AttentionBackward
                .prepare::<C>(nodes)
                .compute_bound()
                .stateful()
            {
                OpsKind::Tracked(prep) => {
                    let (q, k, v) = (q.into_primitive(), k.into_primitive(), v.into_primitive());
                    let dims = dims(&q, &k, &v);
                    let [b, h, t, d] = dims;
                    let qkv = [dense(q), dense(k), dense(v)];
                    let (out, p) = super::forward_keeping_probs(
                        f32s(&qkv[0]),
                        f32s(&qkv[1]),
                        f32s(&qkv[2]),
                        [b * h, t, d],
                        scale as f32,
                    );
                    let saved = Saved {
                        qkv,
                        p: flex_tensor(p, [b * h, t, t]),
                        dims,
                        scale: scale as f32,
                    };
                    prep.finish(saved, flex_tensor(out, [b, h, t, d]))
                }
                OpsKind::UnTracked(prep) => prep.finish(Flex::daed_attention(
                    q.into_primitive(),
                    k.into_primitive(),
                    v.into_primitive(),
                    scale,
                )),
            }
        }
    }
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use super::*;
    use burn::tensor::{Device, Distribution};

    fn qkv(shape: [usize; 4], d: &Device) -> [Tensor<4>; 3] {
        [1.0, 2.0, 0.5].map(|s| Tensor::<4>::random(shape, Distribution::Normal(0.0, s), d))
    }

    #[test]
    fn fused_equals_written_out() {
        let d = Device::flex();
        // T below, at and across the query block, odd head sizes.
        for shape in [[2, 3, 5, 4], [1, 2, 64, 8], [2, 1, 150, 7]] {
            let [_, k, v] = qkv(shape, &d);
            // A strided view, as the U-Net passes them.
            let [b, h, t, c] = shape;
            let q = Tensor::<4>::random([b, t, h, c], Distribution::Normal(0.0, 1.5), &d)
                .swap_dims(1, 2);
            let scale = 1.0 / (c as f64).sqrt();
            let want = written_out(q.clone(), k.clone(), v.clone(), scale);
            let got = attend(q, k, v, scale);
            crate::flex_ops::assert_close(got, want, 2e-6, "attention");
        }
    }

    #[test]
    fn bits_do_not_depend_on_threads() {
        let d = Device::flex();
        let [q, k, v] = qkv([2, 2, 130, 8], &d);
        let run = |threads: usize| {
            crate::parallel::on_threads(threads, || attend(q.clone(), k.clone(), v.clone(), 0.3))
                .into_data()
                .try_to_vec::<f32>()
                .unwrap()
                .iter()
                .map(|x| x.to_bits())
                .collect::<Vec<_>>()
        };
        let one = run(1);
        for threads in [2, 3, 4] {
            assert_eq!(run(threads), one, "{threads} threads");
        }
    }

    #[test]
    fn gradients_equal_the_written_out_ones() {
        let d = Device::flex().autodiff();
        // T across two query blocks and a short last one.
        for shape in [[2, 2, 9, 4], [1, 2, 150, 5]] {
            let [q, k, v] = qkv(shape, &d);
            assert!(ext::applies(&q));
            let w = Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), &d);
            let run = |fused: bool| {
                let [q, k, v] = [&q, &k, &v].map(|x| x.clone().require_grad());
                let y = if fused {
                    attend(q.clone(), k.clone(), v.clone(), 0.4)
                } else {
                    written_out(q.clone(), k.clone(), v.clone(), 0.4)
                };
                let grads = (y.clone() * w.clone()).sum().backward();
                let g = [&q, &k, &v].map(|x| x.grad(&grads).expect("gradient"));
                (y.inner(), g)
            };
            let ((y1, g1), (y2, g2)) = (run(true), run(false));
            crate::flex_ops::assert_close(y1, y2, 2e-6, "output");
            for (what, (a, b)) in ["dq", "dk", "dv"].iter().zip(g1.into_iter().zip(g2)) {
                crate::flex_ops::assert_close(a, b, 1e-5, what);
            }
        }
    }

    #[test]
    fn gradient_bits_do_not_depend_on_threads() {
        let d = Device::flex().autodiff();
        let [q, k, v] = qkv([2, 1, 130, 8], &d);
        let run = |threads: usize| {
            crate::parallel::on_threads(threads, || {
                let [q, k, v] = [&q, &k, &v].map(|x| x.clone().require_grad());
                let grads = attend(q.clone(), k.clone(), v.clone(), 0.3)
                    .powi_scalar(2)
                    .sum()
                    .backward();
                [&q, &k, &v].map(|x| {
                    let g = x.grad(&grads).unwrap().into_data();
                    let g = g.try_to_vec::<f32>().unwrap();
                    g.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
                })
            })
        };
        let one = run(1);
        for threads in [2, 3] {
            assert!(run(threads) == one, "{threads} threads");
        }
    }
}
