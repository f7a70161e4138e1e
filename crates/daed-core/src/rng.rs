//! Small deterministic RNG for the CPU-side choices (timesteps, shuffles).
//!
//! Every random draw in training is derived from `(seed, step, stream)`, so the RNG state that a
//! checkpoint must store is just the seed and the step: resuming replays the same draws.

/// SplitMix64: tiny, fast, and good enough for sampling indices.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `(seed, step, stream)`.
    pub fn for_step(seed: u64, step: u64, stream: u64) -> Self {
        Rng(mix(seed, step, stream))
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
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Uniform integer in [0, n).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_f64() * n as f64) as usize % n.max(1)
    }
    /// Fisher-Yates shuffle.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i + 1);
            v.swap(i, j);
        }
    }
}

/// Mixes three words into one seed.
pub fn mix(seed: u64, step: u64, stream: u64) -> u64 {
    let mut r = Rng(seed ^ 0x5851_F42D_4C95_7F2D);
    let a = r.next_u64();
    let mut r = Rng(a ^ step.wrapping_mul(0x2545_F491_4F6C_DD1D));
    let b = r.next_u64();
    let mut r = Rng(b ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    r.next_u64()
}
