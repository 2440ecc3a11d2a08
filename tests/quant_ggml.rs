//! The Rust quant code checked against ggml itself: dequantization bit for
//! bit, quantizer error against ggml's reference quantizers, block validity.

use rand::{RngCore, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use rbench::ggml::traits::{ggml_from_float_cpu, ggml_quantize, ggml_to_float, GgmlTraitsError};
use rbench::quant::blocks::BlockQ8K;
use rbench::quant::{
    dequantize, dequantize_to_vec, fill_random_blocks, quantize, GgmlType, RUST_DEQUANT_TYPES,
    RUST_QUANTIZE_TYPES,
};

/// Byte offsets of the f16 scale fields in one block of each type.
fn f16_fields(ty: GgmlType) -> &'static [usize] {
    match ty {
        GgmlType::Q4_0 | GgmlType::Q5_0 | GgmlType::Q8_0 => &[0],
        GgmlType::Q4_1 | GgmlType::Q5_1 | GgmlType::Q4_K | GgmlType::Q5_K => &[0, 2],
        GgmlType::Q2_K => &[80, 82],
        GgmlType::Q3_K => &[108],
        GgmlType::Q6_K => &[208],
        _ => &[],
    }
}

/// Random bits of an f16 with its exponent kept below all-ones: any finite
/// value, subnormals, zeros and negatives included.
fn finite_f16_bits(r: u16) -> u16 {
    if r & 0x7C00 == 0x7C00 {
        r & !0x4000
    } else {
        r
    }
}

/// `n_blocks` random blocks of `ty`: every byte random, then the scale
/// fields replaced by random finite values (NaN scales would make a bit
/// comparison meaningless).
fn random_bytes_finite_scales(ty: GgmlType, n_blocks: usize, seed: u64) -> Vec<u8> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let mut bytes = vec![0u8; n_blocks * ty.type_size()];
    rng.fill_bytes(&mut bytes);
    match ty {
        GgmlType::F16 => {
            for w in bytes.chunks_exact_mut(2) {
                let r = u16::from_le_bytes([w[0], w[1]]);
                w.copy_from_slice(&finite_f16_bits(r).to_le_bytes());
            }
        }
        GgmlType::BF16 => {
            for w in bytes.chunks_exact_mut(2) {
                let r = u16::from_le_bytes([w[0], w[1]]);
                let r = if r & 0x7F80 == 0x7F80 { r & !0x4000 } else { r };
                w.copy_from_slice(&r.to_le_bytes());
            }
        }
        _ => {
            for block in bytes.chunks_exact_mut(ty.type_size()) {
                for &off in f16_fields(ty) {
                    let r = u16::from_le_bytes([block[off], block[off + 1]]);
                    block[off..off + 2].copy_from_slice(&finite_f16_bits(r).to_le_bytes());
                }
            }
        }
    }
    bytes
}

/// Asserts that Rust and ggml decode `bytes` to the same bits.
fn assert_bit_exact(ty: GgmlType, bytes: &[u8], what: &str) {
    let n = bytes.len() / ty.type_size() * ty.block_size();
    let ours = dequantize_to_vec(ty, bytes, n).unwrap();
    let mut theirs = vec![0f32; n];
    ggml_to_float(ty, bytes, &mut theirs).unwrap();
    let mismatches: Vec<usize> = (0..n)
        .filter(|&i| ours[i].to_bits() != theirs[i].to_bits())
        .collect();
    if let Some(&i) = mismatches.first() {
        let block = i / ty.block_size();
        panic!(
            "{ty} ({what}): {} of {n} values differ; first at element {i} (block {block}): \
             ours {:e} ({:#010x}) vs ggml {:e} ({:#010x})",
            mismatches.len(),
            ours[i],
            ours[i].to_bits(),
            theirs[i],
            theirs[i].to_bits()
        );
    }
}

