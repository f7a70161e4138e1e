//! Exact resume. Kept alone in its own test binary: burn-flex's RNG is process-global, so a
//! concurrently running test would interleave its draws with this one's.
mod common;

use burn::module::Module;
use burn::tensor::Device;
use daed_core::nn::UNet;
use daed_core::tensor_io::module_arrays;
use daed_core::train::trainer::load_data;
use daed_core::train::{Checkpoint, Trainer};

#[test]
fn checkpoint_round_trip_and_exact_resume() {
    let dir = common::tmp("resume");
    let mut cfg = common::tiny_config(&dir);
    cfg.diffusion.learn_sigma = true;
    cfg.diffusion.loss = daed_core::diffusion::loss::LossKind::Hybrid;
    cfg.diffusion.step_sampler =
        daed_core::diffusion::step_sampler::StepSamplerKind::LossSecondMoment;
    cfg.unet.dropout = 0.1;
    cfg.data.limit = Some(40); // several epochs with partial batches of the permutation
    let data = load_data(&cfg).unwrap();

    let mut a = Trainer::<UNet>::new(cfg.clone(), data.clone()).unwrap();
    for _ in 0..3 {
        a.train_step().unwrap();
    }
    let ck_dir = a.save_checkpoint().unwrap();
    let cont: Vec<f64> = (0..4).map(|_| a.train_step().unwrap().loss).collect();

    // Round trip: the saved EMA weights come back exactly.
    let ck = Checkpoint::open(&dir).unwrap();
    assert_eq!(ck.dir, ck_dir);
    assert_eq!(ck.state.step, 3);
    let (net, _) = ck.load_unet(true, &Device::default()).unwrap();
    let saved = ck
        .tensors(daed_core::train::checkpoint::TensorFile::Ema)
        .unwrap();
    assert_eq!(module_arrays(&net, "").unwrap(), saved);

    // Resume gives the same losses as the uninterrupted run.
    let mut b = Trainer::<UNet>::resume(cfg.clone(), data.clone(), &ck_dir).unwrap();
    assert_eq!(b.step, 3);
    let resumed: Vec<f64> = (0..4).map(|_| b.train_step().unwrap().loss).collect();
    assert_eq!(cont, resumed, "resumed losses differ");
    assert_eq!(
        module_arrays(&a.model.valid(), "").unwrap(),
        module_arrays(&b.model.valid(), "").unwrap()
    );

    // A config whose architecture differs is refused with a clear error.
    let mut other = cfg.clone();
    other.unet.model_channels = 8;
    let e = Trainer::<UNet>::resume(other, data.clone(), &ck_dir)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("[unet]"), "{e}");

    // A corrupted tensor file is detected by its checksum.
    let f = ck_dir.join("model.safetensors");
    let mut bytes = std::fs::read(&f).unwrap();
    let n = bytes.len();
    bytes[n - 3] ^= 0x55;
    std::fs::write(&f, bytes).unwrap();
    let e = Trainer::<UNet>::resume(cfg, data, &ck_dir)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("checksum") && e.contains("model.safetensors"),
        "{e}"
    );
}
