//! The conformance suite every schedule and every sampling method passes (as diffusers' shared
//! scheduler tests): register a new one in `BetaSchedule::ALL` or `Method::examples` and it runs
//! here.
use burn::tensor::{Device, Tensor, TensorData};
use daed_core::diffusion::schedule::{alphas_cumprod, space_timesteps};
use daed_core::diffusion::{BetaSchedule, GaussianDiffusion, ModelVarType, ScheduleSpec};
use daed_core::nn::EpsModel;
use daed_core::rng::Stream;
use daed_core::sample::{noise, p_sample_loop_from, Method, SampleOptions};

fn flat(x: Tensor<4>) -> Vec<f32> {
    let n: usize = x.dims().iter().product();
    daed_core::tensor_io::to_vec(x.reshape([n])).unwrap()
}

fn spec(kind: BetaSchedule, steps: usize) -> ScheduleSpec {
    ScheduleSpec {
        kind,
        steps,
        ..ScheduleSpec::default()
    }
}

#[test]
fn every_schedule_is_a_valid_forward_process() {
    for kind in BetaSchedule::ALL {
        for steps in [10, 100, 1000, 4000] {
            // A spec that does not validate (linear at T = 10 scales beta_T to 2) never runs.
            if spec(kind, steps).validate().is_err() {
                assert!(
                    kind == BetaSchedule::Linear && steps < 20,
                    "{kind:?} T={steps}"
                );
                continue;
            }
            let betas = spec(kind, steps).betas();
            assert_eq!(betas.len(), steps, "{kind:?} T={steps}");
            assert!(
                betas.iter().all(|&b| b > 0.0 && b < 1.0),
                "{kind:?} T={steps}: betas in (0, 1)"
            );
            let ab = alphas_cumprod(&betas);
            assert!(
                ab.windows(2).all(|w| w[1] < w[0]),
                "{kind:?}: alpha-bar falls"
            );
            // log-SNR falls strictly, so the switch point (paper Section 4) is well defined.
            let snr: Vec<f64> = ab.iter().map(|a| (a / (1.0 - a)).ln()).collect();
            assert!(
                snr.windows(2).all(|w| w[1] < w[0]),
                "{kind:?}: log-SNR falls"
            );
            if steps >= 100 {
                assert!(ab[steps - 1] < 0.01, "{kind:?} T={steps}: x_T is noise");
                assert!(ab[0] > 0.99, "{kind:?} T={steps}: x_1 is mostly signal");
            }
        }
    }
}

#[test]
fn every_schedule_respaces_to_the_same_alpha_bar() {
    for kind in BetaSchedule::ALL {
        let d = GaussianDiffusion::new(&spec(kind, 100), ModelVarType::FixedLarge).unwrap();
        for respacing in ["10", "ddim25", "5,3", "100"] {
            let kept = space_timesteps(100, respacing).unwrap();
            let r = d.respaced(&kept);
            assert_eq!(r.num_steps(), kept.len());
            for (i, &k) in kept.iter().enumerate() {
                let (a, b) = (r.alphas_cumprod[i], d.alphas_cumprod[k]);
                assert!((a - b).abs() < 1e-12, "{kind:?} {respacing}: step {k}");
                assert_eq!(r.timestep_map[i], k);
            }
        }
    }
}

/// The ideal model of a data distribution that is one image, `target`: it returns the exact
/// noise of x_t. Every correct sampler must then end at `target`.
struct Oracle {
    alphas_cumprod: Vec<f64>,
    target: Tensor<4>,
}

impl EpsModel for Oracle {
    fn predict(&self, x: Tensor<4>, timesteps: &[f32]) -> Tensor<4> {
        let ab = self.alphas_cumprod[timesteps[0] as usize];
        (x - self.target.clone().mul_scalar(ab.sqrt())).div_scalar((1.0 - ab).sqrt())
    }
}

fn target(device: &Device) -> Tensor<4> {
    let v: Vec<f32> = (0..2 * 16).map(|i| (i as f32 / 31.0) * 1.6 - 0.8).collect();
    let one: Tensor<4> = Tensor::from_data(TensorData::new(v, [1, 2, 4, 4]), device);
    one.repeat_dim(0, 3)
}

