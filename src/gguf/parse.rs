//! Parsing and validation of a whole GGUF file held in memory (or mapped).
//!
//! Layout (all little-endian): magic "GGUF", u32 version, u64 tensor count,
//! u64 kv count, the kv pairs, the tensor infos, padding to the alignment,
//! then the data section that tensor offsets are relative to.

use std::collections::HashMap;

use super::cursor::Cursor;
use super::error::{GgufError, Section};
use super::reader::TensorInfo;
use super::value::{Value, ValueType, MAX_ARRAY_NESTING};
use crate::quant::GgmlType;

pub const MAGIC: &[u8; 4] = b"GGUF";
pub const DEFAULT_ALIGNMENT: u64 = 32;
pub const ALIGNMENT_KEY: &str = super::keys::GENERAL_ALIGNMENT;
/// ggml stores tensor names in a 64-byte buffer including the terminator.
pub const MAX_TENSOR_NAME_LEN: usize = 63;
pub const MAX_DIMS: u32 = 4;

/// Fewest bytes a kv pair can take: key length (u64) + value type (u32) + a 1-byte value.
const MIN_KV_BYTES: u64 = 8 + 4 + 1;
/// Fewest bytes a tensor info can take: name length + n_dims + one dim + type + offset.
const MIN_TENSOR_INFO_BYTES: u64 = 8 + 4 + 8 + 4 + 8;
/// Upper bound on up-front capacity; counts were already checked against the
/// file size, the cap only keeps a hostile count from reserving far more
/// memory than the entries actually parsed.
const PREALLOC_CAP: u64 = 1 << 20;

pub(super) struct Parsed {
    pub version: u32,
    pub alignment: u64,
    pub data_offset: u64,
    pub metadata: Vec<(String, Value)>,
    pub key_index: HashMap<String, usize>,
    pub tensors: Vec<TensorInfo>,
    pub tensor_index: HashMap<String, usize>,
}

fn capacity(count: u64) -> usize {
    usize::try_from(count.min(PREALLOC_CAP)).unwrap_or(0)
}

pub(super) fn parse(buf: &[u8]) -> Result<Parsed, GgufError> {
    let mut c = Cursor::new(buf);
    let version = read_header_start(&mut c)?;

    let n_tensors_offset = c.offset();
    let n_tensors = c.u64("tensor count")?;
    let n_kv_offset = c.offset();
    let n_kv = c.u64("kv count")?;
    check_count(&c, "kv count", n_kv, MIN_KV_BYTES, n_kv_offset)?;

    let (metadata, key_index, key_offsets) = read_metadata(&mut c, n_kv)?;
    let alignment = alignment_from(&metadata, &key_index, &key_offsets)?;

    // Checked only now, against what the kv pairs left, so that a file cut
    // inside its metadata reports the truncation rather than this count.
    check_count(
        &c,
        "tensor count",
        n_tensors,
        MIN_TENSOR_INFO_BYTES,
        n_tensors_offset,
    )?;
    let (tensors, tensor_index) = read_tensor_infos(&mut c, n_tensors, alignment)?;

    let header_end = c.offset();
    let data_offset = header_end.div_ceil(alignment) * alignment;
    check_tensor_data(&tensors, header_end, data_offset, buf.len() as u64)?;

    Ok(Parsed {
        version,
        alignment,
        data_offset,
        metadata,
        key_index,
        tensors,
        tensor_index,
    })
}

/// Magic and version; returns the version.
fn read_header_start(c: &mut Cursor) -> Result<u32, GgufError> {
    let magic = c.array::<4>("magic")?;
    if &magic != MAGIC {
        return Err(GgufError::BadMagic { found: magic });
    }
    let version = c.u32("version")?;
    let reason = if version == 0 {
        "version 0 does not exist"
    } else if version & 0xFFFF == 0 {
        // A big-endian v2/v3 file read as little-endian gives 0x0?000000.
        "the file looks big-endian; only little-endian files are supported"
    } else if version == 1 {
        "GGUF v1 (32-bit counts) is no longer supported"
    } else if version > 3 {
        "newer than v3, the latest version this reader knows"
    } else {
        return Ok(version);
    };
    Err(GgufError::UnsupportedVersion { version, reason })
}

/// Refuses a count whose entries could not possibly fit in the rest of the file.
fn check_count(
    c: &Cursor,
    what: &'static str,
    count: u64,
    min_entry_bytes: u64,
    offset: u64,
) -> Result<(), GgufError> {
    let remaining = c.remaining();
    if u128::from(count) * u128::from(min_entry_bytes) > u128::from(remaining) {
        return Err(GgufError::AbsurdCount {
            what,
            count,
            min_entry_bytes,
            offset,
            remaining,
        });
    }
    Ok(())
}

type Metadata = (Vec<(String, Value)>, HashMap<String, usize>, Vec<u64>);

