//! Writes GGUF v3 files, streaming tensor data one tensor at a time.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::error::GgufError;
use super::parse::{ALIGNMENT_KEY, DEFAULT_ALIGNMENT, MAGIC, MAX_DIMS, MAX_TENSOR_NAME_LEN};
use super::value::{Value, MAX_ARRAY_NESTING};
use crate::quant::GgmlType;

const VERSION: u32 = 3;

/// Fills a zeroed buffer with one tensor's bytes.
pub type FillFn = Box<dyn FnMut(&mut [u8]) + Send>;

/// Where a tensor's bytes come from when the file is written.
pub enum TensorSource {
    /// Bytes held in memory, exactly `n_bytes` long.
    Bytes(Vec<u8>),
    /// Called once per write with a zeroed buffer of `n_bytes` to fill, so
    /// big files never hold all tensor data in memory at once.
    Fill(FillFn),
}

struct PendingTensor {
    name: String,
    dims: Vec<u64>,
    ggml_type: GgmlType,
    n_bytes: u64,
    source: TensorSource,
}

/// Builds a GGUF v3 file: metadata in insertion order, tensors in insertion
/// order, each tensor's data padded to the alignment.
pub struct GgufWriter {
    alignment: u64,
    metadata: Vec<(String, Value)>,
    tensors: Vec<PendingTensor>,
}

impl Default for GgufWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl GgufWriter {
    /// An empty GGUF v3 file with the default alignment of 32.
    pub fn new() -> Self {
        GgufWriter {
            alignment: DEFAULT_ALIGNMENT,
            metadata: Vec::new(),
            tensors: Vec::new(),
        }
    }

    /// Sets the data alignment; also writes `general.alignment` when it differs
    /// from the default 32 (and drops the key when it is the default).
    /// Checked when writing: it must be a power of two that fits in a u32.
    pub fn set_alignment(&mut self, alignment: u64) {
        self.alignment = alignment;
        if alignment == DEFAULT_ALIGNMENT {
            self.metadata.retain(|(k, _)| k != ALIGNMENT_KEY);
        } else if let Ok(a) = u32::try_from(alignment) {
            self.upsert(ALIGNMENT_KEY.to_owned(), Value::U32(a));
        }
    }

    /// Adds a key, or replaces the value of an existing key in place (a file
    /// with duplicate keys would be invalid). A u32 `general.alignment` also
    /// sets the alignment, so the padding always matches the key.
    pub fn add_kv(&mut self, key: impl Into<String>, value: Value) {
        let key = key.into();
        if key == ALIGNMENT_KEY {
            if let Value::U32(a) = value {
                self.alignment = u64::from(a);
            }
        }
        self.upsert(key, value);
    }

