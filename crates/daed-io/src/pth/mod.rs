//! PyTorch `.pth`/`.pt` state dicts, read without Python: the zip format of `torch.save` (torch
//! 1.6 and later) and the legacy pickle-stream format before it (e.g. pytorch-fid's 2019
//! `pt_inception-2015-12-05-6726825d.pth`). Every tensor comes back as `f32` in row-major order.
//!
//! A small pickle machine understands what `torch.save` writes for a state dict: the binary
//! opcodes of protocols 2-5 it emits, `collections.OrderedDict`, tensors rebuilt by
//! `torch._utils._rebuild_tensor_v2` (or the older `_rebuild_tensor`) and `_rebuild_parameter`,
//! over typed storages (`torch.FloatStorage`, `DoubleStorage`, `HalfStorage`, `BFloat16Storage`,
//! `LongStorage`, `IntStorage`, `ShortStorage`, `CharStorage`, `ByteStorage`, `BoolStorage`). No
//! code is ever run: any other global becomes an opaque placeholder, ignored where it does not
//! matter (`argparse.Namespace` next to a `state_dict`) and an error naming the global where a
//! tensor of the state dict should be.
//!
//! Layout of the two formats (as `torch/serialization.py` writes them):
//! - zip: `<dir>/data.pkl` is the pickle; each storage is the stored (uncompressed) entry
//!   `<dir>/data/<key>`, raw little-endian; the persistent id of a storage is
//!   `('storage', storage_type, key, location, numel)`.
//! - legacy: five pickles in a row (magic number `0x1950a86a20f9469cfc6c`, protocol version 1001,
//!   system info, the object, the list of storage keys), then per listed key an 8-byte
//!   little-endian element count and the raw little-endian elements; the persistent id is
//!   `('storage', storage_type, key, location, numel, view_metadata)`, where `view_metadata` is
//!   `None` or `(view_key, offset, size)` in elements.

use crate::error::{read_file, Error, Result};
use crate::zip::{le64, zip_entries, ZipEntry};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::rc::Rc;

mod pickle;
use pickle::{Machine, Obj, TensorRef, Value};

/// A tensor of a `.pth` file, converted to `f32` and laid out contiguously in row-major order.
#[derive(Clone, Debug, PartialEq)]
pub struct PthTensor {
    /// Dimensions; empty for a scalar.
    pub shape: Vec<usize>,
    /// Elements, `shape.iter().product()` of them.
    pub data: Vec<f32>,
}

/// Reads the tensors of a PyTorch state-dict file (zip or legacy format), keyed by name.
///
/// The file may hold a dict of tensors (`torch.save(model.state_dict())`), or a dict with a
/// `state_dict` or `model` entry that is one; entries that are not tensors are skipped.
pub fn read_pth(path: impl AsRef<Path>) -> Result<BTreeMap<String, PthTensor>> {
    let path = path.as_ref();
    pth_from_bytes(&read_file(path)?, path)
}

/// Parses the bytes of a PyTorch state-dict file (see [`read_pth`]); `origin` names it in errors.
pub fn pth_from_bytes(bytes: &[u8], origin: &Path) -> Result<BTreeMap<String, PthTensor>> {
    if bytes.starts_with(b"PK\x03\x04") {
        read_zip(bytes, origin)
    } else if bytes.first() == Some(&0x80) {
        read_legacy(bytes, origin)
    } else {
        Err(Error::format(
            origin,
            "not a PyTorch file: neither a zip archive (torch.save since torch 1.6) nor a legacy \
             pickle stream (starts with 0x80)",
        ))
    }
}

/// Element types of storages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dtype {
    F32,
    F64,
    F16,
    BF16,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
}

