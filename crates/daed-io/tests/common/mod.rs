//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

/// The shared data directory (`DAED_SHARED_DATA`, else `../../../shared/data` from the crate), or
/// `None` (the test then prints SKIP and passes) when it is not on this machine.
pub fn shared_data() -> Option<PathBuf> {
    let p = std::env::var_os("DAED_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data"))
        });
    if p.join("README.md").is_file() {
        Some(p)
    } else {
        eprintln!(
            "SKIP: shared data not found at {} (set DAED_SHARED_DATA)",
            p.display()
        );
        None
    }
}

/// A fresh, empty temporary directory for one test.
pub fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("daed-io-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Gzips bytes (for writing test files).
pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// An IDX header for `magic` with `dims`.
pub fn idx_header(magic: u32, dims: &[u32]) -> Vec<u8> {
    let mut v = magic.to_be_bytes().to_vec();
    for d in dims {
        v.extend_from_slice(&d.to_be_bytes());
    }
    v
}
