//! Sampling: the loops over all or respaced steps, and the [`Sampler`] interface with one file
//! per method ([`ancestral`], [`ddim`]).
use burn::tensor::{Device, Distribution, Tensor};

pub mod ancestral;
pub mod ddim;
pub mod keep;

pub use ancestral::Ancestral;
pub use ddim::Ddim;
pub use keep::KeptBatches;

use crate::diffusion::process::PMeanVar;
use crate::diffusion::schedule::space_timesteps;
use crate::diffusion::GaussianDiffusion;
use crate::nn::EpsModel;
use crate::rng::Stream;
use crate::Result;

/// One backward update x_t -> x_{t-1}, given the model's prediction at step index `t`: the
/// interface every sampling method implements (one file each in this module).
pub trait Sampler {
    /// The update; `z` is standard normal noise for this step (zeros at t = 0).
    fn step(
        &self,
        d: &GaussianDiffusion,
        x: Tensor<4>,
        t: usize,
        pm: PMeanVar,
        z: Tensor<4>,
    ) -> Tensor<4>;
}

/// The sampling methods, with their settings. Adding one: a file with its [`Sampler`], a variant
/// here, an arm in `Method`'s own `Sampler::step` and one in [`Method::examples`] (the
/// conformance suite then runs it).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Method {
    /// Ancestral DDPM: the posterior mean plus the model's variance.
    Ancestral,
    /// DDIM with its eta (0: deterministic).
    Ddim {
        /// The amount of fresh noise (0 to 1 usually).
        eta: f64,
    },
}

/// A method is the sampler it names (dispatched without allocating: this runs every step).
impl Sampler for Method {
    fn step(
        &self,
        d: &GaussianDiffusion,
        x: Tensor<4>,
        t: usize,
        pm: PMeanVar,
        z: Tensor<4>,
    ) -> Tensor<4> {
        match *self {
            Method::Ancestral => Ancestral.step(d, x, t, pm, z),
            Method::Ddim { eta } => Ddim { eta }.step(d, x, t, pm, z),
        }
    }
}

impl Method {
    /// One instance of each method (and setting) that the conformance suite runs.
    pub fn examples() -> Vec<Method> {
        vec![
            Method::Ancestral,
            Method::Ddim { eta: 0.0 },
            Method::Ddim { eta: 1.0 },
        ]
    }

    /// Its name in file names and messages.
    pub fn name(self) -> &'static str {
        match self {
            Method::Ancestral => "ancestral",
            Method::Ddim { .. } => "ddim",
        }
    }

    /// Checks the settings a user can give: eta finite and non-negative.
    pub fn validate(self) -> Result<()> {
        match self {
            Method::Ddim { eta } => {
                crate::config::non_negative("eta", eta).map_err(crate::Error::Invalid)
            }
            Method::Ancestral => Ok(()),
        }
    }

    /// DDIM with `eta` when `ddim`, else ancestral; eta is checked either way.
    pub fn from_flags(ddim: bool, eta: f64) -> Result<Self> {
        Method::Ddim { eta }.validate()?;
        Ok(if ddim {
            Method::Ddim { eta }
        } else {
            Method::Ancestral
        })
    }
}

/// How to sample.
#[derive(Clone, Debug)]
pub struct SampleOptions {
    /// Respacing spec ("" = every step).
    pub respacing: String,
    /// The update.
    pub method: Method,
    /// Clip x0 estimates to [-1, 1].
    pub clip_denoised: bool,
    /// Seed of all noise.
    pub seed: u64,
    /// The class of every image, for a class-conditional model (None: unconditional).
    pub class: Option<usize>,
    /// Arithmetic of the network passes (resolved against the device when sampling starts).
    pub precision: crate::precision::PrecisionChoice,
    /// Where finished batches are kept so that a stopped run continues (None: nowhere); it
    /// does not change the images.
    pub keep: Option<KeptBatches>,
}

impl SampleOptions {
    /// The options a config's `[sample]` section describes (eta checked).
    pub fn from_config(s: &crate::config::SampleConfig) -> Result<Self> {
        Ok(Self {
            respacing: s.respacing.clone(),
            method: Method::from_flags(s.ddim, s.eta)?,
            clip_denoised: s.clip_denoised,
            seed: s.seed,
            class: None,
            precision: s.precision,
            keep: None,
        })
    }

