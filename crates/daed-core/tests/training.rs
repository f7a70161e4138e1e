//! End-to-end training tests on tiny models: overfitting, checkpoints, exact resume.
mod common;

use daed_core::nn::UNet;
use daed_core::train::trainer::load_data;
use daed_core::train::{Checkpoint, Trainer};

#[test]
fn tiny_model_overfits_a_batch_of_16() {
    let dir = common::tmp("overfit");
    let cfg = common::tiny_config(&dir);
    let data = load_data(&cfg).unwrap();
    assert_eq!(data.len(), 16);
    let mut t = Trainer::<UNet>::new(cfg, data).unwrap();
    let losses: Vec<f64> = (0..300).map(|_| t.train_step().unwrap().loss).collect();
    let first = losses[..5].iter().sum::<f64>() / 5.0;
    let last = losses[losses.len() - 30..].iter().sum::<f64>() / 30.0;
    eprintln!("first {first:.4} last {last:.4}");
    assert!(
        first > 10.0 * last,
        "loss fell from {first} to {last}: less than 10x"
    );
}

#[test]
fn missing_checkpoint_is_a_clear_error() {
    let e = Checkpoint::open(std::path::Path::new("/nonexistent/run"))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("/nonexistent/run"), "{e}");
    let dir = common::tmp("empty");
    let e = Checkpoint::open(&dir).err().unwrap().to_string();
    assert!(e.contains("no checkpoints"), "{e}");
}

#[test]
fn the_anneal_holds_lr_until_its_last_steps_then_falls_linearly_to_zero() {
    let dir = common::tmp("anneal");
    let mut cfg = common::tiny_config(&dir);
    cfg.train.steps = 8;
    cfg.train.lr_anneal = true;
    cfg.train.lr_anneal_last = 4;
    let data = load_data(&cfg).unwrap();
    let lrs = |cfg: &daed_core::config::ExperimentConfig| -> Vec<f64> {
        let mut t = Trainer::<UNet>::new(cfg.clone(), data.clone()).unwrap();
        (0..cfg.train.steps)
            .map(|_| t.train_step().unwrap().lr / cfg.train.lr)
            .collect()
    };
    let close = |got: Vec<f64>, want: &[f64]| {
        let ok =
            got.len() == want.len() && got.iter().zip(want).all(|(g, w)| (g - w).abs() < 1e-12);
        assert!(ok, "lr / train.lr {got:?}, want {want:?}");
    };
    close(lrs(&cfg), &[1.0, 1.0, 1.0, 1.0, 1.0, 0.75, 0.5, 0.25]);
    // More steps than the run: the whole run, as with 0 (improved-diffusion's anneal).
    cfg.train.steps = 4;
    cfg.train.lr_anneal_last = 10;
    close(lrs(&cfg), &[1.0, 0.75, 0.5, 0.25]);
    cfg.train.lr_anneal_last = 0;
    close(lrs(&cfg), &[1.0, 0.75, 0.5, 0.25]);
    cfg.train.lr_anneal = false;
    close(lrs(&cfg), &[1.0; 4]);
    cfg.train.lr_anneal_last = 2;
    let e = cfg.validate().err().unwrap().to_string();
    assert!(
        e.contains("train.lr_anneal_last = 2 needs train.lr_anneal = true"),
        "{e}"
    );
}
