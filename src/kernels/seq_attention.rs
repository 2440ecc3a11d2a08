//! Batch-invariant attention: each query token attends over only the cells
//! its mask row lets it see, one token at a time.
//!
//! Why: with several sequences in one cache, attention over the leading
//! `n_kv` cells under a mask does work for every cell of every sequence,
//! so a step of B sequences costs B × (all cells) instead of Σ (own cells).
//! Here a token first lists the cells it sees (mask ≠ -inf, in cell order,
//! which the KV cache keeps equal to position order within a sequence),
//! then walks only those.
//!
//! Batch invariance by construction: a token's result is one fixed
//! sequence of float operations over the list of cells it sees — chunks of
//! [`CHUNK`] visible cells counted from its first one, an online softmax
//! updated once per chunk, dot products and weighted sums in fixed order —
//! so it does not depend on which cells the sequence occupies, what else
//! the batch holds, how many tokens share the call or which thread runs
//! it. Heads are independent computations; a work item takes some heads of
//! one KV group only so that few tokens still spread over every thread.

#![cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]

use std::cell::RefCell;

use super::attention::AttentionInputs;
use super::KernelError;

/// Visible cells per online-softmax update (one 16-lane vector of scores).
pub const CHUNK: usize = 16;

/// F16 bit pattern of `-inf`, the mask value of a cell a token cannot see.
const F16_NEG_INF: u16 = 0xFC00;

/// Whether the vectorized kernel runs on this CPU (AVX-512). Elsewhere the
/// portable walk computes the same thing, slowly: the graph builder then
/// keeps ggml's row-by-row attention instead.
pub fn fast() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        simd::detected()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// One work item: token `token`, query heads `heads` (all of one KV group).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowItem {
    pub token: usize,
    pub heads: std::ops::Range<usize>,
}

/// The work items of a call, split so that there are at least `2 · nth` of
/// them when the shape allows (a decode step of one or two tokens over a
/// model with one KV head would otherwise leave threads idle). Items are
/// numbered token by token, so dealing them round-robin to threads shares
/// a causal prompt's growing rows evenly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RowItems {
    n_tokens: usize,
    n_head_kv: usize,
    group: usize,
    /// Items per KV group and the heads each takes.
    parts: usize,
    per_part: usize,
}

impl RowItems {
    pub fn new(inputs: &AttentionInputs<'_>, nth: usize) -> RowItems {
        let s = inputs.shape;
        let group = s.group().max(1);
        let per_group_items = (s.n_tokens * s.n_head_kv).max(1);
        let parts = (2 * nth.max(1)).div_ceil(per_group_items).clamp(1, group);
        let per_part = group.div_ceil(parts);
        RowItems {
            n_tokens: s.n_tokens,
            n_head_kv: s.n_head_kv,
            group,
            parts: group.div_ceil(per_part),
            per_part,
        }
    }

    pub fn len(&self) -> usize {
        self.n_tokens * self.n_head_kv * self.parts
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Item `i` (< `len()`).
    pub fn get(&self, i: usize) -> RowItem {
        let part = i % self.parts;
        let g = (i / self.parts) % self.n_head_kv;
        let token = i / (self.parts * self.n_head_kv);
        let h0 = g * self.group + part * self.per_part;
        RowItem {
            token,
            heads: h0..(h0 + self.per_part).min((g + 1) * self.group),
        }
    }

    /// Every item in order.
    pub fn iter(&self) -> impl Iterator<Item = RowItem> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }
}

/// Work buffers of one thread, reused across calls.
#[derive(Default)]
pub struct RowScratch {
    /// Cells the token sees, in cell order.
    cells: Vec<u32>,
    /// Their mask values (0, or a finite bias).
    bias: Vec<f32>,
    /// Output accumulators, `[heads][d_v]`.
    acc: Vec<f32>,
    /// Scores, then probabilities, of one chunk: `[heads][CHUNK]`.
    p: Vec<f32>,
    /// Running max, sum and this chunk's rescale factor per head.
    max: Vec<f32>,
    sum: Vec<f32>,
    rescale: Vec<f32>,
}

