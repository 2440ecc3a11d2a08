//! Fast random *valid* blocks for synthetic models: random bytes from a
//! fast PRNG, then the scale fields patched to sane finite values so that
//! the weights come out roughly N(0, 0.03)-sized. No floats are quantized,
//! so this runs at memory speed (tens of GB for the largest models).

use half::f16;
use rand::{RngCore, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use super::{GgmlType, QuantError};

/// Types that [`fill_random_blocks`] can produce.
pub const RANDOM_BLOCK_TYPES: [GgmlType; 15] = super::RUST_DEQUANT_TYPES;

/// Bytes per independently seeded piece: output does not depend on the
/// number of threads, only on (type, length, seed).
const PIECE_BYTES: usize = 1 << 20;

/// Per-block spread of the scales around their base (about +-1/2 octave),
/// picked by 3 random bits of the block.
const SPREAD: [f32; 8] = [0.6, 0.7, 0.8, 0.9, 1.0, 1.15, 1.3, 1.5];

/// f16 bit patterns of `base * SPREAD[i] * mult`.
const fn f16_table(base: f32, mult: f32) -> [[u8; 2]; 8] {
    let mut out = [[0u8; 2]; 8];
    let mut i = 0;
    while i < 8 {
        out[i] = f16::from_f32_const(base * SPREAD[i] * mult).to_le_bytes();
        i += 1;
    }
    out
}

/// Target standard deviation of the generated weights.
const SIGMA: f32 = 0.03;

// Base steps: SIGMA divided by the RMS of what multiplies the step (see
// each patch function for the value formula).
const Q8_0_D: [[u8; 2]; 8] = f16_table(SIGMA / 73.9, 1.0);
const Q4_D: [[u8; 2]; 8] = f16_table(SIGMA / 4.61, 1.0);
const Q4_1_M: [[u8; 2]; 8] = f16_table(SIGMA / 4.61, -7.5);
const Q5_D: [[u8; 2]; 8] = f16_table(SIGMA / 9.23, 1.0);
const Q5_1_M: [[u8; 2]; 8] = f16_table(SIGMA / 9.23, -15.5);
const Q2K_D: [[u8; 2]; 8] = f16_table(SIGMA / (8.8 * 1.118), 1.0);
const Q2K_DMIN: [[u8; 2]; 8] = f16_table(SIGMA / (8.8 * 1.118), 1.5);
const Q3K_D: [[u8; 2]; 8] = f16_table(SIGMA / (18.48 * 2.345), 1.0);
const Q4K_D: [[u8; 2]; 8] = f16_table(SIGMA / (36.5 * 4.61), 1.0);
const Q4K_DMIN: [[u8; 2]; 8] = f16_table(SIGMA / (36.5 * 4.61), 7.5);
const Q5K_D: [[u8; 2]; 8] = f16_table(SIGMA / (36.5 * 9.23), 1.0);
const Q5K_DMIN: [[u8; 2]; 8] = f16_table(SIGMA / (36.5 * 9.23), 15.5);
const Q6K_D: [[u8; 2]; 8] = f16_table(SIGMA / (73.9 * 18.48), 1.0);

/// Exponents (unbiased) for plain float weights, chosen by 5 random bits:
/// mostly 2^-5..2^-7 with a tail of smaller values.
const FLOAT_EXPONENTS: [i32; 32] = [
    -5, -5, -5, -5, -6, -6, -6, -6, -6, -6, -6, -6, -7, -7, -7, -7, -7, -7, -7, -7, -8, -8, -8, -8,
    -8, -8, -9, -9, -9, -10, -10, -11,
];

/// Fills `dst` (a whole number of `ty` blocks) with random valid blocks,
/// deterministically from `seed`; uses all cores for large buffers.
pub fn fill_random_blocks(ty: GgmlType, dst: &mut [u8], seed: u64) -> Result<(), QuantError> {
    if !RANDOM_BLOCK_TYPES.contains(&ty) {
        return Err(QuantError::Unsupported(ty));
    }
    let block = ty.type_size();
    if !dst.len().is_multiple_of(block) {
        return Err(QuantError::NotWholeBlocks {
            ty,
            n_bytes: dst.len(),
        });
    }
    let piece = (PIECE_BYTES / block).max(1) * block;
    let n_pieces = dst.len().div_ceil(piece);
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(n_pieces);
    if threads <= 1 {
        for (i, p) in dst.chunks_mut(piece).enumerate() {
            fill_piece(ty, p, seed, i as u64);
        }
        return Ok(());
    }
    // Contiguous runs of pieces per thread; each piece has its own seed.
    let per_thread = n_pieces.div_ceil(threads);
    std::thread::scope(|s| {
        for (t, span) in dst.chunks_mut(per_thread * piece).enumerate() {
            s.spawn(move || {
                for (i, p) in span.chunks_mut(piece).enumerate() {
                    fill_piece(ty, p, seed, (t * per_thread + i) as u64);
                }
            });
        }
    });
    Ok(())
}

/// `n_elements` elements of random valid `ty` blocks, seeded from `rng`.
pub fn random_blocks(
    ty: GgmlType,
    n_elements: usize,
    rng: &mut impl RngCore,
) -> Result<Vec<u8>, QuantError> {
    let n_bytes = ty
        .bytes_for(n_elements as u64)
        .and_then(|n| usize::try_from(n).ok())
        .ok_or(QuantError::PartialBlock {
            ty,
            n_elements,
            block_size: ty.block_size(),
        })?;
    let mut out = vec![0u8; n_bytes];
    fill_random_blocks(ty, &mut out, rng.next_u64())?;
    Ok(out)
}

/// SplitMix64 finaliser: decorrelates per-piece seeds.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn fill_piece(ty: GgmlType, piece: &mut [u8], seed: u64, index: u64) {
    let mut rng =
        Xoshiro256PlusPlus::seed_from_u64(mix(seed ^ mix(index.wrapping_add(0x9E37_79B9))));
    let (words, tail) = piece.as_chunks_mut::<8>();
    for w in words {
        *w = rng.next_u64().to_le_bytes();
    }
    rng.fill_bytes(tail);
    patch(ty, piece);
}

