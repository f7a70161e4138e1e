//! Where the FID Inception's weights come from: the TensorFlow-named safetensors file, or
//! pytorch-fid's torchvision-named tensors, each conv + batch norm folded into one conv.
//!
//! The network asks for each layer by its torchvision name (`Mixed_5b.branch1x1`) and the
//! TensorFlow name of the same layer (`mixed.conv`); a [`WeightSource`] answers with the conv
//! weight and the batch-norm statistics, which [`fold`] merges into a weight and a bias.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::tensor_io::{read_safetensors, NamedArray};
use crate::{Error, Result};

/// Batch-norm epsilon of the 2015-12-05 graph (TensorFlow's `BatchNormWithGlobalNormalization`).
pub const BN_EPS: f32 = 1e-3;

/// One conv layer with its batch norm, as stored (before folding).
#[derive(Clone, Debug)]
pub struct RawConvBn {
    /// Conv weight, `[out, in, kh, kw]`.
    pub weight: NamedArray,
    /// Batch-norm scale (`None`: 1, as in the TensorFlow graph).
    pub gamma: Option<Vec<f32>>,
    /// Batch-norm shift.
    pub beta: Vec<f32>,
    /// Running mean.
    pub mean: Vec<f32>,
    /// Running variance.
    pub var: Vec<f32>,
    /// Epsilon added to the variance.
    pub eps: f32,
}

/// A set of named tensors holding the network's weights.
pub struct WeightSource {
    arrays: BTreeMap<String, NamedArray>,
    origin: PathBuf,
    naming: Naming,
}

/// How the tensors are named.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Naming {
    /// TensorFlow layer names (`conv`, `mixed_9.tower_mixed_conv`, ...): `weight`, `beta`, `mean`,
    /// `var` per layer; no batch-norm scale. The file shipped in `shared/data/inception`.
    TensorFlow,
    /// torchvision names as in pytorch-fid's `pt_inception-2015-12-05-6726825d.pth`
    /// (`Mixed_5b.branch1x1.conv.weight`, `.bn.weight`, `.bn.bias`, `.bn.running_mean`,
    /// `.bn.running_var`, and `fc.weight`, `fc.bias`).
    Torchvision,
}

impl WeightSource {
    /// Wraps named arrays; `origin` names the file in errors. The naming is detected from the keys.
    pub fn new(arrays: BTreeMap<String, NamedArray>, origin: &Path) -> Result<Self> {
        let naming = if arrays.contains_key("conv.weight") {
            Naming::TensorFlow
        } else if arrays.contains_key("Conv2d_1a_3x3.conv.weight") {
            Naming::Torchvision
        } else {
            return Err(Error::ckpt(
                origin,
                "not FID Inception weights: neither `conv.weight` (TensorFlow names) nor \
                 `Conv2d_1a_3x3.conv.weight` (torchvision names) is present",
            ));
        };
        Ok(Self {
            arrays,
            origin: origin.to_path_buf(),
            naming,
        })
    }

