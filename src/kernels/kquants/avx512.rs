//! The canonical sums of [`super`] with AVX-512 VNNI, on two paths.
//!
//! **Lanes along the row** ([`columns`], up to 15 columns): a weight block
//! is decoded once into registers: four 64-value quarters of unsigned bytes
//! in element order, and per quarter a vector of each lane's run scale. Per
//! column and block, a quarter's four-value dot products are one `vpdpbusd`
//! (unsigned weights × signed activations, four products per 32-bit lane),
//! and its scaling is one `vpmaddwd`: a lane's dot product fits in 16 bits
//! (at most 4·63·127), so with the scale in the low 16 bits of a lane and
//! zero above, the word-pair product is exactly `scale·D`. Mins and the
//! `Q6_K` offset are one `vpmaddwd` of per-lane factors with the 16-value
//! sums. The lanes of 16 such vectors are summed at once ([`sum_each`])
//! into the block's integers. Columns go in groups of [`GROUP`], so each
//! weight byte is read from memory once per group.
//!
//! **One column per lane** ([`tiled`], 16 columns or more, on the
//! activations' [`super::Tiles`]): four weight bytes broadcast against 16
//! columns' four activations are one `vpdpbusd`, a run's sum is scaled once
//! (`vpmulld`), and the float chain runs on 16 columns at a time; four rows
//! share each activation vector loaded. Per block and column this is about
//! half the row path's vector operations, so prompts in batch-invariant
//! runs reach ggml's AMX kernels' speed.

use std::arch::x86_64::*;

use super::{
    block_array, chain_step, SuperActs, Q4K_BYTES, Q5K_BYTES, Q6K_BYTES, QK_K, TILE_COLUMNS,
};
use crate::kernels::avx512::Avx512Kernel;
use crate::quant::blocks::k4_scales_mins;
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
pub(super) struct Block {
    /// Quarter `g`: values `64g .. 64g + 64`, unsigned.
    pub(super) u: [__m512i; 4],
    /// Quarter `g`: lane `l`'s run scale in its low 16 bits (high 16 zero).
    s: [__m512i; 4],
    /// Per lane, the factor of `bsum_l` (same 16-bit form): `Q4_K` / `Q5_K`
    /// `m[l/2]`, `Q6_K` `sc[l]`.
    m: __m512i,
    pub(super) d: f32,
    pub(super) dmin: f32,
}

