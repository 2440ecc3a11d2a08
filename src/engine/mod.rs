//! Batches, the decode loop, sampling and perplexity: the one API every
//! command measures through.

pub mod batch;
pub mod context;
pub mod perplexity;
pub mod sampler;

pub use batch::{Batch, Logits};
pub use context::{default_threads, Engine, EngineConfig, EngineError};
pub use sampler::{Sampler, SamplerConfig};
