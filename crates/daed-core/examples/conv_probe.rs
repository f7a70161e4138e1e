//! Probe: flex conv2d vs the same 3x3 conv as one matmul (GFLOP/s), forward only.
use std::time::Instant;

use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Distribution, Tensor};

fn time<F: FnMut() -> f32>(mut f: F) -> f64 {
    f();
    let mut best = f64::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        std::hint::black_box(f());
        best = best.min(t.elapsed().as_secs_f64());
    }
    best
}

fn main() {
    let d = Device::default();
    for (b, c, h) in [
        (16usize, 128usize, 32usize),
        (16, 256, 16),
        (16, 256, 8),
        (128, 64, 28),
    ] {
        let x = Tensor::<4>::random([b, c, h, h], Distribution::Normal(0.0, 1.0), &d);
        let w = Tensor::<4>::random([c, c, 3, 3], Distribution::Normal(0.0, 0.1), &d);
        let flops = 2.0 * (b * h * h) as f64 * (9 * c) as f64 * c as f64;
        let tc = time(|| {
            conv2d(
                x.clone(),
                w.clone(),
                None,
                ConvOptions::new([1, 1], [1, 1], [1, 1], 1),
            )
            .slice([0..1, 0..1, 0..1, 0..1])
            .into_scalar::<f32>()
        });
        let a = Tensor::<2>::random([b * h * h, 9 * c], Distribution::Normal(0.0, 1.0), &d);
        let wm = Tensor::<2>::random([9 * c, c], Distribution::Normal(0.0, 1.0), &d);
        let tm = time(|| {
            a.clone()
                .matmul(wm.clone())
                .slice([0..1, 0..1])
                .into_scalar::<f32>()
        });
        // im2col by 9 shifted slices of the padded input, then one matmul.
        let ti = time(|| {
            let xp = x
                .clone()
                .pad((1, 1, 1, 1), burn::tensor::ops::PadMode::Constant(0.0));
            let mut parts = Vec::new();
            for dy in 0..3 {
                for dx in 0..3 {
                    parts.push(xp.clone().slice([0..b, 0..c, dy..dy + h, dx..dx + h]));
                }
            }
            let col = Tensor::cat(parts, 1)
                .permute([0, 2, 3, 1])
                .reshape([b * h * h, 9 * c]);
            col.matmul(wm.clone())
                .slice([0..1, 0..1])
                .into_scalar::<f32>()
        });
        println!(
            "B{b} C{c} {h}x{h}: conv2d {:.1} ms ({:.0} GFLOP/s) | matmul alone {:.1} ms ({:.0} GFLOP/s) | slices+cat+matmul {:.1} ms",
            tc * 1e3, flops / tc / 1e9, tm * 1e3, flops / tm / 1e9, ti * 1e3
        );
    }
}
