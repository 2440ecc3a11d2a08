//! GGUF file format.
