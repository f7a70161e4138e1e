//! Softmax over the last dimension as one differentiable operation on flex.
//!
//! Under autodiff burn composes softmax from max, subtract, exp, sum and divide, each a
//! single-threaded pass over the attention scores (`[B, heads, T, T]`, 784 x 784 per head for
//! Fashion-MNIST), and as many again backward; a profile of the Fashion-MNIST training step had
//! 11% of its samples in `expf` alone. Here the forward is flex's own row-parallel SIMD softmax
//! and the backward `dx = y * (dy - sum(dy * y))` one parallel pass. Other backends and
//! `DAED_SOFTMAX=burn` keep burn's.
use std::mem::MaybeUninit;

use burn::tensor::activation::softmax as burn_softmax;
use burn::tensor::Tensor;
use rayon::prelude::*;

/// `softmax(x, D - 1)`.
pub fn softmax_last<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    #[cfg(feature = "flex")]
    if ext::applies(&x) {
        return ext::softmax(x);
    }
    burn_softmax(x, D - 1)
}

/// Softmax over rows of `row` elements, rows in parallel (each row whole on one thread: the
/// same bits at any thread count).
pub fn softmax_forward(x: &[f32], row: usize) -> Vec<f32> {
    assert!(
        row > 0 && x.len().is_multiple_of(row),
        "softmax forward: lengths"
    );
    let per = rows_per_task(row) * row;
    let fill = |y: &mut [MaybeUninit<f32>]| {
        y.par_chunks_mut(per)
            .zip(x.par_chunks(per))
            .for_each(|(y, x)| {
                crate::vexp::softmax_in_place(crate::zeros::copy_into(y, x), row);
            })
    };
    // SAFETY: each chunk is copied from `x` before the softmax reads it.
    unsafe { crate::zeros::written(x.len(), fill) }
}

/// [`softmax_forward`] overwriting its input.
pub fn softmax_in_place(v: &mut [f32], row: usize) {
    assert!(
        row > 0 && v.len().is_multiple_of(row),
        "softmax forward: lengths"
    );
    let per = rows_per_task(row) * row;
    v.par_chunks_mut(per)
        .for_each(|v| crate::vexp::softmax_in_place(v, row));
}

/// Rows of `row` elements per rayon task: at least 16 Ki elements.
fn rows_per_task(row: usize) -> usize {
    (16 * 1024usize).div_ceil(row).max(1)
}

