//! The per-token walk with AVX2: 8-lane dot products over the head
//! dimension, one chunk's 16 scores in two vectors.

use std::arch::x86_64::*;

use super::{AttentionInputs, RowItem, RowScratch, CHUNK};

pub(super) fn detected() -> bool {
    is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("f16c")
        && is_x86_feature_detected!("fma")
}

/// `e^x` for `x <= 0` to about one ulp; `-inf`, NaN and anything below -87
/// (where F32 results turn subnormal) give 0.
#[inline]
#[target_feature(enable = "avx2,f16c,fma")]
fn exp(x: __m256) -> __m256 {
    let finite = _mm256_cmp_ps::<_CMP_GE_OQ>(x, _mm256_set1_ps(-87.0));
    let x = _mm256_max_ps(x, _mm256_set1_ps(-87.0));
    let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_mul_ps(
        x,
        _mm256_set1_ps(std::f32::consts::LOG2_E),
    ));
    // Cody-Waite: ln 2 split so that n · LN2_HI is exact.
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693_145_75), x);
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.428_606_8e-6), r);
    // Taylor to degree 7: |r| <= ln2/2 leaves an error below 1e-8.
    let mut p = _mm256_set1_ps(1.0 / 5040.0);
    for c in [
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
        1.0,
        1.0,
    ] {
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
    }
    // 2^n from the exponent bits: n is in -126..=0 here.
    let bits = _mm256_slli_epi32::<23>(_mm256_add_epi32(
        _mm256_cvtps_epi32(n),
        _mm256_set1_epi32(127),
    ));
    _mm256_and_ps(_mm256_mul_ps(p, _mm256_castsi256_ps(bits)), finite)
}

/// The sum of 8 lanes in one fixed order.
#[inline]
#[target_feature(enable = "avx2,f16c,fma")]
fn sum_lanes(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
}

/// The largest of 8 lanes.
#[inline]
#[target_feature(enable = "avx2,f16c,fma")]
fn max_lanes(v: __m256) -> f32 {
    let s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_max_ss(s, _mm_movehdup_ps(s)))
}

/// 8 F16 values widened.
///
/// # Safety
/// `p` must point at 8 readable `u16`.
#[inline]
#[target_feature(enable = "avx2,f16c,fma")]
unsafe fn load_f16(p: *const u16) -> __m256 {
    // SAFETY: 16 bytes at `p` are readable (caller); unaligned is fine.
    unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p.cast())) }
}

/// Scores of one cell for `NH` heads from `h0`: `q_h · k` (8 lane partial
/// sums, then one fixed reduction) times `scale` plus `bias`, stored at
/// `p[h][j]`. Head `h`'s query is at `q + h · q_stride`.
///
/// # Safety
/// The queries of heads `h0..h0 + NH` and `k` point at `d_k` readable
/// values; `p` holds `(h0 + NH) · CHUNK` floats; `j < CHUNK`.
#[inline]
#[target_feature(enable = "avx2,f16c,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn cell_scores<const NH: usize>(
    (q, q_stride): (*const f32, usize),
    h0: usize,
    k: *const u16,
    d_k: usize,
    scale: f32,
    bias: f32,
    p: *mut f32,
    j: usize,
) {
    let mut acc = [_mm256_setzero_ps(); NH];
    // SAFETY: every read is within the `d_k` values of k and q (caller).
    unsafe {
        for d in (0..d_k).step_by(8) {
            let kv = load_f16(k.add(d));
            for (h, acc) in acc.iter_mut().enumerate() {
                let q_h = q.add((h0 + h) * q_stride + d);
                *acc = _mm256_fmadd_ps(kv, _mm256_loadu_ps(q_h), *acc);
            }
        }
        for (h, acc) in acc.iter().enumerate() {
            *p.add((h0 + h) * CHUNK + j) = sum_lanes(*acc) * scale + bias;
        }
    }
}