fn run(method: Method, kind: BetaSchedule, respacing: &str, seed: u64) -> Vec<f32> {
    let device = daed_core::device::resolve("flex").unwrap();
    let base = GaussianDiffusion::new(&spec(kind, 60), ModelVarType::FixedLarge).unwrap();
    let d = daed_core::sample::sampling_diffusion(&base, respacing).unwrap();
    let oracle = Oracle {
        alphas_cumprod: base.alphas_cumprod.clone(),
        target: target(&device),
    };
    let opts = SampleOptions {
        respacing: respacing.into(),
        method,
        clip_denoised: true,
        seed,
        class: None,
        precision: Default::default(),
        keep: None,
    };
    let start = noise(
        [3, 2, 4, 4],
        seed,
        Stream::SampleStart { chain: 0 },
        &device,
    );
    let last = d.num_steps() - 1;
    let x = p_sample_loop_from(&oracle, &d, start, last, &opts, 0, &mut |_, _| {});
    assert_eq!(x.dims(), [3, 2, 4, 4], "{method:?}: shape");
    flat(x)
}

#[test]
fn every_sampler_recovers_the_data_from_an_ideal_model() {
    let device = daed_core::device::resolve("flex").unwrap();
    let want = flat(target(&device));
    for method in Method::examples() {
        method.validate().unwrap();
        for kind in BetaSchedule::ALL {
            for respacing in ["", "12", "ddim6"] {
                let got = run(method, kind, respacing, 5);
                let err = got
                    .iter()
                    .zip(&want)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0f32, f32::max);
                assert!(
                    err < 1e-3,
                    "{method:?} {kind:?} `{respacing}`: max error {err}"
                );
            }
        }
    }
}

#[test]
fn every_sampler_is_deterministic_in_its_seed() {
    for method in Method::examples() {
        let a = run(method, BetaSchedule::Linear, "12", 9);
        assert_eq!(a, run(method, BetaSchedule::Linear, "12", 9), "{method:?}");
    }
}

#[test]
fn every_sampler_refuses_bad_settings() {
    assert!(Method::from_flags(true, f64::NAN).is_err());
    assert!(Method::from_flags(false, -1.0).is_err());
    assert!(Method::Ddim { eta: f64::INFINITY }.validate().is_err());
    for method in Method::examples() {
        assert!(!method.name().is_empty());
    }
}

/// The ideal model of Gaussian data N(0, s^2 I): E[eps | x_t] = sqrt(1 - ab) x_t / (ab s^2 + 1 - ab).
struct GaussianOracle {
    alphas_cumprod: Vec<f64>,
    s2: f64,
}

impl EpsModel for GaussianOracle {
    fn predict(&self, x: Tensor<4>, timesteps: &[f32]) -> Tensor<4> {
        let ab = self.alphas_cumprod[timesteps[0] as usize];
        x.mul_scalar((1.0 - ab).sqrt() / (ab * self.s2 + 1.0 - ab))
    }
}

/// Every sampler, driven by the ideal model of Gaussian data with standard deviation 0.5, draws
/// samples with that spread (the reverse process as a whole, not only its last step).
#[test]
fn every_sampler_draws_the_data_distribution_from_an_ideal_model() {
    let device = daed_core::device::resolve("flex").unwrap();
    let s = 0.5;
    for method in Method::examples() {
        for kind in BetaSchedule::ALL {
            let d = GaussianDiffusion::new(&spec(kind, 200), ModelVarType::FixedSmall).unwrap();
            let oracle = GaussianOracle {
                alphas_cumprod: d.alphas_cumprod.clone(),
                s2: s * s,
            };
            let opts = SampleOptions {
                respacing: String::new(),
                method,
                clip_denoised: false,
                seed: 2,
                class: None,
                precision: Default::default(),
                keep: None,
            };
            let shape = [8, 1, 16, 16];
            let start = noise(shape, 2, Stream::SampleStart { chain: 0 }, &device);
            let x = p_sample_loop_from(&oracle, &d, start, 199, &opts, 0, &mut |_, _| {});
            let v = flat(x);
            let n = v.len() as f64;
            let mean = v.iter().map(|&a| a as f64).sum::<f64>() / n;
            let sd = (v.iter().map(|&a| (a as f64 - mean).powi(2)).sum::<f64>() / n).sqrt();
            println!("{method:?} {kind:?}: mean {mean:.4}, sd {sd:.4} (want 0, {s})");
            assert!(mean.abs() < 0.05, "{method:?} {kind:?}: mean {mean}");
            assert!((sd - s).abs() < 0.05, "{method:?} {kind:?}: sd {sd}");
        }
    }
}
