//! Times the parts of one training step (forward, backward, optimiser, EMA) for a config.
//!
//! `cargo run --release -p daed-core --example step_timing -- configs/demo.toml [batch]`
use std::time::Instant;

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Distribution, Tensor};
use daed_core::config::ExperimentConfig;
use daed_core::diffusion::GaussianDiffusion;
use daed_core::model::build_unet;
use daed_core::train::optim::{ema_update, AdamW, AdamWSettings};

fn main() -> daed_core::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let cfg = ExperimentConfig::load(std::path::Path::new(
        args.get(1)
            .map(String::as_str)
            .unwrap_or("configs/demo.toml"),
    ))?;
    let b: usize = args
        .get(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(cfg.train.batch_size);
    let size = 28;
    let dev = daed_core::device::resolve(&cfg.device)?.autodiff();
    let d = GaussianDiffusion::new(&cfg.diffusion.schedule_spec(), cfg.diffusion.var_type())?;
    let mut model = build_unet(&cfg, [1, size, size], d.model_out_channels(1), &dev)?;
    let mut ema = model.valid();
    println!("params {} batch {b}", model.num_params());
    let mut opt = AdamW::default();
    let s = AdamWSettings {
        lr: 1e-4,
        weight_decay: 0.0,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        grad_clip: None,
    };
    let ts: Vec<f32> = (0..b).map(|i| (i * 7 % 500) as f32).collect();
    for it in 0..4 {
        let x = Tensor::<4>::random([b, 1, size, size], Distribution::Normal(0.0, 1.0), &dev);
        let t0 = Instant::now();
        let out = model.forward(x.clone(), &ts);
        let loss = (out - x).square().mean();
        let _ = loss.clone().inner().into_scalar::<f32>();
        let t1 = Instant::now();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let t2 = Instant::now();
        let (m, _) = opt.step(model, &grads, &s, 1e-4)?;
        model = m;
        let t3 = Instant::now();
        ema = ema_update(ema, &model, 0.999);
        let _ = daed_core::tensor_io::module_arrays(&ema, "")?.len();
        let t4 = Instant::now();
        let inner = Device::default();
        let xi = Tensor::<4>::random([b, 1, size, size], Distribution::Normal(0.0, 1.0), &inner);
        let t5 = Instant::now();
        let _ = ema.forward(xi, &ts).sum().into_scalar::<f32>();
        let t6 = Instant::now();
        println!(
            "iter {it}: fwd {:.3}s bwd {:.3}s adam {:.3}s ema {:.3}s | inference fwd {:.3}s",
            (t1 - t0).as_secs_f64(),
            (t2 - t1).as_secs_f64(),
            (t3 - t2).as_secs_f64(),
            (t4 - t3).as_secs_f64(),
            (t6 - t5).as_secs_f64()
        );
    }
    Ok(())
}
