//! AdamW, gradient clipping and EMA over named parameters (state saved as safetensors).
use std::collections::{BTreeMap, HashMap};

use burn::module::{Module, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::{Tensor, TensorData};

use crate::tensor_io::{map_params, params, to_vec, NamedArray};
use crate::Result;

/// AdamW hyper-parameters (PyTorch's defaults for betas and eps).
#[derive(Clone, Debug)]
pub struct AdamWSettings {
    /// Learning rate.
    pub lr: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
    /// First-moment decay.
    pub beta1: f64,
    /// Second-moment decay.
    pub beta2: f64,
    /// Denominator epsilon.
    pub eps: f64,
    /// Clip the global gradient norm to this value (None: no clipping).
    pub grad_clip: Option<f64>,
}

/// AdamW moments keyed by parameter path.
#[derive(Default)]
pub struct AdamW {
    /// Number of updates done (for bias correction).
    pub t: u64,
    /// First moments.
    pub m: HashMap<String, Tensor<1>>,
    /// Second moments.
    pub v: HashMap<String, Tensor<1>>,
}

fn flat_grad(grads: &GradientsParams, id: ParamId, rank: usize, n: usize) -> Option<Tensor<1>> {
    match rank {
        1 => grads.get::<1>(id),
        2 => grads.get::<2>(id).map(|g| g.reshape([n])),
        3 => grads.get::<3>(id).map(|g| g.reshape([n])),
        4 => grads.get::<4>(id).map(|g| g.reshape([n])),
        _ => None,
    }
}

impl AdamW {
    /// One update of `module` with `grads` at learning rate `lr`; returns the gradient norm.
    pub fn step<M: Module>(
        &mut self,
        module: M,
        grads: &GradientsParams,
        s: &AdamWSettings,
        lr: f64,
    ) -> Result<(M, f64)> {
        let entries = params(&module);
        let mut flat: HashMap<ParamId, Tensor<1>> = HashMap::new();
        let mut sq: Option<Tensor<1>> = None;
        for e in &entries {
            let n = e.shape.iter().product();
            if let Some(g) = flat_grad(grads, e.id, e.shape.len(), n) {
                let s2 = g.clone().square().sum();
                sq = Some(match sq {
                    Some(a) => a + s2,
                    None => s2,
                });
                flat.insert(e.id, g);
            }
        }
        let norm = match sq {
            Some(t) => (to_vec(t)?[0] as f64).sqrt(),
            None => 0.0,
        };
        let clip = match s.grad_clip {
            Some(c) if norm > c && norm > 0.0 => c / norm,
            _ => 1.0,
        };
        self.t += 1;
        let bc1 = 1.0 - s.beta1.powi(self.t as i32);
        let bc2 = 1.0 - s.beta2.powi(self.t as i32);
        let step = daed_kernels::optim::AdamStep {
            clip,
            beta1: s.beta1,
            beta2: s.beta2,
            bc2,
            eps: s.eps,
            decay: (s.weight_decay > 0.0).then_some(1.0 - lr * s.weight_decay),
            step_size: lr / bc1,
        };
        let m_map = &mut self.m;
        let v_map = &mut self.v;
        let module = map_params(module, &mut |path, id, p| {
            let g = flat.remove(&id)?;
            let mv = m_map.remove(path).zip(v_map.remove(path));
            let (p, m, v) = daed_kernels::optim::adamw(p, g, mv, &step);
            m_map.insert(path.to_string(), m);
            v_map.insert(path.to_string(), v);
            Some(p)
        });
        Ok((module, norm))
    }

    /// Host copies of the moments, keyed `adam_m.<path>` / `adam_v.<path>`.
    pub fn arrays(&self) -> Result<BTreeMap<String, NamedArray>> {
        let mut out = BTreeMap::new();
        for (prefix, map) in [("adam_m.", &self.m), ("adam_v.", &self.v)] {
            for (k, t) in map {
                let data = to_vec(t.clone())?;
                out.insert(
                    format!("{prefix}{k}"),
                    NamedArray {
                        shape: vec![data.len()],
                        data,
                    },
                );
            }
        }
        Ok(out)
    }

    /// Rebuilds the state from saved arrays on `device`.
    pub fn from_arrays(
        t: u64,
        arrays: &BTreeMap<String, NamedArray>,
        device: &burn::tensor::Device,
    ) -> Self {
        let mut s = AdamW {
            t,
            ..Default::default()
        };
        for (k, a) in arrays {
            let tensor =
                || Tensor::from_data(TensorData::new(a.data.clone(), [a.data.len()]), device);
            if let Some(p) = k.strip_prefix("adam_m.") {
                s.m.insert(p.to_string(), tensor());
            } else if let Some(p) = k.strip_prefix("adam_v.") {
                s.v.insert(p.to_string(), tensor());
            }
        }
        s
    }

    /// Checks the moments read from a file against `module`: one `adam_m` and one `adam_v` of the
    /// parameter's size for each parameter that has them, no other; `origin` names the file.
    pub fn check<M: Module>(&self, module: &M, origin: &std::path::Path) -> Result<()> {
        let sizes: HashMap<String, usize> = params(module)
            .into_iter()
            .map(|p| (p.path, p.shape.iter().product()))
            .collect();
        for (kind, moments) in [("adam_m", &self.m), ("adam_v", &self.v)] {
            for (path, t) in moments {
                let n = t.dims()[0];
                match sizes.get(path) {
                    Some(&want) if want == n => {}
                    Some(&want) => {
                        return Err(crate::Error::ckpt(
                            origin,
                            format!("`{kind}.{path}` has {n} values, the parameter {want}"),
                        ))
                    }
                    None => {
                        return Err(crate::Error::ckpt(
                            origin,
                            format!("`{kind}.{path}` belongs to no parameter of the model"),
                        ))
                    }
                }
            }
        }
        Ok(())
    }
}

/// ema <- rate * ema + (1 - rate) * model, parameter by parameter (matched by path).
pub fn ema_update<M: Module, E: Module>(ema: E, model: &M, rate: f64) -> E {
    let mut src: HashMap<String, Tensor<1>> = params(model)
        .into_iter()
        .map(|p| (p.path, p.value))
        .collect();
    map_params(ema, &mut |path, _, e| {
        let p = src.remove(path)?;
        let p = p.to_device(&e.device());
        // e + (p - e)(1 - rate): exact when p == e (a frozen network stays bit-identical).
        Some(daed_kernels::optim::ema(e, p, rate))
    })
}
