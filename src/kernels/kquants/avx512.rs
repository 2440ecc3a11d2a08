//! The canonical sums of [`super`] with AVX-512 VNNI.
//!
//! A weight block is decoded once into registers: four 64-value quarters
//! of unsigned bytes in element order, and per quarter a vector of each
//! lane's run scale. Per column and block, a quarter's `D(g, l)` is one
//! `vpdpbusd` (unsigned weights × signed activations, four products per
//! 32-bit lane), and its scaling is one `vpmaddwd`: `D` fits in 16 bits
//! (at most 4·63·127), so with the scale in the low 16 bits of a lane and
//! zero above, the word-pair product is exactly `scale·D`. Mins and the
//! `Q6_K` offset are one `vpmaddwd` of per-lane factors with the 16-value
//! sums. Then one conversion and one or two FMAs per block: the 16 lanes
//! are summed once per row.
//!
//! Columns go in groups of [`GROUP`] whose accumulators stay in registers,
//! so each weight byte is read from memory once per group.

use std::arch::x86_64::*;

use super::{SuperActs, Q4K_BYTES, Q5K_BYTES, Q6K_BYTES, QK_K};
use crate::kernels::avx512::Avx512Kernel;
use crate::quant::GgmlType;

/// Columns per pass over the weights: 8 accumulators beside one decoded
/// block's 9 vectors and a column's 5. (16 measured slower on a quiet
/// machine: Q4_K at 16 / 128 / 512 columns 0.83 / 0.78 / 0.76x ggml's best
/// against 0.97 / 1.00 / 0.87x with 8.)
const GROUP: usize = 8;

/// How far ahead of the block being read the weights are prefetched (as
/// the block-32 one-column path does: the hardware prefetcher alone left
/// one column at 75-80% of the read bandwidth).
const PREFETCH_BYTES: usize = 2048;

/// `Q4_K`, `Q5_K`, `Q6_K` as const-generic parameters.
const Q4: usize = 0;
const Q5: usize = 1;
const Q6: usize = 2;

/// One weight block in registers.
#[derive(Clone, Copy)]
struct Block {
    /// Quarter `g`: values `64g .. 64g + 64`, unsigned.
    u: [__m512i; 4],
    /// Quarter `g`: lane `l`'s run scale in its low 16 bits (high 16 zero).
    s: [__m512i; 4],
    /// Per lane, the factor of `bsum_l` (same 16-bit form): `Q4_K` / `Q5_K`
    /// `m[l/2]`, `Q6_K` `sc[l]`.
    m: __m512i,
    d: f32,
    dmin: f32,
}

/// Shift counts per 16-bit lane: `lo` in the low 256 bits, `hi` in the high.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c,fma")]
fn halves(lo: i16, hi: i16) -> __m512i {
    _mm512_inserti64x4::<1>(
        _mm512_castsi256_si512(_mm256_set1_epi16(lo)),
        _mm256_set1_epi16(hi),
    )
}

/// Two f16 values at `p` (little-endian), widened.
///
/// # Safety
/// 4 bytes must be readable at `p`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c,fma")]
unsafe fn f16_pair(p: *const u8) -> (f32, f32) {
    // SAFETY: the caller guarantees 4 readable bytes.
    let bits = unsafe { p.cast::<u32>().read_unaligned() };
    let v = _mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32));
    (_mm_cvtss_f32(v), _mm_cvtss_f32(_mm_movehdup_ps(v)))
}

