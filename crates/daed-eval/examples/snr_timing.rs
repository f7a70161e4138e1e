//! Times `image_powers` + `snr_curve` on the full Fashion-MNIST train set (and CIFAR-10 when it is
//! found) under DDPM's linear and the cosine schedules (T = 1000), prints the summaries and, with an
//! output directory argument, writes `snr.csv`, `snr.png` and `summary.json` there.
//!
//! `cargo run -p daed-eval --release --example snr_timing [OUT_DIR]` (from the workspace root, so that
//! the data is found in `../shared/data`).

use daed_eval::snr::{image_powers, snr_curve, write_snr_outputs};
use daed_io::datasets::{load, DatasetName, DatasetSpec};
use std::time::Instant;

fn linear(t: usize) -> Vec<f64> {
    let mut acc = 1.0;
    (0..t)
        .map(|i| {
            acc *= 1.0 - (1e-4 + (0.02 - 1e-4) * i as f64 / (t - 1) as f64);
            acc
        })
        .collect()
}

fn cosine(t: usize) -> Vec<f64> {
    let f = |s: f64| {
        ((s / t as f64 + 0.008) / 1.008 * std::f64::consts::FRAC_PI_2)
            .cos()
            .powi(2)
    };
    let mut acc = 1.0;
    (1..=t)
        .map(|i| {
            let beta = (1.0 - f(i as f64) / f(i as f64 - 1.0)).min(0.999);
            acc *= 1.0 - beta;
            acc
        })
        .collect()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::env::args().nth(1);
    let mut curves = Vec::new();
    for name in [DatasetName::FashionMnist, DatasetName::Cifar10] {
        let t0 = Instant::now();
        let set = match load(&DatasetSpec::new(name)) {
            Ok(s) => s,
            Err(e) if name != DatasetName::FashionMnist => {
                eprintln!("skipping {name:?}: {e}");
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let load_s = t0.elapsed().as_secs_f64();
        let t1 = Instant::now();
        let powers = image_powers(&set);
        let pow_s = t1.elapsed().as_secs_f64();
        for (sched, abar) in [("linear", linear(1000)), ("cosine", cosine(1000))] {
            let t2 = Instant::now();
            let c = snr_curve(format!("{} {sched}", name.as_str()), &powers, &abar)?;
            let curve_s = t2.elapsed().as_secs_f64();
            println!(
                "{}: {} images {}x{}x{}, load {load_s:.3}s, image_powers {:.1} ms, snr_curve {:.3} ms; {:?}",
                c.label,
                set.len(),
                set.channels,
                set.height,
                set.width,
                pow_s * 1e3,
                curve_s * 1e3,
                c.summary()
            );
            curves.push(c);
        }
    }
    if let Some(dir) = out {
        write_snr_outputs(std::path::Path::new(&dir), &curves)?;
        println!("wrote {dir}/snr.csv, snr.png, summary.json");
    }
    Ok(())
}
