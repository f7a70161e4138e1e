//! Training: AdamW and EMA over named parameters, checkpoints, and the loop.
pub mod checkpoint;
pub mod doctor;
pub mod dynamics;
pub mod optim;
mod parallel;
pub mod trainer;

pub use checkpoint::Checkpoint;
pub use trainer::{Observer, Trainer};
