//! numpy `.npy` and `.npz` files: little-endian `|u1 <f4 <f8 <i8` (and `<i4 <i2 <u2`, read as i64), C order.
//!
//! `.npz` is a zip of `key.npy` entries; we write STORED entries and read STORED or DEFLATE ones
//! (`np.savez_compressed`), including the zip64 fields numpy/Python write.

use crate::atomic::write_atomic;
use crate::error::{read_file, Error, Result};
use crate::zip::zip_entries;
use flate2::read::DeflateDecoder;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

/// The element data of an array.
#[derive(Clone, Debug, PartialEq)]
pub enum NpyData {
    /// `|u1` bytes.
    U8(Vec<u8>),
    /// `<f4` floats.
    F32(Vec<f32>),
    /// `<f8` doubles.
    F64(Vec<f64>),
    /// `<i8` integers.
    I64(Vec<i64>),
}

impl NpyData {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            NpyData::U8(v) => v.len(),
            NpyData::F32(v) => v.len(),
            NpyData::F64(v) => v.len(),
            NpyData::I64(v) => v.len(),
        }
    }

    /// True when there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The numpy dtype string (`|u1`, `<f4`, `<f8`, `<i8`).
    pub fn descr(&self) -> &'static str {
        match self {
            NpyData::U8(_) => "|u1",
            NpyData::F32(_) => "<f4",
            NpyData::F64(_) => "<f8",
            NpyData::I64(_) => "<i8",
        }
    }
}

/// An n-dimensional array in C (row-major) order.
#[derive(Clone, Debug, PartialEq)]
pub struct NpyArray {
    /// Dimensions; empty for a scalar.
    pub shape: Vec<usize>,
    /// Elements, `shape.iter().product()` of them.
    pub data: NpyData,
}

impl NpyArray {
    /// Builds an array, checking that the element count matches the shape.
    pub fn new(shape: Vec<usize>, data: NpyData) -> Result<NpyArray> {
        let n: usize = shape.iter().product();
        if n != data.len() {
            return Err(Error::Invalid(format!(
                "shape {shape:?} needs {n} elements, got {}",
                data.len()
            )));
        }
        Ok(NpyArray { shape, data })
    }

    /// An `f32` array (panics if `data.len()` does not match `shape`, a programming error).
    pub fn f32(shape: &[usize], data: Vec<f32>) -> NpyArray {
        assert_eq!(
            shape.iter().product::<usize>(),
            data.len(),
            "NpyArray::f32: shape/data mismatch"
        );
        NpyArray {
            shape: shape.to_vec(),
            data: NpyData::F32(data),
        }
    }

