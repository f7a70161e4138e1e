//! U-Net building blocks: ResBlock with scale-shift norm, self-attention, up/down sampling.
use super::conv::forward as conv_fwd;
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{
    Dropout, DropoutConfig, GroupNorm, GroupNormConfig, Initializer, Linear, LinearConfig,
    PaddingConfig2d,
};
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use burn::tensor::{Device, Tensor};
use daed_kernels::linear::Layout;

/// GroupNorm with 32 groups (fewer when the channel count is small), eps 1e-5.
pub fn norm(channels: usize, device: &Device) -> GroupNorm {
    let mut groups = 32.min(channels);
    while !channels.is_multiple_of(groups) {
        groups -= 1;
    }
    GroupNormConfig::new(groups, channels).init(device)
}

/// GroupNorm of `x` `[B, C, H, W]` with its affine, optionally the ResBlock's
/// `* (1 + scale) + shift` (`[B, C]` each), and optionally SiLU, as one per-channel multiply-add.
///
/// Same result as `silu(gn.forward(x) * (1 + scale) + shift)`, with far fewer passes over the
/// activation: the statistics are `[B, G]` ([`super::norm::group_stats`]); gamma, beta, scale
/// and shift fold into `[B, C]` coefficients `a = rstd * gamma * (1 + scale)` and
/// `o = beta * (1 + scale) + shift`; and the big tensor is touched once more by
/// `act((x - mean) * a + o)` ([`super::norm::affine_act`]), centred like burn's GroupNorm. On
/// flex both are fused operations with their own backward steps.
pub fn norm_act(
    gn: &GroupNorm,
    x: Tensor<4>,
    scale_shift: Option<(Tensor<2>, Tensor<2>)>,
    act: bool,
) -> Tensor<4> {
    let [b, c, _, _] = x.dims();
    let g = gn.num_groups;
    let (mean, rstd) = super::norm::group_stats(x.clone(), g, gn.epsilon);
    let per_channel = |t: Tensor<3>| t.expand([b, g, c / g]).reshape([b, c]);
    let (mean, rstd) = (per_channel(mean), per_channel(rstd));
    let gamma = gn.gamma.as_ref().map(|p| p.val().reshape([1, c]));
    let beta = gn.beta.as_ref().map(|p| p.val().reshape([1, c]));
    let mut a = match gamma {
        Some(gm) => rstd * gm,
        None => rstd,
    };
    let mut shift = beta.map(|bt| bt.expand([b, c]));
    if let Some((scale, sh)) = scale_shift {
        let s1 = scale.add_scalar(1.0);
        a = a * s1.clone();
        shift = Some(match shift {
            Some(bt) => bt * s1 + sh,
            None => sh,
        });
    }
    let offset = shift.unwrap_or_else(|| Tensor::zeros([b, c], &x.device()));
    super::norm::affine_act(x, [mean, a, offset], act)
}

/// A 3x3 (or 1x1) same-padding convolution; `zero` gives a zero-initialised one.
pub fn conv(cin: usize, cout: usize, k: usize, zero: bool, device: &Device) -> Conv2d {
    let mut c = Conv2dConfig::new([cin, cout], [k, k]).with_padding(PaddingConfig2d::Explicit(
        k / 2,
        k / 2,
        k / 2,
        k / 2,
    ));
    if zero {
        c = c.with_initializer(Initializer::Zeros);
    }
    c.init(device)
}

/// Residual block conditioned on the time embedding.
#[derive(Module, Debug)]
pub struct ResBlock {
    /// Normalisation before the first conv.
    pub in_norm: GroupNorm,
    /// First 3x3 conv.
    pub in_conv: Conv2d,
    /// Projects the embedding to a scale and shift (or a bias).
    pub emb_layer: Linear,
    /// Normalisation before the second conv.
    pub out_norm: GroupNorm,
    /// Dropout before the second conv.
    pub dropout: Dropout,
    /// Second 3x3 conv, zero-initialised.
    pub out_conv: Conv2d,
    /// 1x1 conv on the skip path when the channel count changes.
    pub skip: Option<Conv2d>,
    /// Whether the embedding gives scale and shift.
    pub scale_shift: bool,
}

