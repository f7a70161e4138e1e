//! improved-diffusion's U-Net: time embedding, ResBlocks, attention, skip connections.
use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::nn::{GroupNorm, Linear, LinearConfig};
use burn::tensor::activation::silu;
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::blocks::{conv, norm, norm_act, AttentionBlock, Downsample, ResBlock, Upsample};
use super::conv::forward as conv_fwd;
use crate::{Error, Result};

/// Architecture hyper-parameters (names follow improved-diffusion's flags).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UNetConfig {
    /// Base channel count (`num_channels`).
    pub model_channels: usize,
    /// Channel multiplier per resolution level; empty = by image size (28: 1,2,2;
    /// 32: 1,2,2,2; 64: 1,2,3,4).
    pub channel_mult: Vec<usize>,
    /// Residual blocks per level.
    pub num_res_blocks: usize,
    /// Resolutions with attention, as improved-diffusion: each r gives the downsample
    /// factor image_size / r (integer division); e.g. [16, 8].
    pub attention_resolutions: Vec<usize>,
    /// Attention heads (channels must be divisible by it).
    pub num_heads: usize,
    /// Dropout probability in the ResBlocks.
    pub dropout: f64,
    /// Scale-and-shift conditioning of the norm by the time embedding.
    pub use_scale_shift_norm: bool,
}

impl Default for UNetConfig {
    fn default() -> Self {
        Self {
            model_channels: 64,
            channel_mult: Vec::new(),
            num_res_blocks: 2,
            attention_resolutions: vec![16, 8],
            num_heads: 4,
            dropout: 0.0,
            use_scale_shift_norm: true,
        }
    }
}

impl UNetConfig {
    /// Builds the U-Net this config describes (burn's `Config::init` pattern) for
    /// `channels`-channel images of `image_size` px with `out_channels` outputs.
    pub fn init(
        &self,
        channels: usize,
        image_size: usize,
        out_channels: usize,
        device: &Device,
    ) -> Result<UNet> {
        UNet::new(self, channels, image_size, out_channels, device)
    }

    /// The channel multipliers used for `image_size`.
    pub fn mults(&self, image_size: usize) -> Vec<usize> {
        if !self.channel_mult.is_empty() {
            return self.channel_mult.clone();
        }
        match image_size {
            0..=28 => vec![1, 2, 2],
            29..=32 => vec![1, 2, 2, 2],
            33..=64 => vec![1, 2, 3, 4],
            _ => vec![1, 1, 2, 3, 4],
        }
    }

    /// Checks the ranges; errors name the key.
    pub fn validate(&self, image_size: usize) -> Result<()> {
        let bad = |m: String| Err(Error::Invalid(format!("unet.{m}")));
        if self.model_channels == 0 {
            return bad("model_channels must be at least 1".into());
        }
        if self.num_res_blocks == 0 {
            return bad("num_res_blocks must be at least 1".into());
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad(format!("dropout must be in [0, 1), got {}", self.dropout));
        }
        if self.num_heads == 0 {
            return bad("num_heads must be at least 1".into());
        }
        let mults = self.mults(image_size);
        if mults.contains(&0) {
            return bad("channel_mult entries must be positive".into());
        }
        for &m in mults.iter().chain(std::iter::once(&mults[mults.len() - 1])) {
            let Some(ch) = m.checked_mul(self.model_channels) else {
                return bad(format!(
                    "model_channels x channel_mult = {} x {m} is too large",
                    self.model_channels
                ));
            };
            if ch % self.num_heads != 0 {
                return bad(format!(
                    "num_heads = {} does not divide {} channels (model_channels x channel_mult)",
                    self.num_heads,
                    m * self.model_channels
                ));
            }
        }
        if self.attention_resolutions.contains(&0) {
            return bad("attention_resolutions entries must be positive".into());
        }
        // improved-diffusion's rule: resolution r puts attention at downsample factor size / r
        // (integer division). As there, an entry may match no level (the paper's [16, 8] at 28
        // px gives factors 1 and 3); but one larger than the image, or a list where no entry
        // matches, is a mistake.
        let deepest = mults.len() - 1;
        if deepest >= usize::BITS as usize || image_size >> deepest == 0 {
            return bad(format!(
                "channel_mult has {} levels: too many for {image_size}-px images (each level \
                 halves the size)",
                mults.len()
            ));
        }
        let levels: Vec<usize> = (0..mults.len()).map(|l| 1 << l).collect();
        let sizes: Vec<usize> = levels.iter().map(|ds| image_size / ds).collect();
        if let Some(r) = self.attention_resolutions.iter().find(|&&r| r > image_size) {
            return bad(format!(
                "attention_resolutions: {r} is larger than the {image_size}-px images (this \
                 U-Net's levels are {sizes:?} px)"
            ));
        }
        let matches = |r: &usize| levels.contains(&(image_size / r));
        if !self.attention_resolutions.is_empty() && !self.attention_resolutions.iter().any(matches)
        {
            return bad(format!(
                "attention_resolutions: {:?} match no level of this {image_size}-px U-Net (its \
                 levels are {sizes:?} px); use [] for no attention",
                self.attention_resolutions
            ));
        }
        Ok(())
    }
}

