//! Backend selection: one code base, the backend picked by cargo feature and `--device`.
use burn::tensor::Device;

use crate::{Error, Result};

/// Names of the devices this build can use, for help texts.
pub fn available() -> Vec<&'static str> {
    [
        ("flex", cfg!(feature = "flex")),
        ("torch", cfg!(feature = "torch")),
        ("cuda", cfg!(feature = "cuda")),
    ]
    .iter()
    .filter(|(_, on)| *on)
    .map(|(n, _)| *n)
    .collect()
}

/// Resolves a device name (`flex`, `torch`, `cuda`, `cuda:N`, or `auto`: CUDA when built with
/// it, then libtorch, then flex).
pub fn resolve(name: &str) -> Result<Device> {
    let name = name.trim();
    let bad = || {
        Error::Invalid(format!(
            "unknown or unavailable device `{name}`; this build has: {} (rebuild with `--features cuda` or `--features torch` for the others)",
            available().join(", ")
        ))
    };
    match name {
        "auto" | "" => {
            #[cfg(feature = "cuda")]
            return Ok(Device::cuda(0usize));
            #[cfg(all(not(feature = "cuda"), feature = "torch"))]
            return Ok(Device::libtorch());
            #[cfg(all(not(feature = "cuda"), not(feature = "torch"), feature = "flex"))]
            return Ok(Device::flex());
            #[allow(unreachable_code)]
            Err(bad())
        }
        #[cfg(feature = "flex")]
        "flex" | "cpu" => Ok(Device::flex()),
        #[cfg(feature = "torch")]
        "torch" | "libtorch" => Ok(Device::libtorch()),
        #[cfg(feature = "cuda")]
        n if n == "cuda" || n.starts_with("cuda:") => {
            let idx = n
                .strip_prefix("cuda:")
                .map(|s| s.parse::<usize>().map_err(|_| bad()))
                .transpose()?
                .unwrap_or(0);
            Ok(Device::cuda(idx))
        }
        _ => Err(bad()),
    }
}
