//! Batches, the decode loop, sampling and perplexity: the one API every
//! command measures through.

pub mod batch;
pub mod context;
pub mod generate;
pub mod kld;
pub mod perplexity;
pub mod sampler;
pub mod scheduler;
mod step;

pub use batch::{Batch, Logits};
pub use context::{default_threads, Engine, EngineConfig, EngineError};
pub use generate::{GenerateConfig, Generation};
pub use sampler::{Sampler, SamplerConfig};
pub use scheduler::{
    serve, token_logprobs, Completion, Event, Request, RequestOptions, ScheduleConfig,
    ScheduleError, Scheduler, ServeReport, StopReason, TokenLogprobs,
};
