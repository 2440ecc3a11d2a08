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

/// The forms of the walk. Each is batch-invariant on its own; they round
/// differently from each other, so one process uses one: [`RowKernel::best`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RowKernel {
    /// Plain Rust, the reference.
    Portable,
    /// 8-lane AVX2 + F16C + FMA.
    Avx2,
    /// 16-lane AVX-512F.
    Avx512,
}

impl RowKernel {
    /// The fastest form this CPU runs.
    pub fn best() -> RowKernel {
        static BEST: std::sync::OnceLock<RowKernel> = std::sync::OnceLock::new();
        *BEST.get_or_init(|| {
            [RowKernel::Avx512, RowKernel::Avx2]
                .into_iter()
                .find(|k| k.runs())
                .unwrap_or(RowKernel::Portable)
        })
    }

    /// Whether this CPU runs this form.
    pub fn runs(self) -> bool {
        match self {
            RowKernel::Portable => true,
            #[cfg(target_arch = "x86_64")]
            RowKernel::Avx2 => avx2::detected(),
            #[cfg(target_arch = "x86_64")]
            RowKernel::Avx512 => avx512::detected(),
            #[cfg(not(target_arch = "x86_64"))]
            RowKernel::Avx2 | RowKernel::Avx512 => false,
        }
    }
}

/// Whether a vectorized form runs on this CPU. Elsewhere the portable walk
/// computes the same thing, slowly: the graph builder then keeps ggml's
/// row-by-row attention instead.
pub fn fast() -> bool {
    RowKernel::best() != RowKernel::Portable
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

    /// `out[h] = acc[h] / sum[h]` for the item's heads (0 where a head saw
    /// nothing).
    fn normalize_into(&self, out: &mut [f32], d_v: usize) {
        for ((o, a), &sum) in out
            .chunks_exact_mut(d_v)
            .zip(self.acc.chunks_exact(d_v))
            .zip(&self.sum)
        {
            let inv = if sum > 0.0 { 1.0 / sum } else { 0.0 };
            for (o, &a) in o.iter_mut().zip(a) {
                *o = a * inv;
            }
        }
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
    attend_row_with(RowKernel::best(), inputs, item, out, scratch)
}

/// [`attend_row`] by a chosen form; an error if this CPU does not run it.
pub fn attend_row_with(
    kernel: RowKernel,
    inputs: &AttentionInputs<'_>,
    item: &RowItem,
    out: &mut [f32],
    scratch: &mut RowScratch,
) -> Result<(), KernelError> {
    if !kernel.runs() {
        return Err(KernelError::Attention(format!(
            "{kernel:?} does not run on this CPU"
        )));
    }
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
    match kernel {
        RowKernel::Portable => attend_row_portable(inputs, item, out, scratch),
        #[cfg(target_arch = "x86_64")]
        RowKernel::Avx2 => {
            // SAFETY: the CPU has the form's features (checked above); the
            // inputs were validated (every strided read of a listed cell is
            // inside its slice, head sizes are multiples of 16); the item
            // fits the shape and `out` and the scratch have its sizes.
            unsafe { avx2::attend_row(inputs, item, out, scratch) }
        }
        #[cfg(target_arch = "x86_64")]
        RowKernel::Avx512 => {
            // SAFETY: as for AVX2 just above.
            unsafe { avx512::attend_row(inputs, item, out, scratch) }
        }
        #[cfg(not(target_arch = "x86_64"))]
        RowKernel::Avx2 | RowKernel::Avx512 => unreachable!("not detected off x86-64"),
    }
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
    sc.normalize_into(out, s.d_v);
}

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;

#[cfg(test)]
mod tests;
