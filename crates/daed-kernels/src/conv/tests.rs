//! daed's convolution against burn's, forward and gradients, through the real dispatch path.
use burn::tensor::module::conv2d as burn_conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Distribution, Int, Tensor};

use super::ext;

/// Agreement to 2e-5 of the largest magnitude.
fn assert_close<const D: usize>(a: Tensor<D>, b: Tensor<D>, what: &str) {
    crate::flex_ops::assert_close(a, b, 2e-5, what);
}

/// Input shape, weight shape, stride, padding.
type Case = ([usize; 4], [usize; 4], [usize; 2], [usize; 2]);

const CASES: [Case; 5] = [
    ([3, 4, 8, 8], [6, 4, 3, 3], [1, 1], [1, 1]),
    // Enough channels for Winograd (forward and input gradient), an odd side.
    ([2, 16, 7, 7], [17, 16, 3, 3], [1, 1], [1, 1]),
    ([2, 5, 9, 9], [4, 5, 3, 3], [2, 2], [1, 1]),
    ([4, 6, 5, 5], [3, 6, 1, 1], [1, 1], [0, 0]),
    ([1, 3, 7, 7], [2, 3, 1, 7], [1, 1], [0, 3]),
];

#[test]
fn forward_equals_burns_convolution() {
    let d = Device::flex();
    for (xs, ws, stride, pad) in CASES {
        let x = Tensor::<4>::random(xs, Distribution::Normal(0.0, 1.0), &d);
        let w = Tensor::<4>::random(ws, Distribution::Normal(0.0, 0.3), &d);
        let b = Tensor::<1>::random([ws[0]], Distribution::Normal(0.0, 1.0), &d);
        let opts = ConvOptions::new(stride, pad, [1, 1], 1);
        assert!(ext::applies(&x, &opts));
        let ours = ext::conv2d(x.clone(), w.clone(), b.clone(), opts.clone());
        let theirs = burn_conv2d(x.clone(), w.clone(), Some(b.clone()), opts.clone());
        assert_close(ours, theirs, "forward");
        // A strided view (H and W swapped) goes through the copy to a dense tensor.
        let view = x.swap_dims(2, 3);
        let ours = ext::conv2d(view.clone(), w.clone(), b.clone(), opts.clone());
        let theirs = burn_conv2d(view, w, Some(b), opts);
        assert_close(ours, theirs, "forward of a view");
    }
}

#[test]
fn gradients_equal_burns_under_autodiff() {
    let d = Device::flex().autodiff();
    for (xs, ws, stride, pad) in CASES {
        let x = Tensor::<4>::random(xs, Distribution::Normal(0.0, 1.0), &d);
        let w = Tensor::<4>::random(ws, Distribution::Normal(0.0, 0.3), &d);
        let b = Tensor::<1>::random([ws[0]], Distribution::Normal(0.0, 1.0), &d);
        let opts = ConvOptions::new(stride, pad, [1, 1], 1);
        let run = |ours: bool| {
            let (x, w, b) = (
                x.clone().require_grad(),
                w.clone().require_grad(),
                b.clone().require_grad(),
            );
            let y = if ours {
                ext::conv2d(x.clone(), w.clone(), b.clone(), opts.clone())
            } else {
                burn_conv2d(x.clone(), w.clone(), Some(b.clone()), opts.clone())
            };
            // A non-uniform upstream gradient: d(loss)/dy = y's position-dependent weights.
            let n = y.dims().iter().product::<usize>();
            let weights = Tensor::<1, Int>::arange(0..n as i64, &d)
                .float()
                .div_scalar(n as f32)
                .reshape(y.dims());
            let grads = (y.clone() * weights).sum().backward();
            let g = |t: Option<Tensor<4>>| t.expect("gradient present");
            (
                y.detach(),
                g(x.grad(&grads)),
                g(w.grad(&grads)),
                b.grad(&grads).expect("bias gradient"),
            )
        };
        let (y1, dx1, dw1, db1) = run(true);
        let (y2, dx2, dw2, db2) = run(false);
        assert_close(y1, y2, "y");
        assert_close(dx1, dx2, "dx");
        assert_close(dw1, dw2, "dw");
        assert_close(db1, db2, "db");
    }
}

