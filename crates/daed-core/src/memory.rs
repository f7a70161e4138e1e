//! Memory estimates made before anything large is allocated, so that a run that cannot fit is
//! refused with a figure instead of aborting in the allocator.
//!
//! The estimates walk the U-Net's structure (the same levels, blocks and attention placement as
//! [`crate::nn::UNet::new`]) in checked integer arithmetic: a size too large to count is an error
//! too. They are deliberately rough (activations are counted as a few tensors per block); they
//! exist to tell "fits" from "cannot possibly fit", not to plan a batch size to the byte.
use crate::config::{ExperimentConfig, ModelKind};
use crate::nn::UNetConfig;
use crate::{Error, Result};

/// What one network costs: parameters, and f32 values per image kept for the backward pass
/// (training) or alive at once (inference).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Footprint {
    /// Parameter count.
    pub params: u64,
    /// Activation values per image while training (kept for the backward pass).
    pub train_per_image: u64,
    /// Activation values per image in a forward pass without gradients (peak, roughly).
    pub infer_per_image: u64,
}

/// Checked arithmetic on `u64`; `None` when a product or sum overflows.
fn mul(a: u64, b: u64) -> Option<u64> {
    a.checked_mul(b)
}

/// A ResBlock from `cin` to `cout` channels at `side` x `side` pixels.
fn res_block(cin: u64, cout: u64, emb: u64, scale_shift: bool, side: u64) -> Option<Footprint> {
    let emb_out = if scale_shift { 2 * cout } else { cout };
    let convs = mul(mul(cin, cout)?, 9)?.checked_add(mul(mul(cout, cout)?, 9)?)?;
    let skip = if cin != cout {
        mul(cin, cout)? + cout
    } else {
        0
    };
    let params = convs
        .checked_add(mul(emb, emb_out)?)?
        .checked_add(skip + 2 * cin + 4 * cout + emb_out)?;
    let px = mul(side, side)?;
    Some(Footprint {
        params,
        // norm, activation and conv outputs on both halves, plus the block input.
        train_per_image: mul(px, mul(4, cin.checked_add(cout)?)?)?,
        infer_per_image: mul(px, mul(2, cin.checked_add(cout)?)?)?,
    })
}

/// An attention block over `ch` channels at `side` x `side` pixels with `heads` heads.
fn attention(ch: u64, heads: u64, side: u64) -> Option<Footprint> {
    let px = mul(side, side)?;
    let weights = mul(heads, mul(px, px)?)?;
    Some(Footprint {
        params: mul(mul(ch, ch)?, 4)?.checked_add(6 * ch)?,
        train_per_image: mul(weights, 2)?.checked_add(mul(mul(px, ch)?, 6)?)?,
        infer_per_image: weights.checked_add(mul(mul(px, ch)?, 4)?)?,
    })
}

fn add(a: Footprint, b: Footprint) -> Option<Footprint> {
    Some(Footprint {
        params: a.params.checked_add(b.params)?,
        train_per_image: a.train_per_image.checked_add(b.train_per_image)?,
        infer_per_image: a.infer_per_image.max(b.infer_per_image),
    })
}

/// The footprint of the U-Net that `cfg` builds for `channels` x `size` x `size` images with
/// `out_channels` outputs; `None` when it is too large to count in 64 bits.
pub fn unet(
    cfg: &UNetConfig,
    channels: usize,
    size: usize,
    out_channels: usize,
) -> Option<Footprint> {
    let mc = cfg.model_channels as u64;
    let emb = mul(4, mc)?;
    let heads = cfg.num_heads as u64;
    let mults = cfg.mults(size);
    let attn_ds: Vec<usize> = cfg
        .attention_resolutions
        .iter()
        .map(|&r| size / r.max(1))
        .collect();
    let side = |ds: usize| (size / ds).max(1) as u64;
    let block = |cin: u64, cout: u64, ds: usize| {
        let r = res_block(cin, cout, emb, cfg.use_scale_shift_norm, side(ds))?;
        if attn_ds.contains(&ds) {
            add(r, attention(cout, heads, side(ds))?)
        } else {
            Some(r)
        }
    };
    let stem = mul(channels as u64, mul(mc, 9)?)? + mc;
    let mut f = Footprint {
        params: stem
            .checked_add(mul(mc, emb)?)?
            .checked_add(mul(emb, emb)?)?
            .checked_add(2 * emb)?,
        train_per_image: mul(mul(side(1), side(1))?, mc)?,
        infer_per_image: 0,
    };
    let (mut ch, mut ds, mut chans) = (mc, 1usize, vec![mc]);
    for (level, &m) in mults.iter().enumerate() {
        let cout = mul(m as u64, mc)?;
        for _ in 0..cfg.num_res_blocks {
            f = add(f, block(ch, cout, ds)?)?;
            ch = cout;
            chans.push(ch);
        }
        if level + 1 != mults.len() {
            f.params = f.params.checked_add(mul(mul(ch, ch)?, 9)? + ch)?;
            chans.push(ch);
            ds = ds.checked_mul(2)?;
        }
    }
    let middle = res_block(ch, ch, emb, cfg.use_scale_shift_norm, side(ds))?;
    f = add(f, middle)?;
    f = add(f, middle)?;
    f = add(f, attention(ch, heads, side(ds))?)?;
    for (level, &m) in mults.iter().enumerate().rev() {
        let cout = mul(m as u64, mc)?;
        for i in 0..=cfg.num_res_blocks {
            let skip = chans.pop().unwrap_or(mc);
            f = add(f, block(ch.checked_add(skip)?, cout, ds)?)?;
            ch = cout;
            if level > 0 && i == cfg.num_res_blocks {
                f.params = f.params.checked_add(mul(mul(ch, ch)?, 9)? + ch)?;
                ds /= 2;
            }
        }
    }
    f.params = f
        .params
        .checked_add(mul(ch, mul(out_channels as u64, 9)?)? + 2 * ch + out_channels as u64)?;
    Some(f)
}

