//! GGUF file format: a validating zero-copy reader and a streaming writer.
//!
//! The reader checks every length, count, type id and tensor bound at open,
//! so code using a [`GgufFile`] can slice tensor data without further checks.

mod cursor;
mod error;
pub mod keys;
mod parse;
mod reader;
mod value;
mod writer;

pub use error::{GgufError, Section};
pub use parse::{DEFAULT_ALIGNMENT, MAX_DIMS, MAX_TENSOR_NAME_LEN};
pub use reader::{GgufFile, SharedBytes, TensorInfo};
pub use value::{Value, ValueType, MAX_ARRAY_NESTING};
pub use writer::{FillFn, GgufWriter, TensorSource};