/// Index into a scale table from the low 3 bits of a random byte.
#[inline(always)]
fn pick(byte: u8) -> usize {
    usize::from(byte & 7)
}

/// Overwrites the scale fields of every block in `piece` (whole blocks).
fn patch(ty: GgmlType, piece: &mut [u8]) {
    match ty {
        GgmlType::F32 => {
            for w in piece.as_chunks_mut::<4>().0 {
                let r = u32::from_le_bytes(*w);
                let e = FLOAT_EXPONENTS[((r >> 23) & 31) as usize];
                let bits = (r & 0x807F_FFFF) | (((127 + e) as u32) << 23);
                *w = bits.to_le_bytes();
            }
        }
        GgmlType::F16 => {
            for w in piece.as_chunks_mut::<2>().0 {
                let r = u16::from_le_bytes(*w);
                let e = FLOAT_EXPONENTS[usize::from((r >> 10) & 31)];
                *w = ((r & 0x83FF) | (((15 + e) as u16) << 10)).to_le_bytes();
            }
        }
        GgmlType::BF16 => {
            for w in piece.as_chunks_mut::<2>().0 {
                let r = u16::from_le_bytes(*w);
                let e = FLOAT_EXPONENTS[usize::from((r >> 7) & 31)];
                *w = ((r & 0x807F) | (((127 + e) as u16) << 7)).to_le_bytes();
            }
        }
        // x = d * (q - 8), q - 8 uniform in -8..8: RMS 4.61.
        GgmlType::Q4_0 => {
            for b in piece.as_chunks_mut::<18>().0 {
                let k = pick(b[0]);
                b[..2].copy_from_slice(&Q4_D[k]);
            }
        }
        // x = d * q + m with m = -7.5 d: centred.
        GgmlType::Q4_1 => {
            for b in piece.as_chunks_mut::<20>().0 {
                let k = pick(b[0]);
                b[..2].copy_from_slice(&Q4_D[k]);
                b[2..4].copy_from_slice(&Q4_1_M[k]);
            }
        }
        GgmlType::Q5_0 => {
            for b in piece.as_chunks_mut::<22>().0 {
                let k = pick(b[0]);
                b[..2].copy_from_slice(&Q5_D[k]);
            }
        }
        GgmlType::Q5_1 => {
            for b in piece.as_chunks_mut::<24>().0 {
                let k = pick(b[0]);
                b[..2].copy_from_slice(&Q5_D[k]);
                b[2..4].copy_from_slice(&Q5_1_M[k]);
            }
        }
        // x = d * q, q uniform i8: RMS 73.9.
        GgmlType::Q8_0 => {
            for b in piece.as_chunks_mut::<34>().0 {
                let k = pick(b[0]);
                b[..2].copy_from_slice(&Q8_0_D[k]);
            }
        }
        // x = d*sc*q - dmin*m; with m = sc and dmin = 1.5 d this is
        // d*sc*(q - 1.5): centred. Each scale byte gets equal nibbles.
        GgmlType::Q2_K => {
            for b in piece.as_chunks_mut::<84>().0 {
                for s in &mut b[..16] {
                    *s = (*s & 0x0F) * 0x11;
                }
                let k = pick(b[80]);
                b[80..82].copy_from_slice(&Q2K_D[k]);
                b[82..84].copy_from_slice(&Q2K_DMIN[k]);
            }
        }
        // x = d * (sc - 32) * q3: any scale bytes are valid and centred.
        GgmlType::Q3_K => {
            for b in piece.as_chunks_mut::<110>().0 {
                let k = pick(b[108]);
                b[108..110].copy_from_slice(&Q3K_D[k]);
            }
        }
        // x = d*sc*q - dmin*m; with m = sc and dmin = 7.5 d (15.5 d for Q5_K)
        // this is centred. m == sc for all eight runs when bytes 8..12
        // repeat bytes 4..8 and each of bytes 12..16 has equal nibbles.
        GgmlType::Q4_K => {
            for b in piece.as_chunks_mut::<144>().0 {
                patch_k4_scales(b);
                let k = pick(b[0]);
                b[..2].copy_from_slice(&Q4K_D[k]);
                b[2..4].copy_from_slice(&Q4K_DMIN[k]);
            }
        }
        GgmlType::Q5_K => {
            for b in piece.as_chunks_mut::<176>().0 {
                patch_k4_scales(b);
                let k = pick(b[0]);
                b[..2].copy_from_slice(&Q5K_D[k]);
                b[2..4].copy_from_slice(&Q5K_DMIN[k]);
            }
        }
        // x = d * sc * (q - 32) with any i8 sc: centred.
        GgmlType::Q6_K => {
            for b in piece.as_chunks_mut::<210>().0 {
                let k = pick(b[208]);
                b[208..210].copy_from_slice(&Q6K_D[k]);
            }
        }
        // x = v[q] * 2^(e - 128), RMS of v 5.85: e = 120..=121 gives
        // 0.023-0.046.
        GgmlType::MXFP4 => {
            for b in piece.as_chunks_mut::<17>().0 {
                b[0] = 120 + (b[0] & 1);
            }
        }
        // x = d * q with an f32 d; bsums must match the quants.
        GgmlType::Q8_K => {
            for b in piece.as_chunks_mut::<292>().0 {
                let d = SIGMA / 73.9 * SPREAD[pick(b[0])];
                b[..4].copy_from_slice(&d.to_le_bytes());
                let (qs, bsums) = b[4..].split_at_mut(256);
                for (run, sum) in qs
                    .as_chunks::<16>()
                    .0
                    .iter()
                    .zip(bsums.as_chunks_mut::<2>().0)
                {
                    let s: i16 = run.iter().map(|q| i16::from(*q as i8)).sum();
                    *sum = s.to_le_bytes();
                }
            }
        }
        _ => {}
    }
}

