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
/// it and usable here, then libtorch, then flex). A CUDA device that cannot be used is an
/// [`Error::Invalid`] naming what is missing, rather than a panic on first use.
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
            // An unusable GPU falls through to the next device, or says why when none is left.
            #[cfg(feature = "cuda")]
            {
                let cuda = probe_cuda(0);
                if cuda.is_ok() || !cfg!(any(feature = "torch", feature = "flex")) {
                    return cuda.map(|()| Device::cuda(0usize));
                }
            }
            #[cfg(feature = "torch")]
            return Ok(Device::libtorch());
            #[cfg(all(not(feature = "torch"), feature = "flex"))]
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
            probe_cuda(idx)?;
            Ok(Device::cuda(idx))
        }
        _ => Err(bad()),
    }
}

/// Checks, without panicking, what burn's CUDA backend needs for device `index`: the driver
/// library, a device there, NVRTC (every kernel is compiled at run time by NVRTC, the only
/// compiler of the patched cubecl-cuda, third_party/cubecl-cuda) and a CUDA installation for
/// its headers. cubecl would otherwise panic on first use.
#[cfg(feature = "cuda")]
fn probe_cuda(index: usize) -> Result<()> {
    use cudarc::driver::result as driver;
    let mut missing = Vec::new();
    // SAFETY: both only try to `dlopen` each candidate name of the library.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        missing.push("the NVIDIA driver's CUDA library (libcuda.so)".to_string());
    } else {
        match driver::init().and_then(|()| driver::device::get_count()) {
            Err(e) => missing.push(format!(
                "a working CUDA driver (it answered: {e}; is there an NVIDIA GPU, with its kernel module loaded?)"
            )),
            Ok(n) if index >= n.max(0) as usize => {
                missing.push(format!("CUDA device {index} (the driver sees {n})"))
            }
            Ok(_) => {}
        }
    }
    if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
        missing.push(
            "NVRTC (libnvrtc.so, from the CUDA toolkit; it compiles the kernels at run time)"
                .to_string(),
        );
    }
    if burn::cubecl::cuda::install::cuda_path().is_none() {
        missing.push(
            "a CUDA installation for NVRTC's headers (CUDA_PATH, /usr/local/cuda or /opt/cuda)"
                .to_string(),
        );
    }
    if missing.is_empty() {
        return Ok(());
    }
    let others: Vec<_> = available().into_iter().filter(|d| *d != "cuda").collect();
    let others = match others.is_empty() {
        true => String::new(),
        false => format!("; this build also has --device {}", others.join(", ")),
    };
    Err(Error::Invalid(format!(
        "device `cuda:{index}` cannot be used, missing: {}{others}",
        missing.join("; ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_devices_are_refused_by_name() {
        let err = resolve("tpu").unwrap_err().to_string();
        assert!(err.contains("`tpu`"), "{err}");
    }

    /// With or without a GPU here: a device, or an error naming what is missing, never a panic.
    #[cfg(feature = "cuda")]
    #[test]
    fn cuda_resolves_or_says_what_is_missing() {
        match resolve("cuda:0") {
            Ok(_) => {}
            Err(Error::Invalid(why)) => assert!(why.contains("missing: "), "{why}"),
            Err(e) => panic!("{e}"),
        }
        assert!(resolve("auto").is_ok() || !cfg!(feature = "flex"));
    }
}
