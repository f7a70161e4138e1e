//! The analyses with an oracle model (returns the true noise) and a tiny random U-Net.
use burn::tensor::{Device, Tensor, TensorData};
use daed_core::analysis::losses::loss_breakdown;
use daed_core::analysis::recon::{reconstruction_curve, step_grid};
use daed_core::diffusion::{BetaSchedule, GaussianDiffusion, ModelVarType, ScheduleSpec};
use daed_core::nn::{EpsModel, UNet, UNetConfig};
use daed_io::datasets::load_demo;

/// Knows x0, so it returns the exact noise of x_t.
struct Oracle {
    x0: Tensor<4>,
    ab: Vec<f64>,
}

impl EpsModel for Oracle {
    fn predict(&self, x: Tensor<4>, t: &[f32]) -> Tensor<4> {
        let ab = self.ab[t[0] as usize];
        (x - self.x0.clone().mul_scalar(ab.sqrt())).div_scalar((1.0 - ab).sqrt())
    }
}

/// Predicts no noise at all: the reconstruction is poor at large t.
struct Zero;
impl EpsModel for Zero {
    fn predict(&self, x: Tensor<4>, _: &[f32]) -> Tensor<4> {
        x.zeros_like()
    }
}

fn setup(var: ModelVarType) -> (GaussianDiffusion, daed_io::images::ImageSet, Tensor<4>) {
    let spec = ScheduleSpec {
        kind: BetaSchedule::Linear,
        steps: 100,
        ..Default::default()
    };
    let d = GaussianDiffusion::new(&spec, var).unwrap();
    let set = load_demo().unwrap().take(8);
    let x0 = Tensor::from_data(
        TensorData::new(set.to_f32(&(0..8).collect::<Vec<_>>()), [8, 1, 28, 28]),
        &Device::default(),
    );
    (d, set, x0)
}

#[test]
fn oracle_reconstruction_is_near_perfect_and_a_bad_model_is_not() {
    let (d, set, x0) = setup(ModelVarType::FixedLarge);
    let dev = Device::default();
    let oracle = Oracle {
        x0,
        ab: d.alphas_cumprod.clone(),
    };
    let steps = step_grid(100, 0.5, 3).unwrap();
    assert_eq!(steps, vec![17, 33, 50]);
    let pts = reconstruction_curve(
        &oracle,
        &d,
        &set,
        "demo",
        &steps,
        8,
        0,
        &dev,
        &mut |_, _| {},
    )
    .unwrap();
    for p in &pts {
        assert!(p.mae_mean < 1e-3 && p.msssim_mean > 0.999, "{p:?}");
    }
    let bad =
        reconstruction_curve(&Zero, &d, &set, "demo", &[50], 8, 0, &dev, &mut |_, _| {}).unwrap();
    assert!(bad[0].mae_mean > 0.05, "{:?}", bad[0]);
}

#[test]
fn loss_breakdown_shares_end_at_one_and_the_oracle_has_zero_mse() {
    // Fixed-small variance equals the posterior's, so the oracle's KL terms vanish.
    let (d, set, x0) = setup(ModelVarType::FixedSmall);
    let dev = Device::default();
    let oracle = Oracle {
        x0,
        ab: d.alphas_cumprod.clone(),
    };
    let br = loss_breakdown(&oracle, &d, &set, 8, 0, &dev, &mut |_, _| {}).unwrap();
    assert_eq!(br.steps.len(), 100);
    let share = br.cumulative_share();
    assert!((share[99] - 1.0).abs() < 1e-12);
    assert!(share.windows(2).all(|w| w[1] >= w[0]));
    assert!(
        br.steps.iter().all(|s| s.eps_mse < 1e-6 && s.x0_mse < 1e-6),
        "{:?}",
        &br.steps[..3]
    );
    // The oracle's KL terms vanish; what is left is the decoder term and the prior.
    assert!(
        br.steps[1..].iter().all(|s| s.vlb_bpd.abs() < 1e-3),
        "{:?}",
        &br.steps[1..4]
    );

    // A random tiny U-Net: shares still end at 1.
    let cfg = UNetConfig {
        model_channels: 8,
        channel_mult: vec![1, 2],
        num_res_blocks: 1,
        attention_resolutions: vec![],
        num_heads: 1,
        ..Default::default()
    };
    let net = UNet::new(&cfg, 1, 28, 1, &dev).unwrap();
    let spec = ScheduleSpec {
        kind: BetaSchedule::Cosine,
        steps: 10,
        ..Default::default()
    };
    let d = GaussianDiffusion::new(&spec, ModelVarType::FixedSmall).unwrap();
    let br = loss_breakdown(&net, &d, &set.take(4), 4, 0, &dev, &mut |_, _| {}).unwrap();
    assert!((br.cumulative_share()[9] - 1.0).abs() < 1e-12);
    assert!(br.total_bpd() > 0.0);
}

#[test]
fn bad_ranges_are_errors() {
    assert!(step_grid(100, 1.5, 3)
        .unwrap_err()
        .to_string()
        .contains("--until"));
    assert!(step_grid(100, 0.2, 0)
        .unwrap_err()
        .to_string()
        .contains("--points"));
}