/// `acc[h][d0..d0 + 8] = acc · rescale[h] + Σ_j p[h][j] · v_j` for `NH`
/// heads from `h0`, over the chunk's cells.
///
/// # Safety
/// `v[j]` points at a readable V row for every cell of the chunk with
/// `d0 + 8 <= d_v`; `acc` holds `(h0 + NH) · d_v` floats, `p` `(h0 + NH) ·
/// CHUNK`.
#[inline]
#[target_feature(enable = "avx2,f16c,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn weighted_values<const NH: usize>(
    v: &[*const u16],
    d0: usize,
    d_v: usize,
    h0: usize,
    rescale: &[f32],
    p: *const f32,
    acc: *mut f32,
) {
    // SAFETY: offsets stay within the buffers (caller).
    unsafe {
        let at = |h: usize| acc.add((h0 + h) * d_v + d0);
        let mut a: [__m256; NH] = std::array::from_fn(|h| {
            _mm256_mul_ps(_mm256_loadu_ps(at(h)), _mm256_set1_ps(rescale[h0 + h]))
        });
        for (j, &row) in v.iter().enumerate() {
            let x = load_f16(row.add(d0));
            for (h, a) in a.iter_mut().enumerate() {
                *a = _mm256_fmadd_ps(_mm256_set1_ps(*p.add((h0 + h) * CHUNK + j)), x, *a);
            }
        }
        for (h, a) in a.iter().enumerate() {
            _mm256_storeu_ps(at(h), *a);
        }
    }
}

/// # Safety
/// The CPU has the features of [`detected`]; `inputs` were validated,
/// `item` fits the shape, `out` has `heads · d_v` floats, the scratch
/// lists the token's visible cells and fits the item.
#[target_feature(enable = "avx2,f16c,fma")]
pub(super) unsafe fn attend_row(
    inputs: &AttentionInputs<'_>,
    item: &RowItem,
    out: &mut [f32],
    sc: &mut RowScratch,
) {
    let s = inputs.shape;
    let (d_k, d_v) = (s.d_k, s.d_v);
    let g = item.heads.start / s.group();
    let nh = item.heads.len();
    let q = (
        inputs.q_at(item.token, item.heads.start).as_ptr(),
        inputs.q_head_stride,
    );
    let (max, sum, rescale) = (&mut sc.max, &mut sc.sum, &mut sc.rescale);
    let mut v_rows = [std::ptr::null::<u16>(); CHUNK];
    for (chunk_cells, chunk_bias) in sc.cells.chunks(CHUNK).zip(sc.bias.chunks(CHUNK)) {
        sc.p.fill(f32::NEG_INFINITY);
        let p = sc.p.as_mut_ptr();
        for (j, (&c, &bias)) in chunk_cells.iter().zip(chunk_bias).enumerate() {
            let k = inputs.k_at(c as usize, g).as_ptr();
            // SAFETY: validated inputs: the queries of the item's heads
            // (all of one token, `q_head_stride` apart) and the K row
            // hold d_k values; p holds nh · CHUNK floats and j < CHUNK.
            unsafe {
                by_heads!(nh, |h0| cell_scores(
                    q,
                    h0,
                    k,
                    d_k,
                    inputs.scale,
                    bias,
                    p,
                    j
                ))
            };
        }
        for hi in 0..nh {
            // SAFETY: p holds nh rows of CHUNK (= 16) floats.
            unsafe {
                let row = p.add(hi * CHUNK);
                let (x0, x1) = (_mm256_loadu_ps(row), _mm256_loadu_ps(row.add(8)));
                let new_max = max[hi].max(max_lanes(_mm256_max_ps(x0, x1)));
                if new_max == f32::NEG_INFINITY {
                    rescale[hi] = 1.0;
                    continue;
                }
                let m = _mm256_set1_ps(new_max);
                let (e0, e1) = (exp(_mm256_sub_ps(x0, m)), exp(_mm256_sub_ps(x1, m)));
                _mm256_storeu_ps(row, e0);
                _mm256_storeu_ps(row.add(8), e1);
                rescale[hi] = if max[hi] == f32::NEG_INFINITY {
                    0.0
                } else {
                    _mm256_cvtss_f32(exp(_mm256_set1_ps(max[hi] - new_max)))
                };
                sum[hi] = sum[hi] * rescale[hi] + sum_lanes(_mm256_add_ps(e0, e1));
                max[hi] = new_max;
            }
        }
        for (row, &c) in v_rows.iter_mut().zip(chunk_cells) {
            *row = inputs.v_at(c as usize, g).as_ptr();
        }
        let v_rows = &v_rows[..chunk_cells.len()];
        let acc = sc.acc.as_mut_ptr();
        for d0 in (0..d_v).step_by(8) {
            // SAFETY: d_v is a multiple of 16 (validated); the V rows hold
            // d_v values; acc holds nh · d_v floats.
            unsafe {
                by_heads!(nh, |h0| weighted_values(
                    v_rows, d0, d_v, h0, rescale, p, acc
                ))
            };
        }
    }
    sc.normalize_into(out, d_v);
}