    /// An `f64` array (panics if `data.len()` does not match `shape`).
    pub fn f64(shape: &[usize], data: Vec<f64>) -> NpyArray {
        assert_eq!(
            shape.iter().product::<usize>(),
            data.len(),
            "NpyArray::f64: shape/data mismatch"
        );
        NpyArray {
            shape: shape.to_vec(),
            data: NpyData::F64(data),
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// True when there are no elements.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The elements converted to `f64` (any dtype).
    pub fn to_f64_vec(&self) -> Vec<f64> {
        match &self.data {
            NpyData::U8(v) => v.iter().map(|&x| x as f64).collect(),
            NpyData::F32(v) => v.iter().map(|&x| x as f64).collect(),
            NpyData::F64(v) => v.clone(),
            NpyData::I64(v) => v.iter().map(|&x| x as f64).collect(),
        }
    }

    /// The elements converted to `f32` (any dtype).
    pub fn to_f32_vec(&self) -> Vec<f32> {
        match &self.data {
            NpyData::F32(v) => v.clone(),
            _ => self.to_f64_vec().into_iter().map(|x| x as f32).collect(),
        }
    }
}

/// Serialises an array as `.npy` (format 1.0, or 2.0 for a huge header).
pub fn npy_to_bytes(a: &NpyArray) -> Vec<u8> {
    let shape = match a.shape.len() {
        0 => "()".to_string(),
        1 => format!("({},)", a.shape[0]),
        _ => format!(
            "({})",
            a.shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': {shape}, }}",
        a.data.descr()
    );
    let v1 = header.len() + 11 < 65536;
    let prefix = if v1 { 10 } else { 12 };
    while (prefix + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = Vec::with_capacity(prefix + header.len() + a.len() * 8);
    out.extend_from_slice(b"\x93NUMPY");
    if v1 {
        out.extend_from_slice(&[1, 0]);
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&[2, 0]);
        out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    }
    out.extend_from_slice(header.as_bytes());
    match &a.data {
        NpyData::U8(v) => out.extend_from_slice(v),
        NpyData::F32(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        NpyData::F64(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        NpyData::I64(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
    }
    out
}

/// Finds `'key':` in a header dict and returns the text after it.
fn after_key<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    for q in ['\'', '"'] {
        let pat = format!("{q}{key}{q}");
        if let Some(i) = header.find(&pat) {
            let rest = header[i + pat.len()..].trim_start();
            return rest.strip_prefix(':').map(|r| r.trim_start());
        }
    }
    None
}

/// A parsed `.npy` header: dtype, shape and where the (size-checked) element data starts.
struct NpyHeader {
    descr: String,
    shape: Vec<usize>,
    start: usize,
}

/// Parses and checks a `.npy` header, including that the data that follows has the right size.
fn npy_header(bytes: &[u8], origin: &Path) -> Result<NpyHeader> {
    let bad = |m: String| Error::format(origin, m);
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad(
            "not a .npy file (bad magic, expected \\x93NUMPY)".into()
        ));
    }
    let (hlen, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10usize),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        2 | 3 => return Err(bad("truncated .npy header".into())),
        v => {
            return Err(bad(format!(
                "unsupported .npy format version {v}.{}",
                bytes[7]
            )))
        }
    };
    let end = start
        .checked_add(hlen)
        .filter(|&e| e <= bytes.len())
        .ok_or_else(|| bad("truncated .npy header".into()))?;
    let header =
        std::str::from_utf8(&bytes[start..end]).map_err(|_| bad("header is not text".into()))?;
    let descr = after_key(header, "descr")
        .and_then(|r| {
            // The value must be a quoted string (an ASCII quote, so slicing after it is safe).
            let q = r.chars().next().filter(|&c| c == '\'' || c == '"')?;
            let r = &r[1..];
            r.find(q).map(|j| &r[..j])
        })
        .ok_or_else(|| bad(format!("header has no 'descr': {header}")))?;
    let fortran = after_key(header, "fortran_order")
        .ok_or_else(|| bad("header has no 'fortran_order'".into()))?;
    if fortran.starts_with("True") {
        return Err(bad(
            "fortran_order=True arrays are not supported (save with C order)".into(),
        ));
    }
    let shape_txt = after_key(header, "shape")
        .and_then(|r| r.strip_prefix('('))
        .and_then(|r| r.find(')').map(|j| &r[..j]))
        .ok_or_else(|| bad(format!("header has no 'shape' tuple: {header}")))?;
    let shape = shape_txt
        .split(',')
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .map(|s| s.trim_end_matches('L').parse::<usize>())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|_| bad(format!("bad shape ({shape_txt})")))?;
    let n = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| bad(format!("shape {shape:?} overflows")))?;
    let body = &bytes[end..];
    let width = match descr {
        "|u1" | "<u1" | "u1" => 1,
        "<i2" | "<u2" => 2,
        "<f4" | "<i4" => 4,
        "<f8" | "<i8" => 8,
        d => {
            return Err(bad(format!(
                "unsupported dtype '{d}' (supported: |u1 <f4 <f8 <i8 <i4 <i2 <u2)"
            )))
        }
    };
    let need = n
        .checked_mul(width)
        .ok_or_else(|| bad("size overflows".into()))?;
    if body.len() != need {
        return Err(bad(format!(
            "shape {shape:?} of {descr} needs {need} data bytes, got {} ({})",
            body.len(),
            if body.len() < need {
                "truncated"
            } else {
                "trailing data"
            }
        )));
    }
    Ok(NpyHeader {
        descr: descr.to_string(),
        shape,
        start: end,
    })
}

fn is_u8_descr(descr: &str) -> bool {
    matches!(descr, "|u1" | "<u1" | "u1")
}

/// Parses `.npy` bytes; `origin` names the source in errors.
pub fn npy_from_bytes(bytes: &[u8], origin: &Path) -> Result<NpyArray> {
    let NpyHeader {
        descr,
        shape,
        start,
    } = npy_header(bytes, origin)?;
    let body = &bytes[start..];
    let data = match descr.as_str() {
        "<f4" => NpyData::F32(
            body.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        ),
        "<i2" => NpyData::I64(
            body.chunks_exact(2)
                .map(|c| i16::from_le_bytes([c[0], c[1]]) as i64)
                .collect(),
        ),
        "<u2" => NpyData::I64(
            body.chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]) as i64)
                .collect(),
        ),
        "<i4" => NpyData::I64(
            body.chunks_exact(4)
                .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64)
                .collect(),
        ),
        "<f8" => NpyData::F64(
            body.chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                .collect(),
        ),
        "<i8" => NpyData::I64(
            body.chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                .collect(),
        ),
        _ => NpyData::U8(body.to_vec()),
    };
    Ok(NpyArray { shape, data })
}

