//! The canonical sums of [`super`] with AVX2 (x86-64 CPUs without AVX-512
//! VNNI).
//!
//! The 16 canonical lanes are two 8-lane registers: lanes 0-7 of quarter
//! `g` are the values of eighth `2g` (values `32·2g ..`), lanes 8-15 those
//! of eighth `2g + 1`. Per eighth, `vpmaddubsw` multiplies unsigned weights
//! by signed activations into 16-bit pair sums (at most 2·63·127, so never
//! saturating) and `vpmaddwd` with the run scale in both words of a lane
//! gives `scale·D(g, l)` exactly. Per block and column the lanes are then
//! summed into [`super`]'s exact integers (eight vectors at once), and the
//! float chain runs on them.

use std::arch::x86_64::*;

use super::{chain_step, SuperActs, Q4K_BYTES, Q5K_BYTES, Q6K_BYTES, QK_K};
use crate::kernels::avx2::Avx2Kernel;
use crate::quant::GgmlType;

/// Columns per pass over the weights (accumulators in registers).
const GROUP: usize = 4;

/// How far ahead of the block being read the weights are prefetched (as
/// in the AVX-512 kernel).
const PREFETCH_BYTES: usize = 2048;

const Q4: usize = 0;
const Q5: usize = 1;
const Q6: usize = 2;

/// One weight block in registers, as eighths of 32 values.
#[derive(Clone, Copy)]
struct Block {
    u: [__m256i; 8],
    /// Eighth `e`: each 16-bit word holds its lane's run scale.
    s: [__m256i; 8],
    /// Factors of `bsum_l` for lanes 0-7 and 8-15 (low 16 bits of each
    /// 32-bit lane, zero above): `Q4_K` / `Q5_K` `m[l/2]`, `Q6_K` `sc[l]`.
    m: [__m256i; 2],
    d: f32,
    dmin: f32,
}

/// A byte-shuffle index repeating `pattern` in every 32-bit lane, with
/// `lane_add(i)` added to lane `i`'s bytes below 0x80 (0x80 gives zero).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn dword_index(pattern: [u8; 4], lane_add: impl Fn(usize) -> u8) -> __m256i {
    let mut bytes = [0i8; 32];
    for (i, b) in bytes.iter_mut().enumerate() {
        let p = pattern[i % 4];
        *b = if p & 0x80 != 0 {
            -128
        } else {
            (p + lane_add(i / 4)) as i8
        };
    }
    // SAFETY: 32 bytes read from a 32-byte array.
    unsafe { _mm256_loadu_si256(bytes.as_ptr().cast()) }
}

/// Scale words from `b` (the 16 scale bytes in both 128-bit halves):
/// `byte_lo` in every word of the low half, `byte_hi` of the high half,
/// sign-extended (`signed`) or not.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn scale_words(b: __m256i, byte_lo: i8, byte_hi: i8, signed: bool) -> __m256i {
    let idx = _mm256_setr_m128i(_mm_set1_epi8(byte_lo), _mm_set1_epi8(byte_hi));
    // Both bytes of a word are the scale byte: shifting by 8 extends it.
    let twice = _mm256_shuffle_epi8(b, idx);
    if signed {
        _mm256_srai_epi16::<8>(twice)
    } else {
        _mm256_srli_epi16::<8>(twice)
    }
}

/// # Safety
/// 4 bytes must be readable at `p`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn f16_pair(p: *const u8) -> (f32, f32) {
    // SAFETY: the caller guarantees 4 readable bytes.
    let bits = unsafe { p.cast::<u32>().read_unaligned() };
    let v = _mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32));
    (_mm_cvtss_f32(v), _mm_cvtss_f32(_mm_movehdup_ps(v)))
}

/// The `Q4_K` / `Q5_K` header at `p`: scale words per eighth, min factors,
/// d and dmin (scales unpacked as `k4_scales_mins` does).
///
/// # Safety
/// 16 bytes must be readable at `p`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn k4_header(p: *const u8) -> ([__m256i; 8], [__m256i; 2], f32, f32) {
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
    // Bytes 0-7: scales, 8-15: mins, in both halves.
    let b = _mm256_broadcastsi128_si256(_mm_set_epi32(
        m_hi as i32,
        m_lo as i32,
        sc_hi as i32,
        sc_lo as i32,
    ));
    let s = std::array::from_fn(|e| scale_words(b, e as i8, e as i8, false));
    // Lane l' of half h: m[4h + l'/2] as a 32-bit value.
    let m = std::array::from_fn(|h| {
        _mm256_shuffle_epi8(
            b,
            dword_index([8, 0x80, 0x80, 0x80], |lane| (4 * h + lane / 2) as u8),
        )
    });
    (s, m, d, dmin)
}

