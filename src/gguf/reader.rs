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

    /// Copies `parts` one after another (each at an offset that is a
    /// multiple of `align`) into anonymous memory advised into huge pages
    /// (on Linux): for weights streamed at every token, 4 KiB pages cost
    /// TLB misses. Returns the bytes and each part's offset.
    pub fn copy_to_huge_pages(
        parts: &[&[u8]],
        align: usize,
    ) -> std::io::Result<(SharedBytes, Vec<usize>)> {
        let align = align.max(1);
        let mut offsets = Vec::with_capacity(parts.len());
        let mut len = 0usize;
        for p in parts {
            len = len.div_ceil(align) * align;
            offsets.push(len);
            len += p.len();
        }
        let mut map = memmap2::MmapMut::map_anon(len.max(1))?;
        #[cfg(target_os = "linux")]
        let _ = map.advise(memmap2::Advice::HugePage);
        for (p, &o) in parts.iter().zip(&offsets) {
            map[o..o + p.len()].copy_from_slice(p);
        }
        let map = map.make_read_only()?;
        Ok((SharedBytes(Arc::new(Backing::Mapped(map))), offsets))
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
        // Checked before opening: opening a FIFO blocks until a writer
        // comes, and a directory opens but cannot be mapped.
        let kind = std::fs::metadata(path).map_err(|e| io_err("open", e))?;
        if kind.is_dir() {
            return Err(io_err("read", std::io::ErrorKind::IsADirectory.into()));
        }
        if !kind.is_file() {
            let not_regular = std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not a regular file (a device, FIFO or socket)",
            );
            return Err(io_err("read", not_regular));
        }
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
        // Weights read in place stream through the mapping at every token:
        // huge pages (where the page cache holds them) spare the TLB misses
        // of 4 KiB ones. Only advice: without it the mapping works the same.
        #[cfg(target_os = "linux")]
        let _ = map.advise(memmap2::Advice::HugePage);
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
        self.get_str(super::keys::GENERAL_ARCHITECTURE)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::ValueType;

    /// Hand-assembled GGUF bytes, independent of the writer.
    #[derive(Default)]
    struct Raw(Vec<u8>);

    impl Raw {
        fn u32(mut self, v: u32) -> Self {
            self.0.extend_from_slice(&v.to_le_bytes());
            self
        }
        fn u64(mut self, v: u64) -> Self {
            self.0.extend_from_slice(&v.to_le_bytes());
            self
        }
        fn str(self, s: &str) -> Self {
            let mut r = self.u64(s.len() as u64);
            r.0.extend_from_slice(s.as_bytes());
            r
        }
        fn bytes(mut self, b: &[u8]) -> Self {
            self.0.extend_from_slice(b);
            self
        }
        fn pad_to(mut self, alignment: usize) -> Self {
            while !self.0.len().is_multiple_of(alignment) {
                self.0.push(0);
            }
            self
        }
        fn header(version: u32, n_tensors: u64, n_kv: u64) -> Self {
            Raw::default()
                .bytes(b"GGUF")
                .u32(version)
                .u64(n_tensors)
                .u64(n_kv)
        }
    }

    #[test]
    fn reads_a_hand_written_v2_file() {
        let raw = Raw::header(2, 2, 2)
            .str("general.architecture")
            .u32(ValueType::String.id())
            .str("llama")
            .str("llama.vocab")
            .u32(ValueType::Array.id())
            .u32(ValueType::String.id())
            .u64(2)
            .str("a")
            .str("bc")
            .str("w")
            .u32(2)
            .u64(2)
            .u64(3)
            .u32(GgmlType::F32.id())
            .u64(0)
            .str("v")
            .u32(1)
            .u64(32)
            .u32(GgmlType::Q8_0.id())
            .u64(32)
            .pad_to(32);
        let data_offset = raw.0.len() as u64;
        let raw = raw.bytes(&[1; 24]).pad_to(32).bytes(&[2; 34]);
        let f = GgufFile::from_bytes(raw.0).unwrap();
        assert_eq!(f.version(), 2);
        assert_eq!(f.architecture(), Some("llama"));
        assert_eq!(
            f.get("llama.vocab"),
            Some(&Value::Array {
                elem: ValueType::String,
                items: vec![Value::from("a"), Value::from("bc")]
            })
        );
        assert_eq!(f.data_offset(), data_offset);
        let w = f.tensor("w").unwrap();
        assert_eq!(
            (w.dims.as_slice(), w.n_elements, w.n_bytes),
            (&[2, 3][..], 6, 24)
        );
        assert_eq!(f.tensor_data(w), &[1u8; 24][..]);
        let v = f.tensor("v").unwrap();
        assert_eq!((v.ggml_type, v.n_bytes), (GgmlType::Q8_0, 34));
        assert_eq!(f.tensor_data(v), &[2u8; 34][..]);
        assert_eq!(f.tensor_data_size(), 58);
    }

    #[test]
    fn data_section_starts_at_header_end_rounded_up_to_the_alignment() {
        for alignment in [1u32, 8, 16, 64, 256] {
            let raw = Raw::header(3, 1, 1)
                .str("general.alignment")
                .u32(ValueType::U32.id())
                .u32(alignment)
                .str("t")
                .u32(1)
                .u64(4)
                .u32(GgmlType::I8.id())
                .u64(0);
            let header_end = raw.0.len() as u64;
            let raw = raw.pad_to(alignment as usize).bytes(&[9, 8, 7, 6]);
            let f = GgufFile::from_bytes(raw.0).unwrap();
            assert_eq!(f.alignment(), u64::from(alignment));
            assert_eq!(
                f.data_offset(),
                header_end.div_ceil(alignment.into()) * u64::from(alignment)
            );
            assert_eq!(f.tensor_data(&f.tensors()[0]), &[9, 8, 7, 6]);
        }
    }

    #[test]
    fn alignment_must_be_a_u32_power_of_two() {
        let with_alignment = |ty: ValueType, value: &[u8]| {
            let raw = Raw::header(3, 0, 1)
                .str("general.alignment")
                .u32(ty.id())
                .bytes(value);
            GgufFile::from_bytes(raw.0)
        };
        for bad in [0u32, 3, 48, u32::MAX] {
            let err = with_alignment(ValueType::U32, &bad.to_le_bytes()).unwrap_err();
            assert!(
                matches!(err, GgufError::InvalidAlignment { offset: 24, .. }),
                "{bad}: {err}"
            );
        }
        let err = with_alignment(ValueType::U64, &64u64.to_le_bytes()).unwrap_err();
        assert!(matches!(err, GgufError::InvalidAlignment { .. }), "{err}");
        let ok = with_alignment(ValueType::U32, &(1u32 << 31).to_le_bytes()).unwrap();
        assert_eq!(ok.alignment(), 1 << 31);
    }

    #[test]
    fn v1_big_endian_and_future_versions_are_refused() {
        for version in [0, 1, 4, 0x0300_0000, 0x0200_0000] {
            let raw = Raw::header(version, 0, 0);
            match GgufFile::from_bytes(raw.0) {
                Err(GgufError::UnsupportedVersion { version: v, .. }) => assert_eq!(v, version),
                other => panic!("version {version:#x}: {other:?}"),
            }
        }
        // A real big-endian v3 header: magic bytes as-is, numbers byte-swapped.
        let mut be = b"GGUF".to_vec();
        be.extend_from_slice(&3u32.to_be_bytes());
        be.extend_from_slice(&0u64.to_be_bytes());
        be.extend_from_slice(&0u64.to_be_bytes());
        let err = GgufFile::from_bytes(be).unwrap_err();
        assert!(err.to_string().contains("big-endian"), "{err}");
    }

    #[test]
    fn an_empty_file_without_tensors_is_valid() {
        let f = GgufFile::from_bytes(Raw::header(3, 0, 0).0).unwrap();
        assert_eq!(
            (f.version(), f.metadata().len(), f.tensors().len()),
            (3, 0, 0)
        );
        assert_eq!(f.file_size(), 24);
        assert_eq!(f.architecture(), None);
    }

    #[test]
    fn tensor_data_of_a_foreign_tensor_info_is_empty_not_a_panic() {
        let f = GgufFile::from_bytes(Raw::header(3, 0, 0).0).unwrap();
        let foreign = TensorInfo {
            name: "x".into(),
            dims: vec![1 << 40],
            ggml_type: GgmlType::F32,
            offset: u64::MAX,
            n_elements: 1 << 40,
            n_bytes: 1 << 42,
        };
        assert!(f.tensor_data(&foreign).is_empty());
        assert_eq!(f.tensor_data_offset(&foreign), u64::MAX);
    }

    #[test]
    fn file_and_bytes_can_be_shared_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<GgufFile>();
        assert_send_sync::<SharedBytes>();
    }

    #[test]
    fn shared_bytes_clones_share_the_same_memory() {
        let f = GgufFile::from_bytes(Raw::header(3, 0, 0).0).unwrap();
        let a = f.bytes().clone();
        assert!(!a.is_mapped());
        assert_eq!(a.as_ptr(), f.bytes().as_ptr());
        assert_eq!(&a[..4], b"GGUF");
        let handle = std::thread::spawn(move || a.len());
        assert_eq!(handle.join().unwrap(), 24);
    }
}
