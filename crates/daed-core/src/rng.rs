//! Small deterministic RNG for the CPU-side choices (timesteps, shuffles).
//!
//! Every random draw in training is derived from `(seed, step, stream)`, so the RNG state that a
//! checkpoint must store is just the seed and the step: resuming replays the same draws.

/// Every random stream daed draws from, named in one place. A stream is two keys mixed with the
/// seed ([`mix`]); the keys are fixed forever (changing one changes every run's bits). Streams of
/// different jobs may share keys: they are drawn by different generators or never in one run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// The data order of training epoch `epoch` (CPU generator).
    Shuffle {
        /// The epoch.
        epoch: u64,
    },
    /// The diffusion steps drawn for training step `step` (CPU generator).
    Timesteps {
        /// The optimiser step.
        step: u64,
    },
    /// The noise eps of training step `step` (device generator).
    TrainNoise {
        /// The optimiser step.
        step: u64,
    },
    /// The dropout mask of sample `sample` (its position in the batch) in dropout layer `layer`
    /// (counted from 0 in forward order; DAED numbers each network's from its own base) at training step `step` (CPU generator).
    Dropout {
        /// The optimiser step.
        step: u64,
        /// The sample's position in the whole batch.
        sample: u64,
        /// The layer.
        layer: u64,
    },
    /// The fixed noise of the training-dynamics probe at diffusion step `t` (1-based).
    DynamicsNoise {
        /// The diffusion step.
        t: u64,
    },
    /// The pure noise x_T that sampling batch `chain` starts from.
    SampleStart {
        /// The batch (see [`RECON_CHAINS`], [`TRANSFER_CHAINS`]).
        chain: u64,
    },
    /// The noise z added at step index `t` of sampling batch `chain`.
    SampleStep {
        /// The batch.
        chain: u64,
        /// The step index (0-based).
        t: u64,
    },
    /// The forward noise of analysis batch `batch` at step index `t` (0 for the analyses that
    /// noise once).
    AnalysisNoise {
        /// The batch of images.
        batch: u64,
        /// The step index.
        t: u64,
    },
    /// The noise `daed eval --sample-noise` adds (CPU generator).
    EvalNoise,
    /// The synthetic images of `daed bench` (CPU generator).
    BenchImages,
}

/// Sampling chains of the reconstruction analysis are numbered from here.
pub const RECON_CHAINS: u64 = 1000;
/// Sampling chains of the transfer analysis are numbered from here.
pub const TRANSFER_CHAINS: u64 = 500;

impl Stream {
    /// The two keys mixed with the seed.
    pub fn key(self) -> (u64, u64) {
        match self {
            Stream::Shuffle { epoch } => (epoch, 7),
            Stream::Timesteps { step } => (step, 0),
            Stream::TrainNoise { step } => (step, 2),
            Stream::DynamicsNoise { t } => (u64::MAX - 1, t),
            // Above 2^40, apart from every other stream's small second key; one key per
            // (sample, layer) for batches under 2^24 and networks under 2^16 dropout layers.
            Stream::Dropout {
                step,
                sample,
                layer,
            } => (step, (1 << 40) | (sample << 16) | (layer & 0xFFFF)),
            Stream::SampleStart { chain } => (chain, 0),
            Stream::SampleStep { chain, t } => (chain, 1 + t),
            Stream::AnalysisNoise { batch, t } => (batch, t),
            Stream::EvalNoise => (0, 0x004E_4F49_5345),
            Stream::BenchImages => (0, 99),
        }
    }

    /// The seed of this stream for `seed`.
    pub fn seed(self, seed: u64) -> u64 {
        let (a, b) = self.key();
        mix(seed, a, b)
    }
}

/// SplitMix64: tiny, fast, and good enough for sampling indices.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `(seed, step, stream)`.
    pub fn for_step(seed: u64, step: u64, stream: u64) -> Self {
        Rng(mix(seed, step, stream))
    }
    /// The generator of a named stream.
    pub fn stream(seed: u64, stream: Stream) -> Self {
        Rng(stream.seed(seed))
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
