//! Malformed GGUF files: each is a valid written file, corrupted or cut, and
//! must be refused with the matching typed error, never a panic.

use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use rbench::gguf::{
    GgufError, GgufFile, GgufWriter, Section, TensorSource, Value, ValueType, MAX_ARRAY_NESTING,
};
use rbench::quant::GgmlType;

const LONG_NAME_LEN: usize = 63;

/// The valid file every case starts from, with the byte offsets of the fields
/// the cases corrupt (found by searching, not hard-coded).
struct Base {
    bytes: Vec<u8>,
    data_offset: usize,
}

fn nested_u8(levels: usize) -> Value {
    let mut v = Value::Array {
        elem: ValueType::U8,
        items: vec![Value::U8(5)],
    };
    for _ in 1..levels {
        v = Value::Array {
            elem: ValueType::Array,
            items: vec![v],
        };
    }
    v
}

fn long_name() -> String {
    "L".repeat(LONG_NAME_LEN)
}

fn base() -> Base {
    let mut w = GgufWriter::new();
    w.add_kv("general.architecture", Value::from("test"));
    w.add_kv("test.k1", Value::U32(7));
    w.add_kv("test.k2", Value::U32(8));
    w.add_kv(
        "test.arr",
        Value::Array {
            elem: ValueType::I32,
            items: vec![Value::I32(1), Value::I32(2), Value::I32(3)],
        },
    );
    w.add_kv("test.flag", Value::Bool(true));
    w.add_kv("test.nested", nested_u8(MAX_ARRAY_NESTING));
    w.add_tensor(
        "a",
        &[64, 2],
        GgmlType::F32,
        TensorSource::Bytes(vec![1; 512]),
    )
    .unwrap();
    w.add_tensor(
        "b",
        &[256],
        GgmlType::Q4_K,
        TensorSource::Bytes(vec![2; 144]),
    )
    .unwrap();
    w.add_tensor("c", &[32], GgmlType::F16, TensorSource::Bytes(vec![3; 64]))
        .unwrap();
    w.add_tensor(
        long_name(),
        &[8],
        GgmlType::I8,
        TensorSource::Bytes(vec![4; 8]),
    )
    .unwrap();
    let bytes = w.to_bytes().unwrap();
    let f = GgufFile::from_bytes(bytes.clone()).expect("base file is valid");
    assert_eq!(f.tensors().len(), 4);
    Base {
        data_offset: f.data_offset() as usize,
        bytes,
    }
}

impl Base {
    /// Offset just past the GGUF string `s` (its u64 length + bytes) in the header.
    fn after_string(&self, s: &str) -> usize {
        let mut needle = (s.len() as u64).to_le_bytes().to_vec();
        needle.extend_from_slice(s.as_bytes());
        let pos = self.bytes[..self.data_offset]
            .windows(needle.len())
            .position(|w| w == needle.as_slice())
            .unwrap_or_else(|| panic!("string {s:?} not in header"));
        pos + needle.len()
    }

    /// Offset of the u64 length prefix of the string `s`.
    fn string_start(&self, s: &str) -> usize {
        self.after_string(s) - s.len() - 8
    }

    /// Field offsets of a tensor info: (n_dims, first dim, type, data offset).
    fn tensor_fields(&self, name: &str, n_dims: usize) -> (usize, usize, usize, usize) {
        let n_dims_at = self.after_string(name);
        let dims_at = n_dims_at + 4;
        let type_at = dims_at + 8 * n_dims;
        (n_dims_at, dims_at, type_at, type_at + 4)
    }

    fn with(&self, at: usize, new: &[u8]) -> Vec<u8> {
        let mut b = self.bytes.clone();
        b[at..at + new.len()].copy_from_slice(new);
        b
    }

    fn open_with(&self, at: usize, new: &[u8]) -> GgufError {
        let err =
            GgufFile::from_bytes(self.with(at, new)).expect_err("corrupted file must be refused");
        assert_mentions_offset(&err);
        err
    }
}

