//! The per-token walk with AVX-512: 16-lane dot products over the head
//! dimension, one chunk's 16 scores in one vector.

use std::arch::x86_64::*;

use super::{AttentionInputs, RowItem, RowScratch, CHUNK};
use crate::kernels::attention::{simd_exp as exp, simd_load_f16 as load_f16};

pub(super) fn detected() -> bool {
    crate::kernels::attention::available()
}

/// Scores of one cell for `NH` heads from `h0`: `q_h · k` (16 lane
/// partial sums, then one fixed reduction) times `scale` plus `bias`,
/// stored at `p[h][j]`. Head `h`'s query is at `q + h · q_stride`.
///
/// # Safety
/// The queries of heads `h0..h0 + NH` and `k` point at `d_k` readable
/// values; `p` holds `(h0 + NH) · CHUNK` floats; `j < CHUNK`.
#[inline]
#[target_feature(enable = "avx512f,f16c,fma")]
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
    let mut acc = [_mm512_setzero_ps(); NH];
    // SAFETY: every read is within the `d_k` values of k and q (caller).
    unsafe {
        for d in (0..d_k).step_by(16) {
            let kv = load_f16(k.add(d));
            for (h, acc) in acc.iter_mut().enumerate() {
                let q_h = q.add((h0 + h) * q_stride + d);
                *acc = _mm512_fmadd_ps(kv, _mm512_loadu_ps(q_h), *acc);
            }
        }
        for (h, acc) in acc.iter().enumerate() {
            *p.add((h0 + h) * CHUNK + j) = _mm512_reduce_add_ps(*acc) * scale + bias;
        }
    }
}

/// `acc[h][d0..d0 + 16] = acc · rescale[h] + Σ_j p[h][j] · v_j` for
/// `NH` heads from `h0`, over the chunk's `cells`.
///
/// # Safety
/// `v[j]` points at a readable V row for every cell of the chunk with
/// `d0 + 16 <= d_v`; `acc` holds `(h0 + NH) · d_v` floats, `p` `(h0 +
/// NH) · CHUNK`.
#[inline]
#[target_feature(enable = "avx512f,f16c,fma")]
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
        let mut a: [__m512; NH] = std::array::from_fn(|h| {
            _mm512_mul_ps(_mm512_loadu_ps(at(h)), _mm512_set1_ps(rescale[h0 + h]))
        });
        for (j, &row) in v.iter().enumerate() {
            let x = load_f16(row.add(d0));
            for (h, a) in a.iter_mut().enumerate() {
                *a = _mm512_fmadd_ps(_mm512_set1_ps(*p.add((h0 + h) * CHUNK + j)), x, *a);
            }
        }
        for (h, a) in a.iter().enumerate() {
            _mm512_storeu_ps(at(h), *a);
        }
    }
}

/// # Safety
/// The CPU has the features of [`detected`]; `inputs` were validated,
/// `item` fits the shape, `out` has `heads · d_v` floats, the scratch
/// lists the token's visible cells and fits the item.
#[target_feature(enable = "avx512f,f16c,fma")]
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
            // SAFETY: p holds nh rows of CHUNK floats.
            unsafe {
                let row = p.add(hi * CHUNK);
                let x = _mm512_loadu_ps(row);
                let new_max = max[hi].max(_mm512_reduce_max_ps(x));
                if new_max == f32::NEG_INFINITY {
                    rescale[hi] = 1.0;
                    continue;
                }
                let e = exp(_mm512_sub_ps(x, _mm512_set1_ps(new_max)));
                _mm512_storeu_ps(row, e);
                rescale[hi] = if max[hi] == f32::NEG_INFINITY {
                    0.0
                } else {
                    _mm512_cvtss_f32(exp(_mm512_set1_ps(max[hi] - new_max)))
                };
                sum[hi] = sum[hi] * rescale[hi] + _mm512_reduce_add_ps(e);
                max[hi] = new_max;
            }
        }
        for (row, &c) in v_rows.iter_mut().zip(chunk_cells) {
            *row = inputs.v_at(c as usize, g).as_ptr();
        }
        let v_rows = &v_rows[..chunk_cells.len()];
        let acc = sc.acc.as_mut_ptr();
        for d0 in (0..d_v).step_by(16) {
            // SAFETY: d_v is a multiple of 16 (validated); the V rows
            // hold d_v values; acc holds nh · d_v floats.
            unsafe {
                by_heads!(nh, |h0| weighted_values(
                    v_rows, d0, d_v, h0, rescale, p, acc
                ))
            };
        }
    }
    sc.normalize_into(out, d_v);
}
