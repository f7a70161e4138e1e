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
