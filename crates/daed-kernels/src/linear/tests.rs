//! daed's linear layer against burn's operations, forward and gradients, in every pair of
//! layouts; in a bf16 scope within bf16 rounding; the same bits at any thread count.
use burn::tensor::{Device, Distribution, Tensor};

use super::kernel::{self, Dims};
use super::{ext, linear, reference, Layout};
use crate::conv::kernel::Need;
use crate::flex_ops::assert_close;
use crate::precision::{bf16_supported, scope, Precision};

const PAIRS: [[Layout; 2]; 4] = [
    [Layout::Channels, Layout::Tokens],
    [Layout::Tokens, Layout::Channels],
    [Layout::Tokens, Layout::Tokens],
    [Layout::Channels, Layout::Channels],
];

/// Images, tokens, input and output channels: odd sizes, more images than threads and fewer,
/// more output channels than one bias-gradient column group.
const SIZES: [[usize; 4]; 3] = [[3, 10, 7, 12], [1, 33, 20, 9], [5, 6, 16, 70]];

/// `[B, T, C]` or `[B, C, T]`.
fn shape(layout: Layout, [n, t]: [usize; 2], c: usize) -> [usize; 3] {
    match layout {
        Layout::Tokens => [n, t, c],
        Layout::Channels => [n, c, t],
    }
}

/// The output and the gradients of `sum(y * r)` with respect to the input, weight and bias,
/// each flattened, from daed's kernel (`ours`) or burn's operations; random but the same values
/// for both (fixed by `seed`).
fn outputs(ours: bool, [n, t, ci, co]: [usize; 4], pair: [Layout; 2], seed: u64) -> [Tensor<1>; 4] {
    let d = Device::flex().autodiff();
    d.seed(seed);
    let normal = Distribution::Normal(0.0, 1.0);
    let x = Tensor::<3>::random(shape(pair[0], [n, t], ci), normal, &d).require_grad();
    let w = Tensor::<2>::random([ci, co], normal, &d)
        .mul_scalar(0.3)
        .require_grad();
    let b = Tensor::<1>::random([co], normal, &d).require_grad();
    let r = Tensor::<3>::random(shape(pair[1], [n, t], co), normal, &d);
    let y = if ours {
        assert!(ext::applies(&x));
        linear(x.clone(), w.clone(), b.clone(), pair[0], pair[1])
    } else {
        reference(x.clone(), w.clone(), b.clone(), pair[0], pair[1])
    };
    let grads = (y.clone() * r).sum().backward();
    [
        y.inner().flatten(0, 2),
        x.grad(&grads).expect("input gradient").flatten(0, 2),
        w.grad(&grads).expect("weight gradient").flatten(0, 1),
        b.grad(&grads).expect("bias gradient"),
    ]
}

const NAMES: [&str; 4] = [
    "output",
    "input gradient",
    "weight gradient",
    "bias gradient",
];

#[test]
fn forward_and_gradients_equal_burns_in_every_layout() {
    for (i, size) in SIZES.into_iter().enumerate() {
        for pair in PAIRS {
            let ours = outputs(true, size, pair, i as u64);
            let theirs = outputs(false, size, pair, i as u64);
            for ((a, b), name) in ours.into_iter().zip(theirs).zip(NAMES) {
                assert_close(a, b, 2e-5, &format!("{size:?} {pair:?}: {name}"));
            }
        }
    }
}

/// In a bf16 scope the products are of bf16-rounded operands: within bf16 rounding of f32 (the
/// bias gradient, a plain f32 sum, equal), and not f32's bits (bf16 really ran).
#[test]
fn bf16_scope_stays_within_bf16_rounding_of_f32() {
    if !bf16_supported() {
        return;
    }
    let size = SIZES[2];
    for pair in PAIRS {
        let bf16 = scope(Precision::Bf16, || outputs(true, size, pair, 7));
        let f32 = outputs(true, size, pair, 7);
        let bits = |t: &Tensor<1>| {
            let v = t.clone().into_data().try_to_vec::<f32>().unwrap();
            v.iter().map(|f| f.to_bits()).collect::<Vec<_>>()
        };
        assert_ne!(bits(&bf16[0]), bits(&f32[0]), "{pair:?}: bf16 did not run");
        assert_eq!(bits(&bf16[3]), bits(&f32[3]), "{pair:?}: bias gradient");
        for ((a, b), name) in bf16.into_iter().zip(f32).zip(NAMES) {
            assert_close(a, b, 2e-2, &format!("{pair:?}: bf16 {name}"));
        }
    }
}

#[test]
fn bits_do_not_depend_on_threads() {
    let data = |len: usize, seed: usize| -> Vec<f32> {
        (0..len)
            .map(|i| (((i * 7919 + seed * 104729) % 1999) as f32 / 999.5) - 1.0)
            .collect()
    };
    for [n, t, ci, co] in [[1, 40, 24, 33], [13, 20, 16, 70]] {
        for layouts in PAIRS {
            let d = Dims {
                n,
                t,
                ci,
                co,
                layouts,
            };
            let (x, w, b, dy) = (
                data(n * t * ci, 1),
                data(ci * co, 2),
                data(co, 3),
                data(n * t * co, 4),
            );
            let all = Need {
                x: true,
                weight: true,
                bias: true,
            };
            let run = |threads: usize| {
                crate::parallel::on_threads(threads, || {
                    let g = kernel::backward(&d, &x, &w, &dy, all);
                    [
                        kernel::forward(&d, &x, &w, &b),
                        g.x.unwrap(),
                        g.weight.unwrap(),
                        g.bias.unwrap(),
                    ]
                })
            };
            let bits = |v: &[Vec<f32>; 4]| {
                v.iter()
                    .map(|p| p.iter().map(|f| f.to_bits()).collect::<Vec<_>>())
                    .collect::<Vec<_>>()
            };
            let one = bits(&run(1));
            for threads in [2, 3] {
                assert_eq!(one, bits(&run(threads)), "{d:?} at {threads} threads");
            }
        }
    }
}