impl RowScratch {
    fn fit(&mut self, heads: usize, d_v: usize) {
        let reset = |v: &mut Vec<f32>, n: usize, x: f32| {
            v.clear();
            v.resize(n, x);
        };
        reset(&mut self.acc, heads * d_v, 0.0);
        reset(&mut self.p, heads * CHUNK, 0.0);
        reset(&mut self.max, heads, f32::NEG_INFINITY);
        reset(&mut self.sum, heads, 0.0);
        reset(&mut self.rescale, heads, 1.0);
    }

    fn list_visible(&mut self, mask: &[u16]) {
        self.cells.clear();
        self.bias.clear();
        for (c, &m) in mask.iter().enumerate() {
            if m != F16_NEG_INF {
                self.cells.push(c as u32);
                self.bias.push(half::f16::from_bits(m).to_f32());
            }
        }
    }
}

thread_local! {
    static SCRATCH: RefCell<RowScratch> = RefCell::new(RowScratch::default());
}

/// Runs `f` with this thread's scratch (a fresh one if re-entered).
pub fn with_thread_scratch<T>(f: impl FnOnce(&mut RowScratch) -> T) -> T {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut scratch) => f(&mut scratch),
        Err(_) => f(&mut RowScratch::default()),
    })
}

/// Attention output of `item` into `out`, `[d_v]` per head of the item in
/// order. A token that sees no cell gets zeros.
pub fn attend_row(
    inputs: &AttentionInputs<'_>,
    item: &RowItem,
    out: &mut [f32],
    scratch: &mut RowScratch,
) -> Result<(), KernelError> {
    inputs.validate()?;
    let s = inputs.shape;
    let group = s.group();
    let fits = item.token < s.n_tokens
        && !item.heads.is_empty()
        && item.heads.end <= s.n_head
        && item.heads.start / group == (item.heads.end - 1) / group;
    if !fits {
        return Err(KernelError::Attention(format!(
            "work item {item:?} does not fit {s:?}"
        )));
    }
    let expected = item.heads.len() * s.d_v;
    if out.len() != expected {
        return Err(KernelError::Length {
            what: "attention output",
            expected,
            actual: out.len(),
        });
    }
    scratch.list_visible(inputs.mask_row(item.token));
    scratch.fit(item.heads.len(), s.d_v);
    #[cfg(target_arch = "x86_64")]
    if simd::detected() {
        // SAFETY: the CPU has the kernel's features; the inputs were
        // validated (every strided read of a listed cell is inside its
        // slice, head sizes are multiples of 16); the item fits the shape
        // and `out` and the scratch have its sizes.
        unsafe { simd::attend_row(inputs, item, out, scratch) };
        return Ok(());
    }
    attend_row_portable(inputs, item, out, scratch);
    Ok(())
}

/// `e^x` of a score against the running max, as the portable kernel
/// computes it.
fn exp_portable(x: f32) -> f32 {
    if x == f32::NEG_INFINITY {
        0.0
    } else {
        x.exp()
    }
}

