//! Probe: one AdamW update and one EMA update of `n` parameters (default 52.5M, the CIFAR-10
//! U-Net's) as daed's fused passes against the same tensor operations on flex; milliseconds,
//! best of three after a warm-up, two alternating rounds.
//!
//! `cargo run --release -p daed-kernels --example optim_probe [n]`
use burn::tensor::{Device, Distribution, Tensor};
use daed_kernels::optim::{adamw, ema, AdamStep};

mod common;

/// Best of three timed runs after one warm-up, in milliseconds.
fn best<F: FnMut()>(f: F) -> f64 {
    common::best_of_three(f) * 1e3
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(52_542_979);
    let dev = Device::flex();
    let r = |s: f64| Tensor::<1>::random([n], Distribution::Normal(0.0, s), &dev);
    let (p, g, m, v) = (r(0.1), r(0.01), r(0.01), r(1e-4).abs());
    let s = AdamStep {
        clip: 1.0,
        beta1: 0.9,
        beta2: 0.999,
        bc2: 1.0 - 0.999f64.powi(10),
        eps: 1e-8,
        decay: None,
        step_size: 1e-4 / (1.0 - 0.9f64.powi(10)),
    };
    let ops = || {
        let m2 = m.clone().mul_scalar(s.beta1) + g.clone().mul_scalar(1.0 - s.beta1);
        let v2 = v.clone().mul_scalar(s.beta2) + g.clone().square().mul_scalar(1.0 - s.beta2);
        let denom = v2.clone().div_scalar(s.bc2).sqrt().add_scalar(s.eps);
        let p2 = p.clone() - (m2.clone() / denom).mul_scalar(s.step_size);
        std::hint::black_box((p2, m2, v2));
    };
    let fused = || {
        let out = adamw(p.clone(), g.clone(), Some((m.clone(), v.clone())), &s);
        std::hint::black_box(out);
    };
    let ema_ops = || {
        std::hint::black_box(p.clone() + (g.clone() - p.clone()).mul_scalar(1.0 - 0.9999));
    };
    let ema_fused = || {
        std::hint::black_box(ema(p.clone(), g.clone(), 0.9999));
    };
    println!(
        "{n} parameters, {} rayon threads; ms",
        rayon::current_num_threads()
    );
    println!("| round | AdamW: tensor ops -> fused | EMA: tensor ops -> fused |");
    println!("|---|---|---|");
    for round in 1..=2 {
        let (a, b) = (best(ops), best(fused));
        let (c, d) = (best(ema_ops), best(ema_fused));
        println!("| {round} | {a:.0} -> {b:.0} | {c:.0} -> {d:.0} |");
    }
}
