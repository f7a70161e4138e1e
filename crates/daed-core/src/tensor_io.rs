//! Named parameters and safetensors files.
//!
//! Parameters are addressed by their module path (`input_blocks.1.res.in_conv.weight`), so the
//! model, its EMA copy and the optimizer moments all share one naming, stored as safetensors.
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::tensor::{Tensor, TensorData};

use crate::{Error, Result};

/// A named f32 array: shape and row-major values.
#[derive(Clone, Debug, PartialEq)]
pub struct NamedArray {
    /// Dimensions.
    pub shape: Vec<usize>,
    /// Values, row-major.
    pub data: Vec<f32>,
}

/// One parameter of a module: its path, id, and flattened value.
pub struct ParamEntry {
    /// Dotted module path.
    pub path: String,
    /// burn's parameter id (for gradients).
    pub id: ParamId,
    /// Original shape.
    pub shape: Vec<usize>,
    /// The value, flattened (on the module's device, without autodiff).
    pub value: Tensor<1>,
}

#[derive(Default)]
struct Collector {
    path: Vec<String>,
    out: Vec<ParamEntry>,
}

impl ModuleVisitor for Collector {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let t = param.val();
        let shape = t.dims().to_vec();
        let n = shape.iter().product::<usize>();
        let value = t.inner().reshape([n]);
        self.out.push(ParamEntry {
            path: self.path.join("."),
            id: param.id,
            shape,
            value,
        });
    }
}

/// Every float parameter of `module`, in traversal order.
pub fn params<M: Module>(module: &M) -> Vec<ParamEntry> {
    let mut c = Collector::default();
    module.visit(&mut c);
    c.out
}

/// Replaces each parameter by `f(path, current_flat) -> new_flat` (None keeps it).
pub fn map_params<M: Module>(
    module: M,
    f: &mut dyn FnMut(&str, ParamId, Tensor<1>) -> Option<Tensor<1>>,
) -> M {
    struct Mapper<'a> {
        path: Vec<String>,
        f: &'a mut dyn FnMut(&str, ParamId, Tensor<1>) -> Option<Tensor<1>>,
    }
    impl ModuleMapper for Mapper<'_> {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.pop();
        }
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let path = self.path.join(".");
            let (id, tensor, mapper) = param.consume();
            let dims = tensor.dims();
            let n = dims.iter().product::<usize>();
            let require_grad = tensor.is_require_grad();
            let is_ad = tensor.device().is_autodiff();
            let flat = tensor.clone().inner().reshape([n]);
            match (self.f)(&path, id, flat) {
                Some(new) => {
                    let mut t: Tensor<D> = new.reshape(dims);
                    if is_ad {
                        t = Tensor::from_inner(t);
                        if require_grad {
                            t = t.require_grad();
                        }
                    }
                    Param::from_mapped_value(id, t, mapper)
                }
                None => Param::from_mapped_value(id, tensor, mapper),
            }
        }
    }
    let mut m = Mapper {
        path: Vec::new(),
        f,
    };
    module.map(&mut m)
}

/// Reads a module's parameters into host arrays keyed by path (with a prefix).
pub fn module_arrays<M: Module>(module: &M, prefix: &str) -> Result<BTreeMap<String, NamedArray>> {
    params(module)
        .into_iter()
        .map(|p| {
            let data = to_vec(p.value)?;
            Ok((
                format!("{prefix}{}", p.path),
                NamedArray {
                    shape: p.shape,
                    data,
                },
            ))
        })
        .collect()
}

/// Loads parameters from `arrays` (keys `prefix + path`): every parameter must be present with
/// exactly its shape (a square weight stored transposed has the right count and the wrong
/// shape), and every array under `prefix` must be used. `origin` names the file in errors.
pub fn load_module<M: Module>(
    module: M,
    arrays: &BTreeMap<String, NamedArray>,
    prefix: &str,
    origin: &Path,
) -> Result<M> {
    let mut used = std::collections::BTreeSet::new();
    for p in params(&module) {
        let key = format!("{prefix}{}", p.path);
        match arrays.get(&key) {
            None => return Err(Error::ckpt(origin, format!("missing tensor `{key}`"))),
            Some(a) if a.shape != p.shape || a.data.len() != p.shape.iter().product::<usize>() => {
                return Err(Error::ckpt(
                    origin,
                    format!(
                        "tensor `{key}` has shape {:?} ({} values) but the model needs {:?}: the \
                         checkpoint was made for another architecture",
                        a.shape,
                        a.data.len(),
                        p.shape
                    ),
                ))
            }
            Some(_) => used.insert(key),
        };
    }
    if let Some(extra) = arrays
        .keys()
        .find(|k| k.starts_with(prefix) && !used.contains(*k))
    {
        return Err(Error::ckpt(
            origin,
            format!("tensor `{extra}` is not a parameter of the model: the checkpoint was made for another architecture"),
        ));
    }
    Ok(map_params(module, &mut |path, _, cur| {
        let a = &arrays[&format!("{prefix}{path}")];
        Some(Tensor::from_data(
            TensorData::new(a.data.clone(), [a.data.len()]),
            &cur.device(),
        ))
    }))
}

/// Host copy of a flat tensor.
pub fn to_vec(t: Tensor<1>) -> Result<Vec<f32>> {
    t.into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .map_err(|e| Error::Invalid(format!("tensor read-back failed: {e:?}")))
}