/// The shared header of `Q4_K` / `Q5_K` blocks at `p`: d, dmin and the
/// 12 packed scale bytes, unpacked as `k4_scales_mins` does (four at a time
/// in 32-bit words), spread into the per-quarter scale vectors.
///
/// # Safety
/// 16 bytes must be readable at `p`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c,fma")]
unsafe fn k4_header(p: *const u8) -> ([__m512i; 4], __m512i, f32, f32) {
    // SAFETY: bytes 0..16 of the block.
    let ((d, dmin), w0, w1, w2) = unsafe {
        let w = p.add(4).cast::<u32>();
        (
            f16_pair(p),
            w.read_unaligned(),
            w.add(1).read_unaligned(),
            w.add(2).read_unaligned(),
        )
    };
    let (low6, low4, top2) = (0x3F3F_3F3F, 0x0F0F_0F0F, 0x0303_0303);
    let sc_lo = w0 & low6;
    let m_lo = w1 & low6;
    let sc_hi = (w2 & low4) | (((w0 >> 6) & top2) << 4);
    let m_hi = ((w2 >> 4) & low4) | (((w1 >> 6) & top2) << 4);
    // Lanes 0-7: scales, 8-15: mins.
    let scm = _mm512_cvtepu8_epi32(_mm_set_epi32(
        m_hi as i32,
        m_lo as i32,
        sc_hi as i32,
        sc_lo as i32,
    ));
    let spread = |a: i32, b: i32| {
        _mm512_permutexvar_epi32(
            _mm512_set_epi32(b, b, b, b, b, b, b, b, a, a, a, a, a, a, a, a),
            scm,
        )
    };
    let s = [spread(0, 1), spread(2, 3), spread(4, 5), spread(6, 7)];
    let m = _mm512_permutexvar_epi32(
        _mm512_set_epi32(15, 15, 14, 14, 13, 13, 12, 12, 11, 11, 10, 10, 9, 9, 8, 8),
        scm,
    );
    (s, m, d, dmin)
}

/// # Safety
/// A whole `Q4_K` block (144 bytes) must be readable at `p`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c,fma")]
unsafe fn decode_q4_k(p: *const u8) -> Block {
    // SAFETY: the header is the block's first 16 bytes.
    let (s, m, d, dmin) = unsafe { k4_header(p) };
    let (nibble, shift) = (_mm512_set1_epi8(0x0F), halves(0, 4));
    let u = std::array::from_fn(|g| {
        // The 32 bytes of quarter g in both halves: low nibbles are values
        // 64g..64g+32, high nibbles the next 32.
        // SAFETY: bytes 16 + 32g .. 48 + 32g of the 144-byte block.
        let q = unsafe { _mm512_broadcast_i64x4(_mm256_loadu_si256(p.add(16 + 32 * g).cast())) };
        _mm512_and_si512(_mm512_srlv_epi16(q, shift), nibble)
    });
    Block { u, s, m, d, dmin }
}

/// # Safety
/// A whole `Q5_K` block (176 bytes) must be readable at `p`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c,fma")]
unsafe fn decode_q5_k(p: *const u8) -> Block {
    // SAFETY: the header is the block's first 16 bytes, the high bits the
    // next 32.
    let ((s, m, d, dmin), qh) = unsafe {
        (
            k4_header(p),
            _mm512_broadcast_i64x4(_mm256_loadu_si256(p.add(16).cast())),
        )
    };
    let (nibble, one, shift) = (_mm512_set1_epi8(0x0F), _mm512_set1_epi8(1), halves(0, 4));
    let u = std::array::from_fn(|g| {
        // SAFETY: bytes 48 + 32g .. 80 + 32g of the 176-byte block.
        let q = unsafe { _mm512_broadcast_i64x4(_mm256_loadu_si256(p.add(48 + 32 * g).cast())) };
        let low = _mm512_and_si512(_mm512_srlv_epi16(q, shift), nibble);
        // Values 64g + l take bit 2g of qh[l], values 64g + 32 + l bit 2g + 1.
        let bit = _mm512_and_si512(
            _mm512_srlv_epi16(qh, halves(2 * g as i16, 2 * g as i16 + 1)),
            one,
        );
        _mm512_or_si512(low, _mm512_slli_epi16::<4>(bit))
    });
    Block { u, s, m, d, dmin }
}