fn read_metadata(c: &mut Cursor, n_kv: u64) -> Result<Metadata, GgufError> {
    c.section = Section::Metadata;
    let mut metadata = Vec::with_capacity(capacity(n_kv));
    let mut key_index = HashMap::with_capacity(capacity(n_kv));
    let mut key_offsets = Vec::with_capacity(capacity(n_kv));
    for i in 0..n_kv {
        c.item = format!("kv {i}");
        let key_offset = c.offset();
        let key = c.string("key")?;
        if key.is_empty() {
            return Err(GgufError::EmptyKey {
                index: i,
                offset: key_offset,
            });
        }
        if key_index.contains_key(key) {
            return Err(GgufError::DuplicateKey {
                key: key.to_owned(),
                offset: key_offset,
            });
        }
        c.item = format!("key '{key}'");
        let value_type = read_value_type(c, "value type")?;
        let value = read_value(c, value_type, 0, "value")?;
        key_index.insert(key.to_owned(), metadata.len());
        key_offsets.push(key_offset);
        metadata.push((key.to_owned(), value));
    }
    Ok((metadata, key_index, key_offsets))
}

fn read_value_type(c: &mut Cursor, field: &str) -> Result<ValueType, GgufError> {
    let offset = c.offset();
    let type_id = c.u32(field)?;
    ValueType::from_id(type_id).ok_or_else(|| GgufError::UnknownValueType {
        what: c.what(field),
        type_id,
        offset,
    })
}

/// One value of type `ty`; `depth` is the number of arrays it sits in.
fn read_value(
    c: &mut Cursor,
    ty: ValueType,
    depth: usize,
    field: &str,
) -> Result<Value, GgufError> {
    Ok(match ty {
        ValueType::U8 => Value::U8(c.u8(field)?),
        ValueType::I8 => Value::I8(c.u8(field)? as i8),
        ValueType::U16 => Value::U16(c.u16(field)?),
        ValueType::I16 => Value::I16(c.u16(field)? as i16),
        ValueType::U32 => Value::U32(c.u32(field)?),
        ValueType::I32 => Value::I32(c.u32(field)? as i32),
        ValueType::U64 => Value::U64(c.u64(field)?),
        ValueType::I64 => Value::I64(c.u64(field)? as i64),
        ValueType::F32 => Value::F32(f32::from_bits(c.u32(field)?)),
        ValueType::F64 => Value::F64(f64::from_bits(c.u64(field)?)),
        ValueType::Bool => {
            let offset = c.offset();
            match c.u8(field)? {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                byte => {
                    return Err(GgufError::InvalidBool {
                        what: c.what(field),
                        byte,
                        offset,
                    })
                }
            }
        }
        ValueType::String => Value::String(c.string(field)?.to_owned()),
        ValueType::Array => read_array(c, depth)?,
    })
}

fn read_array(c: &mut Cursor, depth: usize) -> Result<Value, GgufError> {
    let offset = c.offset();
    if depth >= MAX_ARRAY_NESTING {
        return Err(GgufError::NestingTooDeep {
            what: c.what("array"),
            max_depth: MAX_ARRAY_NESTING,
            offset,
        });
    }
    let elem = read_value_type(c, "array element type")?;
    let len_offset = c.offset();
    let len = c.u64("array length")?;
    let min_bytes = u128::from(len) * elem.min_encoded_size() as u128;
    if min_bytes > u128::from(c.remaining()) {
        return Err(GgufError::ArrayPastEnd {
            what: c.what("array"),
            len,
            offset: len_offset,
            min_bytes,
            remaining: c.remaining(),
        });
    }
    let mut items = Vec::with_capacity(capacity(len));
    for _ in 0..len {
        items.push(read_value(c, elem, depth + 1, "array element")?);
    }
    Ok(Value::Array { elem, items })
}

fn alignment_from(
    metadata: &[(String, Value)],
    key_index: &HashMap<String, usize>,
    key_offsets: &[u64],
) -> Result<u64, GgufError> {
    let Some(&i) = key_index.get(ALIGNMENT_KEY) else {
        return Ok(DEFAULT_ALIGNMENT);
    };
    let value = metadata.get(i).map(|(_, v)| v);
    match value {
        // ggml requires a u32 here; any other type is refused like ggml does.
        Some(Value::U32(a)) if a.is_power_of_two() => Ok(u64::from(*a)),
        _ => Err(GgufError::InvalidAlignment {
            value: value.map_or_else(String::new, |v| {
                format!("{} {}", v.value_type(), v.to_display_string(4))
            }),
            offset: key_offsets.get(i).copied().unwrap_or(0),
        }),
    }
}

fn read_tensor_infos(
    c: &mut Cursor,
    n_tensors: u64,
    alignment: u64,
) -> Result<(Vec<TensorInfo>, HashMap<String, usize>), GgufError> {
    c.section = Section::TensorTable;
    let mut tensors = Vec::with_capacity(capacity(n_tensors));
    let mut tensor_index = HashMap::with_capacity(capacity(n_tensors));
    for i in 0..n_tensors {
        c.item = format!("tensor {i}");
        let info = read_tensor_info(c, i, alignment, &tensor_index)?;
        tensor_index.insert(info.name.clone(), tensors.len());
        tensors.push(info);
    }
    Ok((tensors, tensor_index))
}

