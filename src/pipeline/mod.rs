//! The staged pipeline: a source, a chain of stages and the sinks, each on a thread of its
//! own, joined by bounded channels; frames in flight are capped by permits.
//!
//! The machinery here is generic: what flows (`messages`), how a stage runs (`stage`), how a
//! stage batches work across frames (`batching`), permits, metrics, the sink side (`sink`),
//! the run's report (`report`) and the threads (`run`). The concrete stages live in
//! `crate::stages`, the sinks in `crate::sinks`. `build` and `plan` turn a configuration into
//! a plan and a chain, and run it.

pub(crate) mod batching;
pub(crate) mod build;
pub mod messages;
pub mod metrics;
pub(crate) mod outputs;
pub(crate) mod permits;
pub(crate) mod plan;
pub(crate) mod report;
pub(crate) mod run;
pub mod sink;
pub(crate) mod stage;
pub mod threads;

pub use build::{needs_detector, run, run_with_models, run_with_pose, PipelineError};
pub use report::{RunReport, VideoOutcome};