    /// Reads a weight file: `.safetensors` (either naming) or a PyTorch `.pth`/`.pt` state dict
    /// such as pytorch-fid's `pt_inception-2015-12-05-6726825d.pth` (legacy or zip format).
    pub fn open(path: &Path) -> Result<Self> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        if !path.exists() {
            return Err(Error::ckpt(
                path,
                "Inception weights not found: pass --inception PATH to \
                 fid_inception_2015-12-05_pool3.safetensors or pytorch-fid's \
                 pt_inception-2015-12-05-6726825d.pth, or set DAED_INCEPTION",
            ));
        }
        if ext == "pth" || ext == "pt" {
            let arrays = daed_io::pth::read_pth(path)?
                .into_iter()
                .map(|(k, t)| {
                    (
                        k,
                        NamedArray {
                            shape: t.shape,
                            data: t.data,
                        },
                    )
                })
                .collect();
            return Self::new(arrays, path);
        }
        let (arrays, _) = read_safetensors(path)?;
        Self::new(arrays, path)
    }

    /// The detected naming.
    pub fn naming(&self) -> Naming {
        self.naming
    }

    /// The file the weights came from.
    pub fn origin(&self) -> &Path {
        &self.origin
    }

    fn get(&self, key: &str) -> Result<&NamedArray> {
        self.arrays
            .get(key)
            .ok_or_else(|| Error::ckpt(&self.origin, format!("missing tensor `{key}`")))
    }

    fn vec(&self, key: &str, n: usize) -> Result<Vec<f32>> {
        let a = self.get(key)?;
        if a.data.len() != n {
            return Err(Error::ckpt(
                &self.origin,
                format!("tensor `{key}` has shape {:?}, expected [{n}]", a.shape),
            ));
        }
        Ok(a.data.clone())
    }

    /// The layer called `tv` in torchvision and `tf` in TensorFlow, checked against `shape`.
    pub fn conv_bn(&self, tv: &str, tf: &str, shape: [usize; 4]) -> Result<RawConvBn> {
        let n = shape[0];
        let (w, g, b, m, v) = match self.naming {
            Naming::TensorFlow => (
                format!("{tf}.weight"),
                None,
                format!("{tf}.beta"),
                format!("{tf}.mean"),
                format!("{tf}.var"),
            ),
            Naming::Torchvision => (
                format!("{tv}.conv.weight"),
                Some(format!("{tv}.bn.weight")),
                format!("{tv}.bn.bias"),
                format!("{tv}.bn.running_mean"),
                format!("{tv}.bn.running_var"),
            ),
        };
        let weight = self.get(&w)?.clone();
        if weight.shape != shape {
            return Err(Error::ckpt(
                &self.origin,
                format!(
                    "tensor `{w}` has shape {:?}, the FID Inception needs {shape:?}",
                    weight.shape
                ),
            ));
        }
        let gamma = match g {
            Some(k) if self.arrays.contains_key(&k) => Some(self.vec(&k, n)?),
            _ => None,
        };
        Ok(RawConvBn {
            weight,
            gamma,
            beta: self.vec(&b, n)?,
            mean: self.vec(&m, n)?,
            var: self.vec(&v, n)?,
            eps: BN_EPS,
        })
    }

    /// The 1008-way logits layer as `(weight [1008, 2048], bias [1008])`, when present.
    pub fn logits(&self) -> Result<Option<(Vec<f32>, Vec<f32>)>> {
        let (w, b) = match self.naming {
            Naming::Torchvision => ("fc.weight", "fc.bias"),
            Naming::TensorFlow => ("softmax.weights", "softmax.biases"),
        };
        let Some(wa) = self.arrays.get(w) else {
            return Ok(None);
        };
        let mut weight = wa.data.clone();
        match (self.naming, wa.shape.as_slice()) {
            (Naming::Torchvision, [1008, 2048]) => {}
            // TensorFlow stores the matrix as [2048, 1008]: transpose to [1008, 2048].
            (Naming::TensorFlow, [2048, 1008]) => {
                weight = vec![0.0; 2048 * 1008];
                for i in 0..2048 {
                    for j in 0..1008 {
                        weight[j * 2048 + i] = wa.data[i * 1008 + j];
                    }
                }
            }
            (_, s) => {
                return Err(Error::ckpt(
                    &self.origin,
                    format!("logits tensor `{w}` has shape {s:?}, expected 1008 x 2048"),
                ))
            }
        }
        let bias = if self.arrays.contains_key(b) {
            self.vec(b, 1008)?
        } else {
            vec![0.0; 1008]
        };
        Ok(Some((weight, bias)))
    }
}

/// Folds batch norm into the conv: `w' = w * s`, `b' = beta - mean * s` with
/// `s = gamma / sqrt(var + eps)` per output channel (computed in f64).
pub fn fold(raw: &RawConvBn) -> (Vec<f32>, Vec<f32>) {
    let n = raw.weight.shape[0];
    let per = raw.weight.data.len() / n.max(1);
    let mut w = raw.weight.data.clone();
    let mut b = vec![0.0f32; n];
    for o in 0..n {
        let g = raw.gamma.as_ref().map_or(1.0, |g| g[o] as f64);
        let s = g / (raw.var[o] as f64 + raw.eps as f64).sqrt();
        for x in &mut w[o * per..(o + 1) * per] {
            *x = (*x as f64 * s) as f32;
        }
        b[o] = (raw.beta[o] as f64 - raw.mean[o] as f64 * s) as f32;
    }
    (w, b)
}