fn read_tensor_info(
    c: &mut Cursor,
    index: u64,
    alignment: u64,
    seen: &HashMap<String, usize>,
) -> Result<TensorInfo, GgufError> {
    let name_offset = c.offset();
    let name = c.string("name")?;
    if name.len() > MAX_TENSOR_NAME_LEN {
        return Err(GgufError::TensorNameTooLong {
            index,
            len: name.len() as u64,
            max: MAX_TENSOR_NAME_LEN,
            offset: name_offset,
        });
    }
    if seen.contains_key(name) {
        return Err(GgufError::DuplicateTensor {
            name: name.to_owned(),
            offset: name_offset,
        });
    }
    let name = name.to_owned();
    c.item = format!("tensor {index} '{name}'");

    let n_dims_offset = c.offset();
    let n_dims = c.u32("n_dims")?;
    if n_dims == 0 || n_dims > MAX_DIMS {
        return Err(GgufError::InvalidDims {
            name,
            reason: format!("n_dims is {n_dims}, expected 1 to {MAX_DIMS}"),
            offset: n_dims_offset,
        });
    }
    let dims_offset = c.offset();
    let mut dims = Vec::with_capacity(n_dims as usize);
    for _ in 0..n_dims {
        dims.push(c.u64("dim")?);
    }
    if let Some(j) = dims.iter().position(|&d| d == 0) {
        return Err(GgufError::InvalidDims {
            name,
            reason: format!("dim {j} is 0 (zero-size tensors are refused)"),
            offset: dims_offset + 8 * j as u64,
        });
    }
    // ggml counts elements in an i64.
    let n_elements = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= i64::MAX as u64);
    let Some(n_elements) = n_elements else {
        return Err(GgufError::ElementCountOverflow {
            name,
            dims,
            offset: dims_offset,
        });
    };

    let type_offset = c.offset();
    let type_id = c.u32("type")?;
    let Some(ggml_type) = GgmlType::from_id(type_id) else {
        return Err(GgufError::UnknownGgmlType {
            name,
            type_id,
            offset: type_offset,
        });
    };
    let ne0 = dims.first().copied().unwrap_or(0);
    if !ne0.is_multiple_of(ggml_type.block_size() as u64) {
        return Err(GgufError::BlockSizeMismatch {
            name,
            ggml_type,
            ne0,
            block_size: ggml_type.block_size(),
            offset: type_offset,
        });
    }
    let Some(n_bytes) = ggml_type.bytes_for(n_elements) else {
        return Err(GgufError::ElementCountOverflow {
            name,
            dims,
            offset: dims_offset,
        });
    };

    let offset_offset = c.offset();
    let offset = c.u64("data offset")?;
    if !offset.is_multiple_of(alignment) {
        return Err(GgufError::MisalignedTensor {
            name,
            data_offset: offset,
            alignment,
            offset: offset_offset,
        });
    }
    Ok(TensorInfo {
        name,
        dims,
        ggml_type,
        offset,
        n_elements,
        n_bytes,
    })
}

/// Every tensor's bytes lie inside the file and no two tensors share a byte.
fn check_tensor_data(
    tensors: &[TensorInfo],
    header_end: u64,
    data_offset: u64,
    file_size: u64,
) -> Result<(), GgufError> {
    if tensors.is_empty() {
        return Ok(());
    }
    if data_offset > file_size {
        return Err(GgufError::Truncated {
            section: Section::TensorData,
            what: String::from("padding before the data section"),
            needed: data_offset - header_end,
            offset: header_end,
            file_size,
        });
    }
    for t in tensors {
        let start = u128::from(data_offset) + u128::from(t.offset);
        if start > u128::from(file_size) {
            return Err(GgufError::TensorOutOfBounds {
                name: t.name.clone(),
                file_offset: start,
                n_bytes: t.n_bytes,
                file_size,
            });
        }
        if start + u128::from(t.n_bytes) > u128::from(file_size) {
            return Err(GgufError::Truncated {
                section: Section::TensorData,
                what: format!("tensor '{}' data", t.name),
                needed: t.n_bytes,
                offset: start as u64,
                file_size,
            });
        }
    }
    // In bounds, so offset + n_bytes cannot overflow below.
    let mut by_offset: Vec<&TensorInfo> = tensors.iter().collect();
    by_offset.sort_by_key(|t| t.offset);
    for pair in by_offset.windows(2) {
        let [prev, next] = pair else { continue };
        if prev.offset + prev.n_bytes > next.offset {
            return Err(GgufError::TensorOverlap {
                name: next.name.clone(),
                start: next.offset,
                end: next.offset + next.n_bytes,
                other: prev.name.clone(),
                other_start: prev.offset,
                other_end: prev.offset + prev.n_bytes,
                offset: data_offset + next.offset,
            });
        }
    }
    Ok(())
}
