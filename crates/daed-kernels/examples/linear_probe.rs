//! Probe: an attention block's projections (the CIFAR-10 U-Net's at 16x16: 256 channels to 768
//! and back, batch 32), forward and backward under autodiff, written with burn's operations (the
//! transposing copies and flex's matmul, as `burn::nn::Linear` on a transposed feature map)
//! against `daed_kernels::linear` in f32 and (on CPUs with AVX512-BF16) in a bf16 scope.
//!
//! `cargo run --release -p daed-kernels --example linear_probe [batch]`
use burn::tensor::{Device, Distribution, Tensor};
use daed_kernels::linear::{linear, Layout};
use daed_kernels::precision::{bf16_supported, scope, Precision};

mod common;

/// Best of three timed runs after one warm-up, in milliseconds.
fn time_ms<F: FnMut()>(f: F) -> f64 {
    common::best_of_three(f) * 1e3
}

/// `x W + b` with burn's operations, from and to the given layouts.
fn burns(x: Tensor<3>, w: Tensor<2>, b: Tensor<1>, input: Layout, output: Layout) -> Tensor<3> {
    let x = if input == Layout::Channels {
        x.swap_dims(1, 2)
    } else {
        x
    };
    let y = x.matmul(w.unsqueeze()) + b.unsqueeze();
    if output == Layout::Channels {
        y.swap_dims(1, 2)
    } else {
        y
    }
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(32);
    let (t, c) = (256usize, 256usize);
    let d = Device::flex().autodiff();
    let normal = Distribution::Normal(0.0, 1.0);
    println!("batch {n}, {t} tokens; forward + backward, ms (best of 3), two rounds");
    println!("| projection | burn ops (f32) / daed f32 / daed bf16, round 1 | round 2 |");
    println!("|---|---|---|");
    for (name, co, input, output) in [
        (
            "qkv 256->768, channels -> tokens",
            3 * c,
            Layout::Channels,
            Layout::Tokens,
        ),
        (
            "proj_out 256->256, tokens -> channels",
            c,
            Layout::Tokens,
            Layout::Channels,
        ),
    ] {
        let x_shape = if input == Layout::Channels {
            [n, c, t]
        } else {
            [n, t, c]
        };
        let x = Tensor::<3>::random(x_shape, normal, &d).require_grad();
        let w = Tensor::<2>::random([c, co], normal, &d).require_grad();
        let b = Tensor::<1>::random([co], normal, &d).require_grad();
        let step = |ours: bool| {
            let y = if ours {
                linear(x.clone(), w.clone(), b.clone(), input, output)
            } else {
                burns(x.clone(), w.clone(), b.clone(), input, output)
            };
            std::hint::black_box(y.sum().backward());
        };
        let cells: Vec<String> = (0..2)
            .map(|_| {
                let burn = time_ms(|| step(false));
                let f32 = time_ms(|| step(true));
                let bf16 = if bf16_supported() {
                    format!("{:.1}", scope(Precision::Bf16, || time_ms(|| step(true))))
                } else {
                    "-".into()
                };
                format!("{burn:.1} / {f32:.1} / {bf16}")
            })
            .collect();
        println!("| {name} | {} |", cells.join(" | "));
    }
}
