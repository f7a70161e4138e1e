//! Micro-batches give the same update as the whole batch. Alone in its binary (flex's RNG is
//! process-global).
mod common;

use burn::module::Module;
use daed_core::nn::UNet;
use daed_core::tensor_io::module_arrays;
use daed_core::train::trainer::load_data;
use daed_core::train::Trainer;

#[test]
fn micro_batches_match_the_whole_batch() {
    let dir = common::tmp("micro");
    let cfg = common::tiny_config(&dir);
    let data = load_data(&cfg).unwrap();
    let mut whole = Trainer::<UNet>::new(cfg.clone(), data.clone()).unwrap();
    let mut split_cfg = cfg.clone();
    split_cfg.train.micro_batch = 5; // 16 = 5 + 5 + 5 + 1
    let mut split = Trainer::<UNet>::new(split_cfg, data).unwrap();
    for _ in 0..2 {
        let a = whole.train_step().unwrap();
        let b = split.train_step().unwrap();
        assert!(
            (a.loss - b.loss).abs() < 1e-6 * a.loss.abs().max(1.0),
            "{} vs {}",
            a.loss,
            b.loss
        );
        assert!(
            (a.grad_norm - b.grad_norm).abs() < 1e-4 * a.grad_norm,
            "{} vs {}",
            a.grad_norm,
            b.grad_norm
        );
    }
    let (x, y) = (
        module_arrays(&whole.model.valid(), "").unwrap(),
        module_arrays(&split.model.valid(), "").unwrap(),
    );
    let worst = x
        .iter()
        .map(|(k, v)| {
            v.data
                .iter()
                .zip(&y[k].data)
                .map(|(p, q)| (p - q).abs())
                .fold(0f32, f32::max)
        })
        .fold(0f32, f32::max);
    // Adam divides by sqrt(v): round-off in tiny gradients moves a weight by a small fraction of
    // lr; a wrong accumulation (e.g. a per-chunk mean) would change the gradient norm above.
    assert!(worst < 0.05 * 2e-3, "weights differ by {worst}");
}
