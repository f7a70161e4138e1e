//! The backend extension: [`ConvExt`] on flex and on `Autodiff<Flex>` (with its backward step).
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::NodeId;
use burn::backend::flex::FlexTensor;
use burn::backend::ops::ModuleOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{backend_extension, Autodiff, Backend, Dispatch, Flex, TensorMetadata};
use burn::tensor::ops::ConvOptions;
use burn::tensor::{DType, Tensor};

use super::kernel::{self, Geom, Need};
use crate::flex_ops::{dense, enabled, f32s, flex_tensor, need_of, on_flex, register_grads};
use std::sync::OnceLock;

/// Convolution with bias, as one backend operation daed implements itself.
#[backend_extension(Flex, Autodiff)]
pub trait ConvExt: Backend {
    /// `conv2d(x, weight, bias)` for `[N, C, H, W]` input and `[C_out, C_in, kh, kw]` weights.
    fn daed_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        Self::conv2d(x, weight, Some(bias), options)
    }
}

/// Whether daed's kernel handles this call: flex (with or without autodiff), one group, no
/// dilation, symmetric padding, and not turned off by `DAED_CONV=burn`.
pub(super) fn applies(x: &Tensor<4>, options: &ConvOptions<2>) -> bool {
    static ENABLED: OnceLock<bool> = OnceLock::new();
    enabled(&ENABLED, "DAED_CONV")
        && on_flex(x, true)
        && options.groups == 1
        && options.dilation == [1, 1]
        && !options.is_asymmetric()
}

/// Runs [`ConvExt::daed_conv2d`] through burn's dispatch.
pub(super) fn conv2d(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Tensor<1>,
    options: ConvOptions<2>,
) -> Tensor<4> {
    Tensor::from_dispatch(<Dispatch as ConvExt>::daed_conv2d(
        x.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
        options,
    ))
}

/// The kernel geometry when the tensors are f32, the options are ones the kernel handles (one
/// group, no dilation, symmetric padding) and the shapes fit.
fn geom(x: &FlexTensor, w: &FlexTensor, options: &ConvOptions<2>) -> Option<Geom> {
    let (xs, ws) = (x.shape(), w.shape());
    let plain = options.groups == 1 && options.dilation == [1, 1] && !options.is_asymmetric();
    if !plain
        || x.dtype() != DType::F32
        || w.dtype() != DType::F32
        || xs.num_dims() != 4
        || ws.num_dims() != 4
    {
        return None;
    }
    let dims = |s: &burn::tensor::Shape| [s[0], s[1], s[2], s[3]];
    Geom::new(
        dims(&xs),
        dims(&ws),
        options.stride,
        options.padding_begin(),
    )
}

impl ConvExt for Flex {
    fn daed_conv2d(
        x: FlexTensor,
        weight: FlexTensor,
        bias: FlexTensor,
        options: ConvOptions<2>,
    ) -> FlexTensor {
        let Some(g) = geom(&x, &weight, &options).filter(|_| bias.dtype() == DType::F32) else {
            return Flex::conv2d(x, weight, Some(bias), options);
        };
        let (x, weight, bias) = (dense(x), dense(weight), dense(bias));
        let (xs, bs) = (f32s(&x), Some(f32s(&bias)));
        let y = match super::frozen::transformed(&g, &weight) {
            Some(u) => super::winograd::forward_transformed(&g, xs, &u, bs),
            None => kernel::forward(&g, xs, f32s(&weight), bs),
        };
        flex_tensor(y, [g.n, g.co, g.ho, g.wo])
    }
}

/// The three gradients on flex: daed's kernel where the geometry fits, burn's otherwise.
fn flex_backward(
    x: FlexTensor,
    weight: FlexTensor,
    grad: FlexTensor,
    options: ConvOptions<2>,
    need: Need,
) -> [Option<FlexTensor>; 3] {
    let Some(g) = geom(&x, &weight, &options).filter(|_| grad.dtype() == DType::F32) else {
        let dx = need.x.then(|| {
            Flex::conv2d_x_backward(x.clone(), weight.clone(), grad.clone(), options.clone())
        });
        let dw = need.weight.then(|| {
            Flex::conv2d_weight_backward(x.clone(), weight.clone(), grad.clone(), options.clone())
        });
        let db = need.bias.then(|| {
            let co = weight.shape()[0];
            let bias = FlexTensor::zeros([co].into(), grad.dtype());
            Flex::conv2d_bias_backward(x, bias, grad)
        });
        return [dx, dw, db];
    };
    let (x, weight, grad) = (dense(x), dense(weight), dense(grad));
    let grads = kernel::backward(&g, f32s(&x), f32s(&weight), f32s(&grad), need);
    [
        grads.x.map(|v| flex_tensor(v, [g.n, g.ci, g.h, g.w])),
        grads
            .weight
            .map(|v| flex_tensor(v, [g.co, g.ci, g.kh, g.kw])),
        grads.bias.map(|v| flex_tensor(v, [g.co])),
    ]
}

/// The backward step of [`ConvExt::daed_conv2d`] under autodiff.
#[derive(Debug)]
struct ConvBackward;

impl Backward<Flex, 3> for ConvBackward {
    type State = (NodeId, NodeId, ConvOptions<2>);

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let ids = ops.parents.map(|node| node.map(|n| n.id));
        let grad = grads.consume::<Flex>(&ops.node);
        let (x_state, w_state, options) = ops.state;
        let x = checkpointer.retrieve_node_output::<FlexTensor>(x_state);
        let weight = checkpointer.retrieve_node_output::<FlexTensor>(w_state);
        let need = need_of(&ids);
        let [dx, dw, db] = flex_backward(x, weight, grad, options, need);
        register_grads(grads, ids, [dx, dw, db]);
    }
}

impl<C: CheckpointStrategy> ConvExt for Autodiff<Flex, C> {
    fn daed_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        let nodes = [x.node(), weight.node(), bias.node()];
        match ConvBackward.prepare::<C>(nodes).compute_bound().stateful() {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                let w_state = prep.checkpoint(&weight);
                let y = Flex::daed_conv2d(
                    x.into_primitive(),
                    weight.into_primitive(),
                    bias.into_primitive(),
                    options.clone(),
                );
                prep.finish((x_state, w_state, options), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(Flex::daed_conv2d(
                x.into_primitive(),
                weight.into_primitive(),
                bias.into_primitive(),
                options,
            )),
        }
    }
}