#[test]
fn a_constant_input_gets_no_gradient_but_the_weights_do() {
    let d = Device::flex().autodiff();
    let x = Tensor::<4>::random([2, 3, 6, 6], Distribution::Normal(0.0, 1.0), &d);
    let w = Tensor::<4>::random([4, 3, 3, 3], Distribution::Normal(0.0, 0.3), &d).require_grad();
    let b = Tensor::<1>::zeros([4], &d).require_grad();
    let opts = ConvOptions::new([1, 1], [1, 1], [1, 1], 1);
    let grads = ext::conv2d(x.clone(), w.clone(), b.clone(), opts.clone())
        .sum()
        .backward();
    assert!(x.grad(&grads).is_none());
    let dw = w.grad(&grads).unwrap();
    let want = burn_conv2d(x.clone().require_grad(), w.clone(), Some(b.clone()), opts)
        .sum()
        .backward();
    assert_close(dw, w.grad(&want).unwrap(), "dw");
}

#[test]
fn other_devices_and_options_keep_burns_convolution() {
    let d = Device::flex();
    let x = Tensor::<4>::zeros([1, 2, 5, 5], &d);
    assert!(!ext::applies(
        &x,
        &ConvOptions::new([1, 1], [1, 1], [2, 2], 1)
    ));
    assert!(!ext::applies(
        &x,
        &ConvOptions::new([1, 1], [1, 1], [1, 1], 2)
    ));
    assert!(ext::applies(
        &x,
        &ConvOptions::new([2, 2], [0, 0], [1, 1], 1)
    ));
}

/// The bits of a tensor.
fn bits<const D: usize>(t: Tensor<D>) -> Vec<u32> {
    let v: Vec<f32> = t.into_data().try_to_vec().unwrap();
    v.iter().map(|x| x.to_bits()).collect()
}

/// In a bf16 scope (CPUs with AVX512-BF16) the output and all three gradients through autodiff
/// stay within bf16 rounding (1% of the largest magnitude) of burn's f32 convolution, and where
/// the im2col GEMM runs the output is not f32's bits (Winograd and the direct convolution for few
/// outputs stay f32).
#[test]
fn bf16_forward_and_gradients_stay_near_burns_under_autodiff() {
    use crate::precision::{bf16_supported, scope, Precision};
    if !bf16_supported() {
        eprintln!("skipped: this CPU has no AVX512-BF16");
        return;
    }
    let d = Device::flex().autodiff();
    for (xs, ws, stride, pad) in CASES {
        let x = Tensor::<4>::random(xs, Distribution::Normal(0.0, 1.0), &d).require_grad();
        let w = Tensor::<4>::random(ws, Distribution::Normal(0.0, 0.3), &d).require_grad();
        let b = Tensor::<1>::random([ws[0]], Distribution::Normal(0.0, 1.0), &d).require_grad();
        let opts = ConvOptions::new(stride, pad, [1, 1], 1);
        let grads_of = |y: Tensor<4>| {
            let n = y.dims().iter().product::<usize>();
            let weights = Tensor::<1, Int>::arange(0..n as i64, &d)
                .float()
                .div_scalar(n as f32)
                .reshape(y.dims());
            let g = (y.clone() * weights).sum().backward();
            let dx = x.grad(&g).expect("dx");
            (
                y.detach(),
                dx,
                w.grad(&g).expect("dw"),
                b.grad(&g).expect("db"),
            )
        };
        let ours = scope(Precision::Bf16, || {
            grads_of(ext::conv2d(x.clone(), w.clone(), b.clone(), opts.clone()))
        });
        let theirs = grads_of(burn_conv2d(x.clone(), w.clone(), Some(b.clone()), opts));
        let g = super::kernel::Geom::new(xs, ws, stride, pad).expect("valid case");
        if !super::winograd::applies(&g) && !super::direct::applies(&g) {
            assert_ne!(bits(ours.0.clone()), bits(theirs.0.clone()), "bf16 ran");
        }
        crate::flex_ops::assert_close(ours.0, theirs.0, 1e-2, "y (bf16)");
        crate::flex_ops::assert_close(ours.1, theirs.1, 1e-2, "dx (bf16)");
        crate::flex_ops::assert_close(ours.2, theirs.2, 1e-2, "dw (bf16)");
        crate::flex_ops::assert_close(ours.3, theirs.3, 1e-5, "db (bf16)");
    }
}

