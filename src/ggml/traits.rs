//! Safe wrappers over ggml's per-type traits: block geometry, ggml's own
//! `to_float` kernels and its reference quantizers. This is the dispatch
//! from a tensor type to ggml's kernels, and the oracle the Rust
//! implementations in `crate::quant` are checked against.
//!
//! Every length is validated in Rust before any pointer crosses the FFI.

use std::ffi::CStr;
use std::sync::Once;

use crate::ggml::sys;
use crate::quant::GgmlType;

/// Errors of the ggml type-trait wrappers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GgmlTraitsError {
    #[error("ggml has no to_float kernel for type {0}")]
    NoToFloat(GgmlType),
    #[error("ggml has no CPU from_float kernel for type {0}")]
    NoFromFloat(GgmlType),
    #[error("ggml cannot quantize to type {0} (without an importance matrix)")]
    NoQuantize(GgmlType),
    #[error("{n_elements} elements is not a whole number of {ty} blocks ({block_size} each)")]
    PartialBlock {
        ty: GgmlType,
        n_elements: usize,
        block_size: usize,
    },
    #[error("{n_elements} elements of {ty} take {expected_bytes} bytes, got {actual_bytes}")]
    LengthMismatch {
        ty: GgmlType,
        n_elements: usize,
        expected_bytes: usize,
        actual_bytes: usize,
    },
    #[error("{n_elements} elements do not split into rows of {n_per_row}")]
    BadRowLength { n_elements: usize, n_per_row: usize },
    #[error("size too large for ggml")]
    TooLarge,
    #[error("ggml_quantize_chunk wrote {written} bytes, expected {expected}")]
    UnexpectedSize { written: usize, expected: usize },
}

/// Types `ggml_quantize_chunk` has a case for (others hit an assertion).
const QUANTIZE_CHUNK_TYPES: [GgmlType; 28] = [
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q1_0,
    GgmlType::Q2_0,
    GgmlType::MXFP4,
    GgmlType::NVFP4,
    GgmlType::Q2_K,
    GgmlType::Q3_K,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
    GgmlType::TQ1_0,
    GgmlType::TQ2_0,
    GgmlType::IQ2_XXS,
    GgmlType::IQ2_XS,
    GgmlType::IQ3_XXS,
    GgmlType::IQ3_S,
    GgmlType::IQ2_S,
    GgmlType::IQ1_S,
    GgmlType::IQ1_M,
    GgmlType::IQ4_NL,
    GgmlType::IQ4_XS,
];

fn type_traits(ty: GgmlType) -> Option<&'static sys::ggml_type_traits> {
    // SAFETY: every `GgmlType` id is below GGML_TYPE_COUNT (the enum is
    // checked against ggml's ids in tests), so ggml indexes its static
    // traits table in bounds and returns a pointer into it.
    let ptr = unsafe { sys::ggml_get_type_traits(ty.id()) };
    // SAFETY: the pointer is null or points into a static, never-written
    // table, so a shared 'static reference is valid.
    unsafe { ptr.as_ref() }
}

fn cpu_type_traits(ty: GgmlType) -> Option<&'static sys::ggml_type_traits_cpu> {
    static CPU_INIT: Once = Once::new();
    // SAFETY: ggml_cpu_init takes no arguments and only fills ggml's
    // internal conversion tables; Once runs it a single time.
    CPU_INIT.call_once(|| unsafe { sys::ggml_cpu_init() });
    // SAFETY: as for `type_traits`: an in-bounds index into a static table.
    let ptr = unsafe { sys::ggml_get_type_traits_cpu(ty.id()) };
    // SAFETY: null or a pointer into a static, never-written table.
    unsafe { ptr.as_ref() }
}

/// ggml's bytes per block of `ty`.
pub fn ggml_type_size(ty: GgmlType) -> usize {
    // SAFETY: a pure lookup in ggml's static table; the id is in range.
    unsafe { sys::ggml_type_size(ty.id()) }
}

/// ggml's elements per block of `ty`.
pub fn ggml_blck_size(ty: GgmlType) -> usize {
    // SAFETY: a pure lookup in ggml's static table; the id is in range.
    let n = unsafe { sys::ggml_blck_size(ty.id()) };
    usize::try_from(n).unwrap_or(0)
}

/// ggml's name for `ty` ("q4_K", "f32"), if it has one.
pub fn ggml_type_name(ty: GgmlType) -> Option<&'static str> {
    let traits = type_traits(ty)?;
    if traits.type_name.is_null() {
        return None;
    }
    // SAFETY: non-null `type_name` entries are static NUL-terminated C
    // string literals in ggml's traits table.
    let name = unsafe { CStr::from_ptr(traits.type_name) };
    name.to_str().ok()
}

/// ggml's block structs hold f16/f32/u16/u32 fields, so C may assume up
/// to 4-byte alignment; 8 covers every one of them.
const BLOCK_ALIGN: usize = 8;