impl Dtype {
    /// The dtype of the storage class `module.name` (`torch.FloatStorage`, `torch.cuda.HalfStorage`).
    fn from_storage(module: &str, name: &str) -> Option<Dtype> {
        if module != "torch" && module != "torch.cuda" {
            return None;
        }
        Some(match name {
            "FloatStorage" => Dtype::F32,
            "DoubleStorage" => Dtype::F64,
            "HalfStorage" => Dtype::F16,
            "BFloat16Storage" => Dtype::BF16,
            "LongStorage" => Dtype::I64,
            "IntStorage" => Dtype::I32,
            "ShortStorage" => Dtype::I16,
            "CharStorage" => Dtype::I8,
            "ByteStorage" | "UntypedStorage" => Dtype::U8,
            "BoolStorage" => Dtype::Bool,
            _ => return None,
        })
    }

    fn size(self) -> usize {
        match self {
            Dtype::F64 | Dtype::I64 => 8,
            Dtype::F32 | Dtype::I32 => 4,
            Dtype::F16 | Dtype::BF16 | Dtype::I16 => 2,
            Dtype::I8 | Dtype::U8 | Dtype::Bool => 1,
        }
    }

    /// Element `i` of little-endian storage bytes `b`, as `f32` (the caller checks the bounds).
    fn get(self, b: &[u8], i: usize) -> f32 {
        let s = self.size();
        let e = &b[i * s..i * s + s];
        match self {
            Dtype::F32 => f32::from_le_bytes([e[0], e[1], e[2], e[3]]),
            Dtype::F64 => {
                f64::from_le_bytes([e[0], e[1], e[2], e[3], e[4], e[5], e[6], e[7]]) as f32
            }
            Dtype::F16 => f16_to_f32(u16::from_le_bytes([e[0], e[1]])),
            Dtype::BF16 => f32::from_bits((u16::from_le_bytes([e[0], e[1]]) as u32) << 16),
            Dtype::I64 => {
                i64::from_le_bytes([e[0], e[1], e[2], e[3], e[4], e[5], e[6], e[7]]) as f32
            }
            Dtype::I32 => i32::from_le_bytes([e[0], e[1], e[2], e[3]]) as f32,
            Dtype::I16 => i16::from_le_bytes([e[0], e[1]]) as f32,
            Dtype::I8 => e[0] as i8 as f32,
            Dtype::U8 => e[0] as f32,
            Dtype::Bool => (e[0] != 0) as u8 as f32,
        }
    }
}

/// IEEE half precision to single (exact: every half is a float).
fn f16_to_f32(h: u16) -> f32 {
    let sign = if h & 0x8000 != 0 { -1.0f32 } else { 1.0 };
    let exp = ((h >> 10) & 0x1f) as i32;
    let mant = (h & 0x3ff) as u32;
    match exp {
        0 => sign * mant as f32 * (-24f32).exp2(),
        0x1f => f32::from_bits(((h as u32 & 0x8000) << 16) | 0x7f80_0000 | (mant << 13)),
        _ => f32::from_bits(
            ((h as u32 & 0x8000) << 16) | (((exp + 112) as u32) << 23) | (mant << 13),
        ),
    }
}

fn as_str(v: &Value) -> Option<&str> {
    match v {
        Value::Str(s) => Some(s),
        Value::Bytes(b) => std::str::from_utf8(b).ok(),
        _ => None,
    }
}