/// Shift counts per 16-bit lane: `lo` in the low 256 bits, `hi` in the high.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c,fma")]
pub(super) fn halves(lo: i16, hi: i16) -> __m512i {
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
pub(super) unsafe fn decode_q4_k(p: *const u8) -> Block {
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

/// One block of one column: the lane vectors whose sums are the block's
/// `I` and `M` ([`super`]'s docs; `Q6_K`'s `M` is zero).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c,fma")]
fn lane_integers<const KIND: usize>(
    w: &Block,
    x: &[__m512i; 4],
    bsums: __m512i,
) -> (__m512i, __m512i) {
    let i = scaled_dots(w, x);
    let bsum_terms = _mm512_madd_epi16(w.m, bsums);
    if KIND == Q6 {
        (
            _mm512_sub_epi32(i, _mm512_slli_epi32::<5>(bsum_terms)),
            _mm512_setzero_si512(),
        )
    } else {
        (i, bsum_terms)
    }
}

/// Lane `j` of the result is the sum of the 16 lanes of `v[j]`: pairs of
/// vectors are interleaved and added, halving the vectors and doubling the
/// sources per vector at each of four levels (integers: exact).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c,fma")]
fn sum_each(v: &[__m512i; 16]) -> __m512i {
    // Per 128-bit lane: [a0+a2, b0+b2, a1+a3, b1+b3].
    let l1: [__m512i; 8] = std::array::from_fn(|i| {
        let (a, b) = (v[2 * i], v[2 * i + 1]);
        _mm512_add_epi32(_mm512_unpacklo_epi32(a, b), _mm512_unpackhi_epi32(a, b))
    });
    // Per 128-bit lane: the four sources' sums over that lane.
    let l2: [__m512i; 4] = std::array::from_fn(|i| {
        let (a, b) = (l1[2 * i], l1[2 * i + 1]);
        _mm512_add_epi32(_mm512_unpacklo_epi64(a, b), _mm512_unpackhi_epi64(a, b))
    });
    // 128-bit lanes 0 + 1 and 2 + 3 of two vectors, then of the pair.
    let fold = |a: __m512i, b: __m512i| {
        _mm512_add_epi32(
            _mm512_shuffle_i32x4::<0b10_00_10_00>(a, b),
            _mm512_shuffle_i32x4::<0b11_01_11_01>(a, b),
        )
    };
    fold(fold(l2[0], l2[1]), fold(l2[2], l2[3]))
}

/// [`super::quantize_block`] with AVX-512, bit for bit: the same maximum,
/// products and rounding (to nearest even, the default mode); the 16-value
/// sums come from [`sum_each`]. Returns the block's scale.
pub(super) fn quantize_block(
    _cpu: Avx512Kernel,
    xb: &[f32; QK_K],
    qb: &mut [i8; QK_K],
    sums: &mut [i32; 16],
) -> f32 {
    // SAFETY: `_cpu` proves the features `quantize` is compiled for.
    unsafe { quantize(xb, qb, sums) }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c,fma")]
fn quantize(xb: &[f32; QK_K], qb: &mut [i8; QK_K], sums: &mut [i32; 16]) -> f32 {
    // SAFETY: 16 vectors of 16 values from a 256-value array.
    let v: [__m512; 16] =
        std::array::from_fn(|i| unsafe { _mm512_loadu_ps(xb.as_ptr().add(16 * i)) });
    let amax = _mm512_reduce_max_ps(v.iter().fold(_mm512_setzero_ps(), |m, &x| {
        _mm512_max_ps(_mm512_abs_ps(x), m)
    }));
    if amax == 0.0 {
        qb.fill(0);
        sums.fill(0);
        return 0.0;
    }
    // The first value whose magnitude is the largest, as the scalar scan finds.
    let target = _mm512_set1_ps(amax);
    let mut max = amax;
    for (i, &x) in v.iter().enumerate() {
        let hits = _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(_mm512_abs_ps(x), target);
        if hits != 0 {
            max = xb[16 * i + hits.trailing_zeros() as usize];
            break;
        }
    }
    let iscale = -127.0 / max;
    let scale = _mm512_set1_ps(iscale);
    // |iscale·v| <= 127 up to rounding, so saturation only applies `min(127)`.
    let q: [__m512i; 16] = std::array::from_fn(|i| _mm512_cvtps_epi32(_mm512_mul_ps(scale, v[i])));
    for (i, &qi) in q.iter().enumerate() {
        // SAFETY: 16 bytes into bytes 16i .. 16i + 16 of 256.
        unsafe {
            _mm_storeu_si128(
                qb.as_mut_ptr().add(16 * i).cast(),
                _mm512_cvtsepi32_epi8(qi),
            )
        };
    }
    // SAFETY: 16 sums into a 16-value array.
    unsafe { _mm512_storeu_si512(sums.as_mut_ptr().cast(), sum_each(&q)) };
    1.0 / iscale
}

/// `out[c][i] = dot(row i of weights, column c)`: `weights` holds exactly
/// the output rows, sizes checked by [`super::matmul_rows`]. Columns with
/// tiles ([`super::SuperActs::build_tiles`]) go through [`tiled`] in
/// groups of 16, the rest through [`columns`].
pub(super) fn matmul(
    _cpu: Avx512Kernel,
    ty: GgmlType,
    weights: &[u8],
    acts: &SuperActs,
    out: &mut [&mut [f32]],
) {
    let tiled_groups = tiled_groups(acts);
    if tiled_groups > 0 {
        let cols = (tiled_groups * TILE_COLUMNS).min(acts.n);
        if let Some(amx) = super::amx::Amx::for_matmul(ty, acts.n) {
            super::amx::matmul_q4_k(amx, weights, acts, tiled_groups, &mut out[..cols]);
            return columns_after(_cpu, ty, weights, acts, tiled_groups, out);
        }
        // SAFETY: `_cpu` proves the features `tiled_rows` is compiled for.
        unsafe {
            match ty {
                GgmlType::Q4_K => tiled_rows::<Q4>(weights, acts, tiled_groups, &mut out[..cols]),
                GgmlType::Q5_K => tiled_rows::<Q5>(weights, acts, tiled_groups, &mut out[..cols]),
                _ => tiled_rows::<Q6>(weights, acts, tiled_groups, &mut out[..cols]),
            }
        }
    }
    columns_after(_cpu, ty, weights, acts, tiled_groups, out);
}

/// The columns past the first `tiled_groups` tile groups, [`GROUP`] at a
/// time along the rows.
fn columns_after(
    _cpu: Avx512Kernel,
    ty: GgmlType,
    weights: &[u8],
    acts: &SuperActs,
    tiled_groups: usize,
    out: &mut [&mut [f32]],
) {
    for c0 in (tiled_groups * TILE_COLUMNS..acts.n).step_by(GROUP) {
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

/// Columns `c0 .. c0 + C` against every row of `weights`, with the 16
/// canonical lanes along the row (one vector per quarter of a block).
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
    let ty = [GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K][KIND];
    let bytes = [Q4K_BYTES, Q5K_BYTES, Q6K_BYTES][KIND];
    let nb = acts.k / QK_K;
    let row_bytes = nb * bytes;
    if nb == 0 || out.len() != C || acts.n < c0 + C || !weights.len().is_multiple_of(row_bytes) {
        return; // sizes are checked by `matmul_rows`; nothing to do otherwise
    }
    let cols: [super::Column<'_>; C] = std::array::from_fn(|c| acts.column(c0 + c));
    // Vectors per block to sum (one per column and integer: `I`, and `M`
    // but for `Q6_K`), and blocks per [`sum_each`] of 16 vectors: with few
    // columns, several blocks share one.
    let slots = if KIND == Q6 { C } else { 2 * C };
    let batch = (16 / slots).max(1);
    for (i, row) in weights.chunks_exact(row_bytes).enumerate() {
        let mut acc = [0f32; C];
        let mut v = [_mm512_setzero_si512(); 16];
        let mut factors = [(0f32, 0f32); 16];
        let (mut filled, mut b0) = (0, 0);
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
            // Block `filled` of the batch: column c's `I` lanes in
            // v[filled·slots + c], its `M` lanes C vectors later.
            let at = filled * slots;
            for (c, col) in cols.iter().enumerate() {
                let (qs, _, bsums) = col.block(b);
                // SAFETY: 256 values and 16 sums of block b of the column.
                let (x, bs) = unsafe {
                    (
                        std::array::from_fn(|g| _mm512_loadu_si512(qs.as_ptr().add(64 * g).cast())),
                        _mm512_loadu_si512(bsums.as_ptr().cast()),
                    )
                };
                let (ints, mins) = lane_integers::<KIND>(&w, &x, bs);
                v[at + c] = ints;
                if KIND != Q6 {
                    v[at + C + c] = mins;
                }
            }
            factors[filled] = (w.d, w.dmin);
            filled += 1;
            if filled < batch && b + 1 < nb {
                continue;
            }
            let mut totals = [0i32; 16];
            // SAFETY: 16 lanes into a 16-value array.
            unsafe { _mm512_storeu_si512(totals.as_mut_ptr().cast(), sum_each(&v)) };
            for (j, &(d, dmin)) in factors[..filled].iter().enumerate() {
                for (c, (a, col)) in acc.iter_mut().zip(&cols).enumerate() {
                    let dx = col.block(b0 + j).1;
                    let m = if KIND == Q6 {
                        0
                    } else {
                        totals[j * slots + C + c]
                    };
                    *a = chain_step(ty, (totals[j * slots + c], m), d, dmin, dx, *a);
                }
            }
            (filled, b0) = (0, b + 1);
        }
        for (col, a) in out.iter_mut().zip(acc) {
            col[i] = a;
        }
    }
}

/// Fewest columns that take the tiled path: one whole group. At 16 columns
/// it measured 1.4x the int8 GOP/s of the row path at 8 (Q4_K and Q6_K,
/// one thread, `KB_INVARIANT=1 cargo bench --bench kernels`).
pub(super) const TILED_MIN_COLUMNS: usize = 16;

/// Groups of tiles the tiled path takes: the whole ones, and the padded
/// last one where it holds at least half a group (fewer columns go to
/// [`columns`], which wastes no lanes on padding).
fn tiled_groups(acts: &SuperActs) -> usize {
    let groups = acts.tile_groups();
    if groups == 0 {
        return 0;
    }
    let whole = acts.n / TILE_COLUMNS;
    if acts.n % TILE_COLUMNS >= TILE_COLUMNS / 2 {
        groups
    } else {
        whole
    }
}

/// Rows decoded at a time by the tiled path: each column vector loaded
/// serves this many rows.
const TILE_ROWS: usize = 4;

/// One row's block decoded for the tiled path.
#[derive(Clone, Copy)]
struct RowBlock {
    /// The 256 unsigned values in element order.
    u: [u8; QK_K],
    /// Run scales: `Q4_K` / `Q5_K` 8 (runs of 32), `Q6_K` 16 (runs of 16).
    sc: [i32; 16],
    /// Factors of the 16-value sums in pairs, as two `i16` per `i32`:
    /// `Q4_K` / `Q5_K` `(m_p, m_p)`, `Q6_K` `(sc_2p, sc_2p+1)`.
    pairs: [i32; 8],
    d: f32,
    dmin: f32,
}

impl RowBlock {
    const ZERO: RowBlock = RowBlock {
        u: [0; QK_K],
        sc: [0; 16],
        pairs: [0; 8],
        d: 0.0,
        dmin: 0.0,
    };

    /// # Safety
    /// A whole block of type `KIND` must be readable at `p`.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c,fma")]
    unsafe fn decode<const KIND: usize>(&mut self, p: *const u8) {
        // SAFETY: the caller guarantees the whole block.
        let w = unsafe {
            match KIND {
                Q4 => decode_q4_k(p),
                Q5 => decode_q5_k(p),
                _ => decode_q6_k(p),
            }
        };
        for (g, u) in w.u.iter().enumerate() {
            // SAFETY: 64 bytes into bytes 64g .. 64g + 64 of 256.
            unsafe { _mm512_storeu_si512(self.u.as_mut_ptr().add(64 * g).cast(), *u) };
        }
        // SAFETY: the header (Q4_K / Q5_K: bytes 0..16; Q6_K: scales at
        // 192..208) lies inside the block.
        let header: &[u8] = unsafe {
            if KIND == Q6 {
                std::slice::from_raw_parts(p.add(192), 16)
            } else {
                std::slice::from_raw_parts(p, 16)
            }
        };
        if KIND == Q6 {
            for (s, &v) in self.sc.iter_mut().zip(header) {
                *s = i32::from(v as i8);
            }
            for (pair, s) in self.pairs.iter_mut().zip(self.sc.chunks_exact(2)) {
                *pair = (s[0] & 0xFFFF) | (s[1] << 16);
            }
        } else {
            let (sc, m) = k4_scales_mins(block_array(&header[4..16]));
            for j in 0..8 {
                self.sc[j] = i32::from(sc[j]);
                self.pairs[j] = i32::from(m[j]) | (i32::from(m[j]) << 16);
            }
        }
        self.d = w.d;
        self.dmin = w.dmin;
    }
}

/// Every row of `weights` against tile groups `0 .. groups` (columns
/// `0 .. out.len()`): [`TILE_ROWS`] rows at a time, then the rest.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c,fma")]
fn tiled_rows<const KIND: usize>(
    weights: &[u8],
    acts: &SuperActs,
    groups: usize,
    out: &mut [&mut [f32]],
) {
    let bytes = [Q4K_BYTES, Q5K_BYTES, Q6K_BYTES][KIND];
    let nb = acts.k / QK_K;
    let row_bytes = nb * bytes;
    if nb == 0 || !weights.len().is_multiple_of(row_bytes) {
        return; // sizes are checked by `matmul_rows`
    }
    let n_rows = weights.len() / row_bytes;
    // Groups per pass over the rows: as many as keep their tiles within
    // TILE_PASS_BYTES (in the L2 cache), so that every row block reads
    // them from there.
    let tile_bytes = nb * QK_K * TILE_COLUMNS;
    let pass = (TILE_PASS_BYTES / tile_bytes).clamp(1, groups.max(1));
    let mut decoded = vec![RowBlock::ZERO; TILE_ROWS * nb];
    for g0 in (0..groups).step_by(pass) {
        let pass_groups = g0..(g0 + pass).min(groups);
        let mut r0 = 0;
        while r0 < n_rows {
            let rows = (n_rows - r0).min(TILE_ROWS);
            for r in 0..rows {
                let row = &weights[(r0 + r) * row_bytes..][..row_bytes];
                for (b, block) in row.chunks_exact(bytes).enumerate() {
                    // SAFETY: `block` is one whole block of this type.
                    unsafe { decoded[r * nb + b].decode::<KIND>(block.as_ptr()) };
                }
            }
            for g in pass_groups.clone() {
                match rows {
                    4 => tiled::<KIND, 4>(&decoded, acts, g, r0, out),
                    3 => tiled::<KIND, 3>(&decoded, acts, g, r0, out),
                    2 => tiled::<KIND, 2>(&decoded, acts, g, r0, out),
                    _ => tiled::<KIND, 1>(&decoded, acts, g, r0, out),
                }
            }
            r0 += rows;
        }
    }
}

/// Bytes of activation tiles one pass over the rows reads (half of a
/// 2 MiB L2 cache).
const TILE_PASS_BYTES: usize = 1 << 20;

/// `R` decoded rows (`decoded[r * nb + b]`) against tile group `g`: each
/// vector lane is one column, so a run's integer dot product is `vpdpbusd`
/// of four broadcast weight bytes by 16 columns' four activations, summed
/// over the run and then scaled once.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c,fma")]
fn tiled<const KIND: usize, const R: usize>(
    decoded: &[RowBlock],
    acts: &SuperActs,
    g: usize,
    r0: usize,
    out: &mut [&mut [f32]],
) {
    let nb = acts.k / QK_K;
    // Runs per block and four-value steps per run.
    let (runs, steps) = if KIND == Q6 { (16, 4) } else { (8, 8) };
    let mut acc = [_mm512_setzero_ps(); R];
    for b in 0..nb {
        let (xq, xs, xd) = acts.tile(g, b);
        let w: [&RowBlock; R] = std::array::from_fn(|r| &decoded[r * nb + b]);
        let mut ints = [_mm512_setzero_si512(); R];
        for run in 0..runs {
            let mut dots = [_mm512_setzero_si512(); R];
            for step in 0..steps {
                let at = run * steps + step;
                // SAFETY: four-value step `at` < 64 of the 4 KiB tile.
                let x = unsafe { _mm512_loadu_si512(xq.as_ptr().add(64 * at).cast()) };
                for r in 0..R {
                    // SAFETY: bytes 4·at .. 4·at + 4 of the 256.
                    let four =
                        unsafe { w[r].u.as_ptr().add(4 * at).cast::<i32>().read_unaligned() };
                    dots[r] = _mm512_dpbusd_epi32(dots[r], _mm512_set1_epi32(four), x);
                }
            }
            for r in 0..R {
                let scaled = _mm512_mullo_epi32(dots[r], _mm512_set1_epi32(w[r].sc[run]));
                ints[r] = _mm512_add_epi32(ints[r], scaled);
            }
        }
        let mut sums = [_mm512_setzero_si512(); R];
        for pair in 0..8 {
            // SAFETY: pair < 8 of the tile's 8 × 64 bytes of sums.
            let x = unsafe { _mm512_loadu_si512(xs.as_ptr().add(2 * TILE_COLUMNS * pair).cast()) };
            for r in 0..R {
                sums[r] = _mm512_dpwssd_epi32(sums[r], _mm512_set1_epi32(w[r].pairs[pair]), x);
            }
        }
        // SAFETY: the tile's 16 scales.
        let dx = unsafe { _mm512_loadu_ps(xd.as_ptr()) };
        for r in 0..R {
            let d = _mm512_mul_ps(_mm512_set1_ps(w[r].d), dx);
            if KIND == Q6 {
                let i = _mm512_sub_epi32(ints[r], _mm512_slli_epi32::<5>(sums[r]));
                acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i), d, acc[r]);
            } else {
                acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ints[r]), d, acc[r]);
                let dmin = _mm512_mul_ps(_mm512_set1_ps(w[r].dmin), dx);
                acc[r] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(sums[r]), dmin, acc[r]);
            }
        }
    }
    let c0 = g * TILE_COLUMNS;
    let cols = (out.len() - c0.min(out.len())).min(TILE_COLUMNS);
    for (r, a) in acc.iter().enumerate() {
        let mut lanes = [0f32; TILE_COLUMNS];
        // SAFETY: 16 lanes into a 16-value array.
        unsafe { _mm512_storeu_ps(lanes.as_mut_ptr(), *a) };
        for c in 0..cols {
            out[c0 + c][r0 + r] = lanes[c];
        }
    }
}
