//! The PyTorch name and layout of each daed U-Net parameter (improved-diffusion's and
//! guided-diffusion's `UNetModel` share them), both ways.
use std::collections::BTreeMap;
use std::path::Path;

use crate::tensor_io::NamedArray;
use crate::{Error, Result};

/// How a parameter is laid out in PyTorch relative to daed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// The same shape and order (convolutions, norms, biases, embeddings).
    Same,
    /// A linear layer: PyTorch `[out, in]`, daed (burn) `[in, out]`.
    Linear,
    /// A 1x1 conv1d used as a linear layer (attention's qkv and proj_out): PyTorch
    /// `[out, in, 1]`, daed `[in, out]`.
    Conv1d,
}

impl Layout {
    /// The PyTorch shape of a daed parameter of shape `shape`.
    pub fn torch_shape(self, shape: &[usize]) -> Vec<usize> {
        match (self, shape) {
            (Layout::Linear, [i, o]) => vec![*o, *i],
            (Layout::Conv1d, [i, o]) => vec![*o, *i, 1],
            _ => shape.to_vec(),
        }
    }

    /// daed's values from PyTorch's (`shape` is daed's).
    pub fn from_torch(self, shape: &[usize], data: &[f32]) -> Vec<f32> {
        match (self, shape) {
            (Layout::Linear | Layout::Conv1d, [i, o]) => transpose(data, *o, *i),
            _ => data.to_vec(),
        }
    }

    /// PyTorch's values from daed's (`shape` is daed's).
    pub fn to_torch(self, shape: &[usize], data: &[f32]) -> Vec<f32> {
        match (self, shape) {
            (Layout::Linear | Layout::Conv1d, [i, o]) => transpose(data, *i, *o),
            _ => data.to_vec(),
        }
    }
}

/// Transposes a row-major `rows x cols` matrix.
fn transpose(data: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0f32; data.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = data[r * cols + c];
        }
    }
    out
}

/// The PyTorch key and layout of the daed U-Net parameter at `path` (e.g.
/// `input_blocks.1.res.emb_layer.weight` -> `input_blocks.1.0.emb_layers.1.weight`, linear).
/// `has_attn(i)` says whether decoder block `i` has attention (it moves the upsampler's index).
pub fn torch_name(path: &str, has_attn: &dyn Fn(usize) -> bool) -> Option<(String, Layout)> {
    let parts: Vec<&str> = path.split('.').collect();
    let (name, layout) = match parts.as_slice() {
        ["time_embed_0", p] => (format!("time_embed.0.{p}"), Layout::Linear),
        ["time_embed_2", p] => (format!("time_embed.2.{p}"), Layout::Linear),
        ["label_emb", "weight"] => ("label_emb.weight".into(), Layout::Same),
        ["out_norm", p] => (format!("out.0.{}", norm(p)?), Layout::Same),
        ["out_conv", p] => (format!("out.2.{p}"), Layout::Same),
        ["middle_res_0", rest @ ..] => res("middle_block.0", rest)?,
        ["middle_attn", rest @ ..] => attn("middle_block.1", rest)?,
        ["middle_res_1", rest @ ..] => res("middle_block.2", rest)?,
        [blocks @ ("input_blocks" | "output_blocks"), i, part, rest @ ..] => {
            let i: usize = i.parse().ok()?;
            let at = |k: usize| format!("{blocks}.{i}.{k}");
            match (*part, rest) {
                ("conv", [p]) => (format!("{}.{p}", at(0)), Layout::Same),
                ("res", r) => res(&at(0), r)?,
                ("attn", r) => attn(&at(1), r)?,
                ("down", ["op", p]) => (format!("{}.op.{p}", at(0)), Layout::Same),
                ("up", ["conv", p]) => {
                    let k = if has_attn(i) { 2 } else { 1 };
                    (format!("{}.conv.{p}", at(k)), Layout::Same)
                }
                _ => return None,
            }
        }
        _ => return None,
    };
    Some((name, layout))
}

/// GroupNorm's parameters: burn's gamma/beta are PyTorch's weight/bias.
fn norm(p: &str) -> Option<&'static str> {
    match p {
        "gamma" => Some("weight"),
        "beta" => Some("bias"),
        _ => None,
    }
}

fn res(at: &str, rest: &[&str]) -> Option<(String, Layout)> {
    Some(match rest {
        ["in_norm", p] => (format!("{at}.in_layers.0.{}", norm(p)?), Layout::Same),
        ["in_conv", p] => (format!("{at}.in_layers.2.{p}"), Layout::Same),
        ["emb_layer", p] => (format!("{at}.emb_layers.1.{p}"), Layout::Linear),
        ["out_norm", p] => (format!("{at}.out_layers.0.{}", norm(p)?), Layout::Same),
        ["out_conv", p] => (format!("{at}.out_layers.3.{p}"), Layout::Same),
        ["skip", p] => (format!("{at}.skip_connection.{p}"), Layout::Same),
        _ => return None,
    })
}

