//! The one door to the ggml C API. Only `ggml_*` / `gguf_*` items are
//! re-exported; llama.cpp's `llama_*` API is deliberately unreachable.
#![allow(unused_imports)]

pub use llama_cpp_sys_2::{
    ggml_blck_size, ggml_fp16_t, ggml_get_type_traits, ggml_quantize_chunk, ggml_quantize_init,
    ggml_quantize_requires_imatrix, ggml_row_size, ggml_type, ggml_type_name, ggml_type_size,
    ggml_type_traits,
};
