//! Batches, the decode loop, sampling and perplexity: the one API every
//! command measures through.

pub mod batch;
pub mod perplexity;
pub mod sampler;

pub use batch::{Batch, Logits};
pub use sampler::{Sampler, SamplerConfig};