/// The same walk in plain Rust for CPUs without the AVX-512 kernel: 16
/// partial sums per dot product, the same chunks and update order.
fn attend_row_portable(
    inputs: &AttentionInputs<'_>,
    item: &RowItem,
    out: &mut [f32],
    sc: &mut RowScratch,
) {
    let s = inputs.shape;
    let g = item.heads.start / s.group();
    let nh = item.heads.len();
    let (max, sum) = (&mut sc.max, &mut sc.sum);
    let mut k_row = vec![0f32; s.d_k];
    for (chunk_cells, chunk_bias) in sc.cells.chunks(CHUNK).zip(sc.bias.chunks(CHUNK)) {
        sc.p.fill(f32::NEG_INFINITY);
        for (j, (&c, &bias)) in chunk_cells.iter().zip(chunk_bias).enumerate() {
            for (x, &bits) in k_row.iter_mut().zip(inputs.k_at(c as usize, g)) {
                *x = half::f16::from_bits(bits).to_f32();
            }
            for (hi, h) in item.heads.clone().enumerate() {
                let q = inputs.q_at(item.token, h);
                let mut lanes = [0f32; 16];
                for (qs, ks) in q.chunks_exact(16).zip(k_row.chunks_exact(16)) {
                    for l in 0..16 {
                        lanes[l] += qs[l] * ks[l];
                    }
                }
                let dot = lanes.iter().fold(0f32, |a, &x| a + x);
                sc.p[hi * CHUNK + j] = dot * inputs.scale + bias;
            }
        }
        for hi in 0..nh {
            let p = &mut sc.p[hi * CHUNK..(hi + 1) * CHUNK];
            let chunk_max = p.iter().fold(f32::NEG_INFINITY, |a, &x| a.max(x));
            let new_max = max[hi].max(chunk_max);
            if new_max == f32::NEG_INFINITY {
                continue;
            }
            let rescale = exp_portable(max[hi] - new_max);
            let mut chunk_sum = 0f32;
            for x in p.iter_mut() {
                *x = exp_portable(*x - new_max);
                chunk_sum += *x;
            }
            sum[hi] = sum[hi] * rescale + chunk_sum;
            max[hi] = new_max;
            for a in &mut sc.acc[hi * s.d_v..(hi + 1) * s.d_v] {
                *a *= rescale;
            }
        }
        for (j, &c) in chunk_cells.iter().enumerate() {
            let v = inputs.v_at(c as usize, g);
            for hi in 0..nh {
                let p = sc.p[hi * CHUNK + j];
                for (a, &bits) in sc.acc[hi * s.d_v..(hi + 1) * s.d_v].iter_mut().zip(v) {
                    *a += p * half::f16::from_bits(bits).to_f32();
                }
            }
        }
    }
    for hi in 0..nh {
        let inv = if sum[hi] > 0.0 { 1.0 / sum[hi] } else { 0.0 };
        for (o, &a) in out[hi * s.d_v..(hi + 1) * s.d_v]
            .iter_mut()
            .zip(&sc.acc[hi * s.d_v..(hi + 1) * s.d_v])
        {
            *o = a * inv;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod simd {
    use std::arch::x86_64::*;

    use super::{AttentionInputs, RowItem, RowScratch, CHUNK};
    use crate::kernels::attention::simd_exp as exp;

    pub(super) fn detected() -> bool {
        crate::kernels::attention::available()
    }

    /// 16 F16 values widened.
    ///
    /// # Safety
    /// `p` must point at 16 readable `u16`.
    #[inline]
    #[target_feature(enable = "avx512f,f16c,fma")]
    unsafe fn load_f16(p: *const u16) -> __m512 {
        // SAFETY: 32 bytes at `p` are readable (caller); unaligned is fine.
        unsafe { _mm512_cvtph_ps(_mm256_loadu_si256(p.cast())) }
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

    /// Runs `$f::<NH>` for heads `h0..h0 + NH`, NH = min(4, what is left).
    macro_rules! by_heads {
        ($n:expr, |$h0:ident| $f:ident($($arg:expr),*)) => {{
            let mut $h0 = 0;
            while $h0 < $n {
                match $n - $h0 {
                    1 => { $f::<1>($($arg),*); $h0 += 1; }
                    2 => { $f::<2>($($arg),*); $h0 += 2; }
                    3 => { $f::<3>($($arg),*); $h0 += 3; }
                    _ => { $f::<4>($($arg),*); $h0 += 4; }
                }
            }
        }};
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
        for hi in 0..nh {
            let inv = if sum[hi] > 0.0 { 1.0 / sum[hi] } else { 0.0 };
            for (o, &a) in out[hi * d_v..(hi + 1) * d_v]
                .iter_mut()
                .zip(&sc.acc[hi * d_v..(hi + 1) * d_v])
            {
                *o = a * inv;
            }
        }
    }
}

#[cfg(test)]
mod tests;