impl ResBlock {
    /// A block from `cin` to `cout` channels.
    pub fn new(
        cin: usize,
        cout: usize,
        emb: usize,
        dropout: f64,
        scale_shift: bool,
        device: &Device,
    ) -> Self {
        let emb_out = if scale_shift { 2 * cout } else { cout };
        Self {
            in_norm: norm(cin, device),
            in_conv: conv(cin, cout, 3, false, device),
            emb_layer: LinearConfig::new(emb, emb_out).init(device),
            out_norm: norm(cout, device),
            dropout: DropoutConfig::new(dropout).init(),
            out_conv: conv(cout, cout, 3, true, device),
            skip: (cin != cout).then(|| conv(cin, cout, 1, false, device)),
            scale_shift,
        }
    }

    /// x: [B, Cin, H, W], emb: [B, E] (already through SiLU).
    pub fn forward(&self, x: Tensor<4>, emb: Tensor<2>) -> Tensor<4> {
        let h = conv_fwd(
            &self.in_conv,
            norm_act(&self.in_norm, x.clone(), None, true),
        );
        let [b, c, _, _] = h.dims();
        let e = self.emb_layer.forward(emb);
        let h = if self.scale_shift {
            let scale = e.clone().narrow(1, 0, c);
            let shift = e.narrow(1, c, c);
            norm_act(&self.out_norm, h, Some((scale, shift)), true)
        } else {
            norm_act(&self.out_norm, h + e.reshape([b, c, 1, 1]), None, true)
        };
        let h = conv_fwd(&self.out_conv, super::dropout::forward(&self.dropout, h));
        let skip = match &self.skip {
            Some(s) => conv_fwd(s, x),
            None => x,
        };
        skip + h
    }
}

/// How an attention block's joint q/k/v projection is split into heads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AttentionOrder {
    /// improved-diffusion's: each head's q, k and v are contiguous (`[h0: q k v, h1: q k v]`).
    #[default]
    Legacy,
    /// guided-diffusion's `use_new_attention_order`: all heads' q, then k, then v.
    New,
}

/// Multi-head self-attention over the spatial positions.
#[derive(Module, Debug)]
pub struct AttentionBlock {
    /// Normalisation of the input.
    pub norm: GroupNorm,
    /// Joint projection to queries, keys and values.
    pub qkv: Linear,
    /// Output projection, zero-initialised.
    pub proj_out: Linear,
    /// Number of heads.
    pub num_heads: usize,
    /// The q/k/v layout is [`AttentionOrder::New`] (else legacy).
    pub new_order: bool,
}

impl AttentionBlock {
    /// Attention over `channels` channels with `num_heads` heads, q/k/v laid out as `order`.
    pub fn new(channels: usize, num_heads: usize, order: AttentionOrder, device: &Device) -> Self {
        Self {
            norm: norm(channels, device),
            qkv: LinearConfig::new(channels, 3 * channels).init(device),
            proj_out: LinearConfig::new(channels, channels)
                .with_initializer(Initializer::Zeros)
                .init(device),
            num_heads,
            new_order: order == AttentionOrder::New,
        }
    }

    /// x: [B, C, H, W] -> same shape.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, c, h, w] = x.dims();
        let t = h * w;
        let nh = self.num_heads;
        let ch = c / nh;
        let normed = norm_act(&self.norm, x.clone(), None, false).reshape([b, c, t]);
        let qkv = project(&self.qkv, normed, Layout::Channels, Layout::Tokens);
        let (q, k, v) = if self.new_order {
            let part = |i: usize| {
                qkv.clone()
                    .narrow(2, i * c, c)
                    .reshape([b, t, nh, ch])
                    .swap_dims(1, 2)
            };
            (part(0), part(1), part(2))
        } else {
            let qkv = qkv.reshape([b, t, nh, 3 * ch]).swap_dims(1, 2);
            let part = |i: usize| qkv.clone().narrow(3, i * ch, ch);
            (part(0), part(1), part(2))
        };
        let a = attend(q, k, v).swap_dims(1, 2).reshape([b, t, c]);
        let out = project(&self.proj_out, a, Layout::Tokens, Layout::Channels);
        x + out.reshape([b, c, h, w])
    }
}

