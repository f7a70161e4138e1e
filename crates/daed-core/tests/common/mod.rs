//! Shared helpers for the integration tests.
#![allow(dead_code)]
use daed_core::config::ExperimentConfig;

/// A tiny, fast config on the embedded demo data.
pub fn tiny_config(out: &std::path::Path) -> ExperimentConfig {
    let mut c =
        ExperimentConfig::from_toml(include_str!("../../../../configs/demo.toml"), "demo.toml")
            .unwrap();
    c.name = "test".into();
    c.device = "flex".into();
    c.data.limit = Some(16);
    c.diffusion.steps = 100;
    c.unet.model_channels = 16;
    c.unet.channel_mult = vec![1, 2];
    c.unet.attention_resolutions = vec![14];
    c.unet.num_heads = 2;
    c.train.batch_size = 16;
    c.train.lr = 2e-3;
    c.train.ema_rate = 0.9;
    c.train.out_dir = Some(out.to_path_buf());
    c.sample.n = 4;
    c.sample.respacing = "10".into();
    c
}

/// A fresh temporary directory.
pub fn tmp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("daed-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}