    fn upsert(&mut self, key: String, value: Value) {
        match self.metadata.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.metadata.push((key, value)),
        }
    }

    /// Adds a tensor; `dims` are in GGUF order (ne0 first). Checks the shape,
    /// the block size, a `Bytes` source's length and duplicate names.
    pub fn add_tensor(
        &mut self,
        name: impl Into<String>,
        dims: &[u64],
        ty: GgmlType,
        data: TensorSource,
    ) -> Result<(), GgufError> {
        let name = name.into();
        let invalid = |reason: String| GgufError::InvalidTensor {
            name: name.clone(),
            reason,
        };
        if name.len() > MAX_TENSOR_NAME_LEN {
            return Err(invalid(format!(
                "name is {} bytes, ggml allows at most {MAX_TENSOR_NAME_LEN}",
                name.len()
            )));
        }
        if self.tensors.iter().any(|t| t.name == name) {
            return Err(invalid("duplicate tensor name".into()));
        }
        if dims.is_empty() || dims.len() > MAX_DIMS as usize {
            return Err(invalid(format!(
                "{} dims, expected 1 to {MAX_DIMS}",
                dims.len()
            )));
        }
        if dims.contains(&0) {
            return Err(invalid(format!("zero-size dims {dims:?}")));
        }
        let n_elements = dims
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .filter(|&n| n <= i64::MAX as u64)
            .ok_or_else(|| invalid(format!("element count of {dims:?} overflows")))?;
        let ne0 = dims.first().copied().unwrap_or(0);
        if !ne0.is_multiple_of(ty.block_size() as u64) {
            return Err(invalid(format!(
                "row length {ne0} is not a multiple of the {ty} block size {}",
                ty.block_size()
            )));
        }
        let n_bytes = ty
            .bytes_for(n_elements)
            .ok_or_else(|| invalid(format!("byte size of {dims:?} overflows")))?;
        if let TensorSource::Bytes(bytes) = &data {
            if bytes.len() as u64 != n_bytes {
                return Err(GgufError::TensorDataSize {
                    name,
                    expected: n_bytes,
                    actual: bytes.len() as u64,
                });
            }
        }
        self.tensors.push(PendingTensor {
            name,
            dims: dims.to_vec(),
            ggml_type: ty,
            n_bytes,
            source: data,
        });
        Ok(())
    }

    /// Writes the whole file: header and tables first, then each tensor's
    /// data (calling its `Fill`) followed by padding.
    pub fn write_to(&mut self, w: &mut impl Write) -> Result<(), GgufError> {
        self.validate()?;
        let header = self.encode_header();
        w.write_all(&header).map_err(GgufError::Write)?;
        write_padding(w, header.len() as u64, self.alignment)?;
        for t in &mut self.tensors {
            match &mut t.source {
                TensorSource::Bytes(bytes) => w.write_all(bytes),
                TensorSource::Fill(fill) => {
                    let len = usize::try_from(t.n_bytes).map_err(|_| GgufError::InvalidTensor {
                        name: t.name.clone(),
                        reason: format!("{} bytes do not fit in memory", t.n_bytes),
                    })?;
                    let mut buf = vec![0u8; len];
                    fill(&mut buf);
                    w.write_all(&buf)
                }
            }
            .map_err(GgufError::Write)?;
            write_padding(w, t.n_bytes, self.alignment)?;
        }
        w.flush().map_err(GgufError::Write)
    }

    /// Writes to a temporary file beside `path`, then renames it into place,
    /// so a failed write never leaves a half-written file under `path`.
    pub fn write_file(&mut self, path: impl AsRef<Path>) -> Result<(), GgufError> {
        let path = path.as_ref();
        let tmp = temp_path_beside(path);
        let result = self.write_file_at(&tmp);
        let result = result.and_then(|()| {
            std::fs::rename(&tmp, path).map_err(|source| GgufError::Io {
                action: "rename temporary file to",
                path: path.to_path_buf(),
                source,
            })
        });
        if result.is_err() {
            // Best effort: the write error matters more than a leftover temp file.
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }

    fn write_file_at(&mut self, tmp: &Path) -> Result<(), GgufError> {
        let io_err = |action, source| GgufError::Io {
            action,
            path: tmp.to_path_buf(),
            source,
        };
        let file = File::create(tmp).map_err(|e| io_err("create", e))?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        self.write_to(&mut out)?;
        let file = out
            .into_inner()
            .map_err(|e| io_err("flush", e.into_error()))?;
        file.sync_all().map_err(|e| io_err("sync", e))
    }

    pub fn to_bytes(&mut self) -> Result<Vec<u8>, GgufError> {
        let mut out = Vec::new();
        self.write_to(&mut out)?;
        Ok(out)
    }

    fn validate(&self) -> Result<(), GgufError> {
        let a = self.alignment;
        if !a.is_power_of_two() || a > u64::from(u32::MAX) {
            return Err(GgufError::InvalidWriterAlignment { alignment: a });
        }
        for (key, value) in &self.metadata {
            let invalid = |reason: String| GgufError::InvalidValue {
                key: key.clone(),
                reason,
            };
            if key.is_empty() {
                return Err(invalid("keys must not be empty".into()));
            }
            if key == ALIGNMENT_KEY && *value != Value::U32(a as u32) {
                return Err(invalid(format!(
                    "must be the u32 {a} the writer aligns to, got {value:?}"
                )));
            }
            validate_value(value, 0).map_err(invalid)?;
        }
        Ok(())
    }

    fn encode_header(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        out.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (key, value) in &self.metadata {
            put_string(&mut out, key);
            out.extend_from_slice(&value.value_type().id().to_le_bytes());
            encode_value(&mut out, value);
        }
        let mut offset = 0u64;
        for t in &self.tensors {
            put_string(&mut out, &t.name);
            out.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                out.extend_from_slice(&d.to_le_bytes());
            }
            out.extend_from_slice(&t.ggml_type.id().to_le_bytes());
            out.extend_from_slice(&offset.to_le_bytes());
            offset += padded(t.n_bytes, self.alignment);
        }
        out
    }
}