/// Parses `.npy` bytes it owns, like [`npy_from_bytes`] but without copying `|u1` element data.
pub fn npy_from_vec(mut bytes: Vec<u8>, origin: &Path) -> Result<NpyArray> {
    let h = npy_header(&bytes, origin)?;
    if !is_u8_descr(&h.descr) {
        return npy_from_bytes(&bytes, origin);
    }
    bytes.drain(..h.start);
    Ok(NpyArray {
        shape: h.shape,
        data: NpyData::U8(bytes),
    })
}

/// Reads a `.npy` file.
pub fn read_npy(path: impl AsRef<Path>) -> Result<NpyArray> {
    let path = path.as_ref();
    npy_from_bytes(&read_file(path)?, path)
}

/// Writes a `.npy` file atomically.
pub fn write_npy(path: impl AsRef<Path>, a: &NpyArray) -> Result<()> {
    write_atomic(path, &npy_to_bytes(a))
}

fn put16(v: &mut Vec<u8>, x: u16) {
    v.extend_from_slice(&x.to_le_bytes());
}
fn put32(v: &mut Vec<u8>, x: u32) {
    v.extend_from_slice(&x.to_le_bytes());
}

/// Serialises arrays as an `.npz` (zip, STORED entries `key.npy`); entries over 4 GiB are an error.
pub fn npz_to_bytes(arrays: &[(&str, &NpyArray)]) -> Result<Vec<u8>> {
    let (time, date) = (0u16, 0x21u16); // 1980-01-01 00:00 in DOS format, for reproducible files
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (key, a) in arrays {
        let name = format!("{key}.npy");
        let data = npy_to_bytes(a);
        let offset = out.len();
        if data.len() > u32::MAX as usize
            || offset > u32::MAX as usize
            || name.len() > u16::MAX as usize
        {
            return Err(Error::Invalid(format!(
                "npz entry '{key}' is too large for a non-zip64 archive"
            )));
        }
        let crc = crc32fast::hash(&data);
        put32(&mut out, 0x0403_4b50);
        for x in [20u16, 0, 0, time, date] {
            put16(&mut out, x);
        }
        for x in [crc, data.len() as u32, data.len() as u32] {
            put32(&mut out, x);
        }
        put16(&mut out, name.len() as u16);
        put16(&mut out, 0);
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&data);

        put32(&mut central, 0x0201_4b50);
        for x in [20u16, 20, 0, 0, time, date] {
            put16(&mut central, x);
        }
        for x in [crc, data.len() as u32, data.len() as u32] {
            put32(&mut central, x);
        }
        for x in [name.len() as u16, 0, 0, 0, 0] {
            put16(&mut central, x);
        }
        put32(&mut central, 0o100644 << 16);
        put32(&mut central, offset as u32);
        central.extend_from_slice(name.as_bytes());
    }
    let cd_offset = out.len();
    if arrays.len() > 0xfffe || cd_offset > u32::MAX as usize {
        return Err(Error::Invalid(
            "npz too large for a non-zip64 archive".into(),
        ));
    }
    out.extend_from_slice(&central);
    put32(&mut out, 0x0605_4b50);
    for x in [0u16, 0, arrays.len() as u16, arrays.len() as u16] {
        put16(&mut out, x);
    }
    put32(&mut out, central.len() as u32);
    put32(&mut out, cd_offset as u32);
    put16(&mut out, 0);
    Ok(out)
}

/// Writes arrays to an `.npz` file atomically (STORED entries named `key.npy`).
pub fn write_npz(path: impl AsRef<Path>, arrays: &[(&str, &NpyArray)]) -> Result<()> {
    write_atomic(path, &npz_to_bytes(arrays)?)
}

/// Reads every array of an `.npz` file, keyed by entry name without `.npy`.
pub fn read_npz(path: impl AsRef<Path>) -> Result<BTreeMap<String, NpyArray>> {
    let path = path.as_ref();
    npz_from_bytes(&read_file(path)?, path)
}

/// Parses `.npz` bytes (zip, STORED or DEFLATE entries, zip64 fields understood).
pub fn npz_from_bytes(b: &[u8], origin: &Path) -> Result<BTreeMap<String, NpyArray>> {
    npz_select(b, origin, |_| true)
}

/// Reads only the arrays named in `keys` from an `.npz` file; other entries are not decoded.
pub fn read_npz_keys(path: impl AsRef<Path>, keys: &[&str]) -> Result<BTreeMap<String, NpyArray>> {
    let path = path.as_ref();
    npz_from_bytes_keys(&read_file(path)?, path, keys)
}