/// # Safety
/// A whole `Q4_K` block (144 bytes) must be readable at `p`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn decode_q4_k(p: *const u8) -> Block {
    // SAFETY: the header is the block's first 16 bytes.
    let (s, m, d, dmin) = unsafe { k4_header(p) };
    let nibble = _mm256_set1_epi8(0x0F);
    let mut u = [_mm256_setzero_si256(); 8];
    for g in 0..4 {
        // SAFETY: bytes 16 + 32g .. 48 + 32g of the 144-byte block.
        let q = unsafe { _mm256_loadu_si256(p.add(16 + 32 * g).cast()) };
        u[2 * g] = _mm256_and_si256(q, nibble);
        u[2 * g + 1] = _mm256_and_si256(_mm256_srli_epi16::<4>(q), nibble);
    }
    Block { u, s, m, d, dmin }
}

/// # Safety
/// A whole `Q5_K` block (176 bytes) must be readable at `p`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn decode_q5_k(p: *const u8) -> Block {
    // SAFETY: the header is the first 16 bytes, the high bits the next 32.
    let ((s, m, d, dmin), qh) = unsafe { (k4_header(p), _mm256_loadu_si256(p.add(16).cast())) };
    let (nibble, one) = (_mm256_set1_epi8(0x0F), _mm256_set1_epi8(1));
    let mut u = [_mm256_setzero_si256(); 8];
    for g in 0..4 {
        // SAFETY: bytes 48 + 32g .. 80 + 32g of the 176-byte block.
        let q = unsafe { _mm256_loadu_si256(p.add(48 + 32 * g).cast()) };
        // Eighth 2g takes bit 2g of each qh byte, eighth 2g + 1 bit 2g + 1.
        let bit = |b: i32| {
            let shifted = _mm256_srl_epi16(qh, _mm_cvtsi32_si128(b));
            _mm256_slli_epi16::<4>(_mm256_and_si256(shifted, one))
        };
        u[2 * g] = _mm256_or_si256(_mm256_and_si256(q, nibble), bit(2 * g as i32));
        u[2 * g + 1] = _mm256_or_si256(
            _mm256_and_si256(_mm256_srli_epi16::<4>(q), nibble),
            bit(2 * g as i32 + 1),
        );
    }
    Block { u, s, m, d, dmin }
}

/// # Safety
/// A whole `Q6_K` block (210 bytes) must be readable at `p`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn decode_q6_k(p: *const u8) -> Block {
    let (nibble, two_bits) = (_mm256_set1_epi8(0x0F), _mm256_set1_epi8(3));
    let mut u = [_mm256_setzero_si256(); 8];
    for half in 0..2 {
        // SAFETY: `ql` bytes 64·half .. +64 and `qh` bytes 128 + 32·half ..
        // +32 of the 210-byte block.
        let (ql0, ql1, qh) = unsafe {
            (
                _mm256_loadu_si256(p.add(64 * half).cast()),
                _mm256_loadu_si256(p.add(64 * half + 32).cast()),
                _mm256_loadu_si256(p.add(128 + 32 * half).cast()),
            )
        };
        let high = |shift: i32| {
            let bits = _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(shift)), two_bits);
            _mm256_slli_epi16::<4>(bits)
        };
        let e = 4 * half;
        u[e] = _mm256_or_si256(_mm256_and_si256(ql0, nibble), high(0));
        u[e + 1] = _mm256_or_si256(_mm256_and_si256(ql1, nibble), high(2));
        u[e + 2] = _mm256_or_si256(
            _mm256_and_si256(_mm256_srli_epi16::<4>(ql0), nibble),
            high(4),
        );
        u[e + 3] = _mm256_or_si256(
            _mm256_and_si256(_mm256_srli_epi16::<4>(ql1), nibble),
            high(6),
        );
    }
    // SAFETY: the 16 scale bytes at 192 and the f16 d at 208 (the second
    // of the pair at 206) of the 210-byte block.
    let (scales, d) = unsafe {
        (
            _mm256_broadcastsi128_si256(_mm_loadu_si128(p.add(192).cast())),
            f16_pair(p.add(206)).1,
        )
    };
    // Eighth e: lanes 0-3 (low half) run 2e, lanes 4-7 run 2e + 1.
    let s = std::array::from_fn(|e| scale_words(scales, 2 * e as i8, 2 * e as i8 + 1, true));
    // Lane l of half h: sc[8h + l], sign-extended into the low 16 bits.
    let m = std::array::from_fn(|h| {
        let twice = _mm256_shuffle_epi8(
            scales,
            dword_index([0, 0, 0x80, 0x80], |lane| (8 * h + lane) as u8),
        );
        _mm256_srai_epi16::<8>(twice)
    });
    Block {
        u,
        s,
        m,
        d,
        dmin: 0.0,
    }
}

