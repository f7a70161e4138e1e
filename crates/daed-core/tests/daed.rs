//! DAED: joint training, sampling, two-stage composition and the compatibility checks.
mod common;

use burn::tensor::{Device, Tensor, TensorData};
use daed_core::config::{ExperimentConfig, ModelKind};
use daed_core::daed::{DaedMode, DaedNets};
use daed_core::diffusion::step_sampler::StepSamplerKind;
use daed_core::model::{Generate, Objective};
use daed_core::nn::UNet;
use daed_core::sample::{noise, Method, SampleOptions};
use daed_core::tensor_io::{module_arrays, to_vec};
use daed_core::train::trainer::load_data;
use daed_core::train::{Checkpoint, Trainer};

fn daed_config(dir: &std::path::Path) -> ExperimentConfig {
    let mut c = common::tiny_config(dir);
    c.model = ModelKind::Daed;
    c.daed.beta1 = 0.1;
    c.diffusion.step_sampler = StepSamplerKind::DaeUniform;
    c
}

/// Mean loss of the DAE (all samples at the DAE's step) and of the generator (steps > 0).
fn split_losses(t: &Trainer<DaedNets>, cfg: &ExperimentConfig, x0: &Tensor<4>) -> (f64, f64) {
    let b = x0.dims()[0];
    let dev = x0.device();
    let eps = noise(
        [b, 1, 28, 28],
        99,
        daed_core::rng::Stream::AnalysisNoise { batch: 0, t: 0 },
        &dev,
    );
    let mean = |ts: Vec<usize>| {
        let l = t
            .model
            .losses(cfg, &t.diffusion, x0.clone(), &ts, eps.clone())
            .loss;
        to_vec(l.inner().mean()).unwrap()[0] as f64
    };
    let gen_ts: Vec<usize> = (0..b)
        .map(|i| 1 + i * (t.diffusion.num_steps() - 2) / b)
        .collect();
    (mean(vec![0; b]), mean(gen_ts))
}

#[test]
fn joint_training_lowers_both_losses_and_samples_are_images() {
    let dir = common::tmp("daed-joint");
    let cfg = daed_config(&dir);
    let data = load_data(&cfg).unwrap();
    let mut t = Trainer::<DaedNets>::new(cfg.clone(), data.clone()).unwrap();
    let k = t.diffusion.timestep_map[1];
    assert!(
        k > 1 && t.diffusion.num_steps() == 100 - k + 1,
        "switch {k}, {} steps",
        t.diffusion.num_steps()
    );
    let idx: Vec<usize> = (0..16).collect();
    let x0 = Tensor::<4>::from_data(
        TensorData::new(data.to_f32(&idx), [16, 1, 28, 28]),
        &Device::flex().autodiff(),
    );
    let (dae0, gen0) = split_losses(&t, &cfg, &x0);
    for _ in 0..120 {
        t.train_step().unwrap();
    }
    let (dae1, gen1) = split_losses(&t, &cfg, &x0);
    eprintln!("dae {dae0:.4} -> {dae1:.4}, generator {gen0:.4} -> {gen1:.4}");
    assert!(dae1 < 0.7 * dae0 && gen1 < 0.7 * gen0);

    let opts = SampleOptions {
        respacing: "8".into(),
        method: Method::Ancestral,
        clip_denoised: true,
        seed: 1,
        class: None,
        precision: Default::default(),
        keep: None,
    };
    let imgs = t
        .ema
        .sample(
            &t.diffusion,
            [1, 28, 28],
            3,
            2,
            &opts,
            &Device::flex(),
            &mut |_, _| {},
        )
        .unwrap();
    assert_eq!(imgs.len(), 3 * 28 * 28);
    assert!(imgs.iter().all(|v| (-1.0..=1.0).contains(v)));
    let spread = imgs.iter().cloned().fold(f32::MIN, f32::max)
        - imgs.iter().cloned().fold(f32::MAX, f32::min);
    assert!(spread > 0.5, "samples are not flat");
}

#[test]
fn two_stage_combines_a_ddgm_run_with_a_dae_run() {
    let dir = common::tmp("daed-two");
    let mut ddgm_cfg = common::tiny_config(&dir.join("ddgm"));
    ddgm_cfg.train.steps = 3;
    let data = load_data(&ddgm_cfg).unwrap();
    let mut ddgm = Trainer::<UNet>::new(ddgm_cfg.clone(), data.clone()).unwrap();
    ddgm.run(&mut daed_core::train::trainer::Quiet).unwrap();

    let mut cfg = daed_config(&dir.join("dae"));
    cfg.daed.mode = DaedMode::TwoStage;
    cfg.daed.ddgm = Some(dir.join("ddgm"));
    cfg.train.steps = 4;
    cfg.sample.n = 2;
    let mut t = Trainer::<DaedNets>::new(cfg.clone(), data.clone()).unwrap();
    t.run(&mut daed_core::train::trainer::Quiet).unwrap();

    // The combined checkpoint carries the DDGM's EMA weights as its generator, unchanged.
    let ck = Checkpoint::open(&dir.join("dae")).unwrap();
    assert_eq!(ck.state.model_kind, "daed");
    let (nets, d) = ck.load_model::<DaedNets>(true, &Device::flex()).unwrap();
    let ddgm_ck = Checkpoint::open(&dir.join("ddgm")).unwrap();
    let (g, _) = ddgm_ck.load_unet(true, &Device::flex()).unwrap();
    assert_eq!(
        module_arrays(&nets.generator, "").unwrap(),
        module_arrays(&g, "").unwrap()
    );
    assert!(dir.join("dae/samples/step_00000004.png").is_file());
    let imgs = nets
        .sample(
            &d,
            [1, 28, 28],
            2,
            2,
            &SampleOptions {
                respacing: "5".into(),
                method: Method::Ddim { eta: 0.0 },
                clip_denoised: true,
                seed: 0,
                class: None,
                precision: Default::default(),
                keep: None,
            },
            &Device::flex(),
            &mut |_, _| {},
        )
        .unwrap();
    assert_eq!(imgs.len(), 2 * 784);
    // Loading it as a DDGM is refused.
    assert!(ck
        .load_unet(true, &Device::flex())
        .err()
        .unwrap()
        .to_string()
        .contains("daed"));

    // A schedule that differs from the DDGM's is a clear error.
    let mut bad = cfg.clone();
    bad.diffusion.steps = 200;
    let e = Trainer::<DaedNets>::new(bad, data.clone())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("schedule"), "{e}");
    // So are images of another size.
    let mut other = cfg.clone();
    other.data.dataset = "cifar10".into();
    other.data.path = Some(std::path::PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/data/cifar10-first4000"
    )));
    if let Ok(cifar) = load_data(&other) {
        let e = Trainer::<DaedNets>::new(other, cifar)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("images"), "{e}");
    }
}
