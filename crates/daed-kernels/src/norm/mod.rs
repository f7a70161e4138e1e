//! GroupNorm as two fused operations on flex: the per-group statistics, and the per-channel
//! multiply-add with an optional SiLU, each one pass forward and one backward, parallel over
//! groups / planes.
//!
//! Built from burn's element-wise ops, `silu(groupnorm(x) * (1 + scale) + shift)` makes about
//! six passes over the activation forward and more than a dozen in the backward, each on one
//! core on flex. The two operations here are backend extensions with their own backward steps
//! (like [`super::conv`]); other backends, and everything under `DAED_NORM=burn`, compute the
//! same thing from burn's ops.
pub mod kernel;

use burn::tensor::activation::silu;
use burn::tensor::Tensor;

/// Mean and `1 / sqrt(var + eps)` of each of `groups` channel groups of `x` `[B, C, H, W]`:
/// two `[B, groups, 1]` tensors.
pub fn group_stats(x: Tensor<4>, groups: usize, eps: f64) -> (Tensor<3>, Tensor<3>) {
    #[cfg(feature = "flex")]
    if ext::applies(&x) {
        let st = ext::group_stats(x, groups, eps);
        return (st.clone().narrow(2, 0, 1), st.narrow(2, 1, 1));
    }
    group_stats_burn(x, groups, eps)
}

/// [`group_stats`] from burn's ops.
fn group_stats_burn(x: Tensor<4>, groups: usize, eps: f64) -> (Tensor<3>, Tensor<3>) {
    let [b, c, h, w] = x.dims();
    let xg = x.reshape([b, groups, (c / groups) * h * w]);
    let mean = xg.clone().mean_dim(2);
    let var = (xg - mean.clone()).square().mean_dim(2);
    (mean, var.add_scalar(eps).sqrt().recip())
}

/// `(x - m) * a + o` per channel (`m`, `a`, `o` are `[B, C]`: `c = [m, a, o]`), then SiLU
/// when `act`.
pub fn affine_act(x: Tensor<4>, c: [Tensor<2>; 3], act: bool) -> Tensor<4> {
    #[cfg(feature = "flex")]
    if ext::applies(&x) {
        return ext::affine_act(x, c, act);
    }
    affine_act_burn(x, c, act)
}

/// [`affine_act`] from burn's ops.
fn affine_act_burn(x: Tensor<4>, c: [Tensor<2>; 3], act: bool) -> Tensor<4> {
    let [b, ch, _, _] = x.dims();
    let [m, a, o] = c.map(|t| t.reshape([b, ch, 1, 1]));
    let y = (x - m) * a + o;
    if act {
        silu(y)
    } else {
        y
    }
}

#[cfg(feature = "flex")]
mod ext;

#[cfg(all(test, feature = "flex"))]
mod tests;
