//! What daed's own flex operations (`conv`, `norm`, `softmax`, `pool`) share: the switch back
//! to burn's operation, the device test, and moving f32 values in and out of flex tensors.
use std::sync::OnceLock;

use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::NodeId;
use burn::backend::flex::FlexTensor;
use burn::backend::Flex;

use crate::conv::kernel::Need;
use burn::tensor::{DType, Device, Shape, Tensor, TensorData};

/// Whether daed's operation is on: true unless the environment variable `var` says `burn`
/// (read once per operation, into `cell`).
pub(crate) fn enabled(cell: &'static OnceLock<bool>, var: &str) -> bool {
    *cell.get_or_init(|| std::env::var(var).map_or(true, |v| v.trim() != "burn"))
}

/// Whether `x` is an f32 tensor on flex; with `autodiff`, flex under autodiff counts too.
pub(crate) fn on_flex<const D: usize>(x: &Tensor<D>, autodiff: bool) -> bool {
    let device = x.device();
    // A flex device under autodiff compares equal to `Device::flex()`: ask it directly.
    x.dtype() == DType::F32 && device == Device::flex() && (autodiff || !device.is_autodiff())
}

/// The tensor as f32 values in one contiguous run: kept as it is when it already is (a view
/// starting at an offset included), copied when strided or of another dtype.
pub(crate) fn dense(t: FlexTensor) -> FlexTensor {
    if t.dtype() == DType::F32 && t.as_slice::<f32>().is_some() {
        t
    } else if t.dtype() == DType::F32 {
        t.to_contiguous()
    } else {
        FlexTensor::from_data(t.into_data().convert::<f32>())
    }
}

/// The values of a tensor made [`dense`].
pub(crate) fn f32s(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>()
        .expect("daed flex op: tensor made dense f32 before use")
}

/// Which of an operation's three parents (input, weight, bias) want a gradient, by the ids of
/// those that do.
pub(crate) fn need_of(ids: &[Option<NodeId>; 3]) -> Need {
    Need {
        x: ids[0].is_some(),
        weight: ids[1].is_some(),
        bias: ids[2].is_some(),
    }
}

/// Registers each gradient in `values` with its parent in `ids`, where both are there.
pub(crate) fn register_grads<const N: usize>(
    grads: &mut Gradients,
    ids: [Option<NodeId>; N],
    values: [Option<FlexTensor>; N],
) {
    for (id, g) in ids.into_iter().zip(values) {
        if let (Some(id), Some(g)) = (id, g) {
            grads.register::<Flex>(id, g);
        }
    }
}

/// A flex tensor holding `values` in `shape`.
pub(crate) fn flex_tensor(values: Vec<f32>, shape: impl Into<Shape>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape.into()))
}

/// Test helper: `a` and `b` have the same shape and agree to `tol` times the largest `|b|` (at
/// least 1).
#[cfg(test)]
pub(crate) fn assert_close<const D: usize>(a: Tensor<D>, b: Tensor<D>, tol: f32, what: &str) {
    assert_eq!(a.dims(), b.dims(), "{what}: shape");
    let a = a.into_data().try_to_vec::<f32>().unwrap();
    let b = b.into_data().try_to_vec::<f32>().unwrap();
    let scale = b.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert!(
            (x - y).abs() <= tol * scale,
            "{what}[{i}]: {x} vs {y} (scale {scale})"
        );
    }
}