fn attn(at: &str, rest: &[&str]) -> Option<(String, Layout)> {
    Some(match rest {
        ["norm", p] => (format!("{at}.norm.{}", norm(p)?), Layout::Same),
        ["qkv", "weight"] => (format!("{at}.qkv.weight"), Layout::Conv1d),
        ["qkv", "bias"] => (format!("{at}.qkv.bias"), Layout::Same),
        ["proj_out", "weight"] => (format!("{at}.proj_out.weight"), Layout::Conv1d),
        ["proj_out", "bias"] => (format!("{at}.proj_out.bias"), Layout::Same),
        _ => return None,
    })
}

/// Whether decoder block `i` has attention, from daed parameter paths (with `prefix`).
fn decoder_attention<'a>(
    paths: impl Iterator<Item = &'a str>,
    prefix: &str,
) -> impl Fn(usize) -> bool {
    let with: std::collections::BTreeSet<usize> = paths
        .filter_map(|p| {
            let rest = p.strip_prefix(prefix)?.strip_prefix("output_blocks.")?;
            let (i, tail) = rest.split_once('.')?;
            tail.starts_with("attn.").then(|| i.parse().ok())?
        })
        .collect();
    move |i| with.contains(&i)
}

/// One daed parameter: its path and shape.
pub struct Slot {
    /// daed's path (without any prefix).
    pub path: String,
    /// daed's shape.
    pub shape: Vec<usize>,
}

/// The daed arrays (keyed `prefix + path`) for `slots` from a PyTorch state dict: every slot's
/// key present with exactly its PyTorch shape, every key of the state dict used. With
/// `mean_channels = Some(c)`, an output conv with 2c channels (learned sigma) keeps its first
/// c (the mean). Errors name the file and the key.
pub fn from_state_dict(
    slots: &[Slot],
    state: &BTreeMap<String, daed_io::pth::PthTensor>,
    prefix: &str,
    mean_channels: Option<usize>,
    origin: &Path,
) -> Result<BTreeMap<String, NamedArray>> {
    let has_attn = decoder_attention(slots.iter().map(|s| s.path.as_str()), "");
    let mut out = BTreeMap::new();
    let mut used = std::collections::BTreeSet::new();
    for s in slots {
        let (key, layout) = torch_name(&s.path, &has_attn).ok_or_else(|| {
            Error::Invalid(format!("daed parameter `{}` has no PyTorch name", s.path))
        })?;
        let t = state.get(&key).ok_or_else(|| {
            Error::ckpt(
                origin,
                format!("missing tensor `{key}` (daed's `{}`)", s.path),
            )
        })?;
        let want = layout.torch_shape(&s.shape);
        let data = match mean_channels {
            Some(c) if s.path.starts_with("out_conv.") && t.shape.first() == Some(&(2 * c)) => {
                let mut halved = t.shape.clone();
                halved[0] = c;
                check_shape(&key, &halved, &want, origin)?;
                t.data[..t.data.len() / 2].to_vec()
            }
            _ => {
                check_shape(&key, &t.shape, &want, origin)?;
                t.data.clone()
            }
        };
        used.insert(key);
        out.insert(
            format!("{prefix}{}", s.path),
            NamedArray {
                shape: s.shape.clone(),
                data: layout.from_torch(&s.shape, &data),
            },
        );
    }
    if let Some(extra) = state.keys().find(|k| !used.contains(*k)) {
        return Err(Error::ckpt(
            origin,
            format!(
                "tensor `{extra}` maps to no parameter of the network the flags describe: check \
                 the flags (class_cond, learn_sigma, attention_resolutions, channel_mult, ...)"
            ),
        ));
    }
    Ok(out)
}

fn check_shape(key: &str, got: &[usize], want: &[usize], origin: &Path) -> Result<()> {
    if got == want {
        return Ok(());
    }
    Err(Error::ckpt(
        origin,
        format!(
            "tensor `{key}` has shape {got:?} but the network the flags describe needs {want:?}"
        ),
    ))
}