/// One entry of the encoder or decoder: a ResBlock (+ attention), or a resampler, or the stem.
#[derive(Module, Debug)]
pub struct Level {
    /// The stem conv (first input block only).
    pub conv: Option<Conv2d>,
    /// Residual block.
    pub res: Option<ResBlock>,
    /// Attention after the ResBlock.
    pub attn: Option<AttentionBlock>,
    /// Downsampler (encoder).
    pub down: Option<Downsample>,
    /// Upsampler (decoder).
    pub up: Option<Upsample>,
}

impl Level {
    fn empty() -> Self {
        Self {
            conv: None,
            res: None,
            attn: None,
            down: None,
            up: None,
        }
    }
}

/// The epsilon-predicting U-Net (also used, with a fixed time, as the DAE).
#[derive(Module, Debug)]
pub struct UNet {
    /// Time-embedding MLP, first layer.
    pub time_embed_0: Linear,
    /// Time-embedding MLP, second layer.
    pub time_embed_2: Linear,
    /// Encoder blocks.
    pub input_blocks: Vec<Level>,
    /// Middle ResBlock, attention, ResBlock.
    pub middle_res_0: ResBlock,
    /// Middle attention.
    pub middle_attn: AttentionBlock,
    /// Middle second ResBlock.
    pub middle_res_1: ResBlock,
    /// Decoder blocks.
    pub output_blocks: Vec<Level>,
    /// Final norm.
    pub out_norm: GroupNorm,
    /// Final zero-initialised conv.
    pub out_conv: Conv2d,
    /// Base channels (for the sinusoidal embedding size).
    pub model_channels: usize,
}

impl UNet {
    /// Builds a U-Net for `channels`-channel images of `image_size` px with `out_channels` outputs.
    pub fn new(
        cfg: &UNetConfig,
        channels: usize,
        image_size: usize,
        out_channels: usize,
        device: &Device,
    ) -> Result<Self> {
        cfg.validate(image_size)?;
        let mc = cfg.model_channels;
        let emb = 4 * mc;
        let mults = cfg.mults(image_size);
        let attn_ds: Vec<usize> = cfg
            .attention_resolutions
            .iter()
            .map(|&r| image_size / r)
            .collect();
        let res = |cin, cout| {
            ResBlock::new(
                cin,
                cout,
                emb,
                cfg.dropout,
                cfg.use_scale_shift_norm,
                device,
            )
        };
        let attn = |ch| AttentionBlock::new(ch, cfg.num_heads, device);

        let mut input_blocks = vec![Level {
            conv: Some(conv(channels, mc, 3, false, device)),
            ..Level::empty()
        }];
        let mut chans = vec![mc];
        let mut ch = mc;
        let mut ds = 1;
        for (level, &m) in mults.iter().enumerate() {
            for _ in 0..cfg.num_res_blocks {
                let mut l = Level {
                    res: Some(res(ch, m * mc)),
                    ..Level::empty()
                };
                ch = m * mc;
                if attn_ds.contains(&ds) {
                    l.attn = Some(attn(ch));
                }
                input_blocks.push(l);
                chans.push(ch);
            }
            if level + 1 != mults.len() {
                input_blocks.push(Level {
                    down: Some(Downsample::new(ch, device)),
                    ..Level::empty()
                });
                chans.push(ch);
                ds *= 2;
            }
        }
        let middle_res_0 = res(ch, ch);
        let middle_attn = attn(ch);
        let middle_res_1 = res(ch, ch);
        let mut output_blocks = Vec::new();
        for (level, &m) in mults.iter().enumerate().rev() {
            for i in 0..=cfg.num_res_blocks {
                let skip = chans.pop().expect("one skip per encoder block");
                let mut l = Level {
                    res: Some(res(ch + skip, m * mc)),
                    ..Level::empty()
                };
                ch = m * mc;
                if attn_ds.contains(&ds) {
                    l.attn = Some(attn(ch));
                }
                if level > 0 && i == cfg.num_res_blocks {
                    l.up = Some(Upsample::new(ch, device));
                    ds /= 2;
                }
                output_blocks.push(l);
            }
        }
        Ok(Self {
            time_embed_0: LinearConfig::new(mc, emb).init(device),
            time_embed_2: LinearConfig::new(emb, emb).init(device),
            input_blocks,
            middle_res_0,
            middle_attn,
            middle_res_1,
            output_blocks,
            out_norm: norm(ch, device),
            out_conv: conv(ch, out_channels, 3, true, device),
            model_channels: mc,
        })
    }

    /// Sinusoidal embedding of `timesteps` (improved-diffusion: cos half, then sin half).
    pub fn timestep_embedding(&self, timesteps: &[f32], device: &Device) -> Tensor<2> {
        let dim = self.model_channels;
        let half = dim / 2;
        let mut v = vec![0f32; timesteps.len() * dim];
        for (b, &t) in timesteps.iter().enumerate() {
            for i in 0..half {
                let freq = (-(10000f64.ln()) * i as f64 / half as f64).exp();
                let arg = t as f64 * freq;
                v[b * dim + i] = arg.cos() as f32;
                v[b * dim + half + i] = arg.sin() as f32;
            }
        }
        Tensor::from_data(TensorData::new(v, [timesteps.len(), dim]), device)
    }

