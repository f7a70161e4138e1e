//! CIFAR-10 and CIFAR-100 binary batches (`*.bin`): one or more label bytes then 3,072 image bytes
//! (R, G, B planes of 32x32, row-major) per record.

use crate::error::{read_file, Error, Result};
use crate::images::ImageSet;
use std::path::Path;

/// Bytes of one 32x32 RGB image.
pub const CIFAR_IMAGE_BYTES: usize = 3 * 32 * 32;
/// Bytes of one CIFAR-10 record (label + image).
pub const CIFAR10_RECORD: usize = 1 + CIFAR_IMAGE_BYTES;
/// Bytes of one CIFAR-100 record (coarse label + fine label + image).
pub const CIFAR100_RECORD: usize = 2 + CIFAR_IMAGE_BYTES;

/// Which label a CIFAR file carries and which one to keep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CifarKind {
    /// CIFAR-10: one label byte (10 classes).
    Cifar10,
    /// CIFAR-100, keeping the fine label (100 classes).
    Cifar100Fine,
    /// CIFAR-100, keeping the coarse label (20 superclasses).
    Cifar100Coarse,
}

impl CifarKind {
    fn label_bytes(self) -> usize {
        match self {
            CifarKind::Cifar10 => 1,
            _ => 2,
        }
    }

    fn classes(self) -> u16 {
        match self {
            CifarKind::Cifar10 => 10,
            CifarKind::Cifar100Fine => 100,
            CifarKind::Cifar100Coarse => 20,
        }
    }
}

/// Parses CIFAR records from bytes (`origin` names the source in errors), appending to `out`.
fn parse_into(bytes: &[u8], kind: CifarKind, origin: &Path, out: &mut ImageSet) -> Result<()> {
    let lb = kind.label_bytes();
    let record = lb + CIFAR_IMAGE_BYTES;
    if bytes.is_empty() {
        return Err(Error::format(origin, "empty CIFAR file"));
    }
    if !bytes.len().is_multiple_of(record) {
        return Err(Error::format(
            origin,
            format!(
                "size {} bytes is not a multiple of the {record}-byte {} record ({} whole records + {} bytes: truncated or wrong format)",
                bytes.len(),
                if lb == 1 { "CIFAR-10" } else { "CIFAR-100" },
                bytes.len() / record,
                bytes.len() % record
            ),
        ));
    }
    let labels = out.labels.get_or_insert_with(Vec::new);
    for (i, rec) in bytes.chunks_exact(record).enumerate() {
        let label = match kind {
            CifarKind::Cifar10 | CifarKind::Cifar100Coarse => rec[0],
            CifarKind::Cifar100Fine => rec[1],
        } as u16;
        if label >= kind.classes() {
            return Err(Error::format(
                origin,
                format!(
                    "record {i}: label {label} out of range 0..{} (is this really a {kind:?} file?)",
                    kind.classes()
                ),
            ));
        }
        labels.push(label);
        out.pixels.extend_from_slice(&rec[lb..]);
    }
    Ok(())
}

fn empty_set() -> ImageSet {
    ImageSet {
        channels: 3,
        height: 32,
        width: 32,
        pixels: Vec::new(),
        labels: Some(Vec::new()),
    }
}

/// Parses one in-memory CIFAR batch.
pub fn read_cifar_from_bytes(bytes: &[u8], kind: CifarKind, origin: &Path) -> Result<ImageSet> {
    let mut set = empty_set();
    parse_into(bytes, kind, origin, &mut set)?;
    Ok(set)
}

/// Reads and concatenates CIFAR batch files of the given kind, in the order given.
pub fn read_cifar<P: AsRef<Path>>(paths: &[P], kind: CifarKind) -> Result<ImageSet> {
    if paths.is_empty() {
        return Err(Error::Invalid("no CIFAR batch files given".into()));
    }
    let mut set = empty_set();
    for p in paths {
        let p = p.as_ref();
        parse_into(&read_file(p)?, kind, p, &mut set)?;
    }
    Ok(set)
}

/// Reads and concatenates CIFAR-10 batch files (`data_batch_1.bin`, ..., `test_batch.bin`).
pub fn read_cifar10<P: AsRef<Path>>(paths: &[P]) -> Result<ImageSet> {
    read_cifar(paths, CifarKind::Cifar10)
}

/// Reads and concatenates CIFAR-100 files (`train.bin`, `test.bin`), keeping the fine or coarse label.
pub fn read_cifar100<P: AsRef<Path>>(paths: &[P], coarse: bool) -> Result<ImageSet> {
    let kind = if coarse {
        CifarKind::Cifar100Coarse
    } else {
        CifarKind::Cifar100Fine
    };
    read_cifar(paths, kind)
}
