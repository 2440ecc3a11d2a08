//! A validated, opened GGUF file: metadata, tensor infos and zero-copy tensor data.

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::ops::Deref;
use std::path::Path;
use std::sync::Arc;

use memmap2::Mmap;

use super::error::GgufError;
use super::parse;
use super::value::Value;
use crate::quant::GgmlType;

/// Cheap-to-clone, thread-safe handle on the file bytes (mmap or owned Vec);
/// keeps the mapping alive as long as any clone exists.
#[derive(Clone)]
pub struct SharedBytes(Arc<Backing>);

enum Backing {
    Mapped(Mmap),
    Owned(Vec<u8>),
}

impl SharedBytes {
    pub fn from_vec(bytes: Vec<u8>) -> Self {
        SharedBytes(Arc::new(Backing::Owned(bytes)))
    }

    /// Whether the bytes are a memory map of a file (rather than owned memory).
    pub fn is_mapped(&self) -> bool {
        matches!(*self.0, Backing::Mapped(_))
    }
}

impl Deref for SharedBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match &*self.0 {
            Backing::Mapped(map) => map,
            Backing::Owned(vec) => vec,
        }
    }
}

impl AsRef<[u8]> for SharedBytes {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl fmt::Debug for SharedBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.is_mapped() { "mapped" } else { "owned" };
        write!(f, "SharedBytes({} bytes, {kind})", self.len())
    }
}

/// One tensor's entry in the tensor table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    /// GGUF order: ne0 (the row length) first.
    pub dims: Vec<u64>,
    pub ggml_type: GgmlType,
    /// Relative to the start of the data section.
    pub offset: u64,
    pub n_elements: u64,
    pub n_bytes: u64,
}

/// A GGUF v2/v3 file whose structure was fully validated when opened.
pub struct GgufFile {
    bytes: SharedBytes,
    version: u32,
    alignment: u64,
    data_offset: u64,
    metadata: Vec<(String, Value)>,
    key_index: HashMap<String, usize>,
    tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
}

impl GgufFile {
    /// Maps the file read-only and validates it.
    pub fn open(path: impl AsRef<Path>) -> Result<GgufFile, GgufError> {
        let path = path.as_ref();
        let io_err = |action, source| GgufError::Io {
            action,
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(|e| io_err("open", e))?;
        let len = file.metadata().map_err(|e| io_err("stat", e))?.len();
        if len == 0 {
            // Mapping an empty file fails on some platforms; an empty Vec
            // gives the same "truncated header" error as any short file.
            return Self::from_shared(SharedBytes::from_vec(Vec::new()));
        }
        // SAFETY: the file is opened read-only and the map is only ever read.
        // Mmap::map is unsafe because another process could modify or
        // truncate the file while it is mapped: modification would change
        // bytes under validated slices, truncation raises SIGBUS on access.
        // Like llama.cpp we accept that model files are not rewritten while
        // in use; everything derived from the bytes is validated at open.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| io_err("map", e))?;
        Self::from_shared(SharedBytes(Arc::new(Backing::Mapped(map))))
    }

    /// Same parser over owned bytes (tests, fuzzing, generated files).
    pub fn from_bytes(bytes: Vec<u8>) -> Result<GgufFile, GgufError> {
        Self::from_shared(SharedBytes::from_vec(bytes))
    }

    pub fn from_shared(bytes: SharedBytes) -> Result<GgufFile, GgufError> {
        let parsed = parse::parse(&bytes)?;
        Ok(GgufFile {
            bytes,
            version: parsed.version,
            alignment: parsed.alignment,
            data_offset: parsed.data_offset,
            metadata: parsed.metadata,
            key_index: parsed.key_index,
            tensors: parsed.tensors,
            tensor_index: parsed.tensor_index,
        })
    }

    pub fn version(&self) -> u32 {
        self.version
    }

    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Absolute file offset of the data section.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    pub fn file_size(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// All key/value pairs in file order.
    pub fn metadata(&self) -> &[(String, Value)] {
        &self.metadata
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        let &i = self.key_index.get(key)?;
        self.metadata.get(i).map(|(_, v)| v)
    }

    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key)?.as_str()
    }

    pub fn get_u32(&self, key: &str) -> Option<u32> {
        self.get(key)?.as_u32()
    }

    pub fn get_u64(&self, key: &str) -> Option<u64> {
        self.get(key)?.as_u64()
    }

    pub fn get_f32(&self, key: &str) -> Option<f32> {
        self.get(key)?.as_f32()
    }

    pub fn get_bool(&self, key: &str) -> Option<bool> {
        self.get(key)?.as_bool()
    }

    pub fn get_array(&self, key: &str) -> Option<&[Value]> {
        self.get(key)?.as_array()
    }

    /// `general.architecture`, the prefix of the model's hyperparameter keys.
    pub fn architecture(&self) -> Option<&str> {
        self.get_str("general.architecture")
    }

    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        let &i = self.tensor_index.get(name)?;
        self.tensors.get(i)
    }

    /// The tensor's bytes, without copying. Bounds were validated at open; a
    /// `TensorInfo` from another file that does not fit gives an empty slice.
    pub fn tensor_data(&self, t: &TensorInfo) -> &[u8] {
        let start = self.tensor_data_offset(t);
        let range = usize::try_from(start)
            .ok()
            .zip(usize::try_from(t.n_bytes).ok())
            .and_then(|(s, n)| Some(s..s.checked_add(n)?));
        range.and_then(|r| self.bytes.get(r)).unwrap_or(&[])
    }

    /// Absolute file offset of the tensor's first byte.
    pub fn tensor_data_offset(&self, t: &TensorInfo) -> u64 {
        self.data_offset.saturating_add(t.offset)
    }

    /// Sum of all tensors' byte sizes (llama-bench's "model size").
    pub fn tensor_data_size(&self) -> u64 {
        self.tensors.iter().map(|t| t.n_bytes).sum()
    }

    pub fn bytes(&self) -> &SharedBytes {
        &self.bytes
    }
}

impl fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GgufFile")
            .field("version", &self.version)
            .field("architecture", &self.architecture())
            .field("n_kv", &self.metadata.len())
            .field("n_tensors", &self.tensors.len())
            .field("alignment", &self.alignment)
            .field("data_offset", &self.data_offset)
            .field("file_size", &self.file_size())
            .finish()
    }
}