/// Array items must all have the declared element type, nested at most
/// [`MAX_ARRAY_NESTING`] deep, or the reader would refuse the file.
fn validate_value(value: &Value, depth: usize) -> Result<(), String> {
    let Value::Array { elem, items } = value else {
        return Ok(());
    };
    if depth >= MAX_ARRAY_NESTING {
        return Err(format!("arrays nested deeper than {MAX_ARRAY_NESTING}"));
    }
    for item in items {
        if item.value_type() != *elem {
            return Err(format!("array of {elem} holds a {}", item.value_type()));
        }
        validate_value(item, depth + 1)?;
    }
    Ok(())
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn encode_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::U8(v) => out.push(*v),
        Value::I8(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::U16(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::I16(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::U32(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::I32(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::U64(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::I64(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::F32(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::F64(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::Bool(v) => out.push(u8::from(*v)),
        Value::String(s) => put_string(out, s),
        Value::Array { elem, items } => {
            out.extend_from_slice(&elem.id().to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for item in items {
                encode_value(out, item);
            }
        }
    }
}

fn padded(n: u64, alignment: u64) -> u64 {
    n.div_ceil(alignment) * alignment
}

/// Zero bytes after `written` bytes up to the next multiple of `alignment`.
fn write_padding(w: &mut impl Write, written: u64, alignment: u64) -> Result<(), GgufError> {
    const ZEROS: [u8; 4096] = [0; 4096];
    let mut pad = padded(written, alignment) - written;
    while pad > 0 {
        let n = pad.min(ZEROS.len() as u64);
        w.write_all(&ZEROS[..n as usize])
            .map_err(GgufError::Write)?;
        pad -= n;
    }
    Ok(())
}

fn temp_path_beside(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out.gguf".into());
    path.with_file_name(format!(".{name}.tmp{}", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::{GgufFile, ValueType};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    fn every_scalar() -> Vec<(String, Value)> {
        vec![
            ("u8".into(), Value::U8(250)),
            ("i8".into(), Value::I8(-120)),
            ("u16".into(), Value::U16(65000)),
            ("i16".into(), Value::I16(-32000)),
            ("u32".into(), Value::U32(4_000_000_000)),
            ("i32".into(), Value::I32(-2_000_000_000)),
            ("u64".into(), Value::U64(u64::MAX - 1)),
            ("i64".into(), Value::I64(i64::MIN + 1)),
            ("f32".into(), Value::F32(-1.5e-7)),
            ("f64".into(), Value::F64(std::f64::consts::PI)),
            ("bool_t".into(), Value::Bool(true)),
            ("bool_f".into(), Value::Bool(false)),
            ("str".into(), Value::from("héllo ▁world\n")),
            ("empty_str".into(), Value::from("")),
        ]
    }

    fn array(elem: ValueType, items: Vec<Value>) -> Value {
        Value::Array { elem, items }
    }

    fn nested(levels: usize) -> Value {
        let mut v = array(ValueType::U8, vec![Value::U8(5)]);
        for _ in 1..levels {
            v = array(ValueType::Array, vec![v]);
        }
        v
    }

    fn round_trip(w: &mut GgufWriter) -> GgufFile {
        GgufFile::from_bytes(w.to_bytes().unwrap()).unwrap()
    }

    #[test]
    fn every_value_type_round_trips_in_order() {
        let mut kvs = every_scalar();
        // Arrays of each scalar type: the same values, repeated.
        for (key, value) in every_scalar() {
            kvs.push((
                format!("arr_{key}"),
                array(value.value_type(), vec![value.clone(), value]),
            ));
        }
        let mut w = GgufWriter::new();
        for (k, v) in &kvs {
            w.add_kv(k.clone(), v.clone());
        }
        let f = round_trip(&mut w);
        assert_eq!(f.version(), 3);
        assert_eq!(f.metadata(), &kvs[..]);
        assert_eq!(f.get("i64"), Some(&Value::I64(i64::MIN + 1)));
        assert_eq!(f.get_u32("u32"), Some(4_000_000_000));
        assert_eq!(f.get_u64("u64"), Some(u64::MAX - 1));
        assert_eq!(f.get_f32("f32"), Some(-1.5e-7));
        assert_eq!(f.get_bool("bool_t"), Some(true));
        assert_eq!(f.get_str("str"), Some("héllo ▁world\n"));
        assert_eq!(f.get_array("arr_str").map(|a| a.len()), Some(2));
        assert_eq!(f.get("missing"), None);
        assert!(f.tensors().is_empty());
        assert_eq!(f.tensor_data_size(), 0);
    }

    #[test]
    fn nested_and_empty_arrays_keep_their_element_types() {
        let kvs: Vec<(String, Value)> = vec![
            ("empty_str".into(), array(ValueType::String, vec![])),
            ("empty_f64".into(), array(ValueType::F64, vec![])),
            ("empty_arr".into(), array(ValueType::Array, vec![])),
            (
                "mixed_nest".into(),
                array(
                    ValueType::Array,
                    vec![
                        array(ValueType::String, vec![Value::from("a"), Value::from("")]),
                        array(ValueType::I16, vec![]),
                        array(
                            ValueType::Array,
                            vec![array(ValueType::Bool, vec![Value::Bool(true)])],
                        ),
                    ],
                ),
            ),
            ("deepest".into(), nested(MAX_ARRAY_NESTING)),
        ];
        let mut w = GgufWriter::new();
        for (k, v) in &kvs {
            w.add_kv(k.clone(), v.clone());
        }
        let f = round_trip(&mut w);
        assert_eq!(f.metadata(), &kvs[..]);
        match f.get("empty_str") {
            Some(Value::Array { elem, items }) => {
                assert_eq!(*elem, ValueType::String);
                assert!(items.is_empty());
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn tensors_round_trip_with_padding_and_fill_is_called_per_write() {
        let fills = Arc::new(AtomicUsize::new(0));
        let counter = fills.clone();
        let mut w = GgufWriter::new();
        w.add_kv("general.architecture", Value::from("test"));
        let a: Vec<u8> = (0..3 * 4).map(|i| i as u8 + 1).collect();
        w.add_tensor("a", &[3], GgmlType::F32, TensorSource::Bytes(a.clone()))
            .unwrap();
        w.add_tensor(
            "b",
            &[256, 2],
            GgmlType::Q4_K,
            TensorSource::Fill(Box::new(move |buf: &mut [u8]| {
                assert_eq!(buf.len(), 288);
                assert!(buf.iter().all(|&b| b == 0), "fill buffer is zeroed");
                counter.fetch_add(1, Ordering::SeqCst);
                buf.iter_mut()
                    .enumerate()
                    .for_each(|(i, b)| *b = (i % 251) as u8);
            })),
        )
        .unwrap();
        w.add_tensor(
            "c",
            &[2, 3, 4, 5],
            GgmlType::F16,
            TensorSource::Bytes(vec![7; 240]),
        )
        .unwrap();
        let bytes = w.to_bytes().unwrap();
        assert_eq!(
            w.to_bytes().unwrap(),
            bytes,
            "writing twice gives the same file"
        );
        assert_eq!(fills.load(Ordering::SeqCst), 2);

        let f = GgufFile::from_bytes(bytes).unwrap();
        assert_eq!(f.architecture(), Some("test"));
        assert_eq!(f.alignment(), 32);
        assert_eq!(f.data_offset() % 32, 0);
        let names: Vec<&str> = f.tensors().iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        let b = f.tensor("b").unwrap();
        assert_eq!(b.dims, [256, 2]);
        assert_eq!((b.n_elements, b.n_bytes), (512, 288));
        assert_eq!(b.ggml_type, GgmlType::Q4_K);
        // "a" is 12 bytes, padded to 32.
        assert_eq!(b.offset, 32);
        assert_eq!(f.tensor("c").unwrap().offset, 32 + 288);
        assert_eq!(f.tensor_data(f.tensor("a").unwrap()), &a[..]);
        let b_data = f.tensor_data(b);
        assert_eq!(b_data.len(), 288);
        assert!(b_data
            .iter()
            .enumerate()
            .all(|(i, &v)| v == (i % 251) as u8));
        assert_eq!(f.tensor_data(f.tensor("c").unwrap()), &[7u8; 240][..]);
        assert_eq!(f.tensor_data_offset(b), f.data_offset() + 32);
        assert_eq!(f.tensor_data_size(), 12 + 288 + 240);
        assert_eq!(f.file_size(), f.data_offset() + 32 + 288 + 256);
    }

    #[test]
    fn alignment_setting_is_written_and_used_for_padding() {
        let mut w = GgufWriter::new();
        w.add_kv("first", Value::U8(1));
        w.set_alignment(64);
        w.add_tensor("t", &[1], GgmlType::F32, TensorSource::Bytes(vec![1; 4]))
            .unwrap();
        w.add_tensor("u", &[1], GgmlType::F32, TensorSource::Bytes(vec![2; 4]))
            .unwrap();
        let f = round_trip(&mut w);
        assert_eq!(f.alignment(), 64);
        assert_eq!(f.get("general.alignment"), Some(&Value::U32(64)));
        assert_eq!(f.data_offset() % 64, 0);
        assert_eq!(f.tensor("u").unwrap().offset, 64);
        assert_eq!(f.tensor_data(f.tensor("u").unwrap()), &[2u8; 4][..]);

        // Back to the default: the key disappears.
        w.set_alignment(32);
        let f = round_trip(&mut w);
        assert_eq!(f.alignment(), 32);
        assert_eq!(f.get("general.alignment"), None);
        assert_eq!(f.tensor("u").unwrap().offset, 32);

        // The key itself also sets the alignment.
        w.add_kv("general.alignment", Value::U32(128));
        let f = round_trip(&mut w);
        assert_eq!((f.alignment(), f.tensor("u").unwrap().offset), (128, 128));

        w.set_alignment(48);
        assert!(matches!(
            w.to_bytes(),
            Err(GgufError::InvalidWriterAlignment { alignment: 48 })
        ));
        w.set_alignment(0);
        assert!(matches!(
            w.to_bytes(),
            Err(GgufError::InvalidWriterAlignment { alignment: 0 })
        ));
        w.set_alignment(32);
        w.add_kv("general.alignment", Value::U64(32));
        assert!(matches!(w.to_bytes(), Err(GgufError::InvalidValue { .. })));
    }

    #[test]
    fn add_kv_replaces_an_existing_key_in_place() {
        let mut w = GgufWriter::new();
        w.add_kv("a", Value::U8(1));
        w.add_kv("b", Value::U8(2));
        w.add_kv("a", Value::from("x"));
        let f = round_trip(&mut w);
        let expected: Vec<(String, Value)> =
            vec![("a".into(), Value::from("x")), ("b".into(), Value::U8(2))];
        assert_eq!(f.metadata(), &expected[..]);
    }

    #[test]
    fn invalid_values_are_refused_at_write() {
        let mut w = GgufWriter::new();
        w.add_kv("bad", array(ValueType::U8, vec![Value::U16(1)]));
        assert!(matches!(w.to_bytes(), Err(GgufError::InvalidValue { key, .. }) if key == "bad"));

        let mut w = GgufWriter::new();
        w.add_kv("deep", nested(MAX_ARRAY_NESTING + 1));
        assert!(matches!(w.to_bytes(), Err(GgufError::InvalidValue { .. })));

        let mut w = GgufWriter::new();
        w.add_kv("", Value::U8(1));
        assert!(matches!(w.to_bytes(), Err(GgufError::InvalidValue { .. })));
    }

    #[test]
    fn add_tensor_checks_shape_size_and_names() {
        let mut w = GgufWriter::new();
        let f32s = |n: usize| TensorSource::Bytes(vec![0; n * 4]);
        w.add_tensor("ok", &[4], GgmlType::F32, f32s(4)).unwrap();
        let invalid = |r: Result<(), GgufError>| matches!(r, Err(GgufError::InvalidTensor { .. }));
        assert!(invalid(w.add_tensor("ok", &[4], GgmlType::F32, f32s(4))));
        assert!(invalid(w.add_tensor(
            "zero",
            &[4, 0],
            GgmlType::F32,
            f32s(0)
        )));
        assert!(invalid(w.add_tensor("nodims", &[], GgmlType::F32, f32s(1))));
        assert!(invalid(w.add_tensor("5d", &[1; 5], GgmlType::F32, f32s(1))));
        assert!(invalid(w.add_tensor(
            "blk",
            &[128],
            GgmlType::Q4_K,
            TensorSource::Bytes(vec![])
        )));
        assert!(invalid(w.add_tensor(
            "huge",
            &[1 << 32, 1 << 32],
            GgmlType::F32,
            f32s(0)
        )));
        assert!(invalid(w.add_tensor(
            "n".repeat(64),
            &[1],
            GgmlType::F32,
            f32s(1)
        )));
        assert!(matches!(
            w.add_tensor("short", &[4], GgmlType::F32, f32s(3)),
            Err(GgufError::TensorDataSize {
                expected: 16,
                actual: 12,
                ..
            })
        ));
        w.add_tensor("n".repeat(63), &[1], GgmlType::F32, f32s(1))
            .unwrap();
        assert_eq!(round_trip(&mut w).tensors().len(), 2);
    }

    #[test]
    fn write_file_renames_into_place_and_open_maps_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.gguf");
        let mut w = GgufWriter::new();
        w.add_kv("general.architecture", Value::from("x"));
        w.add_tensor(
            "t",
            &[8],
            GgmlType::I8,
            TensorSource::Bytes((0..8).collect()),
        )
        .unwrap();
        w.write_file(&path).unwrap();
        let entries: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(entries.len(), 1, "no temporary file left behind");
        let f = GgufFile::open(&path).unwrap();
        assert!(f.bytes().is_mapped());
        assert_eq!(f.tensor_data(&f.tensors()[0]), &[0, 1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(std::fs::read(&path).unwrap(), w.to_bytes().unwrap());

        let missing = dir.path().join("no/such/dir/m.gguf");
        assert!(matches!(w.write_file(&missing), Err(GgufError::Io { .. })));
        assert!(matches!(
            GgufFile::open(&missing),
            Err(GgufError::Io { .. })
        ));
    }
}
