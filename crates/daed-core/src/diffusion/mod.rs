//! The diffusion maths: schedules, q and p, losses, step samplers and sampling loops.
pub mod loss;
pub mod process;
pub mod schedule;
pub mod step_sampler;

pub use process::{GaussianDiffusion, ModelMeanType, ModelVarType};
pub use schedule::{BetaSchedule, ScheduleSpec};