/// Input gradient of a softmax over rows of `row` elements, from its output `y` and the output
/// gradient `dy`.
pub fn softmax_backward(y: &[f32], dy: &[f32], row: usize) -> Vec<f32> {
    assert!(
        row > 0 && y.len().is_multiple_of(row) && dy.len() == y.len(),
        "softmax backward: lengths"
    );
    let mut dx = crate::zeros::zeros(y.len());
    let per = rows_per_task(row) * row;
    dx.par_chunks_mut(per)
        .zip(y.par_chunks(per).zip(dy.par_chunks(per)))
        .for_each(|(dx, (y, dy))| {
            dx.copy_from_slice(dy);
            crate::vexp::softmax_backward_in_place(y, dx, row);
        });
    dx
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

    /// Softmax over the last dimension as a backend operation with daed's backward step.
    #[backend_extension(Flex, Autodiff)]
    pub trait SoftmaxExt: Backend {
        /// `softmax(x, rank - 1)`.
        fn daed_softmax_last(x: FloatTensor<Self>) -> FloatTensor<Self>;
    }

    /// f32 on flex (with or without autodiff), and not turned off by `DAED_SOFTMAX=burn`.
    pub(super) fn applies<const D: usize>(x: &Tensor<D>) -> bool {
        static ENABLED: OnceLock<bool> = OnceLock::new();
        D > 0 && enabled(&ENABLED, "DAED_SOFTMAX") && on_flex(x, true)
    }

    pub(super) fn softmax<const D: usize>(x: Tensor<D>) -> Tensor<D> {
        Tensor::from_dispatch(<Dispatch as SoftmaxExt>::daed_softmax_last(
            x.into_dispatch(),
        ))
    }

    impl SoftmaxExt for Flex {
        fn daed_softmax_last(x: FlexTensor) -> FlexTensor {
            // `applies` admitted only f32 inputs.
            let mut x = dense(x);
            let shape = x.shape();
            let row = shape[shape.num_dims() - 1];
            if row == 0 {
                return x;
            }
            // The attention scores are usually held by nobody else: overwrite them rather than
            // allocate (and zero) as much again.
            if whole(&x) {
                if let Some(v) = x.try_storage_mut::<f32>() {
                    super::softmax_in_place(v, row);
                    return x;
                }
            }
            flex_tensor(super::softmax_forward(f32s(&x), row), shape)
        }
    }

    /// Whether the f32 tensor `x` is its whole storage, in order.
    fn whole(x: &FlexTensor) -> bool {
        let n = x.shape().num_elements();
        x.as_slice::<f32>().is_some_and(|v| v.len() == n) && x.storage::<f32>().len() == n
    }

    /// Backward step: keeps the softmax output.
    #[derive(Debug)]
    struct SoftmaxBackward;

    impl Backward<Flex, 1> for SoftmaxBackward {
        type State = FlexTensor;

        fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
            let [node_x] = ops.parents;
            let grad = dense(grads.consume::<Flex>(&ops.node));
            let Some(node_x) = node_x else { return };
            let y = dense(ops.state);
            let shape = y.shape();
            let row = shape[shape.num_dims() - 1];
            // `applies` admitted only f32 inputs, so the output and its gradient are f32.
            let (yv, gv) = (f32s(&y), f32s(&grad));
            let dx = super::softmax_backward(yv, gv, row);
            grads.register::<Flex>(node_x.id, flex_tensor(dx, shape));
        }
    }

    impl<C: CheckpointStrategy> SoftmaxExt for Autodiff<Flex, C> {
        fn daed_softmax_last(x: FloatTensor<Self>) -> FloatTensor<Self> {
            match SoftmaxBackward
                .prepare::<C>([x.node()])
                .compute_bound()
                .stateful()
            {
                OpsKind::Tracked(prep) => {
                    let y = Flex::daed_softmax_last(x.into_primitive());
                    prep.finish(y.clone(), y)
                }
                OpsKind::UnTracked(prep) => {
                    prep.finish(Flex::daed_softmax_last(x.into_primitive()))
                }
            }
        }
    }
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use super::*;
    use burn::tensor::{Device, Distribution, Int};

    #[test]
    fn forward_and_gradient_equal_burns() {
        let d = Device::flex().autodiff();
        let x = Tensor::<3>::random([2, 5, 7], Distribution::Normal(0.0, 3.0), &d);
        assert!(ext::applies(&x));
        let w = Tensor::<1, Int>::arange(0..70, &d)
            .float()
            .div_scalar(70.0)
            .reshape([2, 5, 7]);
        let run = |ours: bool| {
            let x = x.clone().require_grad();
            let y = if ours {
                softmax_last(x.clone())
            } else {
                burn_softmax(x.clone(), 2)
            };
            let grads = (y.clone() * w.clone()).sum().backward();
            (y.detach(), x.grad(&grads).expect("gradient"))
        };
        let ((y1, g1), (y2, g2)) = (run(true), run(false));
        let diff = |a: Tensor<3>, b: Tensor<3>| (a - b).abs().max().into_scalar::<f32>();
        assert!(diff(y1, y2) < 1e-6);
        assert!(diff(g1, g2) < 1e-6);
    }

    #[test]
    fn a_tensor_held_nowhere_else_is_overwritten_and_a_shared_one_is_kept() {
        let d = Device::flex();
        let x = Tensor::<3>::random([3, 4, 37], Distribution::Normal(0.0, 4.0), &d);
        let before = x.clone().into_data();
        let want = burn_softmax(x.clone(), 2);
        // Shared: `x` is still held here, so a new buffer is written.
        let shared = softmax_last(x.clone());
        assert_eq!(x.clone().into_data(), before, "the input was changed");
        // Held nowhere else: the product is a fresh tensor, overwritten in place.
        let fresh = softmax_last(x.clone().mul_scalar(1.0));
        for got in [shared, fresh] {
            let err = (got - want.clone()).abs().max().into_scalar::<f32>();
            assert!(err < 1e-6, "max error {err}");
        }
    }
}