    /// The options of a command line: `steps` sampling steps (`None`: every step; with DDIM,
    /// evenly strided `ddimN`), ancestral or DDIM with `eta`, x0 clipped.
    pub fn from_flags(steps: Option<usize>, ddim: bool, eta: f64, seed: u64) -> Result<Self> {
        let respacing = match steps {
            Some(s) if ddim => format!("ddim{s}"),
            Some(s) => s.to_string(),
            None => String::new(),
        };
        Ok(Self {
            respacing,
            method: Method::from_flags(ddim, eta)?,
            clip_denoised: true,
            seed,
            class: None,
            precision: Default::default(),
            keep: None,
        })
    }

    /// The file name stem of `n` images drawn with these options from the EMA weights (`ema`) or
    /// the raw ones, as `daed sample` names them: `n{N}_{method}{steps}[_eta{E}]_seed{S}`, then `_class{K}`,
    /// `_bf16` and `_raw` where they apply (e.g. `n5000_ddim50_seed0`).
    pub fn file_tag(&self, n: usize, ema: bool) -> String {
        let steps = self
            .respacing
            .strip_prefix("ddim")
            .unwrap_or(&self.respacing);
        let eta = match self.method {
            Method::Ddim { eta } if eta != 0.0 => format!("_eta{eta}"),
            _ => String::new(),
        };
        format!(
            "n{n}_{}{steps}{eta}_seed{}{}{}{}",
            self.method.name(),
            self.seed,
            self.class.map(|c| format!("_class{c}")).unwrap_or_default(),
            match self.precision {
                crate::precision::PrecisionChoice::F32 => "",
                crate::precision::PrecisionChoice::Bf16 => "_bf16",
            },
            if ema { "" } else { "_raw" }
        )
    }

    /// Checks the values a user can set.
    pub fn validate(&self) -> Result<()> {
        self.method.validate()
    }

    /// Ancestral sampling over every step, x0 clipped: what the analyses use.
    pub fn ancestral(seed: u64) -> Self {
        Self {
            respacing: String::new(),
            method: Method::Ancestral,
            clip_denoised: true,
            seed,
            class: None,
            precision: Default::default(),
            keep: None,
        }
    }

    /// Checks the class against a model with `num_classes` classes (None: unconditional): a
    /// class-conditional model needs one below the count, an unconditional one none.
    pub fn check_class(&self, num_classes: Option<usize>) -> Result<()> {
        let bad = |m: String| Err(crate::Error::Invalid(m));
        match (num_classes, self.class) {
            (None, None) => Ok(()),
            (Some(n), None) => bad(format!(
                "the model is class-conditional ({n} classes): give the class to sample (--class K)"
            )),
            (None, Some(_)) => {
                bad("--class was given but the model is not class-conditional".into())
            }
            (Some(n), Some(c)) if c >= n => bad(format!(
                "--class {c} is out of range: the model has classes 0..{}",
                n - 1
            )),
            _ => Ok(()),
        }
    }
}

/// The (possibly respaced) process used for sampling.
pub fn sampling_diffusion(base: &GaussianDiffusion, respacing: &str) -> Result<GaussianDiffusion> {
    if respacing.trim().is_empty() {
        return Ok(base.clone());
    }
    let kept = space_timesteps(base.num_steps(), respacing)?;
    Ok(base.respaced(&kept))
}