/// Values in one image of `shape`.
fn image_values([c, h, w]: [usize; 3]) -> Option<u64> {
    mul(mul(c as u64, h as u64)?, w as u64)
}

/// The networks an experiment trains (a DAED has two U-Nets of the same config).
fn networks(cfg: &ExperimentConfig, shape: [usize; 3]) -> Option<Footprint> {
    let out = if cfg.diffusion.learn_sigma {
        2 * shape[0]
    } else {
        shape[0]
    };
    let one = unet(&cfg.unet, shape[0], shape[1].max(shape[2]), out)?;
    match cfg.model {
        ModelKind::Ddgm => Some(one),
        ModelKind::Daed => add(one, one),
    }
}

/// Bytes a training run of `cfg` on `shape` images needs, roughly: weights, EMA, gradients and
/// AdamW's two moments, their copies while a checkpoint is written, the batch, and the
/// activations of one micro-batch per device (with `train.devices`, each other device's
/// replica and its gradients too; all counted in one memory, as for flex devices).
pub fn training_bytes(cfg: &ExperimentConfig, shape: [usize; 3]) -> Option<u64> {
    let f = networks(cfg, shape)?;
    let t = &cfg.train;
    let parts = t.devices.len().max(1) as u64;
    let b = t.batch_size as u64;
    let at_once = match t.micro_batch {
        0 => b,
        m => (m as u64).saturating_mul(parts).min(b),
    };
    let image = image_values(shape)?;
    let values = mul(f.params, 8)?
        .checked_add(mul(mul(f.params, 2)?, parts - 1)?)?
        .checked_add(mul(mul(b, image)?, 3)?)?
        .checked_add(mul(at_once, f.train_per_image)?)?;
    mul(values, 4)
}

/// Bytes drawing `n` images in batches of `batch` needs, roughly: the weights, the images kept
/// until the end, and one batch's forward pass.
pub fn sampling_bytes(
    cfg: &ExperimentConfig,
    shape: [usize; 3],
    n: usize,
    batch: usize,
) -> Option<u64> {
    let f = networks(cfg, shape)?;
    let image = image_values(shape)?;
    let batch = batch.min(n) as u64;
    let values = f
        .params
        .checked_add(mul(n as u64, mul(image, 2)?)?)?
        .checked_add(mul(batch, f.infer_per_image.checked_add(mul(image, 4)?)?)?)?;
    mul(values, 4)
}

/// Memory this process may still take: `MemAvailable` plus free swap from `/proc/meminfo`,
/// capped by the cgroup's `memory.max` less its use (`None` where `/proc/meminfo` does not exist).
pub fn available_bytes() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let field = |key: &str| {
        info.lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
    };
    let kb = field("MemAvailable:")?.checked_add(field("SwapFree:").unwrap_or(0))?;
    let host = kb.checked_mul(1024)?;
    // A container's or a job's own limit (cgroup v2), when it has one.
    let read = |f: &str| {
        std::fs::read_to_string(format!("/sys/fs/cgroup/{f}"))
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
    };
    match (read("memory.max"), read("memory.current")) {
        (Some(max), used) => Some(host.min(max.saturating_sub(used.unwrap_or(0)))),
        (None, _) => Some(host),
    }
}

/// GiB, for messages.
fn gib(b: u64) -> f64 {
    b as f64 / (1u64 << 30) as f64
}

/// Refuses `what` when its estimate (`None`: too large to count) exceeds what is available.
pub fn check_fits(what: &str, need: Option<u64>, hint: &str) -> Result<()> {
    let Some(need) = need else {
        return Err(Error::Invalid(format!(
            "{what} would need more memory than can be counted in 64 bits: {hint}"
        )));
    };
    match available_bytes() {
        Some(have) if need > have => Err(Error::Invalid(format!(
            "{what} needs about {:.1} GiB, and this machine has {:.1} GiB available: {hint}",
            gib(need),
            gib(have)
        ))),
        _ => Ok(()),
    }
}

