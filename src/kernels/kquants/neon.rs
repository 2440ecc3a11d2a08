//! The canonical sums of [`super`] with NEON (aarch64).
//!
//! A weight block is decoded once per row into 16 vectors of 16 unsigned
//! values (at most 63, so they multiply as signed bytes), one vector per
//! run of 16 (`Q4_K` / `Q5_K` runs of 32 are two such vectors with the
//! same scale). Per run and column, widening multiplies (`smull`, products
//! at most 63·127) are added in pairs into 8 16-bit lanes (at most 2·8001)
//! and multiply-accumulated with the run scale into four 32-bit lanes
//! (`smlal`), so the lanes sum to [`super`]'s exact `I`; the `bsums` terms
//! are four 32-bit multiply-adds. Then the portable float chain runs on
//! the integers, so results are the portable kernel's bit for bit and do
//! not depend on the batch. (Plain NEON, no `sdot`: every aarch64 CPU has
//! it.)

use std::arch::aarch64::*;

use super::{chain_step, SuperActs, Q4K_BYTES, Q5K_BYTES, Q6K_BYTES, QK_K};
use crate::kernels::neon::NeonKernel;
use crate::quant::blocks::{f16_le, k4_scales_mins};
use crate::quant::GgmlType;

/// Columns per pass over the weights (float accumulators on the stack).
const GROUP: usize = 8;

/// Runs of 16 values per block.
const RUNS: usize = QK_K / 16;

/// One weight block decoded: values per run of 16, each run's scale, the
/// factors of the 16 `bsums` (`Q4_K` / `Q5_K`: `m[l/2]`, `Q6_K`: `sc[l]`)
/// and the float factors.
struct Block {
    u: [int8x16_t; RUNS],
    scales: [i16; RUNS],
    bsum_factors: [int32x4_t; 4],
    d: f32,
    dmin: f32,
}

/// A `Q4_K` / `Q5_K` block of values `u` with the header at bytes 0..16:
/// run scales (each of the 8 scales twice), min factors, d and dmin.
#[inline]
#[target_feature(enable = "neon")]
fn k4_block(b: &[u8], u: [int8x16_t; RUNS]) -> Block {
    let (sc, m) = k4_scales_mins(super::block_array(&b[4..16]));
    let mins: [i32; 16] = std::array::from_fn(|l| i32::from(m[l / 2]));
    Block {
        u,
        scales: std::array::from_fn(|r| i16::from(sc[r / 2])),
        bsum_factors: lanes4(&mins),
        d: f16_le(&[b[0], b[1]]),
        dmin: f16_le(&[b[2], b[3]]),
    }
}

/// 16 values as four vectors of four.
#[inline]
#[target_feature(enable = "neon")]
fn lanes4(v: &[i32; 16]) -> [int32x4_t; 4] {
    // SAFETY: each load reads four of the 16 values.
    std::array::from_fn(|q| unsafe { vld1q_s32(v.as_ptr().add(4 * q)) })
}

/// 16 bytes of `b` at `at` (callers keep `at + 16 <= b.len()`).
#[inline]
#[target_feature(enable = "neon")]
fn load16(b: &[u8], at: usize) -> uint8x16_t {
    let bytes: &[u8; 16] = super::block_array(&b[at..at + 16]);
    // SAFETY: 16 readable bytes.
    unsafe { vld1q_u8(bytes.as_ptr()) }
}

#[inline]
#[target_feature(enable = "neon")]
fn decode_q4_k(b: &[u8; Q4K_BYTES]) -> Block {
    let nibble = vdupq_n_u8(0x0F);
    let mut u = [vdupq_n_s8(0); RUNS];
    // Group g's 32 bytes: low nibbles are values 64g .. 64g + 32, high
    // nibbles the next 32.
    for g in 0..4 {
        for h in 0..2 {
            let q = load16(b, 16 + 32 * g + 16 * h);
            u[4 * g + h] = vreinterpretq_s8_u8(vandq_u8(q, nibble));
            u[4 * g + 2 + h] = vreinterpretq_s8_u8(vshrq_n_u8::<4>(q));
        }
    }
    k4_block(b, u)
}

#[inline]
#[target_feature(enable = "neon")]
fn decode_q5_k(b: &[u8; Q5K_BYTES]) -> Block {
    let (nibble, sixteen) = (vdupq_n_u8(0x0F), vdupq_n_u8(0x10));
    let qh = [load16(b, 16), load16(b, 32)];
    let mut u = [vdupq_n_s8(0); RUNS];
    // As `Q4_K`, plus bit 2g of qh[l] on the low nibbles of group g and
    // bit 2g + 1 on the high ones.
    for g in 0..4 {
        for h in 0..2 {
            let q = load16(b, 48 + 32 * g + 16 * h);
            let bit = |n: usize| vandq_u8(vtstq_u8(qh[h], vdupq_n_u8(1 << n)), sixteen);
            u[4 * g + h] = vreinterpretq_s8_u8(vorrq_u8(vandq_u8(q, nibble), bit(2 * g)));
            u[4 * g + 2 + h] = vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8::<4>(q), bit(2 * g + 1)));
        }
    }
    k4_block(b, u)
}