/// The message of every error names a byte offset (or the item, for writer errors).
fn assert_mentions_offset(err: &GgufError) {
    assert!(err.to_string().contains("offset"), "no offset in: {err}");
}

#[test]
fn bad_magic() {
    let err = base().open_with(0, b"GGUX");
    assert!(
        matches!(err, GgufError::BadMagic { found } if &found == b"GGUX"),
        "{err}"
    );
    assert_mentions_offset(&err);
}

#[test]
fn unsupported_versions() {
    let b = base();
    for version in [1u32, 4, 0x0300_0000] {
        let err = b.open_with(4, &version.to_le_bytes());
        assert!(
            matches!(err, GgufError::UnsupportedVersion { version: v, .. } if v == version),
            "{err}"
        );
        assert_mentions_offset(&err);
    }
}

#[test]
fn truncated_header() {
    let b = base();
    for cut in [0, 3, 4, 10, 23] {
        let err = GgufFile::from_bytes(b.bytes[..cut].to_vec()).unwrap_err();
        assert!(
            matches!(
                err,
                GgufError::Truncated {
                    section: Section::Header,
                    ..
                }
            ),
            "cut at {cut}: {err}"
        );
    }
    let err = GgufFile::from_bytes(b.bytes[..6].to_vec()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "truncated header: version needs 4 bytes at offset 4, file is 6 bytes"
    );
}

#[test]
fn truncated_metadata() {
    let b = base();
    // Cut in the middle of test.k2's u32 value (after its type id). (A cut
    // much earlier leaves too few bytes for the kv count: AbsurdCount.)
    let value_at = b.after_string("test.k2") + 4;
    let err = GgufFile::from_bytes(b.bytes[..value_at + 2].to_vec()).unwrap_err();
    match &err {
        GgufError::Truncated {
            section: Section::Metadata,
            what,
            needed: 4,
            offset,
            file_size,
        } => {
            assert_eq!(*offset as usize, value_at);
            assert_eq!(*file_size as usize, value_at + 2);
            assert!(what.contains("test.k2"), "{what}");
        }
        other => panic!("unexpected {other}"),
    }
}

#[test]
fn truncated_tensor_table() {
    let b = base();
    // Cut inside the last tensor info's data offset: everything before it is whole.
    let (_, _, _, offset_at) = b.tensor_fields(&long_name(), 1);
    let err = GgufFile::from_bytes(b.bytes[..offset_at + 3].to_vec()).unwrap_err();
    match &err {
        GgufError::Truncated {
            section: Section::TensorTable,
            what,
            needed: 8,
            offset,
            ..
        } => {
            assert_eq!(*offset as usize, offset_at);
            assert!(what.starts_with("tensor 3 "), "{what}");
        }
        other => panic!("unexpected {other}"),
    }
}

#[test]
fn truncated_tensor_data() {
    let b = base();
    let f = GgufFile::from_bytes(b.bytes.clone()).unwrap();
    let last = f.tensors().last().unwrap();
    let last_end = (f.tensor_data_offset(last) + last.n_bytes) as usize;
    // The file ends with padding after the last tensor; cutting only padding is fine.
    assert!(GgufFile::from_bytes(b.bytes[..last_end].to_vec()).is_ok());
    for cut in [b.data_offset, b.data_offset + 100, last_end - 1] {
        let err = GgufFile::from_bytes(b.bytes[..cut].to_vec()).unwrap_err();
        assert!(
            matches!(
                err,
                GgufError::Truncated {
                    section: Section::TensorData,
                    ..
                }
            ),
            "cut at {cut}: {err}"
        );
        assert_mentions_offset(&err);
    }
}

