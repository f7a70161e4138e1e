//! Reading zip archives from memory: the central directory, local headers and zip64 fields.
//!
//! Shared by `.npz` (numpy) and `.pth` (PyTorch) reading; decompression is the caller's business.

use crate::error::{Error, Result};
use std::path::Path;

/// One entry of a zip archive, its data still compressed as stored.
pub(crate) struct ZipEntry<'a> {
    /// The entry's name (path inside the archive).
    pub name: String,
    /// Compression method (0 stored, 8 deflate, ...).
    pub method: u16,
    /// CRC-32 of the uncompressed data.
    pub crc: u32,
    /// Uncompressed size in bytes.
    pub size: u64,
    /// The stored (possibly compressed) bytes.
    pub raw: &'a [u8],
}

impl ZipEntry<'_> {
    /// Checks that `data` (the entry after decompression) has the recorded size and CRC.
    pub fn verify(&self, data: &[u8], origin: &Path) -> Result<()> {
        if data.len() as u64 != self.size || crc32fast::hash(data) != self.crc {
            return Err(Error::format(
                origin,
                format!("{}: CRC or size mismatch (corrupt entry)", self.name),
            ));
        }
        Ok(())
    }
}

pub(crate) fn le16(b: &[u8], at: usize) -> Option<u64> {
    b.get(at..at.checked_add(2)?)
        .map(|s| u16::from_le_bytes([s[0], s[1]]) as u64)
}

pub(crate) fn le32(b: &[u8], at: usize) -> Option<u64> {
    b.get(at..at.checked_add(4)?)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]) as u64)
}

pub(crate) fn le64(b: &[u8], at: usize) -> Option<u64> {
    b.get(at..at.checked_add(8)?)
        .and_then(|s| s.try_into().ok())
        .map(u64::from_le_bytes)
}

/// Lists the entries of the zip archive `b` in central-directory order; `origin` names the file in
/// errors and `what` the expected kind of file (`"not a {what} file"` when there is no
/// end-of-central-directory record).
pub(crate) fn zip_entries<'a>(b: &'a [u8], origin: &Path, what: &str) -> Result<Vec<ZipEntry<'a>>> {
    let bad = |m: String| Error::format(origin, m);
    let trunc = || bad("truncated or corrupt zip structure".into());
    let at = |x: u64| usize::try_from(x).map_err(|_| trunc());
    let lo = b.len().saturating_sub(22 + 65535);
    let eocd = (lo..b.len().saturating_sub(21))
        .rev()
        .find(|&i| b[i..i + 4] == [0x50, 0x4b, 0x05, 0x06])
        .ok_or_else(|| {
            bad(format!(
                "not a {what} file (no end-of-central-directory record)"
            ))
        })?;
    let mut entries = le16(b, eocd + 10).ok_or_else(trunc)?;
    let mut cd_off = le32(b, eocd + 16).ok_or_else(trunc)?;
    if entries == 0xffff || cd_off == 0xffff_ffff {
        // zip64: the locator sits just before the EOCD and points at the zip64 EOCD record.
        let loc = eocd
            .checked_sub(20)
            .filter(|&l| le32(b, l) == Some(0x0706_4b50))
            .ok_or_else(|| bad("zip64 locator missing".into()))?;
        let z = at(le64(b, loc + 8).ok_or_else(trunc)?)?;
        if le32(b, z) != Some(0x0606_4b50) {
            return Err(bad("zip64 end-of-central-directory record missing".into()));
        }
        entries = le64(b, z.checked_add(32).ok_or_else(trunc)?).ok_or_else(trunc)?;
        cd_off = le64(b, z.checked_add(48).ok_or_else(trunc)?).ok_or_else(trunc)?;
    }
    // Each central-directory record takes at least 46 bytes: a larger count is corrupt.
    if entries > (b.len() / 46) as u64 {
        return Err(bad(format!(
            "zip directory claims {entries} entries, more than the file can hold"
        )));
    }
    let mut out = Vec::with_capacity(entries as usize);
    let mut p = at(cd_off)?;
    for _ in 0..entries {
        if le32(b, p) != Some(0x0201_4b50) {
            return Err(bad(format!("bad central directory entry at offset {p}")));
        }
        let method = le16(b, p + 10).ok_or_else(trunc)? as u16;
        let crc = le32(b, p + 16).ok_or_else(trunc)? as u32;
        let mut csize = le32(b, p + 20).ok_or_else(trunc)?;
        let mut size = le32(b, p + 24).ok_or_else(trunc)?;
        let nlen = le16(b, p + 28).ok_or_else(trunc)? as usize;
        let xlen = le16(b, p + 30).ok_or_else(trunc)? as usize;
        let clen = le16(b, p + 32).ok_or_else(trunc)? as usize;
        let mut off = le32(b, p + 42).ok_or_else(trunc)?;
        let name_bytes = b.get(p + 46..p + 46 + nlen).ok_or_else(trunc)?;
        let name = String::from_utf8_lossy(name_bytes).into_owned();
        let extra = b
            .get(p + 46 + nlen..p + 46 + nlen + xlen)
            .ok_or_else(trunc)?;
        // zip64 extended information (id 1): the 0xffffffff fields, in order size, csize, offset.
        let mut x = 0;
        while x + 4 <= extra.len() {
            let id = le16(extra, x).unwrap_or(0);
            let sz = le16(extra, x + 2).unwrap_or(0) as usize;
            if id == 1 {
                let mut q = x + 4;
                for field in [&mut size, &mut csize, &mut off] {
                    if *field == 0xffff_ffff {
                        *field = le64(extra, q)
                            .ok_or_else(|| bad(format!("{name}: bad zip64 extra field")))?;
                        q += 8;
                    }
                }
            }
            x += 4 + sz;
        }
        p += 46 + nlen + xlen + clen;
        let off = at(off)?;
        if le32(b, off) != Some(0x0403_4b50) {
            return Err(bad(format!("{name}: bad local header at offset {off}")));
        }
        let start = off
            .checked_add(
                30 + le16(b, off + 26).ok_or_else(trunc)? as usize
                    + le16(b, off + 28).ok_or_else(trunc)? as usize,
            )
            .ok_or_else(trunc)?;
        let raw = usize::try_from(csize)
            .ok()
            .and_then(|c| start.checked_add(c))
            .and_then(|e| b.get(start..e))
            .ok_or_else(|| {
                bad(format!(
                    "{name}: entry data truncated ({csize} bytes expected)"
                ))
            })?;
        out.push(ZipEntry {
            name,
            method,
            crc,
            size,
            raw,
        });
    }
    Ok(out)
}