#[test]
fn dequant_matches_ggml_bit_for_bit_on_random_blocks() {
    for (k, ty) in RUST_DEQUANT_TYPES.into_iter().enumerate() {
        if matches!(ty, GgmlType::F32 | GgmlType::Q8_K) {
            // ggml has no to_float for these; covered by the tests below.
            assert!(matches!(
                ggml_to_float(
                    ty,
                    &vec![0u8; ty.type_size()],
                    &mut vec![0f32; ty.block_size()]
                ),
                Err(GgmlTraitsError::NoToFloat(_))
            ));
            continue;
        }
        // Several thousand blocks (plenty more elements for the float types).
        let n_blocks = if ty.block_size() == 1 { 1 << 16 } else { 4096 };
        let bytes = random_bytes_finite_scales(ty, n_blocks, 1000 + k as u64);
        assert_bit_exact(ty, &bytes, "random bytes, finite scales");

        let mut realistic = vec![0u8; n_blocks * ty.type_size()];
        fill_random_blocks(ty, &mut realistic, 77 + k as u64).unwrap();
        assert_bit_exact(ty, &realistic, "fill_random_blocks");
    }
}

#[test]
fn dequant_matches_ggml_at_unaligned_offsets() {
    // Tensors inside a mapped file start at any byte; both sides must cope.
    for ty in [
        GgmlType::Q4_K,
        GgmlType::Q6_K,
        GgmlType::Q8_0,
        GgmlType::F16,
    ] {
        let bytes = random_bytes_finite_scales(ty, 257, 5);
        let mut shifted = vec![0u8; bytes.len() + 1];
        shifted[1..].copy_from_slice(&bytes);
        assert_bit_exact(ty, &shifted[1..], "odd offset");
    }
}

#[test]
fn half_floats_match_ggml_for_every_non_nan_pattern() {
    for ty in [GgmlType::F16, GgmlType::BF16] {
        let exp_mask: u16 = if ty == GgmlType::F16 { 0x7C00 } else { 0x7F80 };
        let bytes: Vec<u8> = (0..=u16::MAX)
            .filter(|b| b & exp_mask != exp_mask || b & !(exp_mask | 0x8000) == 0)
            .flat_map(|b| b.to_le_bytes())
            .collect();
        // Infinities are kept: they convert exactly too.
        assert_bit_exact(ty, &bytes, "all non-NaN bit patterns");
    }
}

#[test]
fn f32_layout_matches_ggml_storage() {
    // ggml stores F32 tensors as plain little-endian floats (its F32
    // "quantization" is a copy); our decoding must give the floats back.
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(9);
    let x: Vec<f32> = (0..4096)
        .map(|_| f32::from_bits(rng.next_u32() & 0xBFFF_FFFF))
        .collect();
    let bytes = ggml_quantize(GgmlType::F32, &x, 1024).unwrap();
    let back = dequantize_to_vec(GgmlType::F32, &bytes, x.len()).unwrap();
    assert!(x.iter().zip(&back).all(|(a, b)| a.to_bits() == b.to_bits()));
}

#[test]
fn q8_k_layout_matches_ggml_activation_quantizer() {
    // ggml has no Q8_K to_float, but its CPU backend makes Q8_K blocks;
    // decoding them checks where d, the quants and the sums sit.
    let x = gaussian(256 * 512, 0.5, 11);
    let bytes = ggml_from_float_cpu(GgmlType::Q8_K, &x).unwrap();
    let y = dequantize_to_vec(GgmlType::Q8_K, &bytes, x.len()).unwrap();
    for (i, (block, xs)) in bytes.chunks_exact(292).zip(x.chunks_exact(256)).enumerate() {
        let blk = BlockQ8K::parse(block).unwrap();
        assert!(
            blk.d != 0.0 && blk.d.is_finite(),
            "block {i}: d = {}",
            blk.d
        );
        for (j, run) in blk.qs.chunks_exact(16).enumerate() {
            let s: i16 = run.iter().map(|q| i16::from(*q as i8)).sum();
            assert_eq!(blk.bsum(j), Some(s), "block {i} run {j}");
        }
        let ys = &y[i * 256..(i + 1) * 256];
        for (a, b) in xs.iter().zip(ys) {
            assert!(
                (a - b).abs() <= blk.d.abs() * 0.5001,
                "block {i}: {a} vs {b}"
            );
        }
    }
}