/// # Safety
/// A whole `Q6_K` block (210 bytes) must be readable at `p`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c,fma")]
unsafe fn decode_q6_k(p: *const u8) -> Block {
    let (nibble, two_bits) = (_mm512_set1_epi8(0x0F), _mm512_set1_epi8(3));
    let (shift_lo, shift_hi) = (halves(0, 2), halves(4, 6));
    let mut u = [_mm512_setzero_si512(); 4];
    for half in 0..2 {
        // SAFETY: `ql` bytes 64·half .. +64 and `qh` bytes 128 + 32·half .. +32
        // of the 210-byte block.
        let (ql, qh) = unsafe {
            (
                _mm512_loadu_si512(p.add(64 * half).cast()),
                _mm512_broadcast_i64x4(_mm256_loadu_si256(p.add(128 + 32 * half).cast())),
            )
        };
        // Values 128·half + 0..64: low nibbles with bit pairs 0-1 / 2-3;
        // + 64..128: high nibbles with bit pairs 4-5 / 6-7.
        let h_lo = _mm512_and_si512(_mm512_srlv_epi16(qh, shift_lo), two_bits);
        let h_hi = _mm512_and_si512(_mm512_srlv_epi16(qh, shift_hi), two_bits);
        u[2 * half] = _mm512_or_si512(_mm512_and_si512(ql, nibble), _mm512_slli_epi16::<4>(h_lo));
        u[2 * half + 1] = _mm512_or_si512(
            _mm512_and_si512(_mm512_srli_epi16::<4>(ql), nibble),
            _mm512_slli_epi16::<4>(h_hi),
        );
    }
    // SAFETY: the 16 scale bytes at 192 and the f16 d at 208 (the second
    // of the pair at 206) of the 210-byte block.
    let (scales, d) = unsafe { (_mm_loadu_si128(p.add(192).cast()), f16_pair(p.add(206)).1) };
    // Signed scales in the low 16 bits of each lane, zero above.
    let m = _mm512_and_si512(_mm512_cvtepi8_epi32(scales), _mm512_set1_epi32(0xFFFF));
    let spread = |j: i32| {
        _mm512_permutexvar_epi32(
            _mm512_set_epi32(
                j + 3,
                j + 3,
                j + 3,
                j + 3,
                j + 2,
                j + 2,
                j + 2,
                j + 2,
                j + 1,
                j + 1,
                j + 1,
                j + 1,
                j,
                j,
                j,
                j,
            ),
            m,
        )
    };
    let s = [spread(0), spread(4), spread(8), spread(12)];
    Block {
        u,
        s,
        m,
        d,
        dmin: 0.0,
    }
}

/// `I_l` before the bsum terms: `Σ_g s_g(l)·D(g, l)`, as a tree of
/// independent products (integers: exact in any order) so that the columns'
/// chains overlap.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c,fma")]
fn scaled_dots(w: &Block, x: &[__m512i; 4]) -> __m512i {
    let zero = _mm512_setzero_si512();
    let scaled = |g: usize| _mm512_madd_epi16(_mm512_dpbusd_epi32(zero, w.u[g], x[g]), w.s[g]);
    _mm512_add_epi32(
        _mm512_add_epi32(scaled(0), scaled(1)),
        _mm512_add_epi32(scaled(2), scaled(3)),
    )
}

/// One block of one column into its lanes (the steps of [`super`]'s docs).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c,fma")]
fn update<const KIND: usize>(
    w: &Block,
    x: &[__m512i; 4],
    bsums: __m512i,
    dx: f32,
    acc: __m512,
) -> __m512 {
    let i = scaled_dots(w, x);
    let bsum_terms = _mm512_madd_epi16(w.m, bsums);
    if KIND == Q6 {
        let i = _mm512_sub_epi32(i, _mm512_slli_epi32::<5>(bsum_terms));
        _mm512_fmadd_ps(_mm512_cvtepi32_ps(i), _mm512_set1_ps(w.d * dx), acc)
    } else {
        let acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i), _mm512_set1_ps(w.d * dx), acc);
        _mm512_fnmadd_ps(
            _mm512_cvtepi32_ps(bsum_terms),
            _mm512_set1_ps(w.dmin * dx),
            acc,
        )
    }
}