/// `parallel::on_halves` runs its second thread at the caller's precision: the split batch in a
/// bf16 scope is the whole batch's bf16 bits, not half of them f32.
#[test]
fn bf16_reaches_both_halves_of_a_split_batch() {
    use crate::parallel::{cat_batches, on_halves, split_helps};
    use crate::precision::{bf16_supported, scope, Precision};
    let d = Device::flex();
    if !bf16_supported() || !split_helps(&d, 4) {
        eprintln!("skipped: no AVX512-BF16, or one core");
        return;
    }
    let x = Tensor::<4>::random([4, 8, 9, 9], Distribution::Normal(0.0, 1.0), &d);
    let w = Tensor::<4>::random([6, 8, 3, 3], Distribution::Normal(0.0, 0.3), &d);
    let b = Tensor::<1>::random([6], Distribution::Normal(0.0, 1.0), &d);
    let opts = ConvOptions::new([1, 1], [1, 1], [1, 1], 1);
    let conv = |x: Tensor<4>| ext::conv2d(x, w.clone(), b.clone(), opts.clone());
    let whole = scope(Precision::Bf16, || conv(x.clone()));
    let split = scope(Precision::Bf16, || {
        on_halves(x.clone(), |h, _| conv(h), cat_batches)
    });
    assert_eq!(bits(split), bits(whole.clone()));
    assert_ne!(bits(conv(x)), bits(whole), "f32 differs");
}

/// In a [`super::frozen_weights`] scope a Winograd forward keeps its transformed weights: later
/// forwards with the same weights (on flex and through autodiff) give the bits they give outside
/// a scope, other weights of the same shape their own results, and the scope's end frees them.
#[test]
fn a_frozen_scope_keeps_transforms_and_gives_the_same_bits() {
    use super::{frozen_weights, kept};
    let bits = |t: Tensor<4>| {
        t.into_data()
            .try_to_vec::<f32>()
            .unwrap()
            .iter()
            .map(|v| v.to_bits())
            .collect::<Vec<_>>()
    };
    for d in [Device::flex(), Device::flex().autodiff()] {
        let x = Tensor::<4>::random([2, 16, 7, 7], Distribution::Normal(0.0, 1.0), &d);
        let x2 = Tensor::<4>::random([2, 16, 7, 7], Distribution::Normal(0.0, 1.0), &d);
        let w = Tensor::<4>::random([17, 16, 3, 3], Distribution::Normal(0.0, 0.3), &d);
        let b = Tensor::<1>::random([17], Distribution::Normal(0.0, 1.0), &d);
        let opts = ConvOptions::new([1, 1], [1, 1], [1, 1], 1);
        let conv = |x: &Tensor<4>, w: &Tensor<4>| {
            ext::conv2d(x.clone(), w.clone(), b.clone(), opts.clone())
        };
        // The same weights' values, changed (new storage), as an optimizer step leaves them.
        let w2 = w.clone() * 0.5 + 0.25;
        let outside = [bits(conv(&x, &w)), bits(conv(&x2, &w)), bits(conv(&x, &w2))];
        let inside = frozen_weights(|| {
            let first = bits(conv(&x, &w));
            assert_eq!(kept(), 1);
            let again = frozen_weights(|| bits(conv(&x2, &w)));
            assert_eq!(
                kept(),
                1,
                "a nested scope shares the outer one's transforms"
            );
            let other = bits(conv(&x, &w2));
            assert_eq!(kept(), 2);
            [first, again, other]
        });
        assert!(inside == outside);
        assert_eq!(kept(), 0, "the scope's end frees its transforms");
        assert!(outside[0] != outside[2]);
    }
}
