//! The fused GroupNorm operations against the same maths from burn's ops, forward and gradients,
//! through the real dispatch path.
use burn::tensor::{Device, Distribution, Int, Tensor};

use super::{affine_act_burn, ext, group_stats_burn};
use crate::flex_ops::assert_close;

/// Position-dependent weights, so every element's gradient differs.
fn ramp<const D: usize>(like: &Tensor<D>) -> Tensor<D> {
    let n = like.dims().iter().product::<usize>();
    Tensor::<1, Int>::arange(0..n as i64, &like.device())
        .float()
        .div_scalar(n as f32)
        .sub_scalar(0.3)
        .reshape(like.dims())
}

#[test]
fn group_stats_forward_and_gradient_equal_burns() {
    let d = Device::flex().autodiff();
    let x = Tensor::<4>::random([3, 8, 5, 4], Distribution::Normal(0.5, 2.0), &d);
    assert!(ext::applies(&x));
    let run = |fused: bool| {
        let x = x.clone().require_grad();
        let (m, r) = if fused {
            let st = ext::group_stats(x.clone(), 4, 1e-5);
            (st.clone().narrow(2, 0, 1), st.narrow(2, 1, 1))
        } else {
            group_stats_burn(x.clone(), 4, 1e-5)
        };
        let loss = (m.clone() * ramp(&m)).sum() + (r.clone() * ramp(&r).mul_scalar(2.0)).sum();
        let grads = loss.backward();
        (m.detach(), r.detach(), x.grad(&grads).expect("x gradient"))
    };
    let (m1, r1, g1) = run(true);
    let (m2, r2, g2) = run(false);
    assert_close(m1, m2, 1e-5, "mean");
    assert_close(r1, r2, 1e-4, "rstd");
    assert_close(g1, g2, 1e-4, "dx");
}

#[test]
fn affine_act_forward_and_gradients_equal_burns() {
    let d = Device::flex().autodiff();
    let x = Tensor::<4>::random([2, 6, 4, 3], Distribution::Normal(3.0, 2.0), &d);
    let coef = |mean: f64| Tensor::<2>::random([2, 6], Distribution::Normal(mean, 0.5), &d);
    let (m, a, o) = (coef(3.0), coef(1.0), coef(0.0));
    for act in [false, true] {
        let run = |fused: bool| {
            let x = x.clone().require_grad();
            let [m, a, o] = [m.clone(), a.clone(), o.clone()].map(|t| t.require_grad());
            let c = [m.clone(), a.clone(), o.clone()];
            let y = if fused {
                ext::affine_act(x.clone(), c, act)
            } else {
                affine_act_burn(x.clone(), c, act)
            };
            let grads = (y.clone() * ramp(&y)).sum().backward();
            let g2 = |t: &Tensor<2>| t.grad(&grads).expect("coefficient gradient");
            (
                y.detach(),
                x.grad(&grads).expect("dx"),
                [g2(&m), g2(&a), g2(&o)],
            )
        };
        let (y1, dx1, c1) = run(true);
        let (y2, dx2, c2) = run(false);
        assert_close(y1, y2, 1e-5, "y");
        assert_close(dx1, dx2, 1e-5, "dx");
        for ((g1, g2), what) in c1.into_iter().zip(c2).zip(["dm", "da", "do"]) {
            assert_close(g1, g2, 1e-4, what);
        }
    }
}

#[test]
fn without_autodiff_the_fused_forward_is_used_and_agrees() {
    let d = Device::flex();
    let x = Tensor::<4>::random([2, 4, 3, 3], Distribution::Normal(0.0, 1.0), &d);
    let coef = |mean: f64| Tensor::<2>::random([2, 4], Distribution::Normal(mean, 0.5), &d);
    let c = [coef(0.0), coef(1.0), coef(0.0)];
    assert!(ext::applies(&x));
    assert_close(
        ext::affine_act(x.clone(), c.clone(), true),
        affine_act_burn(x.clone(), c, true),
        1e-5,
        "y",
    );
    let st = ext::group_stats(x.clone(), 2, 1e-5);
    let (m, r) = group_stats_burn(x, 2, 1e-5);
    assert_close(st.clone().narrow(2, 0, 1), m, 1e-5, "mean");
    assert_close(st.narrow(2, 1, 1), r, 1e-4, "rstd");
}

#[test]
fn strided_views_give_the_bits_of_their_contiguous_copies() {
    // A channel slice and a transposed view, as a concatenation's gradient or a permute gives.
    let d = Device::flex();
    let x = Tensor::<4>::random([4, 8, 64, 48], Distribution::Normal(0.5, 2.0), &d);
    let views = [x.clone().narrow(1, 2, 4), x.clone().swap_dims(2, 3)];
    for v in views {
        let copy = Tensor::<4>::from_data(v.to_data(), &d);
        let (m, r) = super::group_stats(v.clone(), 4, 1e-5);
        let (mc, rc) = super::group_stats(copy.clone(), 4, 1e-5);
        assert_eq!(m.into_data(), mc.into_data());
        assert_eq!(r.into_data(), rc.into_data());
        let c = v_channels(&copy);
        let coefs = || Tensor::<2>::random([4, c], Distribution::Normal(0.0, 1.0), &d);
        let (cm, ca, co) = (coefs(), coefs(), coefs());
        let y = super::affine_act(v.clone(), [cm.clone(), ca.clone(), co.clone()], true);
        let yc = super::affine_act(copy, [cm, ca, co], true);
        assert_eq!(y.into_data(), yc.into_data());
    }
}

/// The channel count of a `[B, C, H, W]` tensor.
fn v_channels(x: &Tensor<4>) -> usize {
    x.dims()[1]
}