    /// x: [B, C, H, W], timesteps (original step indices) -> [B, out_channels, H, W].
    pub fn forward(&self, x: Tensor<4>, timesteps: &[f32]) -> Tensor<4> {
        let device = x.device();
        let emb = self.timestep_embedding(timesteps, &device);
        let emb = silu(
            self.time_embed_2
                .forward(silu(self.time_embed_0.forward(emb))),
        );
        let mut h = x;
        let mut skips = Vec::with_capacity(self.input_blocks.len());
        for l in &self.input_blocks {
            h = self.apply(l, h, &emb, None);
            skips.push(h.clone());
        }
        h = self.middle_res_0.forward(h, emb.clone());
        h = self.middle_attn.forward(h);
        h = self.middle_res_1.forward(h, emb.clone());
        for l in &self.output_blocks {
            let skip = skips.pop().expect("one skip per decoder block");
            // The skip after the next upsample decides the output size (odd sizes, e.g. 7 -> 14).
            let next = skips.last().map(|s| {
                let d = s.dims();
                [d[2], d[3]]
            });
            h = Tensor::cat(vec![h, skip], 1);
            h = self.apply(l, h, &emb, next);
        }
        conv_fwd(&self.out_conv, norm_act(&self.out_norm, h, None, true))
    }

    /// [`forward`](Self::forward) for inference: on flex without gradients, the two halves of
    /// the batch run on two threads (see [`super::parallel`]); the result is the same.
    pub fn forward_inference(&self, x: Tensor<4>, timesteps: &[f32]) -> Tensor<4> {
        super::parallel::on_halves(
            x,
            |x, rows| self.forward(x, &timesteps[rows]),
            super::parallel::cat_batches,
        )
    }

    fn apply(
        &self,
        l: &Level,
        mut h: Tensor<4>,
        emb: &Tensor<2>,
        up_to: Option<[usize; 2]>,
    ) -> Tensor<4> {
        if let Some(c) = &l.conv {
            h = conv_fwd(c, h);
        }
        if let Some(r) = &l.res {
            h = r.forward(h, emb.clone());
        }
        if let Some(a) = &l.attn {
            h = a.forward(h);
        }
        if let Some(d) = &l.down {
            h = d.forward(h);
        }
        if let Some(u) = &l.up {
            let [_, _, hh, ww] = h.dims();
            h = u.forward(h, up_to.unwrap_or([2 * hh, 2 * ww]));
        }
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shapes(size: usize, channels: usize, learn_sigma: bool) {
        let d = Device::default();
        let cfg = UNetConfig {
            model_channels: 32,
            num_res_blocks: 1,
            attention_resolutions: vec![size / 2],
            ..Default::default()
        };
        let out_c = if learn_sigma { 2 * channels } else { channels };
        let net = UNet::new(&cfg, channels, size, out_c, &d).unwrap();
        let x = Tensor::<4>::zeros([2, channels, size, size], &d);
        let y = net.forward(x, &[0.0, 10.0]);
        assert_eq!(y.dims(), [2, out_c, size, size]);
    }

    #[test]
    fn output_shapes_28_32_64_with_and_without_learned_variance() {
        for (s, c) in [(28, 1), (32, 3), (64, 3)] {
            shapes(s, c, false);
            shapes(s, c, true);
        }
    }

    #[test]
    fn split_inference_equals_the_whole_batch() {
        let d = Device::default();
        assert!(
            super::super::parallel::split_helps(&d, 5)
                || std::thread::available_parallelism().map_or(true, |n| n.get() < 2)
        );
        let cfg = UNetConfig {
            model_channels: 32,
            num_res_blocks: 1,
            attention_resolutions: vec![14],
            ..Default::default()
        };
        let net = UNet::new(&cfg, 1, 28, 1, &d).unwrap();
        // Non-zero output convs (they start at zero), so the comparison sees every block.
        let net = crate::tensor_io::map_params(net, &mut |path, _, t| {
            path.contains("out_conv").then(|| {
                Tensor::random(t.dims(), burn::tensor::Distribution::Normal(0.0, 0.05), &d)
            })
        });
        let x = Tensor::<4>::random(
            [5, 1, 28, 28],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &d,
        );
        let ts = [0.0, 3.0, 100.0, 250.0, 499.0];
        let whole = net.forward(x.clone(), &ts);
        let split = net.forward_inference(x, &ts);
        let diff = (whole.clone() - split).abs().max().into_scalar::<f32>();
        let scale = whole.abs().max().into_scalar::<f32>();
        assert!(
            scale > 0.0 && diff <= 1e-5 * scale,
            "diff {diff}, scale {scale}"
        );
    }

    #[test]
    fn bad_heads_is_an_error_naming_the_key() {
        let cfg = UNetConfig {
            model_channels: 64,
            num_heads: 3,
            ..Default::default()
        };
        let e = UNet::new(&cfg, 1, 28, 1, &Device::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("num_heads"), "{e}");
    }
}