/// [`check_fits`] for training `cfg` on `shape` images (on the CPU; a GPU holds the
/// activations in its own memory, so there only the host's copies are counted).
pub fn check_training(cfg: &ExperimentConfig, shape: [usize; 3]) -> Result<()> {
    if cfg.training_device_names()[0].starts_with("cuda") {
        let params = networks(cfg, shape).and_then(|f| mul(f.params, 16));
        return check_fits(
            "the model's host copies",
            params,
            "shrink the network (unet.*)",
        );
    }
    check_fits(
        "training",
        training_bytes(cfg, shape),
        "lower train.batch_size (or set train.micro_batch) or the network's size (unet.*)",
    )
}

/// [`check_fits`] for sampling `n` images in batches of `batch`.
pub fn check_sampling(
    cfg: &ExperimentConfig,
    shape: [usize; 3],
    n: usize,
    batch: usize,
) -> Result<()> {
    check_fits(
        &format!("sampling {n} images"),
        sampling_bytes(cfg, shape, n, batch),
        "ask for fewer images (--n) or a smaller --batch-size",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::UNet;
    use burn::module::Module;

    /// The parameter count walks the same structure as the network: it equals burn's count.
    #[test]
    fn unet_params_match_the_built_network() {
        let device = crate::device::resolve("flex").unwrap();
        for (mc, size, mult, attn, ch) in [
            (16, 28, vec![], vec![14], 1),
            (32, 32, vec![1, 2], vec![16, 8], 3),
            (8, 16, vec![1, 2, 2], vec![], 3),
        ] {
            let cfg = UNetConfig {
                model_channels: mc,
                channel_mult: mult,
                num_res_blocks: 1,
                attention_resolutions: attn,
                num_heads: 2,
                ..UNetConfig::default()
            };
            let net = UNet::new(&cfg, ch, size, 2 * ch, &device).unwrap();
            let f = unet(&cfg, ch, size, 2 * ch).unwrap();
            assert_eq!(f.params, net.num_params() as u64, "mc {mc}, size {size}");
        }
    }

    fn shipped(name: &str) -> ExperimentConfig {
        let p = format!("{}/../../configs/{name}", env!("CARGO_MANIFEST_DIR"));
        ExperimentConfig::load(std::path::Path::new(&p)).unwrap()
    }

    /// The estimates against peaks measured with `daed bench` (docs/performance.md: Fashion-MNIST
    /// batch 128 in micro-batches of 32, 3,963 MiB; CIFAR-10 batch 32, 3,586 MiB): rough, but
    /// within a factor of 2 either way, so a run that fits is not refused.
    #[test]
    fn estimates_are_within_a_factor_of_two_of_measured_peaks() {
        let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
        let f = shipped("fashion_mnist_ddgm_simple.toml");
        let mut c = shipped("cifar10_ddgm_simple.toml");
        c.train.batch_size = 32;
        for (cfg, shape, measured) in [(f, [1, 28, 28], 3963.0), (c, [3, 32, 32], 3586.0)] {
            let est = mib(training_bytes(&cfg, shape).unwrap());
            println!(
                "{}: estimate {est:.0} MiB, measured {measured} MiB",
                cfg.name
            );
            assert!(
                est > measured / 2.0 && est < measured * 2.0,
                "{}: {est}",
                cfg.name
            );
        }
    }

    #[test]
    fn impossible_runs_are_refused_with_a_figure() {
        let mut cfg = ExperimentConfig::from_toml(
            include_str!("../../../configs/demo.toml"),
            "configs/demo.toml",
        )
        .unwrap();
        check_training(&cfg, [1, 28, 28]).unwrap();
        cfg.train.batch_size = 100_000_000;
        let e = check_training(&cfg, [1, 28, 28]).unwrap_err().to_string();
        assert!(e.contains("GiB") && e.contains("batch_size"), "{e}");
        cfg.train.batch_size = 8;
        cfg.unet.model_channels = 100_000;
        assert!(check_training(&cfg, [1, 28, 28]).is_err());
        cfg.unet.model_channels = 16;
        let e = check_sampling(&cfg, [1, 28, 28], usize::MAX, 64).unwrap_err();
        assert!(e.to_string().contains("--n"), "{e}");
        assert!(check_sampling(&cfg, [1, 28, 28], 1_000_000_000_000, 64).is_err());
        check_sampling(&cfg, [1, 28, 28], 64, 64).unwrap();
    }

    #[test]
    fn devices_count_their_replicas_and_micro_batches() {
        let mut cfg = shipped("fashion_mnist_ddgm_simple.toml");
        cfg.train.micro_batch = 32;
        let one = training_bytes(&cfg, [1, 28, 28]).unwrap();
        cfg.train.devices = vec!["flex".into(), "flex".into()];
        let two = training_bytes(&cfg, [1, 28, 28]).unwrap();
        assert!(two > one, "{two} vs {one}");
        // A GPU holds the activations: only the host copies are checked (a run that needs more
        // host memory than there is, as flex, passes on cuda).
        cfg.train.batch_size = 1_000_000;
        cfg.train.micro_batch = 0;
        assert!(check_training(&cfg, [1, 28, 28]).is_err());
        cfg.train.devices = vec!["cuda:0".into(), "cuda:1".into()];
        check_training(&cfg, [1, 28, 28]).unwrap();
    }
}