#[test]
fn string_length_past_end_of_file() {
    let b = base();
    let len_at = b.string_start("test");
    let err = b.open_with(len_at, &1_000_000u64.to_le_bytes());
    assert!(
        matches!(err, GgufError::StringPastEnd { len: 1_000_000, offset, .. } if offset as usize == len_at),
        "{err}"
    );
    let err = b.open_with(len_at, &u64::MAX.to_le_bytes());
    assert!(matches!(err, GgufError::StringPastEnd { .. }), "{err}");
}

#[test]
fn array_length_past_end_of_file() {
    let b = base();
    // test.arr: value type (4), element type (4), then the u64 length.
    let len_at = b.after_string("test.arr") + 8;
    for len in [1u64 << 40, u64::MAX, 1_000_000] {
        let err = b.open_with(len_at, &len.to_le_bytes());
        assert!(
            matches!(err, GgufError::ArrayPastEnd { len: l, offset, .. } if l == len && offset as usize == len_at),
            "{err}"
        );
        assert_mentions_offset(&err);
    }
}

#[test]
fn absurd_tensor_and_kv_counts() {
    let b = base();
    for (at, what) in [(8, "tensor count"), (16, "kv count")] {
        for count in [1u64 << 40, u64::MAX, b.bytes.len() as u64] {
            let err = b.open_with(at, &count.to_le_bytes());
            assert!(
                matches!(err, GgufError::AbsurdCount { what: w, count: c, offset, .. }
                    if w == what && c == count && offset == at as u64),
                "{err}"
            );
        }
    }
}

#[test]
fn invalid_dimensions() {
    let b = base();
    let (n_dims_at, dims_at, _, _) = b.tensor_fields("a", 2);
    for n_dims in [0u32, 5, u32::MAX] {
        let err = b.open_with(n_dims_at, &n_dims.to_le_bytes());
        assert!(
            matches!(&err, GgufError::InvalidDims { name, offset, .. } if name == "a" && *offset as usize == n_dims_at),
            "{err}"
        );
    }
    let err = b.open_with(dims_at + 8, &0u64.to_le_bytes());
    assert!(
        matches!(&err, GgufError::InvalidDims { offset, .. } if *offset as usize == dims_at + 8),
        "{err}"
    );
}

#[test]
fn element_count_overflow() {
    let b = base();
    let (_, dims_at, _, _) = b.tensor_fields("a", 2);
    let mut dims = (1u64 << 32).to_le_bytes().to_vec();
    dims.extend_from_slice(&(1u64 << 32).to_le_bytes());
    let err = b.open_with(dims_at, &dims);
    assert!(
        matches!(err, GgufError::ElementCountOverflow { .. }),
        "{err}"
    );
    // Fits in u64 but not in ggml's i64 element count.
    let mut dims = (1u64 << 62).to_le_bytes().to_vec();
    dims.extend_from_slice(&2u64.to_le_bytes());
    let err = b.open_with(dims_at, &dims);
    assert!(
        matches!(err, GgufError::ElementCountOverflow { .. }),
        "{err}"
    );
}

#[test]
fn unknown_ggml_type() {
    let b = base();
    let (_, _, type_at, _) = b.tensor_fields("a", 2);
    for id in [4u32, 37, 1000] {
        let err = b.open_with(type_at, &id.to_le_bytes());
        assert!(
            matches!(err, GgufError::UnknownGgmlType { type_id, offset, .. } if type_id == id && offset as usize == type_at),
            "{err}"
        );
    }
}