/// `layer` applied to `x` laid out as `input` (tokens `[B, T, C]` or channels `[B, C, T]`), the
/// result laid out as `output`: daed's kernel reads and writes either layout without a
/// transposing copy, and runs in bf16 in a bf16 scope ([`daed_kernels::linear`]).
fn project(layer: &Linear, x: Tensor<3>, input: Layout, output: Layout) -> Tensor<3> {
    let weight = layer.weight.val();
    let bias = match &layer.bias {
        Some(bias) => bias.val(),
        None => Tensor::zeros([weight.dims()[1]], &weight.device()),
    };
    daed_kernels::linear::linear(x, weight, bias, input, output)
}

/// `softmax(q k^T / sqrt(d)) v` over `[B, heads, T, d]`: daed's fused attention for inference
/// on flex ([`daed_kernels::attention`]), else the operations written out with the scale on `q`.
///
/// burn's fused `attention` (flex's tiled online-softmax kernel) was measured A B A B for the
/// sampling forward at batch 16: Fashion-MNIST U-Net 1.74/1.70 s against 1.60/1.56 s written
/// out (it uses a third of the memory), CIFAR-10 U-Net equal; so it is not used.
pub fn attend(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>) -> Tensor<4> {
    let scale = 1.0 / (q.dims()[3] as f64).sqrt();
    daed_kernels::attention::attend(q, k, v, scale)
}

/// Halves the resolution with a stride-2 3x3 conv.
#[derive(Module, Debug)]
pub struct Downsample {
    /// The strided conv.
    pub op: Conv2d,
}

impl Downsample {
    /// A downsampler keeping `channels`.
    pub fn new(channels: usize, device: &Device) -> Self {
        let op = Conv2dConfig::new([channels, channels], [3, 3])
            .with_stride([2, 2])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .init(device);
        Self { op }
    }
    /// [B, C, H, W] -> [B, C, ceil(H/2), ceil(W/2)].
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        conv_fwd(&self.op, x)
    }
}

/// Doubles the resolution (nearest neighbour) then a 3x3 conv.
#[derive(Module, Debug)]
pub struct Upsample {
    /// The conv after upsampling.
    pub conv: Conv2d,
}