/// Copies tensor `t` (named `name`) out of its storage's bytes as `f32`, following offset and
/// strides, after checking that every element it reaches lies inside the storage.
fn materialise(t: &TensorRef, bytes: &[u8], name: &str, origin: &Path) -> Result<PthTensor> {
    let bad = |m: String| Error::format(origin, format!("tensor '{name}': {m}"));
    let dtype = t.storage.dtype;
    let total = bytes.len() / dtype.size();
    let (base, limit) = match t.storage.view {
        None => (0, total),
        Some((o, n)) => {
            if o.checked_add(n).is_none_or(|e| e > total) {
                return Err(bad(format!(
                    "storage view [{o}, {o}+{n}) exceeds its storage of {total} elements"
                )));
            }
            (o, n)
        }
    };
    let numel = t
        .shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| bad(format!("size {:?} overflows", t.shape)))?;
    if numel == 0 {
        return Ok(PthTensor {
            shape: t.shape.clone(),
            data: Vec::new(),
        });
    }
    let last = t
        .shape
        .iter()
        .zip(&t.stride)
        .try_fold(t.offset, |a, (&d, &s)| {
            a.checked_add((d - 1).checked_mul(s)?)
        });
    match last {
        Some(l) if l < limit => {}
        _ => {
            return Err(bad(format!(
                "size {:?}, stride {:?} and offset {} reach past its storage of {limit} {dtype:?} \
                 elements (truncated or corrupt file)",
                t.shape, t.stride, t.offset
            )))
        }
    }
    // Views may repeat elements (stride 0), but not without bound: a corrupt size must not
    // allocate far more than the file holds.
    if numel > limit.max(1 << 24) {
        return Err(bad(format!(
            "size {:?} has {numel} elements, far more than its storage of {limit}",
            t.shape
        )));
    }
    let start = base + t.offset;
    let mut data = Vec::with_capacity(numel);
    let mut expect = 1usize;
    let contiguous = t.shape.iter().zip(&t.stride).rev().all(|(&d, &s)| {
        let ok = d == 1 || s == expect;
        expect = expect.saturating_mul(d);
        ok
    });
    if contiguous {
        data.extend((start..start + numel).map(|i| dtype.get(bytes, i)));
    } else {
        // An odometer over the indices, last dimension fastest.
        let nd = t.shape.len();
        let mut idx = vec![0usize; nd];
        let mut pos = start;
        for _ in 0..numel {
            data.push(dtype.get(bytes, pos));
            for d in (0..nd).rev() {
                idx[d] += 1;
                pos = pos.wrapping_add(t.stride[d]);
                if idx[d] < t.shape[d] {
                    break;
                }
                pos = pos.wrapping_sub(t.stride[d].wrapping_mul(t.shape[d]));
                idx[d] = 0;
            }
        }
    }
    Ok(PthTensor {
        shape: t.shape.clone(),
        data,
    })
}

/// The bytes of a stored (uncompressed) zip entry, CRC-checked.
fn stored<'a>(e: &ZipEntry<'a>, origin: &Path) -> Result<&'a [u8]> {
    if e.method != 0 {
        return Err(Error::format(
            origin,
            format!(
                "{}: compressed zip entry (method {}); torch.save stores entries uncompressed, so \
                 the archive was repacked: re-save it with torch.save or unpack and zip it with \
                 `zip -0`",
                e.name, e.method
            ),
        ));
    }
    e.verify(e.raw, origin)?;
    Ok(e.raw)
}

fn read_zip(b: &[u8], origin: &Path) -> Result<BTreeMap<String, PthTensor>> {
    let entries = zip_entries(b, origin, "complete zip")?;
    let pkl = entries
        .iter()
        .filter(|e| e.name == "data.pkl" || e.name.ends_with("/data.pkl"))
        .min_by_key(|e| e.name.len())
        .ok_or_else(|| {
            Error::format(
                origin,
                "zip archive without a data.pkl entry: not a file written by torch.save",
            )
        })?;
    let prefix = &pkl.name[..pkl.name.len() - "data.pkl".len()];
    let by_name: HashMap<&str, &ZipEntry> = entries.iter().map(|e| (e.name.as_str(), e)).collect();
    if let Some(e) = by_name.get(format!("{prefix}byteorder").as_str()) {
        let order = stored(e, origin)?;
        if order != b"little" {
            return Err(Error::format(
                origin,
                format!(
                    "byte order '{}' is not supported (only little-endian checkpoints)",
                    String::from_utf8_lossy(order)
                ),
            ));
        }
    }
    let mut m = Machine::new(stored(pkl, origin)?, origin, pkl.name.clone());
    let top = m.load()?;
    let mut data: HashMap<String, &[u8]> = HashMap::new();
    let mut out = BTreeMap::new();
    for (name, t) in m.state_dict(&top)? {
        let bytes = match data.get(&t.storage.key) {
            Some(d) => *d,
            None => {
                let entry = format!("{prefix}data/{}", t.storage.key);
                let e = by_name.get(entry.as_str()).ok_or_else(|| {
                    Error::format(
                        origin,
                        format!("tensor '{name}': storage entry {entry} is missing"),
                    )
                })?;
                let d = stored(e, origin)?;
                data.insert(t.storage.key.clone(), d);
                d
            }
        };
        let tensor = materialise(&t, bytes, &name, origin)?;
        out.insert(name, tensor);
    }
    Ok(out)
}

