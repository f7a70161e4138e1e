//! The backend extension: [`LinearExt`] on flex and on `Autodiff<Flex>` (with its backward step).
use std::sync::OnceLock;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::NodeId;
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{backend_extension, Autodiff, Backend, Dispatch, Flex, TensorMetadata};
use burn::tensor::Tensor;

use super::kernel::{self, Dims};
use super::Layout;
use crate::flex_ops::{dense, enabled, f32s, flex_tensor, need_of, on_flex, register_grads};

/// The linear layer of [`super::linear`] as one backend operation daed implements itself.
#[backend_extension(Flex, Autodiff)]
pub trait LinearExt: Backend {
    /// `x W + b` for `x` in `layouts[0]` (`[B, T, C_in]` or `[B, C_in, T]`), `[C_in, C_out]`
    /// weights, the result in `layouts[1]`.
    fn daed_linear(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        layouts: [Layout; 2],
    ) -> FloatTensor<Self>;
}

/// Whether daed's kernel handles this call: f32 on flex (with or without autodiff), and not
/// turned off by `DAED_LINEAR=burn`.
pub(super) fn applies(x: &Tensor<3>) -> bool {
    static ENABLED: OnceLock<bool> = OnceLock::new();
    enabled(&ENABLED, "DAED_LINEAR") && on_flex(x, true)
}

/// Runs [`LinearExt::daed_linear`] through burn's dispatch.
pub(super) fn linear(
    x: Tensor<3>,
    weight: Tensor<2>,
    bias: Tensor<1>,
    layouts: [Layout; 2],
) -> Tensor<3> {
    Tensor::from_dispatch(<Dispatch as LinearExt>::daed_linear(
        x.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
        layouts,
    ))
}

/// The sizes of a call from its input and weight shapes.
fn dims(x: &FlexTensor, w: &FlexTensor, layouts: [Layout; 2]) -> Dims {
    let (xs, ws) = (x.shape(), w.shape());
    assert!(
        xs.num_dims() == 3 && ws.num_dims() == 2,
        "linear: input must be 3-D and weights 2-D"
    );
    let (n, ci) = (xs[0], ws[0]);
    let (t, channels) = match layouts[0] {
        Layout::Tokens => (xs[1], xs[2]),
        Layout::Channels => (xs[2], xs[1]),
    };
    assert_eq!(channels, ci, "linear: input channels against weight rows");
    Dims {
        n,
        t,
        ci,
        co: ws[1],
        layouts,
    }
}

/// `[B, T, C]` or `[B, C, T]` for `c` channels.
fn shape(d: &Dims, layout: Layout, c: usize) -> [usize; 3] {
    match layout {
        Layout::Tokens => [d.n, d.t, c],
        Layout::Channels => [d.n, c, d.t],
    }
}

impl LinearExt for Flex {
    fn daed_linear(
        x: FlexTensor,
        weight: FlexTensor,
        bias: FlexTensor,
        layouts: [Layout; 2],
    ) -> FlexTensor {
        let d = dims(&x, &weight, layouts);
        let (x, weight, bias) = (dense(x), dense(weight), dense(bias));
        let y = kernel::forward(&d, f32s(&x), f32s(&weight), f32s(&bias));
        flex_tensor(y, shape(&d, layouts[1], d.co))
    }
}

/// The backward step of [`LinearExt::daed_linear`] under autodiff.
#[derive(Debug)]
struct LinearBackward;

impl Backward<Flex, 3> for LinearBackward {
    type State = (NodeId, NodeId, [Layout; 2]);

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let ids = ops.parents.map(|node| node.map(|n| n.id));
        let dy = dense(grads.consume::<Flex>(&ops.node));
        let (x_state, w_state, layouts) = ops.state;
        let x = dense(checkpointer.retrieve_node_output::<FlexTensor>(x_state));
        let weight = dense(checkpointer.retrieve_node_output::<FlexTensor>(w_state));
        let d = dims(&x, &weight, layouts);
        let need = need_of(&ids);
        let g = kernel::backward(&d, f32s(&x), f32s(&weight), f32s(&dy), need);
        let dx = g.x.map(|v| flex_tensor(v, shape(&d, layouts[0], d.ci)));
        let dw = g.weight.map(|v| flex_tensor(v, [d.ci, d.co]));
        let db = g.bias.map(|v| flex_tensor(v, [d.co]));
        register_grads(grads, ids, [dx, dw, db]);
    }
}

impl<C: CheckpointStrategy> LinearExt for Autodiff<Flex, C> {
    fn daed_linear(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        layouts: [Layout; 2],
    ) -> FloatTensor<Self> {
        let nodes = [x.node(), weight.node(), bias.node()];
        match LinearBackward
            .prepare::<C>(nodes)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                let w_state = prep.checkpoint(&weight);
                let y = Flex::daed_linear(
                    x.into_primitive(),
                    weight.into_primitive(),
                    bias.into_primitive(),
                    layouts,
                );
                prep.finish((x_state, w_state, layouts), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(Flex::daed_linear(
                x.into_primitive(),
                weight.into_primitive(),
                bias.into_primitive(),
                layouts,
            )),
        }
    }
}
