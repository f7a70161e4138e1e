//! Probe: GFLOP/s of burn-flex's conv2d and of daed's kernel (one GEMM per image, or grouped
//! images per GEMM; and in bf16 on CPUs with AVX512-BF16), forward and backward, on the CIFAR-10
//! / Fashion-MNIST U-Net conv shapes, the CPU recipe's (configs/fashion_mnist_cpu.toml) and the
//! FID Inception's stem.
//!
//! `cargo run --release -p daed-kernels --example conv_probe [batch]`
//! `cargo run --release -p daed-kernels --example conv_probe winograd [batch]`: Winograd F(4x4,
//! 3x3) against im2col + GEMM on the U-Nets' 3x3 shapes (forward, input and weight gradients;
//! milliseconds, two alternating rounds each).
//! `cargo run --release -p daed-kernels --example conv_probe last`: the U-Nets' output layers
//! (128 -> 3 at 32x32, 32 -> 1 and 64 -> 1 at 28x28, their training batches) through
//! `kernel::forward` / `kernel::backward`, in f32 and in a bf16 scope (milliseconds).
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Distribution, Tensor};
use daed_kernels::conv::kernel::{self, Engine, Geom, Need};
use daed_kernels::conv::winograd;
use daed_kernels::precision::{bf16_supported, scope, Precision};

mod common;
use common::best_of_three as time;

/// `n` values in [-1, 1) from a stride `m` pattern: deterministic probe data.
fn fill(n: usize, m: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * m) % 1000) as f32 / 500.0 - 1.0)
        .collect()
}

/// All three gradients.
const ALL: Need = Need {
    x: true,
    weight: true,
    bias: true,
};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let wino = args.first().is_some_and(|a| a == "winograd");
    let b: usize = args
        .get(usize::from(wino))
        .and_then(|s| s.parse().ok())
        .unwrap_or(if wino { 32 } else { 16 });
    if wino {
        return winograd_vs_im2col(b);
    }
    if args.first().is_some_and(|a| a == "last") {
        return output_layers();
    }
    let d = Device::flex();
    peaks();
    println!("batch {b}; GFLOP/s (forward: one conv; backward: input + weight gradients)");
    println!("| shape | flex fwd | daed fwd per image | daed fwd grouped | daed bwd per image | daed bwd grouped | daed fwd bf16 | daed bwd bf16 |");
    println!("|---|---|---|---|---|---|---|---|");
    for (c, co, h, s) in [
        (128usize, 128usize, 32usize, 1usize),
        (128, 128, 32, 2),
        (256, 256, 16, 1),
        (256, 256, 8, 1),
        (512, 256, 8, 1),
        (256, 256, 4, 1),
        (64, 64, 28, 1),
        // The CPU recipe's levels.
        (32, 32, 28, 1),
        (64, 64, 14, 1),
        (128, 64, 7, 1),
        // The FID Inception's stem (banded im2col, see `kernel::TILE`).
        (32, 32, 149, 1),
        (32, 64, 147, 1),
    ] {
        let g = Geom::new([b, c, h, h], [co, c, 3, 3], [s, s], [1, 1]).expect("valid shape");
        let flops = 2.0 * (g.n * g.p()) as f64 * g.k() as f64 * co as f64;
        let x = Tensor::<4>::random([b, c, h, h], Distribution::Normal(0.0, 1.0), &d);
        let w = Tensor::<4>::random([co, c, 3, 3], Distribution::Normal(0.0, 0.1), &d);
        let t_flex = time(|| {
            let y = conv2d(
                x.clone(),
                w.clone(),
                None,
                ConvOptions::new([s, s], [1, 1], [1, 1], 1),
            );
            std::hint::black_box(y.into_data());
        });
        let xs = x.into_data().try_into_vec::<f32>().expect("f32");
        let ws = w.into_data().try_into_vec::<f32>().expect("f32");
        let dy = vec![0.5f32; g.n * g.y_len()];
        let none = kernel::Engine::F32;
        let t_one = time(|| {
            std::hint::black_box(kernel::forward_grouped(&g, &xs, &ws, None, 1, none));
        });
        let t_grp = time(|| {
            std::hint::black_box(kernel::forward(&g, &xs, &ws, None));
        });
        let tb_one = time(|| {
            std::hint::black_box(kernel::backward_grouped(&g, &xs, &ws, &dy, ALL, 1, none));
        });
        let tb_grp = time(|| {
            std::hint::black_box(kernel::backward(&g, &xs, &ws, &dy, ALL));
        });
        let gf = |t: f64, m: f64| format!("{:.0} ({:.1} ms)", m * flops / t / 1e9, t * 1e3);
        let bf16 = |f: &dyn Fn(), m: f64| match bf16_supported() {
            true => gf(time(|| scope(Precision::Bf16, f)), m),
            false => "no AVX512-BF16".to_string(),
        };
        let fwd16 = bf16(
            &|| drop(std::hint::black_box(kernel::forward(&g, &xs, &ws, None))),
            1.0,
        );
        let bwd16 = bf16(
            &|| {
                drop(std::hint::black_box(kernel::backward(
                    &g, &xs, &ws, &dy, ALL,
                )))
            },
            2.0,
        );
        println!(
            "| {c}->{co} {h}x{h} /{s} | {} | {} | {} | {} | {} | {fwd16} | {bwd16} |",
            gf(t_flex, 1.0),
            gf(t_one, 1.0),
            gf(t_grp, 1.0),
            gf(tb_one, 2.0),
            gf(tb_grp, 2.0)
        );
    }
}

