//! How images become the Inception's input: one [`Preprocess`] mode per reference tool, so
//! another tool's convention (clean-fid's) is one more variant here.
use std::fmt;
use std::str::FromStr;

use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use burn::tensor::{Device, Tensor, TensorData};
use daed_io::images::ImageSet;

use super::inception::INPUT_SIZE;
use crate::{Error, Result};

/// The pre-processing convention.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Preprocess {
    /// pytorch-fid: uint8 -> [0, 1], bilinear resize to 299x299 on floats (align_corners = false,
    /// no antialiasing), then `2x - 1`; gray images repeated to three channels.
    #[default]
    PytorchFid,
}

impl Preprocess {
    /// The name written to `metrics.json`.
    pub fn as_str(self) -> &'static str {
        match self {
            Preprocess::PytorchFid => "pytorch-fid",
        }
    }

    /// Images `start..start + n` of `set` as a `[n, 3, 299, 299]` input tensor.
    pub fn batch(
        self,
        set: &ImageSet,
        start: usize,
        n: usize,
        device: &Device,
    ) -> Result<Tensor<4>> {
        let (c, h, w) = (set.channels, set.height, set.width);
        if c != 1 && c != 3 {
            return Err(Error::Invalid(format!(
                "the Inception takes gray or RGB images; these have {c} channels"
            )));
        }
        if start + n > set.len() || n == 0 {
            return Err(Error::Invalid(format!(
                "images {start}..{} requested from a set of {}",
                start + n,
                set.len()
            )));
        }
        let per = c * h * w;
        let bytes = &set.pixels[start * per..(start + n) * per];
        match self {
            Preprocess::PytorchFid => {
                let data: Vec<f32> = bytes.iter().map(|&b| b as f32 / 255.0).collect();
                let mut x: Tensor<4> =
                    Tensor::from_data(TensorData::new(data, [n, c, h, w]), device);
                if c == 1 {
                    x = x.repeat_dim(1, 3);
                }
                if (h, w) != (INPUT_SIZE, INPUT_SIZE) {
                    x = interpolate(
                        x,
                        InterpolateOptions::new(InterpolateMode::Bilinear)
                            .with_align_corners(false)
                            .with_output_size([INPUT_SIZE, INPUT_SIZE]),
                    );
                }
                Ok(x.mul_scalar(2.0).sub_scalar(1.0))
            }
        }
    }
}

impl fmt::Display for Preprocess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Preprocess {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "pytorch-fid" | "pytorch_fid" | "torch" => Ok(Preprocess::PytorchFid),
            _ => Err(Error::Invalid(format!(
                "unknown pre-processing `{s}`; available: pytorch-fid"
            ))),
        }
    }
}
