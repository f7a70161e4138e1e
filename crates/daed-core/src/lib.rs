//! daed-core: the library behind the `daed` command.
//!
//! Modules follow the paper's concepts: [`diffusion`] (schedules, the forward and backward
//! processes, losses, step samplers, samplers), [`nn`] (the U-Net), [`train`] (optimiser, EMA,
//! checkpoints, the training loop), [`config`] (TOML experiment files).
/// The caching global allocator (from `daed-kernels`).
pub use daed_kernels::alloc;
pub mod analysis;
pub mod bench;
pub mod config;
pub mod daed;
pub mod device;
pub mod diffusion;
pub mod draw;
pub mod error;
pub mod memory;
pub mod metrics;
pub mod model;
pub mod nn;
pub mod port;
pub mod precision;
pub mod rng;
pub mod sample;
pub mod study;
pub mod tensor_io;
pub mod train;

pub use burn;
pub use daed_io as io;
pub use error::{Error, Result};