/// [`super::reduce_lanes`], in registers.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c,fma")]
fn reduce(acc: __m512) -> f32 {
    let high = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(acc)));
    let h = _mm256_add_ps(_mm512_castps512_ps256(acc), high);
    let q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps::<1>(h));
    let p = _mm_add_ps(q, _mm_movehl_ps(q, q));
    _mm_cvtss_f32(_mm_add_ss(p, _mm_movehdup_ps(p)))
}

/// `out[c][i] = dot(row i of weights, column c)`: `weights` holds exactly
/// the output rows, sizes checked by [`super::matmul_rows`].
pub(super) fn matmul(
    _cpu: Avx512Kernel,
    ty: GgmlType,
    weights: &[u8],
    acts: &SuperActs,
    out: &mut [&mut [f32]],
) {
    for c0 in (0..acts.n).step_by(GROUP) {
        let cols = (acts.n - c0).min(GROUP);
        let out = &mut out[c0..c0 + cols];
        macro_rules! by_count {
            ($kind:ident; $($c:literal)*) => {
                match cols {
                    $($c => columns::<$kind, $c>(weights, acts, c0, out),)*
                    _ => {}
                }
            };
        }
        // SAFETY: `_cpu` proves the features `columns` is compiled for.
        unsafe {
            match ty {
                GgmlType::Q4_K => by_count!(Q4; 1 2 3 4 5 6 7 8),
                GgmlType::Q5_K => by_count!(Q5; 1 2 3 4 5 6 7 8),
                _ => by_count!(Q6; 1 2 3 4 5 6 7 8),
            }
        }
    }
}

/// Columns `c0 .. c0 + C` against every row of `weights`.
///
/// (Tried and dropped, both slower here: two rows per pass over the
/// columns, and walking tiles of rows part of a row at a time so that long
/// rows' activations stay in L1.)
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c,fma")]
fn columns<const KIND: usize, const C: usize>(
    weights: &[u8],
    acts: &SuperActs,
    c0: usize,
    out: &mut [&mut [f32]],
) {
    let bytes = [Q4K_BYTES, Q5K_BYTES, Q6K_BYTES][KIND];
    let nb = acts.k / QK_K;
    let row_bytes = nb * bytes;
    if nb == 0 || out.len() != C || acts.n < c0 + C || !weights.len().is_multiple_of(row_bytes) {
        return; // sizes are checked by `matmul_rows`; nothing to do otherwise
    }
    let cols: [super::Column<'_>; C] = std::array::from_fn(|c| acts.column(c0 + c));
    for (i, row) in weights.chunks_exact(row_bytes).enumerate() {
        let mut acc = [_mm512_setzero_ps(); C];
        for (b, block) in row.chunks_exact(bytes).enumerate() {
            // Prefetching never faults, so a pointer past the end is harmless.
            for line in (0..bytes).step_by(64) {
                _mm_prefetch::<_MM_HINT_T0>(
                    block.as_ptr().wrapping_add(PREFETCH_BYTES + line).cast(),
                );
            }
            // SAFETY: `block` is one whole block of this type.
            let w = unsafe {
                match KIND {
                    Q4 => decode_q4_k(block.as_ptr()),
                    Q5 => decode_q5_k(block.as_ptr()),
                    _ => decode_q6_k(block.as_ptr()),
                }
            };
            for (a, col) in acc.iter_mut().zip(&cols) {
                let (qs, dx, bsums) = col.block(b);
                // SAFETY: 256 values and 16 sums of block b of the column.
                let (x, bs) = unsafe {
                    (
                        std::array::from_fn(|g| _mm512_loadu_si512(qs.as_ptr().add(64 * g).cast())),
                        _mm512_loadu_si512(bsums.as_ptr().cast()),
                    )
                };
                *a = update::<KIND>(&w, &x, bs, dx, *a);
            }
        }
        for (col, a) in out.iter_mut().zip(acc) {
            col[i] = reduce(a);
        }
    }
}