#[inline]
#[target_feature(enable = "neon")]
fn decode_q6_k(b: &[u8; Q6K_BYTES]) -> Block {
    let (nibble, top) = (vdupq_n_u8(0x0F), vdupq_n_u8(0x30));
    let mut u = [vdupq_n_s8(0); RUNS];
    // Half `half` (values 128·half ..): low nibbles of ql[0..32] and
    // ql[32..64], then their high nibbles, each with two bits of qh[l]
    // (bits 0-1, 2-3, 4-5, 6-7) as bits 4-5.
    for half in 0..2 {
        for j in 0..2 {
            let ql_a = load16(b, 64 * half + 16 * j);
            let ql_b = load16(b, 64 * half + 32 + 16 * j);
            let qh = load16(b, 128 + 32 * half + 16 * j);
            let highs = [
                vshlq_n_u8::<4>(vandq_u8(qh, vdupq_n_u8(3))),
                vandq_u8(vshlq_n_u8::<2>(qh), top),
                vandq_u8(qh, top),
                vandq_u8(vshrq_n_u8::<2>(qh), top),
            ];
            let lows = [
                vandq_u8(ql_a, nibble),
                vandq_u8(ql_b, nibble),
                vshrq_n_u8::<4>(ql_a),
                vshrq_n_u8::<4>(ql_b),
            ];
            for (quarter, (low, high)) in lows.into_iter().zip(highs).enumerate() {
                u[8 * half + 2 * quarter + j] = vreinterpretq_s8_u8(vorrq_u8(low, high));
            }
        }
    }
    let sc: [i32; 16] = std::array::from_fn(|l| i32::from(b[192 + l] as i8));
    Block {
        u,
        scales: std::array::from_fn(|r| sc[r] as i16),
        bsum_factors: lanes4(&sc),
        d: f16_le(&[b[208], b[209]]),
        dmin: 0.0,
    }
}

/// The block's exact `(I, M)` against one column's 256 values and 16 sums.
#[inline]
#[target_feature(enable = "neon")]
fn integers<const KIND: usize>(w: &Block, x: &[i8], bsums: &[i32]) -> (i32, i32) {
    let x: &[i8; QK_K] = super::block_array(x);
    let bsums: &[i32; 16] = super::block_array(bsums);
    let mut lanes = [vdupq_n_s32(0); 2];
    for (r, (&u, &s)) in w.u.iter().zip(&w.scales).enumerate() {
        // SAFETY: values 16r .. 16r + 16 of the 256.
        let xr = unsafe { vld1q_s8(x.as_ptr().add(16 * r)) };
        let pairs = vaddq_s16(
            vmull_s8(vget_low_s8(u), vget_low_s8(xr)),
            vmull_high_s8(u, xr),
        );
        // Two accumulators: consecutive runs do not wait on each other.
        let acc = &mut lanes[r % 2];
        *acc = vmlal_high_n_s16(vmlal_n_s16(*acc, vget_low_s16(pairs), s), pairs, s);
    }
    let dots = vaddvq_s32(vaddq_s32(lanes[0], lanes[1]));
    let sums = lanes4(bsums);
    let terms = (1..4).fold(vmulq_s32(w.bsum_factors[0], sums[0]), |t, q| {
        vmlaq_s32(t, w.bsum_factors[q], sums[q])
    });
    let terms = vaddvq_s32(terms);
    if KIND == Q6 {
        (dots - 32 * terms, 0)
    } else {
        (dots, terms)
    }
}

const Q4: usize = 0;
const Q5: usize = 1;
const Q6: usize = 2;

/// `out[c][i] = dot(row i of weights, column c)`: `weights` holds exactly
/// the output rows, sizes checked by [`super::matmul_rows`].
pub(super) fn matmul(
    _cpu: &NeonKernel,
    ty: GgmlType,
    weights: &[u8],
    acts: &SuperActs,
    out: &mut [&mut [f32]],
) {
    for c0 in (0..acts.n).step_by(GROUP) {
        let cols = (acts.n - c0).min(GROUP);
        let out = &mut out[c0..c0 + cols];
        // SAFETY: `_cpu` proves the CPU has NEON.
        unsafe {
            match ty {
                GgmlType::Q4_K => columns::<Q4>(weights, acts, c0, out),
                GgmlType::Q5_K => columns::<Q5>(weights, acts, c0, out),
                _ => columns::<Q6>(weights, acts, c0, out),
            }
        }
    }
}

/// Columns `c0 .. c0 + out.len()` (at most [`GROUP`]) against every row.
#[target_feature(enable = "neon")]
fn columns<const KIND: usize>(weights: &[u8], acts: &SuperActs, c0: usize, out: &mut [&mut [f32]]) {
    let bytes = [Q4K_BYTES, Q5K_BYTES, Q6K_BYTES][KIND];
    let nb = acts.k / QK_K;
    let row_bytes = nb * bytes;
    let n = out.len();
    if nb == 0 || n > GROUP || acts.n < c0 + n || !weights.len().is_multiple_of(row_bytes) {
        return; // sizes are checked by `matmul_rows`; nothing to do otherwise
    }
    let ty = [GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K][KIND];
    for (i, row) in weights.chunks_exact(row_bytes).enumerate() {
        let mut acc = [0f32; GROUP];
        for (b, block) in row.chunks_exact(bytes).enumerate() {
            let w = match KIND {
                Q4 => decode_q4_k(super::block_array(block)),
                Q5 => decode_q5_k(super::block_array(block)),
                _ => decode_q6_k(super::block_array(block)),
            };
            for (c, a) in acc[..n].iter_mut().enumerate() {
                let (x, dx, bsums) = acts.column(c0 + c).block(b);
                *a = chain_step(ty, integers::<KIND>(&w, x, bsums), w.d, w.dmin, dx, *a);
            }
        }
        for (col, a) in out.iter_mut().zip(acc) {
            col[i] = a;
        }
    }
}
