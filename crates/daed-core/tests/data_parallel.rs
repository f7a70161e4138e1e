//! Data-parallel training (`train.devices`) gives one device's update: bit for bit against the
//! same split in micro-batches, within round-off against the whole batch, with dropout on.
//! One test, alone in its binary: building a model seeds flex's process-global generator.
mod common;

use std::collections::BTreeMap;

use daed_core::config::{ExperimentConfig, ModelKind};
use daed_core::daed::DaedNets;
use daed_core::diffusion::step_sampler::StepSamplerKind;
use daed_core::model::DiffusionNet;
use daed_core::nn::UNet;
use daed_core::tensor_io::module_arrays;
use daed_core::train::trainer::load_data;
use daed_core::train::Trainer;

/// Losses of two steps and the weights after them.
type Run = (Vec<f64>, BTreeMap<String, Vec<f32>>);

/// Two training steps of `cfg`.
fn train(cfg: &ExperimentConfig) -> Run {
    match cfg.model {
        ModelKind::Ddgm => train_as::<UNet>(cfg),
        ModelKind::Daed => train_as::<DaedNets>(cfg),
    }
}

fn train_as<M: DiffusionNet>(cfg: &ExperimentConfig) -> Run {
    let data = load_data(cfg).unwrap();
    let mut t = Trainer::<M>::new(cfg.clone(), data).unwrap();
    let losses = (0..2).map(|_| t.train_step().unwrap().loss).collect();
    let weights = module_arrays(&t.model.valid(), "")
        .unwrap()
        .into_iter()
        .map(|(k, v)| (k, v.data))
        .collect();
    (losses, weights)
}

fn worst_difference(a: &BTreeMap<String, Vec<f32>>, b: &BTreeMap<String, Vec<f32>>) -> f32 {
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    a.iter()
        .flat_map(|(k, v)| v.iter().zip(&b[k]).map(|(p, q)| (p - q).abs()))
        .fold(0f32, f32::max)
}

/// The same bits (losses and weights), or a short message saying how far apart.
fn assert_same(a: &Run, b: &Run, what: &str) {
    let worst = worst_difference(&a.1, &b.1);
    assert!(
        a.0 == b.0 && a == b,
        "{what}: losses {:?} vs {:?}, weights up to {worst} apart",
        a.0,
        b.0
    );
}

#[test]
fn devices_share_a_batch_as_one_device_would() {
    let dir = common::tmp("data-parallel");
    let mut base = common::tiny_config(&dir);
    base.unet.dropout = 0.3;
    let with = |devices: &[&str], micro_batch: usize| {
        let mut c = base.clone();
        c.train.devices = devices.iter().map(|d| d.to_string()).collect();
        c.train.micro_batch = micro_batch;
        c
    };

    // Two devices, halves of 8 each, against one device in micro-batches of 8: the same bits,
    // run after run (the parts' threads may finish in any order).
    let two = train(&with(&["flex", "flex"], 0));
    assert_same(&two, &train(&with(&[], 8)), "two devices vs micro-batches");
    assert_same(
        &two,
        &train(&with(&["flex", "flex"], 0)),
        "two devices, again",
    );

    // Against the whole batch on one device: round-off only (dropout is keyed per sample, so
    // the split draws the same masks; drawing them per part would change the loss itself).
    let whole = train(&with(&[], 0));
    let three = train(&with(&["flex", "flex", "flex"], 4)); // parts 6, 5, 5; micro-batches of 4
    for (name, run) in [("two", &two), ("three", &three)] {
        for (a, b) in whole.0.iter().zip(&run.0) {
            assert!(
                (a - b).abs() < 1e-6 * a.abs().max(1.0),
                "{name}: {a} vs {b}"
            );
        }
        // As in micro_batch.rs: Adam turns round-off in tiny gradients into a small fraction
        // of lr (2e-3); a wrong reduction moves weights by about lr.
        let worst = worst_difference(&whole.1, &run.1);
        assert!(worst < 0.05 * 2e-3, "{name}: weights differ by {worst}");
    }
    assert_same(&whole, &train(&with(&[], 0)), "one device, again");

    // Dropout matters here: without it the weights move by about lr more (the zero-initialised
    // output convs keep the losses of the first two steps apart from it).
    let mut plain = with(&[], 0);
    plain.unet.dropout = 0.0;
    let apart = worst_difference(&whole.1, &train(&plain).1);
    assert!(
        apart > 0.2 * 2e-3,
        "dropout moved the weights by {apart} only"
    );

    // DAED (generator and DAE in one batch, split by step): the same bits as well.
    let mut daed = with(&["flex", "flex"], 0);
    daed.model = ModelKind::Daed;
    daed.daed.beta1 = 0.1;
    daed.diffusion.step_sampler = StepSamplerKind::DaeUniform;
    let mut daed_one = daed.clone();
    daed_one.train.devices.clear();
    daed_one.train.micro_batch = 8;
    let daed_two = train(&daed);
    assert_same(
        &daed_two,
        &train(&daed_one),
        "DAED: two devices vs micro-batches",
    );
    // and the whole batch up to round-off: each network numbers its dropout layers apart, so
    // the generator's masks do not depend on how many DAE rows share its part.
    daed_one.train.micro_batch = 0;
    let daed_whole = train(&daed_one);
    let worst = worst_difference(&daed_whole.1, &daed_two.1);
    assert!(worst < 0.05 * 2e-3, "DAED: weights differ by {worst}");

    // More devices than images is refused before any work.
    let mut many = with(&["flex"; 17], 0);
    many.train.batch_size = 16;
    let err = many.validate().unwrap_err().to_string();
    assert!(err.contains("train.devices"), "{err}");
}