/// Torch's legacy magic number 0x1950a86a20f9469cfc6c, as pickle's little-endian LONG1 bytes.
const LEGACY_MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];

fn read_legacy(b: &[u8], origin: &Path) -> Result<BTreeMap<String, PthTensor>> {
    let bad = |m: String| Error::format(origin, m);
    let mut m = Machine::new(b, origin, "legacy pickle stream");
    let magic = m.load().map_err(|e| {
        bad(format!(
            "not a PyTorch file: a pickle without torch's magic number ({e})"
        ))
    })?;
    if !matches!(&magic, Value::BigInt(v) if **v == LEGACY_MAGIC) {
        return Err(bad(
            "not a PyTorch file: a pickle, but not torch's legacy format (bad magic number)".into(),
        ));
    }
    match m.load()? {
        Value::Int(1001) => {}
        v => {
            return Err(bad(format!(
                "unsupported legacy protocol version {v:?} (expected 1001)"
            )))
        }
    }
    let sys_info = m.load()?;
    if let Some(Obj::Dict(d)) = m.obj(&sys_info) {
        let big = d
            .iter()
            .any(|(k, v)| as_str(k) == Some("little_endian") && matches!(v, Value::Bool(false)));
        if big {
            return Err(bad(
                "saved on a big-endian machine: not supported (only little-endian checkpoints)"
                    .into(),
            ));
        }
    }
    let top = m.load()?;
    let keys_at = m.pos;
    let keys = m.load()?;
    let keys: Vec<String> = match m.obj(&keys) {
        Some(Obj::List(l)) => l
            .iter()
            .map(|k| match k {
                Value::Int(i) => Some(i.to_string()),
                k => as_str(k).map(str::to_string),
            })
            .collect::<Option<_>>()
            .ok_or_else(|| {
                bad(format!(
                    "byte {keys_at}: storage key list holds a non-string"
                ))
            })?,
        _ => {
            return Err(bad(format!(
                "byte {keys_at}: expected the list of storage keys, got a {}",
                m.kind(&keys)
            )))
        }
    };
    let mut data: HashMap<String, &[u8]> = HashMap::new();
    let mut pos = m.pos;
    for key in keys {
        let dtype = *m.storages.get(&key).ok_or_else(|| {
            bad(format!(
                "byte {pos}: storage '{key}' has data but no tensor refers to it (corrupt file)"
            ))
        })?;
        let n = le64(b, pos).ok_or_else(|| {
            bad(format!(
                "byte {pos}: truncated: the data of storage '{key}' is missing"
            ))
        })?;
        let nbytes = usize::try_from(n)
            .ok()
            .and_then(|n| n.checked_mul(dtype.size()));
        let body = nbytes
            .and_then(|nb| Some(pos + 8..(pos + 8).checked_add(nb)?))
            .and_then(|r| b.get(r))
            .ok_or_else(|| {
                bad(format!(
                    "byte {pos}: truncated: storage '{key}' has {n} {dtype:?} elements but only \
                     {} bytes follow",
                    b.len() - (pos + 8).min(b.len())
                ))
            })?;
        pos += 8 + body.len();
        data.insert(key, body);
    }
    let mut out = BTreeMap::new();
    for (name, t) in m.state_dict(&top)? {
        let bytes = data.get(&t.storage.key).ok_or_else(|| {
            bad(format!(
                "tensor '{name}': storage '{}' is not in the data section (truncated or corrupt \
                 file)",
                t.storage.key
            ))
        })?;
        let tensor = materialise(&t, bytes, &name, origin)?;
        out.insert(name, tensor);
    }
    Ok(out)
}