impl Upsample {
    /// An upsampler keeping `channels`.
    pub fn new(channels: usize, device: &Device) -> Self {
        Self {
            conv: conv(channels, channels, 3, false, device),
        }
    }
    /// [B, C, H, W] -> [B, C, out_h, out_w] (2H x 2W unless a skip needs another size).
    pub fn forward(&self, x: Tensor<4>, out_hw: [usize; 2]) -> Tensor<4> {
        let up = interpolate(
            x,
            InterpolateOptions::new(InterpolateMode::Nearest).with_output_size(out_hw),
        );
        conv_fwd(&self.conv, up)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::activation::{silu, softmax};
    use burn::tensor::Distribution;

    fn written_out(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>) -> Tensor<4> {
        let d = q.dims()[3] as f64;
        softmax(q.matmul(k.swap_dims(2, 3)).div_scalar(d.sqrt()), 3).matmul(v)
    }

    #[test]
    fn folded_norm_equals_group_norm_then_scale_shift() {
        let dev = Device::default();
        let mut gn = norm(64, &dev);
        let r = |s: [usize; 1]| Tensor::<1>::random(s, Distribution::Normal(0.0, 1.0), &dev);
        gn.gamma = gn.gamma.map(|p| p.map(|_| r([64])));
        gn.beta = gn.beta.map(|p| p.map(|_| r([64])));
        // A large mean next to a small spread: centring keeps it exact.
        let x = Tensor::<4>::random([3, 64, 5, 7], Distribution::Normal(0.0, 1.0), &dev)
            .mul_scalar(0.5)
            .add_scalar(20.0);
        let scale = Tensor::<2>::random([3, 64], Distribution::Normal(0.0, 1.0), &dev);
        let shift = Tensor::<2>::random([3, 64], Distribution::Normal(0.0, 1.0), &dev);
        let want = gn.forward(x.clone());
        assert!(max_diff(norm_act(&gn, x.clone(), None, false), want.clone()) < 1e-4);
        let want = want * scale.clone().reshape([3, 64, 1, 1]).add_scalar(1.0)
            + shift.clone().reshape([3, 64, 1, 1]);
        let got = norm_act(&gn, x.clone(), Some((scale.clone(), shift.clone())), false);
        assert!(max_diff(got, want.clone()) < 1e-4);
        let got = norm_act(&gn, x, Some((scale, shift)), true);
        assert!(max_diff(got, silu(want)) < 1e-4);
    }

    fn max_diff(a: Tensor<4>, b: Tensor<4>) -> f32 {
        (a - b).abs().max().into_scalar::<f32>()
    }

    /// Gradients through the fused GroupNorm + scale-shift + SiLU (flex's own backward steps)
    /// equal those through burn's GroupNorm written out, for the input, gamma, beta, scale and
    /// shift.
    #[test]
    fn folded_norm_gradients_equal_group_norm_written_out() {
        let dev = Device::flex().autodiff();
        let r = |s: [usize; 2], m: f64| Tensor::<2>::random(s, Distribution::Normal(m, 0.5), &dev);
        let x = Tensor::<4>::random([2, 8, 5, 3], Distribution::Normal(2.0, 1.5), &dev);
        let (scale, shift) = (r([2, 8], 0.0), r([2, 8], 0.0));
        let (gamma, beta) = (r([1, 8], 1.0).reshape([8]), r([1, 8], 0.0).reshape([8]));
        let run = |fused: bool| {
            let mut gn = norm(8, &dev);
            gn.gamma = gn.gamma.map(|p| p.map(|_| gamma.clone().require_grad()));
            gn.beta = gn.beta.map(|p| p.map(|_| beta.clone().require_grad()));
            let (x, sc, sh) = (
                x.clone().require_grad(),
                scale.clone().require_grad(),
                shift.clone().require_grad(),
            );
            let y = if fused {
                norm_act(&gn, x.clone(), Some((sc.clone(), sh.clone())), true)
            } else {
                let y = gn.forward(x.clone()) * sc.clone().reshape([2, 8, 1, 1]).add_scalar(1.0)
                    + sh.clone().reshape([2, 8, 1, 1]);
                silu(y)
            };
            let w = y.clone().detach().sin();
            let grads = (y * w).sum().backward();
            let g1 = |t: Option<Tensor<1>>| t.expect("gradient").into_data().try_to_vec::<f32>();
            let g2 = |t: Option<Tensor<2>>| t.expect("gradient").into_data().try_to_vec::<f32>();
            let g4 = |t: Option<Tensor<4>>| t.expect("gradient").into_data().try_to_vec::<f32>();
            let gamma = gn.gamma.as_ref().unwrap().val().grad(&grads);
            let beta = gn.beta.as_ref().unwrap().val().grad(&grads);
            [
                g4(x.grad(&grads)).unwrap(),
                g1(gamma).unwrap(),
                g1(beta).unwrap(),
                g2(sc.grad(&grads)).unwrap(),
                g2(sh.grad(&grads)).unwrap(),
            ]
        };
        let (ours, theirs) = (run(true), run(false));
        for ((a, b), what) in ours
            .iter()
            .zip(&theirs)
            .zip(["x", "gamma", "beta", "scale", "shift"])
        {
            let scale = b.iter().fold(1.0f32, |m, v| m.max(v.abs()));
            for (i, (p, q)) in a.iter().zip(b).enumerate() {
                assert!((p - q).abs() <= 1e-4 * scale, "d{what}[{i}]: {p} vs {q}");
            }
        }
    }

    #[test]
    fn attention_equals_the_formula_with_and_without_gradients() {
        for t in [49, 784] {
            let dev = Device::default();
            let r = |s: [usize; 4]| Tensor::<4>::random(s, Distribution::Normal(0.0, 1.0), &dev);
            let (q, k, v) = (r([2, 4, t, 16]), r([2, 4, t, 16]), r([2, 4, t, 16]));
            let want = written_out(q.clone(), k.clone(), v.clone());
            let plain = attend(q.clone(), k.clone(), v.clone());
            assert!(max_diff(plain, want.clone()) < 1e-5, "T = {t}");
            let ad = dev.clone().autodiff();
            let to = |x: &Tensor<4>| Tensor::<4>::from_data(x.to_data(), &ad);
            let grad_path = attend(to(&q), to(&k), to(&v));
            let back = Tensor::<4>::from_data(grad_path.to_data(), &dev);
            assert!(max_diff(back, want) < 1e-5, "autodiff path, T = {t}");
        }
    }
}
