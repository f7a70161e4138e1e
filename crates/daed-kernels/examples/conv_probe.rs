//! Probe: GFLOP/s of burn-flex's conv2d and of daed's kernel (one GEMM per image, or grouped
//! images per GEMM; and in bf16 on CPUs with AVX512-BF16), forward and backward, on the CIFAR-10
//! / Fashion-MNIST U-Net conv shapes, the CPU recipe's (configs/fashion_mnist_cpu.toml) and the
//! FID Inception's stem.
//!
//! `cargo run --release -p daed-kernels --example conv_probe [batch]`
use std::time::Instant;

use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Distribution, Tensor};
use daed_kernels::conv::kernel::{self, Geom, Need};
use daed_kernels::precision::{bf16_supported, scope, Precision};

/// Best of three timed runs after one warm-up, in seconds.
fn time<F: FnMut()>(mut f: F) -> f64 {
    f();
    (0..3)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::MAX, f64::min)
}

fn main() {
    let b: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(16);
    let d = Device::flex();
    let all = Need {
        x: true,
        weight: true,
        bias: true,
    };
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
            std::hint::black_box(kernel::backward_grouped(&g, &xs, &ws, &dy, all, 1, none));
        });
        let tb_grp = time(|| {
            std::hint::black_box(kernel::backward(&g, &xs, &ws, &dy, all));
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
                    &g, &xs, &ws, &dy, all,
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
        let best = (0..3)
            .map(|_| {
                let t = Instant::now();
                // SAFETY: the features were detected above.
                std::hint::black_box(unsafe { f() });
                t.elapsed().as_secs_f64()
            })
            .fold(f64::MAX, f64::min);
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