fn gaussian(n: usize, sigma: f32, seed: u64) -> Vec<f32> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    (0..n).map(|_| sigma * normal(&mut rng)).collect()
}

fn uniform01(rng: &mut impl RngCore) -> f32 {
    ((rng.next_u32() >> 8) as f32 + 0.5) / (1u32 << 24) as f32
}

/// A standard normal by Box-Muller.
fn normal(rng: &mut impl RngCore) -> f32 {
    let (u, v) = (uniform01(rng), uniform01(rng));
    (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
}

/// Weight-like test data: (name, values).
fn distributions(n: usize) -> Vec<(&'static str, Vec<f32>)> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(42);
    let gauss: Vec<f32> = (0..n).map(|_| 0.02 * normal(&mut rng)).collect();
    let uniform: Vec<f32> = (0..n)
        .map(|_| 0.05 * (2.0 * uniform01(&mut rng) - 1.0))
        .collect();
    // Student's t with 3 degrees of freedom: heavy tails.
    let student: Vec<f32> = (0..n)
        .map(|_| {
            let z = normal(&mut rng);
            let chi2: f32 = (0..3).map(|_| normal(&mut rng).powi(2)).sum();
            0.02 * z / (chi2 / 3.0).sqrt()
        })
        .collect();
    // Gaussian with 0.2% outliers 30x the typical size.
    let outliers: Vec<f32> = (0..n)
        .map(|_| {
            let v = 0.02 * normal(&mut rng);
            if rng.next_u32() % 500 == 0 {
                v * 30.0
            } else {
                v
            }
        })
        .collect();
    // Rows with a per-row offset, as after a bias or a shifted layer norm.
    let shifted: Vec<f32> = gauss
        .chunks(4096)
        .enumerate()
        .flat_map(|(r, row)| row.iter().map(move |v| v + 0.01 * (r % 5) as f32))
        .collect();
    vec![
        ("gaussian", gauss),
        ("uniform", uniform),
        ("student-t3", student),
        ("outliers", outliers),
        ("shifted", shifted),
    ]
}

fn rmse(a: &[f32], b: &[f32]) -> f64 {
    let s: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2))
        .sum();
    (s / a.len() as f64).sqrt()
}

#[test]
fn quantizers_are_within_5_percent_of_ggml_and_make_valid_blocks() {
    let n = 4096 * 64;
    for (name, x) in distributions(n) {
        for ty in RUST_QUANTIZE_TYPES {
            let ours = quantize(ty, &x).unwrap();
            let ours_back = dequantize_to_vec(ty, &ours, n).unwrap();

            // Our blocks are valid ggml blocks: ggml decodes them identically.
            let mut via_ggml = vec![0f32; n];
            ggml_to_float(ty, &ours, &mut via_ggml).unwrap();
            assert!(
                ours_back
                    .iter()
                    .zip(&via_ggml)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "{ty} {name}: ggml decodes our blocks differently"
            );

            let reference = ggml_quantize(ty, &x, 4096).unwrap();
            assert_eq!(reference.len(), ours.len());
            let mut ref_back = vec![0f32; n];
            ggml_to_float(ty, &reference, &mut ref_back).unwrap();

            let (e_ours, e_ggml) = (rmse(&x, &ours_back), rmse(&x, &ref_back));
            eprintln!(
                "{ty:5} {name:11} rmse ours {e_ours:.4e} ggml {e_ggml:.4e} ratio {:.4}",
                e_ours / e_ggml
            );
            assert!(
                e_ours <= 1.05 * e_ggml,
                "{ty} {name}: rmse {e_ours:e} vs ggml {e_ggml:e}"
            );
        }
    }
}

#[test]
fn dequantize_into_slice_matches_to_vec() {
    let mut bytes = vec![0u8; 144 * 16];
    fill_random_blocks(GgmlType::Q4_K, &mut bytes, 1).unwrap();
    let mut out = vec![0f32; 256 * 16];
    dequantize(GgmlType::Q4_K, &bytes, &mut out).unwrap();
    assert_eq!(
        out,
        dequantize_to_vec(GgmlType::Q4_K, &bytes, 256 * 16).unwrap()
    );
}