/// Seeding the device's generator and drawing from it are one step for [`noise`]: burn's
/// generator is global, so two threads drawing at once would otherwise swap each other's seeds.
static DRAW: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Standard normal noise of `shape` from a named stream of `seed` (the same bits whatever other
/// threads draw meanwhile).
pub fn noise(shape: [usize; 4], seed: u64, stream: Stream, device: &Device) -> Tensor<4> {
    let _one_at_a_time = DRAW.lock().unwrap_or_else(|e| e.into_inner());
    device.seed(stream.seed(seed));
    Tensor::random(shape, Distribution::Normal(0.0, 1.0), device)
}

/// One backward step from step index `t` (same for the whole batch) with the options' method.
pub fn p_step(
    model: &dyn EpsModel,
    d: &GaussianDiffusion,
    x: Tensor<4>,
    t: usize,
    opts: &SampleOptions,
    z: Tensor<4>,
) -> Tensor<4> {
    let b = x.dims()[0];
    let ts = vec![t; b];
    let tt = d.model_timesteps_f32(&ts);
    let out = model.predict(x.clone(), &tt);
    let pm = d.p_mean_variance(out, x.clone(), &ts, opts.clip_denoised);
    opts.method.step(d, x, t, pm, z)
}

/// Runs the backward process from `x` at step index `from` (inclusive) down to x0.
/// `batch_id` keys the noise so separate batches get separate noise.
pub fn p_sample_loop_from(
    model: &dyn EpsModel,
    d: &GaussianDiffusion,
    mut x: Tensor<4>,
    from: usize,
    opts: &SampleOptions,
    batch_id: u64,
    progress: &mut dyn FnMut(usize, usize),
) -> Tensor<4> {
    let shape = x.dims();
    let dev = x.device();
    let total = from + 1;
    for (k, t) in (0..=from).rev().enumerate() {
        let z = if t > 0 {
            noise(
                shape,
                opts.seed,
                Stream::SampleStep {
                    chain: batch_id,
                    t: t as u64,
                },
                &dev,
            )
        } else {
            x.zeros_like()
        };
        x = p_step(model, d, x, t, opts, z);
        progress(k + 1, total);
    }
    x
}

/// A sampling run over one batch: (noise, batch id, progress) -> images.
pub type BatchRun<'a> = dyn FnMut(Tensor<4>, u64, &mut dyn FnMut(usize, usize)) -> Tensor<4> + 'a;

/// What [`batched`] draws: `n` images of `shape` [C, H, W] in batches of `batch`, each over
/// `steps` steps with noise of `seed`; finished batches go to `keep` when given, and batches
/// already there are taken from it instead of drawn again.
pub struct BatchPlan<'a> {
    /// Image shape [C, H, W].
    pub shape: [usize; 3],
    /// Number of images.
    pub n: usize,
    /// Images per batch.
    pub batch: usize,
    /// Seed of the noise.
    pub seed: u64,
    /// Steps per batch (for the progress).
    pub steps: usize,
    /// Where finished batches are kept.
    pub keep: Option<&'a KeptBatches>,
}

/// Runs `run(noise, batch_id, progress)` over batches of pure noise and collects the images.
pub fn batched(
    plan: &BatchPlan,
    device: &Device,
    progress: &mut dyn FnMut(usize, usize),
    run: &mut BatchRun,
) -> Result<Vec<f32>> {
    let (shape, n, batch, steps) = (plan.shape, plan.n, plan.batch, plan.steps);
    if n == 0 || batch == 0 {
        return Err(crate::Error::Invalid(
            "the number of images and the batch size must be at least 1".into(),
        ));
    }
    let nb = n.div_ceil(batch);
    let per: usize = shape.iter().product();
    let total = n.checked_mul(per).ok_or_else(|| {
        crate::Error::Invalid(format!("{n} images of {per} values cannot be counted"))
    })?;
    let mut out = Vec::new();
    out.try_reserve_exact(total).map_err(|_| {
        crate::Error::Invalid(format!(
            "cannot allocate {n} images ({:.1} GiB): ask for fewer",
            total as f64 * 4.0 / (1u64 << 30) as f64
        ))
    })?;
    let _lock = plan.keep.map(|k| k.lock()).transpose()?;
    if let Some(k) = plan.keep {
        k.open()?;
    }
    for bi in 0..nb {
        let b = batch.min(n - bi * batch);
        let done = bi * steps;
        if let Some(imgs) = plan
            .keep
            .map(|k| k.load(bi, b * per))
            .transpose()?
            .flatten()
        {
            out.extend(imgs);
            progress(done + steps, nb * steps);
            continue;
        }
        let started = std::time::Instant::now();
        let x = noise(
            [b, shape[0], shape[1], shape[2]],
            plan.seed,
            Stream::SampleStart { chain: bi as u64 },
            device,
        );
        let x = run(x, bi as u64, &mut |k, _| progress(done + k, nb * steps));
        let imgs = crate::tensor_io::to_vec(x.reshape([b * per]))?;
        if let Some(i) = imgs.iter().position(|v| !v.is_finite()) {
            return Err(crate::Error::Invalid(format!(
                "sampling produced a non-finite value (image {} of batch {bi}): the weights or \
                 the sampling options are broken; nothing was written",
                i / per
            )));
        }
        if let Some(k) = plan.keep {
            k.keep(bi, &imgs, started.elapsed().as_secs_f64())?;
        }
        out.extend(imgs);
    }
    Ok(out)
}