/// One block of one column: the lane vectors whose sums are the block's
/// `I` and `M` ([`super`]'s docs; `Q6_K`'s `M` is zero).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn lane_integers<const KIND: usize>(
    w: &Block,
    x: &[__m256i; 8],
    bsums: [__m256i; 2],
) -> (__m256i, __m256i) {
    let scaled = |e: usize| _mm256_madd_epi16(_mm256_maddubs_epi16(w.u[e], x[e]), w.s[e]);
    let mut i = scaled(0);
    for e in 1..8 {
        i = _mm256_add_epi32(i, scaled(e));
    }
    let bsum_terms = _mm256_add_epi32(
        _mm256_madd_epi16(w.m[0], bsums[0]),
        _mm256_madd_epi16(w.m[1], bsums[1]),
    );
    if KIND == Q6 {
        (
            _mm256_sub_epi32(i, _mm256_slli_epi32::<5>(bsum_terms)),
            _mm256_setzero_si256(),
        )
    } else {
        (i, bsum_terms)
    }
}

/// Lane `j` of the result is the sum of the 8 lanes of `v[j]` (pairs
/// interleaved and added at three levels; integers: exact).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn sum_each(v: &[__m256i; 8]) -> __m256i {
    let l1: [__m256i; 4] = std::array::from_fn(|i| {
        let (a, b) = (v[2 * i], v[2 * i + 1]);
        _mm256_add_epi32(_mm256_unpacklo_epi32(a, b), _mm256_unpackhi_epi32(a, b))
    });
    let l2: [__m256i; 2] = std::array::from_fn(|i| {
        let (a, b) = (l1[2 * i], l1[2 * i + 1]);
        _mm256_add_epi32(_mm256_unpacklo_epi64(a, b), _mm256_unpackhi_epi64(a, b))
    });
    _mm256_add_epi32(
        _mm256_permute2x128_si256::<0x20>(l2[0], l2[1]),
        _mm256_permute2x128_si256::<0x31>(l2[0], l2[1]),
    )
}

/// `out[c][i] = dot(row i of weights, column c)`: `weights` holds exactly
/// the output rows, sizes checked by [`super::matmul_rows`].
pub(super) fn matmul(
    _cpu: Avx2Kernel,
    ty: GgmlType,
    weights: &[u8],
    acts: &SuperActs,
    out: &mut [&mut [f32]],
) {
    for c0 in (0..acts.n).step_by(GROUP) {
        let cols = (acts.n - c0).min(GROUP);
        let out = &mut out[c0..c0 + cols];
        macro_rules! by_count {
            ($kind:ident) => {
                match cols {
                    1 => columns::<$kind, 1>(weights, acts, c0, out),
                    2 => columns::<$kind, 2>(weights, acts, c0, out),
                    3 => columns::<$kind, 3>(weights, acts, c0, out),
                    _ => columns::<$kind, 4>(weights, acts, c0, out),
                }
            };
        }
        // SAFETY: `_cpu` proves the features `columns` is compiled for.
        unsafe {
            match ty {
                GgmlType::Q4_K => by_count!(Q4),
                GgmlType::Q5_K => by_count!(Q5),
                _ => by_count!(Q6),
            }
        }
    }
}

/// Columns `c0 .. c0 + C` against every row of `weights`.
#[target_feature(enable = "avx2,fma,f16c")]
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
    let ty = [GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K][KIND];
    let cols: [super::Column<'_>; C] = std::array::from_fn(|c| acts.column(c0 + c));
    for (i, row) in weights.chunks_exact(row_bytes).enumerate() {
        let mut acc = [0f32; C];
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
            // Column c's `I` lanes in v[c], its `M` lanes in v[4 + c].
            let mut v = [_mm256_setzero_si256(); 8];
            for (c, col) in cols.iter().enumerate() {
                let (qs, _, bsums) = col.block(b);
                // SAFETY: 256 values and 16 sums of block b of the column.
                let (x, bs) = unsafe {
                    (
                        std::array::from_fn(|e| _mm256_loadu_si256(qs.as_ptr().add(32 * e).cast())),
                        [
                            _mm256_loadu_si256(bsums.as_ptr().cast()),
                            _mm256_loadu_si256(bsums.as_ptr().add(8).cast()),
                        ],
                    )
                };
                (v[c], v[GROUP + c]) = lane_integers::<KIND>(&w, &x, bs);
            }
            let mut totals = [0i32; 2 * GROUP];
            // SAFETY: 8 lanes into an 8-value array.
            unsafe { _mm256_storeu_si256(totals.as_mut_ptr().cast(), sum_each(&v)) };
            for (c, (a, col)) in acc.iter_mut().zip(&cols).enumerate() {
                let dx = col.block(b).1;
                *a = chain_step(ty, (totals[c], totals[GROUP + c]), w.d, w.dmin, dx, *a);
            }
        }
        for (col, a) in out.iter_mut().zip(acc) {
            col[i] = a;
        }
    }
}
