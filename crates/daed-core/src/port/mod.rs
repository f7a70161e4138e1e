//! PyTorch models in and out: import improved-diffusion's and the paper code's checkpoints as
//! daed runs ([`import`]), export a run with PyTorch's names and the flags that rebuild it
//! ([`export`]), and run a network on given inputs to compare with PyTorch ([`forward`]).
//!
//! The flags are read as each repo's scripts read them ([`flags`]); every tensor is mapped by
//! name with its exact shape ([`names`]).
pub mod export;
pub mod flags;
pub mod forward;
pub mod import;
pub mod names;

pub use export::{export, Exported};
pub use flags::{Repo, TorchFlags};
pub use forward::{forward, ForwardInput};
pub use import::{import, Imported, TorchFiles};
