//! Rust dequantization of whole tensors, bit-identical to ggml's `to_float`.

use half::f16;

use super::blocks::{
    BlockMxfp4, BlockQ2K, BlockQ3K, BlockQ4K, BlockQ4_0, BlockQ4_1, BlockQ5K, BlockQ5_0, BlockQ5_1,
    BlockQ6K, BlockQ8K, BlockQ8_0,
};
use super::{GgmlType, QuantError};

/// Types that [`dequantize`] handles.
pub const RUST_DEQUANT_TYPES: [GgmlType; 15] = [
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q2_K,
    GgmlType::Q3_K,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
    GgmlType::Q8_K,
    GgmlType::MXFP4,
];

/// Checks that `n_bytes` of `ty` hold exactly `n_elements` elements.
pub(crate) fn check_geometry(
    ty: GgmlType,
    n_bytes: usize,
    n_elements: usize,
) -> Result<(), QuantError> {
    let expected = ty
        .bytes_for(n_elements as u64)
        .ok_or(QuantError::PartialBlock {
            ty,
            n_elements,
            block_size: ty.block_size(),
        })?;
    if expected != n_bytes as u64 {
        return Err(QuantError::LengthMismatch {
            ty,
            n_elements,
            expected_bytes: expected,
            actual_bytes: n_bytes,
        });
    }
    Ok(())
}

/// Dequantizes `src` (whole blocks of `ty`) into `dst`, which must hold
/// exactly the elements that `src` encodes.
pub fn dequantize(ty: GgmlType, src: &[u8], dst: &mut [f32]) -> Result<(), QuantError> {
    if !ty.has_rust_dequant() {
        return Err(QuantError::Unsupported(ty));
    }
    check_geometry(ty, src.len(), dst.len())?;
    match ty {
        GgmlType::F32 => {
            for (b, y) in src.as_chunks::<4>().0.iter().zip(dst.iter_mut()) {
                *y = f32::from_le_bytes(*b);
            }
        }
        GgmlType::F16 => {
            for (b, y) in src.as_chunks::<2>().0.iter().zip(dst.iter_mut()) {
                *y = f16::from_le_bytes(*b).to_f32();
            }
        }
        GgmlType::BF16 => {
            // bf16 is the top half of an f32.
            for (b, y) in src.as_chunks::<2>().0.iter().zip(dst.iter_mut()) {
                *y = f32::from_bits(u32::from(u16::from_le_bytes(*b)) << 16);
            }
        }
        GgmlType::Q4_0 => blocks::<32>(ty, src, dst, BlockQ4_0::BYTES, |b, y| {
            BlockQ4_0::parse(b).map(|blk| blk.dequantize(y))
        })?,
        GgmlType::Q4_1 => blocks::<32>(ty, src, dst, BlockQ4_1::BYTES, |b, y| {
            BlockQ4_1::parse(b).map(|blk| blk.dequantize(y))
        })?,
        GgmlType::Q5_0 => blocks::<32>(ty, src, dst, BlockQ5_0::BYTES, |b, y| {
            BlockQ5_0::parse(b).map(|blk| blk.dequantize(y))
        })?,
        GgmlType::Q5_1 => blocks::<32>(ty, src, dst, BlockQ5_1::BYTES, |b, y| {
            BlockQ5_1::parse(b).map(|blk| blk.dequantize(y))
        })?,
        GgmlType::Q8_0 => blocks::<32>(ty, src, dst, BlockQ8_0::BYTES, |b, y| {
            BlockQ8_0::parse(b).map(|blk| blk.dequantize(y))
        })?,
        GgmlType::MXFP4 => blocks::<32>(ty, src, dst, BlockMxfp4::BYTES, |b, y| {
            BlockMxfp4::parse(b).map(|blk| blk.dequantize(y))
        })?,
        GgmlType::Q2_K => blocks::<256>(ty, src, dst, BlockQ2K::BYTES, |b, y| {
            BlockQ2K::parse(b).map(|blk| blk.dequantize(y))
        })?,
        GgmlType::Q3_K => blocks::<256>(ty, src, dst, BlockQ3K::BYTES, |b, y| {
            BlockQ3K::parse(b).map(|blk| blk.dequantize(y))
        })?,
        GgmlType::Q4_K => blocks::<256>(ty, src, dst, BlockQ4K::BYTES, |b, y| {
            BlockQ4K::parse(b).map(|blk| blk.dequantize(y))
        })?,
        GgmlType::Q5_K => blocks::<256>(ty, src, dst, BlockQ5K::BYTES, |b, y| {
            BlockQ5K::parse(b).map(|blk| blk.dequantize(y))
        })?,
        GgmlType::Q6_K => blocks::<256>(ty, src, dst, BlockQ6K::BYTES, |b, y| {
            BlockQ6K::parse(b).map(|blk| blk.dequantize(y))
        })?,
        GgmlType::Q8_K => blocks::<256>(ty, src, dst, BlockQ8K::BYTES, |b, y| {
            BlockQ8K::parse(b).map(|blk| blk.dequantize(y))
        })?,
        _ => return Err(QuantError::Unsupported(ty)),
    }
    Ok(())
}

