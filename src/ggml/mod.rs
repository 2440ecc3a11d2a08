//! Safe wrapper over ggml: the only place (with the mmap reader) that holds `unsafe`.

pub mod sys;
pub mod traits;