/// A zeroed buffer of at least `n_bytes`, aligned for any ggml block.
fn aligned_buffer(n_bytes: usize) -> Vec<u64> {
    vec![0u64; n_bytes.div_ceil(BLOCK_ALIGN)]
}

/// The first `n_bytes` of an aligned buffer, as ggml wrote them.
fn buffer_bytes(buf: &[u64], n_bytes: usize) -> Vec<u8> {
    buf.iter()
        .flat_map(|w| w.to_ne_bytes())
        .take(n_bytes)
        .collect()
}

/// Bytes that `n_elements` of `ty` occupy by ggml's own geometry.
fn ggml_bytes_for(ty: GgmlType, n_elements: usize) -> Result<usize, GgmlTraitsError> {
    let block_size = ggml_blck_size(ty);
    if block_size == 0 || !n_elements.is_multiple_of(block_size) {
        return Err(GgmlTraitsError::PartialBlock {
            ty,
            n_elements,
            block_size,
        });
    }
    (n_elements / block_size)
        .checked_mul(ggml_type_size(ty))
        .ok_or(GgmlTraitsError::TooLarge)
}

/// Dequantizes `src` with ggml's own `to_float` kernel for `ty`; `dst`
/// must hold exactly the elements that `src` encodes.
pub fn ggml_to_float(ty: GgmlType, src: &[u8], dst: &mut [f32]) -> Result<(), GgmlTraitsError> {
    let to_float = type_traits(ty)
        .and_then(|t| t.to_float)
        .ok_or(GgmlTraitsError::NoToFloat(ty))?;
    let expected = ggml_bytes_for(ty, dst.len())?;
    if src.len() != expected {
        return Err(GgmlTraitsError::LengthMismatch {
            ty,
            n_elements: dst.len(),
            expected_bytes: expected,
            actual_bytes: src.len(),
        });
    }
    let k = i64::try_from(dst.len()).map_err(|_| GgmlTraitsError::TooLarge)?;
    // The kernel reads block structs, so hand it an aligned copy when the
    // caller's bytes (say, a tensor inside a mapped file) are not aligned.
    let copy;
    let src_ptr = if src.as_ptr().align_offset(BLOCK_ALIGN) == 0 {
        src.as_ptr()
    } else {
        let mut buf = aligned_buffer(src.len());
        for (w, b) in buf.iter_mut().zip(src.chunks(BLOCK_ALIGN)) {
            let mut word = [0u8; BLOCK_ALIGN];
            word.iter_mut().zip(b).for_each(|(o, i)| *o = *i);
            *w = u64::from_ne_bytes(word);
        }
        copy = buf;
        copy.as_ptr().cast::<u8>()
    };
    // SAFETY: `src_ptr` points to exactly k / blck_size blocks of `ty`
    // (checked above against ggml's own geometry), aligned for the block
    // struct; `dst` is a distinct buffer with room for k floats.
    unsafe { to_float(src_ptr.cast(), dst.as_mut_ptr(), k) };
    Ok(())
}

/// Quantizes `src` (rows of `n_per_row` floats) with ggml's reference
/// quantizer (`ggml_quantize_chunk`, no importance matrix).
pub fn ggml_quantize(
    ty: GgmlType,
    src: &[f32],
    n_per_row: usize,
) -> Result<Vec<u8>, GgmlTraitsError> {
    // SAFETY: a pure predicate on the type id.
    let needs_imatrix = unsafe { sys::ggml_quantize_requires_imatrix(ty.id()) };
    if !QUANTIZE_CHUNK_TYPES.contains(&ty) || needs_imatrix {
        return Err(GgmlTraitsError::NoQuantize(ty));
    }
    if n_per_row == 0 || !src.len().is_multiple_of(n_per_row) {
        return Err(GgmlTraitsError::BadRowLength {
            n_elements: src.len(),
            n_per_row,
        });
    }
    let row_bytes = ggml_bytes_for(ty, n_per_row)?;
    let n_rows = src.len() / n_per_row;
    let expected = row_bytes
        .checked_mul(n_rows)
        .ok_or(GgmlTraitsError::TooLarge)?;
    if n_rows == 0 {
        return Ok(Vec::new());
    }
    let mut dst = aligned_buffer(expected);
    let rows = i64::try_from(n_rows).map_err(|_| GgmlTraitsError::TooLarge)?;
    let per_row = i64::try_from(n_per_row).map_err(|_| GgmlTraitsError::TooLarge)?;
    // SAFETY: builds ggml's lookup tables for the IQ types (a no-op for
    // the others); guarded by ggml's own critical section.
    unsafe { sys::ggml_quantize_init(ty.id()) };
    // SAFETY: `ty` is one of the types ggml_quantize_chunk handles and
    // needs no importance matrix (so a null one is allowed); `src` holds
    // rows * per_row floats, rows are whole blocks, and `dst` is aligned
    // and has at least rows * row_size bytes (ggml's own geometry).
    let written = unsafe {
        sys::ggml_quantize_chunk(
            ty.id(),
            src.as_ptr(),
            dst.as_mut_ptr().cast(),
            0,
            rows,
            per_row,
            std::ptr::null(),
        )
    };
    if written != expected {
        return Err(GgmlTraitsError::UnexpectedSize { written, expected });
    }
    Ok(buffer_bytes(&dst, expected))
}

