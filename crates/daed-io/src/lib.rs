//! daed-io: the framework-free file side of daed.
//!
//! Datasets (IDX, CIFAR binary, downsampled-ImageNet npz, image folders, an embedded Fashion-MNIST
//! demo subset), downloads with checksums, numpy `.npy`/`.npz`, PyTorch `.pth` state dicts (read only), PNG image grids, PNG line
//! plots, CSV/Markdown/JSON tables, atomic file writes, and a small
//! mutation fuzzer for parsers ([`fuzz`]). Nothing here depends on a tensor
//! framework: images are plain `u8`/`f32` buffers.

#![warn(missing_docs)]

pub mod atomic;
pub mod cifar;
pub mod datasets;
pub mod error;
pub mod fetch;
pub mod folder;
pub mod font;
pub mod fuzz;
pub mod grid;
pub mod idx;
pub mod imagenet;
pub mod images;
pub mod npz;
pub mod plot;
pub mod pth;
pub mod table;
mod zip;

pub use error::{Error, Result};
pub use images::ImageSet;