/// Runs `one` over each (block bytes, output block) pair; `one` returns
/// `None` only if a block does not parse, which the geometry check rules out.
#[inline(always)]
fn blocks<const N: usize>(
    ty: GgmlType,
    src: &[u8],
    dst: &mut [f32],
    block_bytes: usize,
    one: impl Fn(&[u8], &mut [f32; N]) -> Option<()>,
) -> Result<(), QuantError> {
    for (b, y) in src
        .chunks_exact(block_bytes)
        .zip(dst.as_chunks_mut::<N>().0.iter_mut())
    {
        one(b, y).ok_or(QuantError::BadBlock(ty))?;
    }
    Ok(())
}

/// Dequantizes `src` into a new vector of `n_elements` floats.
pub fn dequantize_to_vec(
    ty: GgmlType,
    src: &[u8],
    n_elements: usize,
) -> Result<Vec<f32>, QuantError> {
    if !ty.has_rust_dequant() {
        return Err(QuantError::Unsupported(ty));
    }
    check_geometry(ty, src.len(), n_elements)?;
    let mut out = vec![0f32; n_elements];
    dequantize(ty, src, &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_must_match_block_geometry() {
        let src = vec![0u8; 144 * 2];
        let mut dst = vec![0f32; 512];
        assert!(dequantize(GgmlType::Q4_K, &src, &mut dst).is_ok());
        assert!(matches!(
            dequantize(GgmlType::Q4_K, &src, &mut dst[..256]),
            Err(QuantError::LengthMismatch { .. })
        ));
        assert!(matches!(
            dequantize(GgmlType::Q4_K, &src[..143], &mut dst[..256]),
            Err(QuantError::LengthMismatch { .. })
        ));
        assert!(matches!(
            dequantize(GgmlType::Q4_K, &src, &mut dst[..300]),
            Err(QuantError::PartialBlock { .. })
        ));
        assert!(matches!(
            dequantize_to_vec(GgmlType::Q8_0, &[0u8; 35], 32),
            Err(QuantError::LengthMismatch { .. })
        ));
    }

    #[test]
    fn types_without_a_rust_path_are_refused() {
        for ty in [GgmlType::IQ2_XXS, GgmlType::Q8_1, GgmlType::I32] {
            assert!(!ty.has_rust_dequant());
            let src = vec![0u8; ty.type_size()];
            let mut dst = vec![0f32; ty.block_size()];
            assert_eq!(
                dequantize(ty, &src, &mut dst),
                Err(QuantError::Unsupported(ty))
            );
        }
        for ty in RUST_DEQUANT_TYPES {
            assert!(ty.has_rust_dequant(), "{ty}");
        }
    }

    #[test]
    fn plain_float_types_decode_little_endian() {
        let v = [1.5f32, -2.25, 0.0, 1e-3];
        let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        assert_eq!(dequantize_to_vec(GgmlType::F32, &bytes, 4).unwrap(), v);

        let bytes: Vec<u8> = v
            .iter()
            .flat_map(|x| f16::from_f32(*x).to_le_bytes())
            .collect();
        let back = dequantize_to_vec(GgmlType::F16, &bytes, 4).unwrap();
        assert_eq!(&back[..3], &v[..3]);
        assert!((back[3] - 1e-3).abs() < 1e-6);

        // bf16 of 1.5 is 0x3FC0, of -2.25 is 0xC010.
        let bytes = [0xC0, 0x3F, 0x10, 0xC0];
        assert_eq!(
            dequantize_to_vec(GgmlType::BF16, &bytes, 2).unwrap(),
            vec![1.5, -2.25]
        );
    }
}