/// Serialises named arrays as safetensors (F32, little-endian) with string metadata.
pub fn safetensors_bytes(
    arrays: &BTreeMap<String, NamedArray>,
    metadata: &BTreeMap<String, String>,
) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    if !metadata.is_empty() {
        header.insert(
            "__metadata__".into(),
            serde_json::to_value(metadata).expect("string map"),
        );
    }
    let mut offset = 0usize;
    for (k, a) in arrays {
        let end = offset + 4 * a.data.len();
        header.insert(
            k.clone(),
            serde_json::json!({"dtype": "F32", "shape": a.shape, "data_offsets": [offset, end]}),
        );
        offset = end;
    }
    let mut h = serde_json::to_vec(&serde_json::Value::Object(header)).expect("json");
    while !h.len().is_multiple_of(8) {
        h.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + h.len() + offset);
    out.extend_from_slice(&(h.len() as u64).to_le_bytes());
    out.extend_from_slice(&h);
    for a in arrays.values() {
        for v in &a.data {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    out
}

/// Parses safetensors bytes (F32, F64 and F16 read as f32); `path` names the file in errors.
pub fn parse_safetensors(
    bytes: &[u8],
    path: &Path,
) -> Result<(BTreeMap<String, NamedArray>, BTreeMap<String, String>)> {
    let bad = |m: String| Error::ckpt(path, format!("not a valid safetensors file: {m}"));
    if bytes.len() < 8 {
        return Err(bad(format!("only {} bytes", bytes.len())));
    }
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    if n > bytes.len() - 8 {
        return Err(bad(format!(
            "header of {n} bytes but the file has {}",
            bytes.len()
        )));
    }
    let header: HashMap<String, serde_json::Value> =
        serde_json::from_slice(&bytes[8..8 + n]).map_err(|e| bad(format!("header JSON: {e}")))?;
    let data = &bytes[8 + n..];
    let mut arrays = BTreeMap::new();
    let mut meta = BTreeMap::new();
    for (k, v) in header {
        if k == "__metadata__" {
            if let Some(o) = v.as_object() {
                for (mk, mv) in o {
                    meta.insert(mk.clone(), mv.as_str().unwrap_or_default().to_string());
                }
            }
            continue;
        }
        let dtype = v["dtype"].as_str().unwrap_or("");
        let shape: Vec<usize> = serde_json::from_value(v["shape"].clone())
            .map_err(|_| bad(format!("tensor `{k}`: bad shape")))?;
        let offs: [usize; 2] = serde_json::from_value(v["data_offsets"].clone())
            .map_err(|_| bad(format!("tensor `{k}`: bad data_offsets")))?;
        if offs[1] > data.len() || offs[0] > offs[1] {
            return Err(bad(format!(
                "tensor `{k}` ends at byte {} but the data is {} bytes (truncated file?)",
                offs[1],
                data.len()
            )));
        }
        let raw = &data[offs[0]..offs[1]];
        let count: usize = shape.iter().product();
        let values: Vec<f32> = match dtype {
            "F32" => raw
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().expect("4")))
                .collect(),
            "F64" => raw
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().expect("8")) as f32)
                .collect(),
            "F16" => raw
                .chunks_exact(2)
                .map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]])))
                .collect(),
            other => {
                return Err(bad(format!(
                    "tensor `{k}` has dtype {other}; only F32, F64 and F16 are read"
                )))
            }
        };
        if values.len() != count {
            return Err(bad(format!(
                "tensor `{k}`: shape {shape:?} needs {count} values, found {}",
                values.len()
            )));
        }
        arrays.insert(
            k,
            NamedArray {
                shape,
                data: values,
            },
        );
    }
    Ok((arrays, meta))
}

/// Reads a safetensors file.
pub fn read_safetensors(
    path: &Path,
) -> Result<(BTreeMap<String, NamedArray>, BTreeMap<String, String>)> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse_safetensors(&bytes, path)
}

fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) & 1) as u32;
    let exp = ((h >> 10) & 0x1f) as i32;
    let frac = (h & 0x3ff) as f32;
    let v = match exp {
        0 => frac * 2f32.powi(-24),
        31 => {
            if frac == 0.0 {
                f32::INFINITY
            } else {
                f32::NAN
            }
        }
        e => (1.0 + frac / 1024.0) * 2f32.powi(e - 15),
    };
    if sign == 1 {
        -v
    } else {
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safetensors_round_trip_and_truncation() {
        let mut a = BTreeMap::new();
        a.insert(
            "w".to_string(),
            NamedArray {
                shape: vec![2, 3],
                data: vec![1.0, 2.0, 3.0, 4.0, 5.0, -6.5],
            },
        );
        a.insert(
            "b".to_string(),
            NamedArray {
                shape: vec![1],
                data: vec![0.25],
            },
        );
        let mut m = BTreeMap::new();
        m.insert("step".to_string(), "7".to_string());
        let bytes = safetensors_bytes(&a, &m);
        let (back, meta) = parse_safetensors(&bytes, Path::new("x.safetensors")).unwrap();
        assert_eq!(back, a);
        assert_eq!(meta, m);
        let e =
            parse_safetensors(&bytes[..bytes.len() - 4], Path::new("x.safetensors")).unwrap_err();
        assert!(
            e.to_string().contains("x.safetensors") && e.to_string().contains("truncated"),
            "{e}"
        );
    }
}
