//! The backend extension: [`NormExt`] on flex and on `Autodiff<Flex>` (with backward steps).
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::NodeId;
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{backend_extension, Autodiff, Backend, Dispatch, Flex, TensorMetadata};
use burn::tensor::{Shape, Tensor};

use super::kernel;
use crate::flex_ops::{dense, enabled, f32s, flex_tensor, on_flex};
use std::sync::OnceLock;

/// GroupNorm's two halves as backend operations daed implements itself.
#[backend_extension(Flex, Autodiff)]
pub trait NormExt: Backend {
    /// `[B, C, H, W]` -> `[B, groups, 2]`: mean and `1 / sqrt(var + eps)` per group.
    fn daed_group_stats(x: FloatTensor<Self>, groups: usize, eps: f64) -> FloatTensor<Self>;
    /// `act((x - m) * a + o)` with `m`, `a`, `o` `[B, C]`; `act` is SiLU when `silu`, else the
    /// identity.
    fn daed_affine_act(
        x: FloatTensor<Self>,
        m: FloatTensor<Self>,
        a: FloatTensor<Self>,
        o: FloatTensor<Self>,
        silu: bool,
    ) -> FloatTensor<Self>;
}

/// Whether the fused path handles `x`: f32 on flex (with or without autodiff), and not turned
/// off by `DAED_NORM=burn`.
pub(super) fn applies(x: &Tensor<4>) -> bool {
    static ENABLED: OnceLock<bool> = OnceLock::new();
    enabled(&ENABLED, "DAED_NORM") && on_flex(x, true)
}

/// Runs [`NormExt::daed_group_stats`] through burn's dispatch.
pub(super) fn group_stats(x: Tensor<4>, groups: usize, eps: f64) -> Tensor<3> {
    Tensor::from_dispatch(<Dispatch as NormExt>::daed_group_stats(
        x.into_dispatch(),
        groups,
        eps,
    ))
}

/// Runs [`NormExt::daed_affine_act`] through burn's dispatch.
pub(super) fn affine_act(x: Tensor<4>, c: [Tensor<2>; 3], silu: bool) -> Tensor<4> {
    let [m, a, o] = c;
    Tensor::from_dispatch(<Dispatch as NormExt>::daed_affine_act(
        x.into_dispatch(),
        m.into_dispatch(),
        a.into_dispatch(),
        o.into_dispatch(),
        silu,
    ))
}

/// Elements per group: `(C / groups) * H * W`.
fn block(shape: &Shape, groups: usize) -> usize {
    assert!(
        shape.num_dims() == 4 && groups > 0 && shape[1].is_multiple_of(groups),
        "daed group stats: {shape:?} does not split into {groups} groups"
    );
    (shape[1] / groups) * shape[2] * shape[3]
}

/// Elements per channel plane: `H * W`.
fn plane(shape: &Shape) -> usize {
    shape[2] * shape[3]
}

impl NormExt for Flex {
    fn daed_group_stats(x: FlexTensor, groups: usize, eps: f64) -> FlexTensor {
        let shape = x.shape();
        let x = dense(x);
        let st = kernel::group_stats(f32s(&x), block(&shape, groups), eps);
        flex_tensor(st, Shape::new([shape[0], groups, 2]))
    }

    fn daed_affine_act(
        x: FlexTensor,
        m: FlexTensor,
        a: FlexTensor,
        o: FlexTensor,
        silu: bool,
    ) -> FlexTensor {
        let shape = x.shape();
        let (x, m, a, o) = (dense(x), dense(m), dense(a), dense(o));
        let c = kernel::Coefs {
            m: f32s(&m),
            a: f32s(&a),
            o: f32s(&o),
        };
        flex_tensor(kernel::affine_act(f32s(&x), plane(&shape), c, silu), shape)
    }
}

/// Backward step of [`NormExt::daed_group_stats`]: keeps the statistics it produced.
#[derive(Debug)]
struct StatsBackward;

impl Backward<Flex, 1> for StatsBackward {
    type State = (NodeId, FlexTensor, usize);

    fn backward(
        self,
        ops: Ops<Self::State, 1>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_x] = ops.parents;
        let grad = dense(grads.consume::<Flex>(&ops.node));
        let (x_state, stats, groups) = ops.state;
        let Some(node_x) = node_x else { return };
        let x = dense(checkpointer.retrieve_node_output::<FlexTensor>(x_state));
        let shape = x.shape();
        let stats = dense(stats);
        let dx = kernel::group_stats_backward(
            f32s(&x),
            block(&shape, groups),
            f32s(&stats),
            f32s(&grad),
        );
        grads.register::<Flex>(node_x.id, flex_tensor(dx, shape));
    }
}

/// Backward step of [`NormExt::daed_affine_act`].
#[derive(Debug)]
struct AffineBackward;

impl Backward<Flex, 4> for AffineBackward {
    type State = ([NodeId; 4], bool);

    fn backward(
        self,
        ops: Ops<Self::State, 4>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let grad = dense(grads.consume::<Flex>(&ops.node));
        let (states, silu) = ops.state;
        let [x, m, a, o] =
            states.map(|s| dense(checkpointer.retrieve_node_output::<FlexTensor>(s)));
        let (shape, cshape) = (x.shape(), a.shape());
        let need = ops.parents.each_ref().map(Option::is_some);
        let c = kernel::Coefs {
            m: f32s(&m),
            a: f32s(&a),
            o: f32s(&o),
        };
        let g = kernel::affine_act_backward(f32s(&x), plane(&shape), c, silu, f32s(&grad), need);
        let outs = [
            g.x.map(|v| flex_tensor(v, shape)),
            g.m.map(|v| flex_tensor(v, cshape.clone())),
            g.a.map(|v| flex_tensor(v, cshape.clone())),
            g.o.map(|v| flex_tensor(v, cshape.clone())),
        ];
        for (node, t) in ops.parents.into_iter().zip(outs) {
            if let (Some(node), Some(t)) = (node, t) {
                grads.register::<Flex>(node.id, t);
            }
        }
    }
}

impl<C: CheckpointStrategy> NormExt for Autodiff<Flex, C> {
    fn daed_group_stats(x: FloatTensor<Self>, groups: usize, eps: f64) -> FloatTensor<Self> {
        match StatsBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                let st = Flex::daed_group_stats(x.into_primitive(), groups, eps);
                prep.finish((x_state, st.clone(), groups), st)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(Flex::daed_group_stats(x.into_primitive(), groups, eps))
            }
        }
    }

    fn daed_affine_act(
        x: FloatTensor<Self>,
        m: FloatTensor<Self>,
        a: FloatTensor<Self>,
        o: FloatTensor<Self>,
        silu: bool,
    ) -> FloatTensor<Self> {
        let nodes = [x.node(), m.node(), a.node(), o.node()];
        match AffineBackward
            .prepare::<C>(nodes)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let states = [&x, &m, &a, &o].map(|t| prep.checkpoint(t));
                let [x, m, a, o] = [x, m, a, o].map(|t| t.into_primitive());
                prep.finish((states, silu), Flex::daed_affine_act(x, m, a, o, silu))
            }
            OpsKind::UnTracked(prep) => {
                let [x, m, a, o] = [x, m, a, o].map(|t| t.into_primitive());
                prep.finish(Flex::daed_affine_act(x, m, a, o, silu))
            }
        }
    }
}
