//! The one door to the ggml C API: no other module names `llama_cpp_sys_2`.
//! Only `ggml_*` items are used; llama.cpp's `llama_*` API is never called
//! (CI greps for it).
#![allow(unused_imports)]

pub use llama_cpp_sys_2::*;
