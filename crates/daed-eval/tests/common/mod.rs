//! Test helpers: a small deterministic PRNG (splitmix64) with uniform and Gaussian draws.

#![allow(dead_code)]

/// splitmix64 generator.
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.uniform().max(1e-300);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    /// `n` values uniform in [-1, 1].
    pub fn image(&mut self, n: usize) -> Vec<f32> {
        (0..n)
            .map(|_| (self.uniform() * 2.0 - 1.0) as f32)
            .collect()
    }

    /// A smooth-ish `c x h x w` image in [-1, 1]: sums of random low-frequency sinusoids.
    pub fn smooth_image(&mut self, c: usize, h: usize, w: usize) -> Vec<f32> {
        let mut out = vec![0f32; c * h * w];
        for ch in 0..c {
            let terms: Vec<(f64, f64, f64)> = (0..4)
                .map(|_| {
                    (
                        self.uniform() * 0.6,
                        self.uniform() * 0.6,
                        self.uniform() * 6.0,
                    )
                })
                .collect();
            for i in 0..h {
                for j in 0..w {
                    let v: f64 = terms
                        .iter()
                        .map(|(fy, fx, ph)| (fy * i as f64 + fx * j as f64 + ph).sin())
                        .sum::<f64>()
                        / 4.0;
                    out[ch * h * w + i * w + j] = v as f32;
                }
            }
        }
        out
    }

    /// `x` plus `sigma` times the fixed noise `noise` (same length).
    pub fn add(x: &[f32], noise: &[f64], sigma: f64) -> Vec<f32> {
        x.iter()
            .zip(noise)
            .map(|(v, n)| (*v as f64 + sigma * n) as f32)
            .collect()
    }
}

/// A fresh, empty temporary directory for one test.
pub fn temp_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("daed-eval-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("create temp dir");
    d
}
