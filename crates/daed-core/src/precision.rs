//! The `precision` setting of training and sampling: f32, or bf16 where the CPU has it.
//!
//! bf16 here is mixed precision on the flex CPU backend: the convolution GEMMs round their
//! operands to bf16 and sum in f32 (`daed_kernels::precision`), except those of the 3x3
//! convolutions that run as f32 Winograd (`daed_kernels::conv::winograd`); weights, optimiser,
//! EMA, every other operation and every reduction stay f32. The FID Inception and the analyses
//! always run in f32.
use std::str::FromStr;

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

pub use daed_kernels::precision::{bf16_supported, scope, Precision};

use crate::{Error, Result};

/// What a config or command line asks for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PrecisionChoice {
    /// f32 throughout (the default: the same bits on every CPU).
    #[default]
    F32,
    /// bf16 convolution GEMMs; an error where the CPU lacks AVX512-BF16 or the device is not flex.
    Bf16,
}

impl FromStr for PrecisionChoice {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim() {
            "f32" => Ok(Self::F32),
            "bf16" => Ok(Self::Bf16),
            _ => Err(Error::Invalid(format!(
                "unknown precision `{s}`; valid: f32, bf16"
            ))),
        }
    }
}

impl PrecisionChoice {
    /// The precision to run on `device`; `key` names the setting in errors.
    pub fn resolve(self, key: &str, device: &Device) -> Result<Precision> {
        let flex = is_flex(device);
        match self {
            Self::F32 => Ok(Precision::F32),
            Self::Bf16 if !flex => Err(Error::Invalid(format!(
                "{key} = \"bf16\" is daed's CPU mixed precision, for the flex device only (this \
                 run uses {device:?}); use \"f32\""
            ))),
            Self::Bf16 if !bf16_supported() => Err(Error::Invalid(format!(
                "{key} = \"bf16\": this CPU has no AVX512-BF16 (or DAED_BF16=off, or \
                 DAED_CONV=burn turned daed's convolution off); use \"f32\""
            ))),
            Self::Bf16 => Ok(Precision::Bf16),
        }
    }
}

/// Whether `device` is the flex CPU backend (with or without autodiff).
fn is_flex(device: &Device) -> bool {
    #[cfg(feature = "flex")]
    return *device == Device::flex() || *device == Device::flex().autodiff();
    #[cfg(not(feature = "flex"))]
    return {
        let _ = device;
        false
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choices_parse_and_resolve_by_what_the_cpu_has() {
        assert_eq!(
            "bf16".parse::<PrecisionChoice>().unwrap(),
            PrecisionChoice::Bf16
        );
        let e = "fp8".parse::<PrecisionChoice>().unwrap_err().to_string();
        assert!(e.contains("fp8") && e.contains("bf16"), "{e}");
        let dev = Device::flex();
        assert_eq!(
            PrecisionChoice::F32.resolve("k", &dev).unwrap(),
            Precision::F32
        );
        let bf16 = PrecisionChoice::Bf16.resolve("train.precision", &dev);
        if bf16_supported() {
            assert_eq!(bf16.unwrap(), Precision::Bf16);
        } else {
            let e = bf16.unwrap_err().to_string();
            assert!(
                e.contains("train.precision") && e.contains("AVX512-BF16"),
                "{e}"
            );
        }
    }
}