/// Makes every min equal its scale in a `Q4_K`/`Q5_K` block (scales at 4..16).
#[inline(always)]
fn patch_k4_scales<const N: usize>(b: &mut [u8; N]) {
    const { assert!(N >= 16) };
    let low: [u8; 4] = [b[4], b[5], b[6], b[7]];
    b[8..12].copy_from_slice(&low);
    for s in &mut b[12..16] {
        *s = (*s & 0x0F) * 0x11;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::blocks::{k4_scales_mins, BlockQ8K};
    use crate::quant::dequantize_to_vec;

    #[test]
    fn deterministic_and_seed_dependent() {
        let mut a = vec![0u8; 144 * 10_000];
        let mut b = vec![0u8; 144 * 10_000];
        fill_random_blocks(GgmlType::Q4_K, &mut a, 7).unwrap();
        fill_random_blocks(GgmlType::Q4_K, &mut b, 7).unwrap();
        assert_eq!(a, b);
        fill_random_blocks(GgmlType::Q4_K, &mut b, 8).unwrap();
        assert_ne!(a, b);
        // A prefix of whole pieces does not depend on the total length.
        let piece = (PIECE_BYTES / 144) * 144;
        let mut long = vec![0u8; piece * 3];
        let mut short = vec![0u8; piece * 2];
        fill_random_blocks(GgmlType::Q4_K, &mut long, 3).unwrap();
        fill_random_blocks(GgmlType::Q4_K, &mut short, 3).unwrap();
        assert_eq!(&long[..piece * 2], &short[..]);
    }

    #[test]
    fn weights_are_finite_centred_and_realistically_sized() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
        for ty in RANDOM_BLOCK_TYPES {
            let n = 256 * 512;
            let bytes = random_blocks(ty, n, &mut rng).unwrap();
            let w = dequantize_to_vec(ty, &bytes, n).unwrap();
            assert!(w.iter().all(|v| v.is_finite()), "{ty}");
            let mean = w.iter().map(|v| f64::from(*v)).sum::<f64>() / n as f64;
            let std = (w
                .iter()
                .map(|v| (f64::from(*v) - mean).powi(2))
                .sum::<f64>()
                / n as f64)
                .sqrt();
            // Q4_0's levels -8..=7 cannot centre exactly: mean -0.5 d = 0.11 std.
            assert!(mean.abs() < 0.15 * std, "{ty}: mean {mean} std {std}");
            assert!((0.01..0.06).contains(&std), "{ty}: std {std}");
        }
    }

    #[test]
    fn k_quant_mins_equal_scales_and_q8k_bsums_match() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(2);
        let q4 = random_blocks(GgmlType::Q4_K, 256 * 64, &mut rng).unwrap();
        for b in q4.chunks_exact(144) {
            let (sc, m) = k4_scales_mins(b[4..16].try_into().unwrap());
            assert_eq!(sc, m);
        }
        let q8 = random_blocks(GgmlType::Q8_K, 256 * 64, &mut rng).unwrap();
        for b in q8.chunks_exact(292) {
            let blk = BlockQ8K::parse(b).unwrap();
            for i in 0..16 {
                let s: i16 = blk.qs[16 * i..16 * (i + 1)]
                    .iter()
                    .map(|q| i16::from(*q as i8))
                    .sum();
                assert_eq!(blk.bsum(i), Some(s));
            }
        }
    }

    #[test]
    fn bad_lengths_and_types_are_refused() {
        let mut buf = vec![0u8; 145];
        assert!(matches!(
            fill_random_blocks(GgmlType::Q4_K, &mut buf, 0),
            Err(QuantError::NotWholeBlocks { .. })
        ));
        assert_eq!(
            fill_random_blocks(GgmlType::IQ2_XXS, &mut buf[..66], 0),
            Err(QuantError::Unsupported(GgmlType::IQ2_XXS))
        );
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(0);
        assert!(random_blocks(GgmlType::Q8_0, 33, &mut rng).is_err());
    }
}
