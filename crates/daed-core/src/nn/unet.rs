//! improved-diffusion's U-Net: time embedding, ResBlocks, attention, skip connections.
use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::nn::{Embedding, EmbeddingConfig, GroupNorm, Linear, LinearConfig};
use burn::tensor::activation::silu;
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::blocks::{
    conv, norm, norm_act, AttentionBlock, AttentionOrder, Downsample, ResBlock, Upsample,
};
use super::conv::forward as conv_fwd;
use crate::{Error, Result};

/// How a class-conditional U-Net takes its class.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LabelConditioning {
    /// improved-diffusion's learned `label_emb`, added to the time embedding.
    #[default]
    Embedding,
    /// The paper code's: the one-hot class appended to a time embedding num_classes shorter.
    OneHot,
}

/// Architecture hyper-parameters (names follow improved-diffusion's flags).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UNetConfig {
    /// Base channel count (`num_channels`).
    pub model_channels: usize,
    /// Channel multiplier per resolution level; empty = by image size (28: 1,2,2;
    /// 32: 1,2,2,2; 64: 1,2,3,4).
    pub channel_mult: Vec<usize>,
    /// Residual blocks per level (the decoder has one more; 0 is allowed, as in PyTorch).
    pub num_res_blocks: usize,
    /// Resolutions with attention, as improved-diffusion: each r gives the downsample
    /// factor image_size / r (integer division); e.g. [16, 8].
    pub attention_resolutions: Vec<usize>,
    /// Attention heads (channels must be divisible by it).
    pub num_heads: usize,
    /// Channels per attention head (`num_head_channels`); when set it replaces `num_heads`:
    /// each attention block gets channels / num_head_channels heads.
    pub num_head_channels: Option<usize>,
    /// Heads of the decoder's attention blocks (`num_heads_upsample`); unset = `num_heads`.
    pub num_heads_upsample: Option<usize>,
    /// How the joint q/k/v projection is split into heads: `legacy` (improved-diffusion: per
    /// head q, k, v) or `new` (guided-diffusion's `use_new_attention_order`: all q, k, v).
    pub attention_order: AttentionOrder,
    /// Class-conditional with this many classes.
    pub num_classes: Option<usize>,
    /// How a class-conditional model takes its class: `embedding` (improved-diffusion's
    /// learned `label_emb`, added to the time embedding) or `one-hot` (the paper code's: the
    /// time embedding is num_classes shorter and the one-hot class is appended).
    pub label_conditioning: LabelConditioning,
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
            num_head_channels: None,
            num_heads_upsample: None,
            attention_order: AttentionOrder::Legacy,
            num_classes: None,
            label_conditioning: LabelConditioning::Embedding,
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

    /// The number of heads of an attention block over `channels` channels (in the decoder when
    /// `up`), as improved/guided-diffusion choose it; an error names the key that does not fit.
    pub fn heads(&self, channels: usize, up: bool) -> std::result::Result<usize, String> {
        if let Some(hc) = self.num_head_channels {
            return if channels.is_multiple_of(hc) {
                Ok(channels / hc)
            } else {
                Err(format!(
                    "num_head_channels = {hc} does not divide {channels} channels \
                     (model_channels x channel_mult)"
                ))
            };
        }
        let (key, n) = match self.num_heads_upsample {
            Some(n) if up => ("num_heads_upsample", n),
            _ => ("num_heads", self.num_heads),
        };
        if channels.is_multiple_of(n) {
            Ok(n)
        } else {
            Err(format!(
                "{key} = {n} does not divide {channels} channels (model_channels x channel_mult)"
            ))
        }
    }

    /// Checks the ranges; errors name the key.
    pub fn validate(&self, image_size: usize) -> Result<()> {
        let bad = |m: String| Err(Error::Invalid(format!("unet.{m}")));
        if self.model_channels == 0 {
            return bad("model_channels must be at least 1".into());
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad(format!("dropout must be in [0, 1), got {}", self.dropout));
        }
        if self.num_heads == 0 || self.num_heads_upsample == Some(0) {
            return bad("num_heads and num_heads_upsample must be at least 1".into());
        }
        if self.num_head_channels == Some(0) {
            return bad("num_head_channels must be at least 1 (or unset to use num_heads)".into());
        }
        let mults = self.mults(image_size);
        if mults.contains(&0) {
            return bad("channel_mult entries must be positive".into());
        }
        for &m in &mults {
            if m.checked_mul(self.model_channels).is_none() {
                return bad(format!(
                    "model_channels x channel_mult = {} x {m} is too large",
                    self.model_channels
                ));
            }
        }
        match (self.num_classes, self.label_conditioning) {
            (Some(0), _) => {
                return bad(
                    "num_classes must be at least 1 (or unset for an unconditional model)".into(),
                )
            }
            (Some(n), LabelConditioning::OneHot) if n >= 4 * self.model_channels => {
                return bad(format!(
                    "num_classes = {n} must be below the time embedding's 4 x model_channels = {} \
                     with one-hot conditioning",
                    4 * self.model_channels
                ))
            }
            _ => {}
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
        // Heads must divide the channels wherever there is attention: the middle, and each
        // level whose downsample factor has it (encoder and decoder).
        let head_err = |m: String| Error::Invalid(format!("unet.{m}"));
        let deepest_ch = mults[deepest] * self.model_channels;
        self.heads(deepest_ch, false).map_err(head_err)?;
        for (l, &m) in mults.iter().enumerate() {
            if self
                .attention_resolutions
                .iter()
                .any(|r| image_size / r == 1 << l)
            {
                self.heads(m * self.model_channels, false)
                    .map_err(head_err)?;
                self.heads(m * self.model_channels, true)
                    .map_err(head_err)?;
            }
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
    /// Class embedding added to the time embedding (class-conditional models).
    pub label_emb: Option<Embedding>,
    /// Classes appended one-hot to the time embedding (the paper code's conditioning; 0: none).
    pub one_hot_classes: usize,
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
        let one_hot = match (cfg.num_classes, cfg.label_conditioning) {
            (Some(n), LabelConditioning::OneHot) => n,
            _ => 0,
        };
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
        let order = cfg.attention_order;
        let heads = |ch, up| {
            cfg.heads(ch, up)
                .map_err(|m| Error::Invalid(format!("unet.{m}")))
        };
        let attn = |ch, up| -> Result<AttentionBlock> {
            Ok(AttentionBlock::new(ch, heads(ch, up)?, order, device))
        };

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
                    l.attn = Some(attn(ch, false)?);
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
        let middle_attn = attn(ch, false)?;
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
                    l.attn = Some(attn(ch, true)?);
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
            time_embed_2: LinearConfig::new(emb, emb - one_hot).init(device),
            label_emb: match (cfg.num_classes, cfg.label_conditioning) {
                (Some(n), LabelConditioning::Embedding) => {
                    Some(EmbeddingConfig::new(n, emb).init(device))
                }
                _ => None,
            },
            one_hot_classes: one_hot,
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
        self.forward_labelled(x, timesteps, None)
    }

    /// The number of classes of a class-conditional model (None: unconditional).
    pub fn num_classes(&self) -> Option<usize> {
        match &self.label_emb {
            Some(e) => Some(e.weight.dims()[0]),
            None => (self.one_hot_classes > 0).then_some(self.one_hot_classes),
        }
    }

    /// [`forward`](Self::forward) with class labels (one per image) for a class-conditional
    /// model; the labels are ignored by an unconditional one. Labels must be below
    /// [`num_classes`](Self::num_classes) (checked by the callers that take user input).
    pub fn forward_labelled(
        &self,
        x: Tensor<4>,
        timesteps: &[f32],
        labels: Option<&[usize]>,
    ) -> Tensor<4> {
        let device = x.device();
        let emb = self.timestep_embedding(timesteps, &device);
        let mut emb = self
            .time_embed_2
            .forward(silu(self.time_embed_0.forward(emb)));
        if let (Some(le), Some(y)) = (&self.label_emb, labels) {
            let idx: Vec<i64> = y.iter().map(|&c| c as i64).collect();
            let idx = Tensor::<1, Int>::from_data(TensorData::new(idx, [y.len()]), &device);
            emb = emb + le.weight.val().select(0, idx);
        }
        if self.one_hot_classes > 0 {
            // Without labels the one-hot part is all zeros.
            let n = self.one_hot_classes;
            let b = timesteps.len();
            let mut v = vec![0f32; b * n];
            for (i, &c) in labels.unwrap_or(&[]).iter().enumerate() {
                v[i * n + c] = 1.0;
            }
            let hot = Tensor::<2>::from_data(TensorData::new(v, [b, n]), &device);
            emb = Tensor::cat(vec![emb, hot], 1);
        }
        let emb = silu(emb);
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
        self.forward_inference_labelled(x, timesteps, None)
    }

    /// [`forward_inference`](Self::forward_inference) with class labels.
    pub fn forward_inference_labelled(
        &self,
        x: Tensor<4>,
        timesteps: &[f32],
        labels: Option<&[usize]>,
    ) -> Tensor<4> {
        super::parallel::on_halves(
            x,
            |x, rows| {
                let y = labels.map(|y| &y[rows.clone()]);
                self.forward_labelled(x, &timesteps[rows], y)
            },
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