/// PyTorch-named arrays from daed's (keys without `prefix`), for export.
pub fn to_state_dict(
    arrays: &BTreeMap<String, NamedArray>,
    prefix: &str,
) -> Result<BTreeMap<String, NamedArray>> {
    let has_attn = decoder_attention(arrays.keys().map(String::as_str), prefix);
    let mut out = BTreeMap::new();
    for (k, a) in arrays {
        let Some(path) = k.strip_prefix(prefix) else {
            continue;
        };
        let (name, layout) = torch_name(path, &has_attn).ok_or_else(|| {
            Error::Invalid(format!("daed parameter `{path}` has no PyTorch name"))
        })?;
        out.insert(
            name,
            NamedArray {
                shape: layout.torch_shape(&a.shape),
                data: layout.to_torch(&a.shape, &a.data),
            },
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_improved_diffusion() {
        let no = |_: usize| false;
        let yes = |_: usize| true;
        let cases = [
            ("time_embed_0.weight", "time_embed.0.weight", Layout::Linear),
            (
                "input_blocks.0.conv.weight",
                "input_blocks.0.0.weight",
                Layout::Same,
            ),
            (
                "input_blocks.1.res.emb_layer.bias",
                "input_blocks.1.0.emb_layers.1.bias",
                Layout::Linear,
            ),
            (
                "input_blocks.2.attn.qkv.weight",
                "input_blocks.2.1.qkv.weight",
                Layout::Conv1d,
            ),
            (
                "input_blocks.3.down.op.weight",
                "input_blocks.3.0.op.weight",
                Layout::Same,
            ),
            (
                "middle_res_1.out_norm.gamma",
                "middle_block.2.out_layers.0.weight",
                Layout::Same,
            ),
            ("out_norm.beta", "out.0.bias", Layout::Same),
            (
                "output_blocks.5.res.skip.weight",
                "output_blocks.5.0.skip_connection.weight",
                Layout::Same,
            ),
        ];
        for (daed, torch, layout) in cases {
            assert_eq!(
                torch_name(daed, &no),
                Some((torch.to_string(), layout)),
                "{daed}"
            );
        }
        assert_eq!(
            torch_name("output_blocks.2.up.conv.bias", &no).unwrap().0,
            "output_blocks.2.1.conv.bias"
        );
        assert_eq!(
            torch_name("output_blocks.2.up.conv.bias", &yes).unwrap().0,
            "output_blocks.2.2.conv.bias"
        );
        assert_eq!(torch_name("nonsense.weight", &no), None);
    }

    fn tensor(shape: &[usize]) -> daed_io::pth::PthTensor {
        let n = shape.iter().product::<usize>();
        daed_io::pth::PthTensor {
            shape: shape.to_vec(),
            data: (0..n).map(|v| v as f32).collect(),
        }
    }

    /// A DAE trained with learn_sigma (2C output channels) keeps its C mean channels; other
    /// shapes, missing keys and unused keys are errors naming the key.
    #[test]
    fn state_dicts_map_exactly_and_a_learned_sigma_dae_keeps_its_mean() {
        let slots = [
            Slot {
                path: "out_conv.weight".into(),
                shape: vec![1, 4, 3, 3],
            },
            Slot {
                path: "out_conv.bias".into(),
                shape: vec![1],
            },
            Slot {
                path: "time_embed_0.weight".into(),
                shape: vec![2, 3],
            },
        ];
        let mut sd = BTreeMap::new();
        sd.insert("out.2.weight".to_string(), tensor(&[2, 4, 3, 3]));
        sd.insert("out.2.bias".to_string(), tensor(&[2]));
        sd.insert("time_embed.0.weight".to_string(), tensor(&[3, 2]));
        let p = Path::new("dae.pt");
        let got = from_state_dict(&slots, &sd, "dae.", Some(1), p).unwrap();
        assert_eq!(
            got["dae.out_conv.weight"].data,
            (0..36).map(|v| v as f32).collect::<Vec<_>>()
        );
        assert_eq!(got["dae.out_conv.bias"].data, vec![0.0]);
        // PyTorch [out = 3, in = 2] -> daed [in = 2, out = 3].
        assert_eq!(
            got["dae.time_embed_0.weight"].data,
            vec![0., 2., 4., 1., 3., 5.]
        );
        // Without the DAE's allowance the doubled output conv is the wrong shape.
        let e = from_state_dict(&slots, &sd, "", None, p)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("out.2.weight") && e.contains("[2, 4, 3, 3]"),
            "{e}"
        );
        // A linear weight stored untransposed (same count, other shape) is refused.
        let mut bad = sd.clone();
        bad.insert("time_embed.0.weight".to_string(), tensor(&[2, 3]));
        let e = from_state_dict(&slots, &bad, "", Some(1), p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("time_embed.0.weight"), "{e}");
        let mut extra = sd.clone();
        extra.insert("label_emb.weight".to_string(), tensor(&[10, 4]));
        let e = from_state_dict(&slots, &extra, "", Some(1), p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("label_emb.weight"), "{e}");
        sd.remove("out.2.bias");
        let e = from_state_dict(&slots, &sd, "", Some(1), p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing tensor `out.2.bias`"), "{e}");
    }

    #[test]
    fn layouts_round_trip() {
        let data: Vec<f32> = (0..6).map(|v| v as f32).collect();
        for l in [Layout::Same, Layout::Linear, Layout::Conv1d] {
            let t = l.to_torch(&[2, 3], &data);
            assert_eq!(l.from_torch(&[2, 3], &t), data);
        }
        // daed [in = 2, out = 3] -> PyTorch [out = 3, in = 2].
        assert_eq!(
            Layout::Linear.to_torch(&[2, 3], &data),
            vec![0., 3., 1., 4., 2., 5.]
        );
        assert_eq!(Layout::Conv1d.torch_shape(&[2, 3]), vec![3, 2, 1]);
    }
}