#[test]
fn row_length_not_a_multiple_of_the_block_size() {
    let b = base();
    let (_, dims_at, _, _) = b.tensor_fields("b", 1);
    let err = b.open_with(dims_at, &128u64.to_le_bytes());
    assert!(
        matches!(
            err,
            GgufError::BlockSizeMismatch {
                ne0: 128,
                block_size: 256,
                ggml_type: GgmlType::Q4_K,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn misaligned_tensor_offset() {
    let b = base();
    let (_, _, _, offset_at) = b.tensor_fields("c", 1);
    let original = u64::from_le_bytes(b.bytes[offset_at..offset_at + 8].try_into().unwrap());
    let err = b.open_with(offset_at, &(original + 1).to_le_bytes());
    assert!(
        matches!(err, GgufError::MisalignedTensor { alignment: 32, offset, .. } if offset as usize == offset_at),
        "{err}"
    );
}

#[test]
fn tensor_data_out_of_bounds() {
    let b = base();
    let (_, _, _, offset_at) = b.tensor_fields("c", 1);
    for bad in [1u64 << 40, u64::MAX - 31, b.bytes.len() as u64] {
        let err = b.open_with(offset_at, &bad.to_le_bytes());
        assert!(
            matches!(&err, GgufError::TensorOutOfBounds { name, .. } if name == "c"),
            "{err}"
        );
    }
}

#[test]
fn overlapping_tensors() {
    let b = base();
    let (_, _, _, offset_at) = b.tensor_fields("b", 1);
    // "a" occupies bytes 0..512 of the data section.
    let err = b.open_with(offset_at, &480u64.to_le_bytes());
    assert!(
        matches!(&err, GgufError::TensorOverlap { name, other, start: 480, other_end: 512, .. }
            if name == "b" && other == "a"),
        "{err}"
    );
}

#[test]
fn duplicate_tensor_names() {
    let b = base();
    let name_at = b.after_string("c") - 1;
    let err = b.open_with(name_at, b"a");
    assert!(
        matches!(&err, GgufError::DuplicateTensor { name, offset } if name == "a" && *offset as usize == name_at - 8),
        "{err}"
    );
}

#[test]
fn tensor_name_too_long() {
    let b = base();
    // One byte longer swallows the first byte of n_dims (0x01) into the name.
    let len_at = b.string_start(&long_name());
    let err = b.open_with(len_at, &(LONG_NAME_LEN as u64 + 1).to_le_bytes());
    assert!(
        matches!(
            err,
            GgufError::TensorNameTooLong {
                index: 3,
                len: 64,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn duplicate_metadata_keys() {
    let b = base();
    let digit_at = b.after_string("test.k2") - 1;
    let err = b.open_with(digit_at, b"1");
    assert!(
        matches!(&err, GgufError::DuplicateKey { key, offset } if key == "test.k1" && *offset as usize == digit_at - 14),
        "{err}"
    );
}

#[test]
fn empty_metadata_key() {
    let b = base();
    let len_at = b.string_start("general.architecture");
    let err = b.open_with(len_at, &0u64.to_le_bytes());
    assert!(
        matches!(
            err,
            GgufError::EmptyKey {
                index: 0,
                offset: 24
            }
        ),
        "{err}"
    );
}

#[test]
fn invalid_utf8_in_strings() {
    let b = base();
    let value_at = b.after_string("test") - 4;
    let err = b.open_with(value_at + 1, &[0xff]);
    assert!(
        matches!(err, GgufError::InvalidUtf8 { offset, .. } if offset as usize == value_at + 1),
        "{err}"
    );
    // In a key and in a tensor name, too.
    let err = b.open_with(b.after_string("test.k1") - 1, &[0xc3]);
    assert!(matches!(err, GgufError::InvalidUtf8 { .. }), "{err}");
    let err = b.open_with(b.after_string("c") - 1, &[0x80]);
    assert!(matches!(err, GgufError::InvalidUtf8 { .. }), "{err}");
}

#[test]
fn unknown_metadata_value_type() {
    let b = base();
    let type_at = b.after_string("test.k1");
    for id in [13u32, 0xffff_ffff] {
        let err = b.open_with(type_at, &id.to_le_bytes());
        assert!(
            matches!(err, GgufError::UnknownValueType { type_id, offset, .. } if type_id == id && offset as usize == type_at),
            "{err}"
        );
    }
    // An unknown array element type.
    let elem_at = b.after_string("test.arr") + 4;
    let err = b.open_with(elem_at, &99u32.to_le_bytes());
    assert!(
        matches!(err, GgufError::UnknownValueType { type_id: 99, .. }),
        "{err}"
    );
}

#[test]
fn invalid_bool_byte() {
    let b = base();
    let value_at = b.after_string("test.flag") + 4;
    let err = b.open_with(value_at, &[2]);
    assert!(
        matches!(err, GgufError::InvalidBool { byte: 2, offset, .. } if offset as usize == value_at),
        "{err}"
    );
}

#[test]
fn arrays_nested_too_deeply() {
    let b = base();
    // test.nested: value type, then MAX_ARRAY_NESTING (elem type u32, len u64)
    // headers; turning the innermost u8 element type into "array" adds a level.
    let innermost_elem_at = b.after_string("test.nested") + 4 + 12 * (MAX_ARRAY_NESTING - 1);
    assert_eq!(b.bytes[innermost_elem_at], ValueType::U8.id() as u8);
    let err = b.open_with(innermost_elem_at, &ValueType::Array.id().to_le_bytes());
    assert!(
        matches!(
            err,
            GgufError::NestingTooDeep {
                max_depth: MAX_ARRAY_NESTING,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn invalid_alignment() {
    let mut w = GgufWriter::new();
    w.set_alignment(64);
    w.add_tensor("t", &[4], GgmlType::F32, TensorSource::Bytes(vec![0; 16]))
        .unwrap();
    let bytes = w.to_bytes().unwrap();
    let b = Base {
        data_offset: GgufFile::from_bytes(bytes.clone()).unwrap().data_offset() as usize,
        bytes,
    };
    let value_at = b.after_string("general.alignment") + 4;
    for bad in [0u32, 48, 65] {
        let err = b.open_with(value_at, &bad.to_le_bytes());
        assert!(
            matches!(err, GgufError::InvalidAlignment { .. }),
            "{bad}: {err}"
        );
        assert_mentions_offset(&err);
    }
    // Same width, wrong type: i32 is refused like ggml does.
    let err = b.open_with(value_at - 4, &ValueType::I32.id().to_le_bytes());
    assert!(matches!(err, GgufError::InvalidAlignment { .. }), "{err}");
}

#[test]
fn every_header_truncation_and_several_data_truncations_are_errors() {
    let b = base();
    for cut in 0..b.data_offset {
        match GgufFile::from_bytes(b.bytes[..cut].to_vec()) {
            Ok(_) => panic!("file cut at {cut} of header was accepted"),
            Err(e) => assert_mentions_offset(&e),
        }
    }
    let data_len = b.bytes.len() - b.data_offset;
    for k in [1, 2, 7, 9, 13] {
        let cut = b.data_offset + data_len * k / 14;
        assert!(
            GgufFile::from_bytes(b.bytes[..cut].to_vec()).is_err(),
            "cut at {cut}"
        );
    }
    assert!(GgufFile::from_bytes(b.bytes.clone()).is_ok());
}

#[test]
fn random_single_byte_mutations_never_panic() {
    let b = base();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(0x6767_7566);
    let (mut refused, mut accepted) = (0, 0);
    for _ in 0..5000 {
        let mut bytes = b.bytes.clone();
        let at = rng.gen_range(0..b.data_offset);
        let new: u8 = rng.gen();
        bytes[at] = new;
        match GgufFile::from_bytes(bytes) {
            Ok(f) => {
                accepted += 1;
                // Whatever was accepted must be self-consistent.
                for t in f.tensors() {
                    assert_eq!(f.tensor_data(t).len() as u64, t.n_bytes);
                }
            }
            Err(e) => {
                refused += 1;
                assert!(!e.to_string().is_empty());
            }
        }
    }
    // Both outcomes occur: mutated names or values are often still valid.
    assert!(refused > 1000, "refused {refused}");
    assert!(accepted > 100, "accepted {accepted}");
}