/// Converts `src` with the CPU backend's `from_float` for `ty` (the kernel
/// ggml uses to quantize activations, e.g. to `Q8_K` for k-quant dot
/// products).
pub fn ggml_from_float_cpu(ty: GgmlType, src: &[f32]) -> Result<Vec<u8>, GgmlTraitsError> {
    let from_float = cpu_type_traits(ty)
        .and_then(|t| t.from_float)
        .ok_or(GgmlTraitsError::NoFromFloat(ty))?;
    let n_bytes = ggml_bytes_for(ty, src.len())?;
    let mut dst = aligned_buffer(n_bytes);
    let k = i64::try_from(src.len()).map_err(|_| GgmlTraitsError::TooLarge)?;
    // SAFETY: `src` holds k floats, k is a whole number of blocks and `dst`
    // is aligned with room for the k / blck_size blocks; no overlap.
    unsafe { from_float(src.as_ptr(), dst.as_mut_ptr().cast(), k) };
    Ok(buffer_bytes(&dst, n_bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_matches_the_rust_type_table() {
        for ty in GgmlType::ALL {
            assert_eq!(ggml_type_size(ty), ty.type_size(), "type_size of {ty}");
            assert_eq!(ggml_blck_size(ty), ty.block_size(), "blck_size of {ty}");
            assert_eq!(ggml_type_name(ty), Some(ty.name()), "name of {ty}");
        }
    }

    #[test]
    fn to_float_validates_lengths_first() {
        let mut dst = [0f32; 256];
        assert!(matches!(
            ggml_to_float(GgmlType::Q4_K, &[0u8; 143], &mut dst),
            Err(GgmlTraitsError::LengthMismatch { .. })
        ));
        assert!(matches!(
            ggml_to_float(GgmlType::Q4_K, &[0u8; 144], &mut dst[..255]),
            Err(GgmlTraitsError::PartialBlock { .. })
        ));
        assert_eq!(
            ggml_to_float(GgmlType::F32, &[0u8; 4], &mut dst[..1]),
            Err(GgmlTraitsError::NoToFloat(GgmlType::F32))
        );
        let mut block = [0u8; 34];
        block[..2].copy_from_slice(&half::f16::from_f32(0.25).to_le_bytes());
        block[2] = 4;
        ggml_to_float(GgmlType::Q8_0, &block, &mut dst[..32]).unwrap();
        assert_eq!(dst[0], 1.0);
    }

    #[test]
    fn quantize_validates_and_round_trips() {
        assert_eq!(
            ggml_quantize(GgmlType::Q8_K, &[0.0; 256], 256),
            Err(GgmlTraitsError::NoQuantize(GgmlType::Q8_K))
        );
        assert_eq!(
            ggml_quantize(GgmlType::IQ2_XXS, &[0.0; 256], 256),
            Err(GgmlTraitsError::NoQuantize(GgmlType::IQ2_XXS))
        );
        assert!(matches!(
            ggml_quantize(GgmlType::Q4_K, &[0.0; 500], 100),
            Err(GgmlTraitsError::PartialBlock { .. })
        ));
        assert!(matches!(
            ggml_quantize(GgmlType::Q4_K, &[0.0; 500], 256),
            Err(GgmlTraitsError::BadRowLength { .. })
        ));
        let x: Vec<f32> = (0..512).map(|i| (i as f32 * 0.1).sin()).collect();
        let q = ggml_quantize(GgmlType::Q8_0, &x, 256).unwrap();
        assert_eq!(q.len(), 16 * 34);
        let mut back = vec![0f32; 512];
        ggml_to_float(GgmlType::Q8_0, &q, &mut back).unwrap();
        for (a, b) in x.iter().zip(&back) {
            assert!((a - b).abs() < 0.01, "{a} vs {b}");
        }
    }

    #[test]
    fn cpu_from_float_makes_q8_k() {
        let x: Vec<f32> = (0..256).map(|i| i as f32 - 100.0).collect();
        let q = ggml_from_float_cpu(GgmlType::Q8_K, &x).unwrap();
        assert_eq!(q.len(), 292);
        let d = f32::from_le_bytes([q[0], q[1], q[2], q[3]]);
        // The largest magnitude (155) maps to -127 or 127.
        assert!((d.abs() - 155.0 / 127.0).abs() < 1e-5, "d = {d}");
        assert!(matches!(
            ggml_from_float_cpu(GgmlType::Q8_K, &x[..100]),
            Err(GgmlTraitsError::PartialBlock { .. })
        ));
    }
}