/// Winograd against im2col, A B A B, on the U-Nets' 3x3 convolutions at batch `b`.
fn winograd_vs_im2col(b: usize) {
    println!("batch {b}; ms, im2col -> winograd, two rounds each");
    println!("| shape | forward | input gradient | weight gradient |");
    println!("|---|---|---|---|");
    let shapes = [
        (128, 128, 32),
        (256, 256, 16),
        (256, 256, 8),
        (512, 256, 8),
        (256, 256, 4),
        (64, 64, 28),
        (32, 32, 28),
        (64, 64, 14),
        (128, 64, 7),
        (128, 128, 7),
    ];
    for (c, co, h) in shapes {
        let g = Geom::new([b, c, h, h], [co, c, 3, 3], [1, 1], [1, 1]).expect("valid shape");
        let (x, w, dy) = (
            fill(g.n * g.x_len(), 7919),
            fill(g.co * g.k(), 104729),
            fill(g.n * g.y_len(), 31),
        );
        let engine = Engine::for_jobs(b);
        // As `kernel::backward` groups images.
        let group = 128usize.div_ceil(g.p());
        let pair = |a: &dyn Fn(), w: &dyn Fn()| {
            (0..2)
                .map(|_| format!("{:.1} -> {:.1}", time(a) * 1e3, time(w) * 1e3))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let need = |x: bool| Need {
            x,
            weight: !x,
            bias: false,
        };
        let bb = |n: Need| kernel::backward_grouped(&g, &x, &w, &dy, n, group, engine);
        let fwd = pair(
            &|| {
                drop(std::hint::black_box(kernel::forward_grouped(
                    &g, &x, &w, None, 1, engine,
                )))
            },
            &|| drop(std::hint::black_box(winograd::forward(&g, &x, &w, None))),
        );
        let dx = pair(&|| drop(std::hint::black_box(bb(need(true)))), &|| {
            drop(std::hint::black_box(winograd::input_gradient(&g, &w, &dy)))
        });
        let dw = pair(&|| drop(std::hint::black_box(bb(need(false)))), &|| {
            drop(std::hint::black_box(winograd::weight_gradient(&g, &x, &dy)))
        });
        println!("| {c}->{co} {h}x{h} | {fwd} | {dx} | {dw} |");
    }
}

/// One core's peak: 16 independent chains of AVX-512 f32 FMAs, and of `vdpbf16ps` (bf16 pairs
/// into f32), on CPUs that have them: what bounds the f32 and the bf16 GEMMs.
#[cfg(target_arch = "x86_64")]
fn peaks() {
    use std::arch::x86_64::*;
    if !(std::arch::is_x86_feature_detected!("avx512f") && bf16_supported()) {
        return;
    }
    const ROUNDS: usize = 50_000_000;
    #[target_feature(enable = "avx512f")]
    unsafe fn fma() -> f32 {
        let (a, b) = (_mm512_set1_ps(1.0), _mm512_set1_ps(1.0));
        let mut acc = [_mm512_setzero_ps(); 16];
        for _ in 0..std::hint::black_box(ROUNDS) {
            for x in acc.iter_mut() {
                *x = _mm512_fmadd_ps(*x, a, b);
            }
        }
        acc.iter().map(|&x| _mm512_reduce_add_ps(x)).sum()
    }
    #[target_feature(enable = "avx512f,avx512bf16")]
    unsafe fn dot() -> f32 {
        let one: __m512bh = std::mem::transmute(_mm512_set1_epi32(0x3f80_3f80));
        let mut acc = [_mm512_setzero_ps(); 16];
        for _ in 0..std::hint::black_box(ROUNDS) {
            for x in acc.iter_mut() {
                *x = _mm512_dpbf16_ps(*x, one, one);
            }
        }
        acc.iter().map(|&x| _mm512_reduce_add_ps(x)).sum()
    }
    // The best of three, so the clock has ramped up to its AVX-512 speed.
    let rate = |f: unsafe fn() -> f32, flops: f64| {
        // SAFETY: the features were detected above.
        let best = time(|| {
            std::hint::black_box(unsafe { f() });
        });
        flops * (ROUNDS * 16) as f64 / best / 1e9
    };
    println!(
        "one core's peak: f32 FMA {:.0} GFLOP/s, vdpbf16ps {:.0} GFLOP/s\n",
        rate(fma, 32.0),
        rate(dot, 64.0)
    );
}

#[cfg(not(target_arch = "x86_64"))]
fn peaks() {}

/// The U-Nets' output layers through the kernel's dispatch, f32 and bf16 scope.
fn output_layers() {
    println!("output layers: ms, best of three (f32 / bf16 scope)");
    println!("| layer | forward | backward (all three gradients) |");
    println!("|---|---|---|");
    for (b, c, co, h) in [
        (32usize, 128usize, 3usize, 32usize),
        (64, 32, 1, 28),
        (128, 64, 1, 28),
    ] {
        let g = Geom::new([b, c, h, h], [co, c, 3, 3], [1, 1], [1, 1]).expect("valid shape");
        let (x, w, bias, dy) = (
            fill(g.n * g.x_len(), 7919),
            fill(g.co * g.k(), 104729),
            fill(co, 3),
            fill(g.n * g.y_len(), 31),
        );
        let precisions: &[Precision] = if bf16_supported() {
            &[Precision::F32, Precision::Bf16]
        } else {
            &[Precision::F32]
        };
        let (mut fwd, mut bwd) = (Vec::new(), Vec::new());
        for &p in precisions {
            scope(p, || {
                let f = time(|| {
                    drop(std::hint::black_box(kernel::forward(
                        &g,
                        &x,
                        &w,
                        Some(&bias),
                    )))
                });
                let bw =
                    time(|| drop(std::hint::black_box(kernel::backward(&g, &x, &w, &dy, ALL))));
                fwd.push(format!("{:.2}", f * 1e3));
                bwd.push(format!("{:.2}", bw * 1e3));
            });
        }
        println!(
            "| {c}->{co} {h}x{h}, batch {b} | {} | {} |",
            fwd.join(" / "),
            bwd.join(" / ")
        );
    }
}