/// Parses only the entries of `.npz` bytes whose key (name without `.npy`) is in `keys`.
pub fn npz_from_bytes_keys(
    b: &[u8],
    origin: &Path,
    keys: &[&str],
) -> Result<BTreeMap<String, NpyArray>> {
    npz_select(b, origin, |k| keys.contains(&k))
}

/// The keys (entry names without `.npy`) of `.npz` bytes, in archive order, without decoding them.
pub fn npz_keys_from_bytes(b: &[u8], origin: &Path) -> Result<Vec<String>> {
    Ok(zip_entries(b, origin, "zip/npz")?
        .into_iter()
        .map(|e| npz_key(&e.name).to_string())
        .collect())
}

fn npz_key(name: &str) -> &str {
    name.strip_suffix(".npy").unwrap_or(name)
}

/// Decodes the entries whose key `keep` accepts.
fn npz_select(
    b: &[u8],
    origin: &Path,
    keep: impl Fn(&str) -> bool,
) -> Result<BTreeMap<String, NpyArray>> {
    let mut out = BTreeMap::new();
    for e in zip_entries(b, origin, "zip/npz")? {
        let name = &e.name;
        if !keep(npz_key(name)) {
            continue;
        }
        let data = match e.method {
            0 => e.raw.to_vec(),
            8 => {
                let mut v = Vec::with_capacity(e.size.min(e.raw.len() as u64 * 1032) as usize);
                DeflateDecoder::new(e.raw)
                    .read_to_end(&mut v)
                    .map_err(|err| {
                        Error::format(origin, format!("{name}: corrupt deflate data: {err}"))
                    })?;
                v
            }
            m => {
                return Err(Error::format(
                    origin,
                    format!(
                        "{name}: unsupported zip compression method {m} (only stored and deflate)"
                    ),
                ))
            }
        };
        e.verify(&data, origin)?;
        let key = npz_key(name).to_string();
        let arr = npy_from_vec(data, &origin.join(name))?;
        out.insert(key, arr);
    }
    Ok(out)
}

/// Reads images in guided-diffusion's sample layout: `arr_0`, uint8 `N x H x W x C` (C = 1 or 3;
/// `N x H x W` is one channel), the first `limit` of them (all for `None`).
pub fn images_from_npz(
    arrays: &BTreeMap<String, NpyArray>,
    origin: &Path,
    limit: Option<usize>,
) -> Result<crate::images::ImageSet> {
    let bad = |msg: String| Error::Format {
        path: origin.to_path_buf(),
        msg,
    };
    let Some(a) = arrays.get("arr_0") else {
        return Err(bad(format!(
            "no images (`arr_0`, guided-diffusion format); keys: {}",
            arrays.keys().cloned().collect::<Vec<_>>().join(", ")
        )));
    };
    let NpyData::U8(px) = &a.data else {
        return Err(bad(format!(
            "`arr_0` has dtype {}; samples must be uint8 images in [0, 255]",
            a.data.descr()
        )));
    };
    let (n, h, w, ch) = match a.shape.as_slice() {
        [n, h, w, ch] if *ch == 1 || *ch == 3 => (*n, *h, *w, *ch),
        [n, h, w] => (*n, *h, *w, 1),
        s => {
            return Err(bad(format!(
                "`arr_0` has shape {s:?}; expected N x H x W x C (C = 1 or 3)"
            )))
        }
    };
    let take = limit.unwrap_or(n).min(n);
    Ok(crate::images::ImageSet::from_nhwc_u8(
        take,
        h,
        w,
        ch,
        &px[..take * h * w * ch],
    ))
}

/// Writes `set` in guided-diffusion's sample layout (`arr_0`, uint8 NHWC), with `labels` as
/// `arr_1` when given (as its `image_sample.py` writes a class-conditional model's samples).
pub fn write_images_npz(
    path: impl AsRef<Path>,
    set: &crate::images::ImageSet,
    labels: Option<&[i64]>,
) -> Result<()> {
    let arr = NpyArray {
        shape: vec![set.len(), set.height, set.width, set.channels],
        data: NpyData::U8(set.to_nhwc_u8()),
    };
    match labels {
        Some(l) => {
            let labels = NpyArray {
                shape: vec![l.len()],
                data: NpyData::I64(l.to_vec()),
            };
            write_npz(path, &[("arr_0", &arr), ("arr_1", &labels)])
        }
        None => write_npz(path, &[("arr_0", &arr)]),
    }
}
