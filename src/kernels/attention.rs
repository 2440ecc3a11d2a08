//! Attention for prompt ubatches: `softmax(scale · Q Kᵀ + mask) V` over an
//! F16 KV cache, computed in F32 like ggml's flash attention, for many
//! query tokens at once.
//!
//! Why rbench has its own: ggml's tiled flash attention (the pinned ggml
//! 0.26.0) converts and transposes each K tile once per head and query
//! tile, and its inner GEMM ran at about a third of this CPU's F32 peak; it
//! took 23% of prompt-processing time on the test model.
//!
//! The loop order: a work item is a block of [`BLOCK_TOKENS`] query tokens.
//! For each KV head, the queries of all the query heads that share it are
//! laid out transposed (`Qᵀ`: one 16-lane vector per head holds the block's
//! 16 tokens), so each K/V tile is converted from F16 once and used by every
//! head of the group, and softmax statistics (running max and sum per
//! token) are plain vector operations with no horizontal reductions. Tiles
//! whose mask is `-inf` for every token of the block (causal future,
//! outside a sliding window, another sequence) are skipped, and the cells
//! of a tile are trimmed to the span some token can see.
//!
//! [`attend_block`] runs the AVX-512 kernel where the CPU has it and a
//! portable one (two-pass softmax in F64, the tests' reference) elsewhere;
//! the graph builder only uses this op where [`available`] says the fast
//! kernel runs.

// Tile sizes and scratch buffers serve the x86-64 kernel only.
#![cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]

use std::cell::RefCell;

use super::KernelError;

/// Query tokens per work item (one 16-lane F32 vector).
pub const BLOCK_TOKENS: usize = 16;

/// Fewest query tokens the graph builder sends to this kernel: below it
/// there are too few blocks to share between threads, and ggml's
/// one-row kernels serve generation.
pub const MIN_TOKENS: usize = 32;

/// KV cells per tile.
const TILE_CELLS: usize = 64;

/// Cells per `Q Kᵀ` register block: tiles are padded to a multiple of it.
const QK_CELLS: usize = 6;

/// Tile rows in the K buffer, padding included.
const TILE_ROWS: usize = TILE_CELLS.div_ceil(QK_CELLS) * QK_CELLS;

/// Sizes of one attention call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttentionShape {
    /// Head size of queries and keys.
    pub d_k: usize,
    /// Head size of values (and of the output).
    pub d_v: usize,
    /// Query tokens.
    pub n_tokens: usize,
    /// KV cells attended over (the leading cells of the cache).
    pub n_kv: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
}

impl AttentionShape {
    /// Query heads per KV head.
    pub fn group(&self) -> usize {
        self.n_head / self.n_head_kv.max(1)
    }

    /// Work items ([`BLOCK_TOKENS`] tokens each).
    pub fn n_blocks(&self) -> usize {
        self.n_tokens.div_ceil(BLOCK_TOKENS)
    }

    /// Tokens of block `b`.
    pub fn block_tokens(&self, b: usize) -> std::ops::Range<usize> {
        let start = (b * BLOCK_TOKENS).min(self.n_tokens);
        start..(start + BLOCK_TOKENS).min(self.n_tokens)
    }

    /// Output floats of block `b`: `[d_v, n_head]` per token, tokens in order.
    pub fn block_out_len(&self, b: usize) -> usize {
        self.block_tokens(b).len() * self.n_head * self.d_v
    }

    /// Whether the kernels take this shape: nothing empty, whole groups of
    /// query heads per KV head, head sizes a multiple of 16.
    pub fn check(&self) -> Result<(), KernelError> {
        let bad = |detail: String| Err(KernelError::Attention(detail));
        if self.d_k == 0
            || self.d_v == 0
            || self.n_tokens == 0
            || self.n_kv == 0
            || self.n_head_kv == 0
        {
            return bad(format!("empty shape {self:?}"));
        }
        if !self.n_head.is_multiple_of(self.n_head_kv) {
            return bad(format!(
                "{} kv heads do not divide {} heads",
                self.n_head_kv, self.n_head
            ));
        }
        if !self.d_k.is_multiple_of(16) || !self.d_v.is_multiple_of(16) {
            return bad(format!(
                "head sizes {} / {} are not multiples of 16",
                self.d_k, self.d_v
            ));
        }
        Ok(())
    }
}

/// Inputs of one attention call. Strides count elements, not bytes.
/// K and V are F16 bit patterns; the mask holds one F16 row of `n_kv`
/// (or more) values per query token, `0` where the token may see a cell
/// and `-inf` where not (other finite values are added as biases).
#[derive(Clone, Copy, Debug)]
pub struct AttentionInputs<'a> {
    pub shape: AttentionShape,
    pub q: &'a [f32],
    pub q_head_stride: usize,
    pub q_token_stride: usize,
    pub k: &'a [u16],
    pub k_cell_stride: usize,
    pub k_head_stride: usize,
    pub v: &'a [u16],
    pub v_cell_stride: usize,
    pub v_head_stride: usize,
    pub mask: &'a [u16],
    pub mask_row_stride: usize,
    /// Multiplies `Q Kᵀ` before the mask is added.
    pub scale: f32,
}

/// Elements a strided tensor spans: the last element's index plus one.
fn span(counts_strides: &[(usize, usize)], row: usize) -> usize {
    counts_strides
        .iter()
        .map(|&(n, s)| n.saturating_sub(1) * s)
        .sum::<usize>()
        + row
}

impl AttentionInputs<'_> {
    /// Checks sizes and that every slice covers what its strides reach.
    pub fn validate(&self) -> Result<(), KernelError> {
        let s = self.shape;
        s.check()?;
        let bad = |detail: String| Err(KernelError::Attention(detail));
        if self.mask_row_stride < s.n_kv {
            return bad(format!(
                "mask rows of {} are shorter than {} cells",
                self.mask_row_stride, s.n_kv
            ));
        }
        let need = [
            (
                "q",
                self.q.len(),
                span(
                    &[
                        (s.n_tokens, self.q_token_stride),
                        (s.n_head, self.q_head_stride),
                    ],
                    s.d_k,
                ),
            ),
            (
                "k",
                self.k.len(),
                span(
                    &[
                        (s.n_kv, self.k_cell_stride),
                        (s.n_head_kv, self.k_head_stride),
                    ],
                    s.d_k,
                ),
            ),
            (
                "v",
                self.v.len(),
                span(
                    &[
                        (s.n_kv, self.v_cell_stride),
                        (s.n_head_kv, self.v_head_stride),
                    ],
                    s.d_v,
                ),
            ),
            (
                "mask",
                self.mask.len(),
                span(&[(s.n_tokens, self.mask_row_stride)], s.n_kv),
            ),
        ];
        for (what, actual, expected) in need {
            if actual < expected {
                return Err(KernelError::Length {
                    what,
                    expected,
                    actual,
                });
            }
        }
        Ok(())
    }

    pub(crate) fn q_at(&self, token: usize, head: usize) -> &[f32] {
        let at = token * self.q_token_stride + head * self.q_head_stride;
        &self.q[at..at + self.shape.d_k]
    }

    pub(crate) fn k_at(&self, cell: usize, head_kv: usize) -> &[u16] {
        let at = cell * self.k_cell_stride + head_kv * self.k_head_stride;
        &self.k[at..at + self.shape.d_k]
    }

    pub(crate) fn v_at(&self, cell: usize, head_kv: usize) -> &[u16] {
        let at = cell * self.v_cell_stride + head_kv * self.v_head_stride;
        &self.v[at..at + self.shape.d_v]
    }

    pub(crate) fn mask_row(&self, token: usize) -> &[u16] {
        let at = token * self.mask_row_stride;
        &self.mask[at..at + self.shape.n_kv]
    }
}

/// The AVX-512 `e^x` and F16 load of the attention kernels (also used by
/// [`super::seq_attention`]).
#[cfg(target_arch = "x86_64")]
pub(crate) use simd::{exp as simd_exp, load_f16 as simd_load_f16};

/// Whether the fast kernel runs on this CPU.
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        simd::detected()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Work buffers of one thread, reused across blocks.
#[derive(Default)]
pub struct Scratch {
    /// `Qᵀ`: `[d_k][group · 16]`.
    qt: Vec<f32>,
    /// Output accumulator `Oᵀ`: `[d_v][group · 16]`.
    ot: Vec<f32>,
    /// Scores, then probabilities, transposed: `[TILE_ROWS][group · 16]`.
    pt: Vec<f32>,
    /// K tile in F32: `[TILE_ROWS][d_k]`.
    kf: Vec<f32>,
    /// V tile in F32: `[TILE_CELLS][d_v]`.
    vf: Vec<f32>,
    /// Mask tile, transposed: `[TILE_CELLS + QK_CELLS][16]` (the scores
    /// read up to `QK_CELLS - 1` padding rows past the last cell).
    mask_t: Vec<f32>,
    /// Running max and sum per (head, token) lane.
    max: Vec<f32>,
    sum: Vec<f32>,
}

impl Scratch {
    fn fit(&mut self, s: &AttentionShape) {
        let lanes = s.group() * BLOCK_TOKENS;
        let fit = |v: &mut Vec<f32>, n: usize| {
            if v.len() != n {
                v.clear();
                v.resize(n, 0.0);
            }
        };
        fit(&mut self.qt, s.d_k * lanes);
        fit(&mut self.ot, s.d_v * lanes);
        fit(&mut self.pt, TILE_ROWS * lanes);
        fit(&mut self.kf, TILE_ROWS * s.d_k);
        fit(&mut self.vf, TILE_CELLS * s.d_v);
        fit(&mut self.mask_t, (TILE_CELLS + QK_CELLS) * BLOCK_TOKENS);
        fit(&mut self.max, lanes);
        fit(&mut self.sum, lanes);
    }
}

thread_local! {
    /// Work buffers kept between calls: ggml's compute threads run the
    /// attention of every layer and ubatch, so they are allocated once.
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Runs `f` with this thread's scratch (a fresh one if re-entered, which
/// rbench never does).
pub fn with_thread_scratch<T>(f: impl FnOnce(&mut Scratch) -> T) -> T {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut scratch) => f(&mut scratch),
        Err(_) => f(&mut Scratch::default()),
    })
}

/// Attention output of block `b` ([`AttentionShape::block_tokens`]) into
/// `out`, laid out `[d_v, n_head]` per token. A token that sees no cell
/// gets zeros.
pub fn attend_block(
    inputs: &AttentionInputs<'_>,
    b: usize,
    out: &mut [f32],
    scratch: &mut Scratch,
) -> Result<(), KernelError> {
    inputs.validate()?;
    let s = inputs.shape;
    if b >= s.n_blocks() {
        return Err(KernelError::Attention(format!(
            "block {b} of {}",
            s.n_blocks()
        )));
    }
    if out.len() != s.block_out_len(b) {
        return Err(KernelError::Length {
            what: "attention output",
            expected: s.block_out_len(b),
            actual: out.len(),
        });
    }
    #[cfg(target_arch = "x86_64")]
    if simd::detected() {
        scratch.fit(&s);
        // SAFETY: the CPU has the kernel's features, the inputs were
        // validated (every strided read is inside its slice), `out` has the
        // block's length and the scratch buffers fit the shape.
        unsafe { simd::attend_block(inputs, b, out, scratch) };
        return Ok(());
    }
    let _ = scratch;
    attend_block_portable(inputs, b, out);
    Ok(())
}

/// The reference: per token and head, scores for every visible cell, then
/// a two-pass softmax and the weighted sum of V, in F64.
pub fn attend_block_portable(inputs: &AttentionInputs<'_>, b: usize, out: &mut [f32]) {
    let s = inputs.shape;
    let group = s.group();
    let mut scores = vec![0f64; s.n_kv];
    let mut acc = vec![0f64; s.d_v];
    for (ti, t) in s.block_tokens(b).enumerate() {
        let mask = inputs.mask_row(t);
        for h in 0..s.n_head {
            let g = h / group;
            let q = inputs.q_at(t, h);
            let mut max = f64::NEG_INFINITY;
            for (c, score) in scores.iter_mut().enumerate() {
                let m = f64::from(half::f16::from_bits(mask[c]));
                *score = if m == f64::NEG_INFINITY {
                    m
                } else {
                    let k = inputs.k_at(c, g);
                    let dot: f64 = q
                        .iter()
                        .zip(k)
                        .map(|(&x, &y)| f64::from(x) * f64::from(half::f16::from_bits(y)))
                        .sum();
                    dot * f64::from(inputs.scale) + m
                };
                max = max.max(*score);
            }
            acc.fill(0.0);
            let mut total = 0f64;
            if max > f64::NEG_INFINITY {
                for (c, &score) in scores.iter().enumerate() {
                    if score == f64::NEG_INFINITY {
                        continue;
                    }
                    let p = (score - max).exp();
                    total += p;
                    for (a, &v) in acc.iter_mut().zip(inputs.v_at(c, g)) {
                        *a += p * f64::from(half::f16::from_bits(v));
                    }
                }
            }
            let o = &mut out[(ti * s.n_head + h) * s.d_v..][..s.d_v];
            for (o, a) in o.iter_mut().zip(&acc) {
                *o = if total > 0.0 { (a / total) as f32 } else { 0.0 };
            }
        }
    }
}

/// Blocks thread `ith` of `nth` takes: dealt in a snake order (0..nth,
/// then nth-1..0, ...) so that with causal masks, where later blocks see
/// more cells, every thread gets a similar share of the work.
pub fn thread_blocks(n_blocks: usize, ith: usize, nth: usize) -> impl Iterator<Item = usize> {
    let nth = nth.max(1);
    (0..n_blocks).filter(move |b| {
        let (round, pos) = (b / nth, b % nth);
        let owner = if round % 2 == 0 { pos } else { nth - 1 - pos };
        owner == ith
    })
}

#[cfg(target_arch = "x86_64")]
mod simd {
    use std::arch::x86_64::*;

    use super::{AttentionInputs, Scratch, BLOCK_TOKENS, QK_CELLS, TILE_CELLS};

    pub(super) fn detected() -> bool {
        is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("f16c")
            && is_x86_feature_detected!("fma")
    }

    /// `e^x` for `x <= 0` to about one ulp; `-inf`, NaN and anything below
    /// -87 (where F32 results turn subnormal) give 0.
    #[inline]
    #[target_feature(enable = "avx512f,f16c,fma")]
    pub(crate) fn exp(x: __m512) -> __m512 {
        let finite = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(x, _mm512_set1_ps(-87.0));
        let x = _mm512_max_ps(x, _mm512_set1_ps(-87.0));
        let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
            _mm512_mul_ps(x, _mm512_set1_ps(std::f32::consts::LOG2_E)),
        );
        // Cody-Waite: ln 2 split so that n · LN2_HI is exact.
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693_145_75), x);
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428_606_8e-6), r);
        // Taylor to degree 7: |r| <= ln2/2 leaves an error below 1e-8.
        let mut p = _mm512_set1_ps(1.0 / 5040.0);
        for c in [
            1.0 / 720.0,
            1.0 / 120.0,
            1.0 / 24.0,
            1.0 / 6.0,
            0.5,
            1.0,
            1.0,
        ] {
            p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
        }
        _mm512_maskz_scalef_ps(finite, p, n)
    }

    /// 16 F16 values widened.
    ///
    /// # Safety
    /// `p` must point at 16 readable `u16`.
    #[inline]
    #[target_feature(enable = "avx512f,f16c,fma")]
    pub(crate) unsafe fn load_f16(p: *const u16) -> __m512 {
        // SAFETY: 32 bytes at `p` are readable (caller); unaligned is fine.
        unsafe { _mm512_cvtph_ps(_mm256_loadu_si256(p.cast())) }
    }

    /// Scores of [`QK_CELLS`] cells for `NV` heads (16 tokens each):
    /// `pt[j][h] = Σ_d kf[j][d] · qt[d][h]`.
    ///
    /// # Safety
    /// `qt` holds `d_k` rows of `lanes` floats with `NV` vectors from
    /// `h0 · 16`; `kf` holds `QK_CELLS` rows of `d_k`; `pt` the same rows of
    /// `lanes`.
    #[inline]
    #[target_feature(enable = "avx512f,f16c,fma")]
    unsafe fn scores<const NV: usize>(
        qt: *const f32,
        kf: *const f32,
        pt: *mut f32,
        lanes: usize,
        h0: usize,
        d_k: usize,
    ) {
        let mut acc = [[_mm512_setzero_ps(); NV]; QK_CELLS];
        // SAFETY: all offsets stay within the buffers (caller).
        unsafe {
            for d in 0..d_k {
                let row = qt.add(d * lanes + h0 * BLOCK_TOKENS);
                let q: [__m512; NV] = std::array::from_fn(|v| _mm512_loadu_ps(row.add(v * 16)));
                for (j, acc) in acc.iter_mut().enumerate() {
                    let k = _mm512_set1_ps(*kf.add(j * d_k + d));
                    for v in 0..NV {
                        acc[v] = _mm512_fmadd_ps(k, q[v], acc[v]);
                    }
                }
            }
            for (j, acc) in acc.iter().enumerate() {
                for (v, a) in acc.iter().enumerate() {
                    _mm512_storeu_ps(pt.add(j * lanes + (h0 + v) * BLOCK_TOKENS), *a);
                }
            }
        }
    }

    /// Output dims per `P V` register block.
    const PV_DIMS: usize = 4;

    /// `ot[d][h] += Σ_j vf[j][d] · pt[j][h]` for [`PV_DIMS`] dims from `d0`
    /// and `NV` heads from `h0`, over `cells` cells.
    ///
    /// # Safety
    /// `ot` holds `d_v` rows of `lanes`; `pt` `cells` rows of `lanes`; `vf`
    /// `cells` rows of `d_v`; `d0 + PV_DIMS <= d_v`.
    #[inline]
    #[target_feature(enable = "avx512f,f16c,fma")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn weighted_values<const NV: usize>(
        ot: *mut f32,
        pt: *const f32,
        vf: *const f32,
        lanes: usize,
        h0: usize,
        d0: usize,
        d_v: usize,
        cells: usize,
    ) {
        // SAFETY: all offsets stay within the buffers (caller).
        unsafe {
            let out = |dd: usize, v: usize| ot.add((d0 + dd) * lanes + (h0 + v) * BLOCK_TOKENS);
            let mut acc: [[__m512; NV]; PV_DIMS] =
                std::array::from_fn(|dd| std::array::from_fn(|v| _mm512_loadu_ps(out(dd, v))));
            for j in 0..cells {
                let row = pt.add(j * lanes + h0 * BLOCK_TOKENS);
                let p: [__m512; NV] = std::array::from_fn(|v| _mm512_loadu_ps(row.add(v * 16)));
                for (dd, acc) in acc.iter_mut().enumerate() {
                    let x = _mm512_set1_ps(*vf.add(j * d_v + d0 + dd));
                    for v in 0..NV {
                        acc[v] = _mm512_fmadd_ps(x, p[v], acc[v]);
                    }
                }
            }
            for (dd, acc) in acc.iter().enumerate() {
                for (v, a) in acc.iter().enumerate() {
                    _mm512_storeu_ps(out(dd, v), *a);
                }
            }
        }
    }

    /// # Safety
    /// The CPU has the features of [`detected`]; `inputs` were validated,
    /// `b` is a block of the shape, `out` has its length and `sc` fits it.
    #[target_feature(enable = "avx512f,f16c,fma")]
    pub(super) unsafe fn attend_block(
        inputs: &AttentionInputs<'_>,
        b: usize,
        out: &mut [f32],
        sc: &mut Scratch,
    ) {
        let s = inputs.shape;
        let (d_k, d_v) = (s.d_k, s.d_v);
        let group = s.group();
        let lanes = group * BLOCK_TOKENS;
        let tokens = s.block_tokens(b);
        let nt = tokens.len();
        let scale = _mm512_set1_ps(inputs.scale);

        for g in 0..s.n_head_kv {
            // Qᵀ of the group's heads; lanes of missing tokens stay 0.
            sc.qt.fill(0.0);
            for (ti, t) in tokens.clone().enumerate() {
                for hl in 0..group {
                    let q = inputs.q_at(t, g * group + hl);
                    for (d, &x) in q.iter().enumerate() {
                        sc.qt[d * lanes + hl * BLOCK_TOKENS + ti] = x;
                    }
                }
            }
            sc.ot.fill(0.0);
            sc.max.fill(f32::NEG_INFINITY);
            sc.sum.fill(0.0);

            for c0 in (0..s.n_kv).step_by(TILE_CELLS) {
                let n_cells = TILE_CELLS.min(s.n_kv - c0);
                // Mask tile, transposed; the span of cells any token sees.
                let (mut first, mut last) = (usize::MAX, 0);
                sc.mask_t.fill(f32::NEG_INFINITY);
                for (ti, t) in tokens.clone().enumerate() {
                    let row = &inputs.mask_row(t)[c0..c0 + n_cells];
                    for (j, &m) in row.iter().enumerate() {
                        let m = half::f16::from_bits(m).to_f32();
                        sc.mask_t[j * BLOCK_TOKENS + ti] = m;
                        if m != f32::NEG_INFINITY {
                            first = first.min(j);
                            last = last.max(j);
                        }
                    }
                }
                if first == usize::MAX {
                    continue;
                }
                let cells = last + 1 - first;
                let padded = cells.div_ceil(QK_CELLS) * QK_CELLS;

                // K and V tiles in F32; K padding rows are zeros so their
                // (masked) scores stay finite before the mask.
                // SAFETY: validated inputs: each row read is in its slice;
                // the tiles have TILE_ROWS >= padded rows.
                unsafe {
                    for j in 0..cells {
                        let k = inputs.k_at(c0 + first + j, g).as_ptr();
                        let v = inputs.v_at(c0 + first + j, g).as_ptr();
                        let kf = sc.kf.as_mut_ptr().add(j * d_k);
                        let vf = sc.vf.as_mut_ptr().add(j * d_v);
                        for d in (0..d_k).step_by(16) {
                            _mm512_storeu_ps(kf.add(d), load_f16(k.add(d)));
                        }
                        for d in (0..d_v).step_by(16) {
                            _mm512_storeu_ps(vf.add(d), load_f16(v.add(d)));
                        }
                    }
                }
                sc.kf[cells * d_k..padded * d_k].fill(0.0);

                // Scores for every head of the group.
                for j0 in (0..padded).step_by(QK_CELLS) {
                    let (qt, kf) = (sc.qt.as_ptr(), sc.kf[j0 * d_k..].as_ptr());
                    let pt = sc.pt[j0 * lanes..].as_mut_ptr();
                    // SAFETY: rows j0..j0 + QK_CELLS <= padded exist in kf
                    // and pt; qt has d_k rows of `lanes`.
                    unsafe { by_heads!(group, |h0| scores(qt, kf, pt, lanes, h0, d_k)) };
                }

                // Online softmax per head vector (16 tokens).
                for hl in 0..group {
                    let lane = hl * BLOCK_TOKENS;
                    // SAFETY: pt has `padded` rows of `lanes`, mask_t
                    // `padded` rows of 16, max/sum `lanes` floats, ot d_v
                    // rows of `lanes`.
                    unsafe {
                        let pt = sc.pt.as_mut_ptr();
                        let mask_t = sc.mask_t.as_ptr().add(first * BLOCK_TOKENS);
                        let mut tile_max = _mm512_set1_ps(f32::NEG_INFINITY);
                        for j in 0..padded {
                            let at = pt.add(j * lanes + lane);
                            let x = _mm512_fmadd_ps(
                                _mm512_loadu_ps(at),
                                scale,
                                _mm512_loadu_ps(mask_t.add(j * BLOCK_TOKENS)),
                            );
                            _mm512_storeu_ps(at, x);
                            tile_max = _mm512_max_ps(tile_max, x);
                        }
                        let old_max = _mm512_loadu_ps(sc.max.as_ptr().add(lane));
                        let new_max = _mm512_max_ps(old_max, tile_max);
                        // Lanes that have seen nothing yet stay at -inf; they
                        // exponentiate against 0 so no `-inf - -inf` appears.
                        let seen = _mm512_cmp_ps_mask::<_CMP_NEQ_OQ>(
                            new_max,
                            _mm512_set1_ps(f32::NEG_INFINITY),
                        );
                        let base = _mm512_maskz_mov_ps(seen, new_max);
                        let rescale = exp(_mm512_sub_ps(old_max, base));
                        let mut tile_sum = _mm512_setzero_ps();
                        for j in 0..padded {
                            let at = pt.add(j * lanes + lane);
                            let p = exp(_mm512_sub_ps(_mm512_loadu_ps(at), base));
                            _mm512_storeu_ps(at, p);
                            tile_sum = _mm512_add_ps(tile_sum, p);
                        }
                        let sum = sc.sum.as_mut_ptr().add(lane);
                        _mm512_storeu_ps(
                            sum,
                            _mm512_fmadd_ps(_mm512_loadu_ps(sum), rescale, tile_sum),
                        );
                        _mm512_storeu_ps(sc.max.as_mut_ptr().add(lane), new_max);
                        let unchanged =
                            _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(rescale, _mm512_set1_ps(1.0));
                        if unchanged != 0xffff {
                            let ot = sc.ot.as_mut_ptr();
                            for d in 0..d_v {
                                let at = ot.add(d * lanes + lane);
                                _mm512_storeu_ps(at, _mm512_mul_ps(_mm512_loadu_ps(at), rescale));
                            }
                        }
                    }
                }

                // Oᵀ += Vᵀ P (padding rows have p = 0: skipped).
                for d0 in (0..d_v).step_by(PV_DIMS) {
                    let (ot, pt, vf) = (sc.ot.as_mut_ptr(), sc.pt.as_ptr(), sc.vf.as_ptr());
                    // SAFETY: d_v is a multiple of 16 (validated), so
                    // d0 + PV_DIMS <= d_v; `cells` rows exist in pt and vf.
                    unsafe {
                        by_heads!(group, |h0| weighted_values(
                            ot, pt, vf, lanes, h0, d0, d_v, cells
                        ))
                    };
                }
            }

            // out[t][h][d] = Oᵀ[d][h][t] / sum (0 where nothing was seen).
            for hl in 0..group {
                let h = g * group + hl;
                let lane = hl * BLOCK_TOKENS;
                for ti in 0..nt {
                    let sum = sc.sum[lane + ti];
                    let inv = if sum > 0.0 { 1.0 / sum } else { 0.0 };
                    let o = &mut out[(ti * s.n_head + h) * d_v..][..d_v];
                    for (d, o) in o.iter_mut().enumerate() {
                        *o = sc.ot[d * lanes + lane + ti] * inv;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use half::f16;
    use rand::{Rng, SeedableRng};

    /// Test inputs (shared with `seq_attention`'s tests).
    pub(crate) struct Case {
        pub(crate) shape: AttentionShape,
        pub(crate) q: Vec<f32>,
        pub(crate) k: Vec<u16>,
        pub(crate) v: Vec<u16>,
        pub(crate) mask: Vec<u16>,
        pub(crate) mask_row: usize,
    }

    /// Random Q/K/V, cells in a cache with `n_head_kv` heads per cell row;
    /// `visible(t, c)` builds the mask.
    pub(crate) fn case(
        shape: AttentionShape,
        seed: u64,
        visible: impl Fn(usize, usize) -> bool,
    ) -> Case {
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(seed);
        let s = shape;
        let q = (0..s.n_tokens * s.n_head * s.d_k)
            .map(|_| rng.gen_range(-2.0f32..2.0))
            .collect();
        let mut f16s = |n: usize| -> Vec<u16> {
            (0..n)
                .map(|_| f16::from_f32(rng.gen_range(-2.0f32..2.0)).to_bits())
                .collect()
        };
        let k = f16s(s.n_kv * s.n_head_kv * s.d_k);
        let v = f16s(s.n_kv * s.n_head_kv * s.d_v);
        let mask_row = s.n_kv + 3; // padded rows, as ggml pads them
        let mut mask = vec![f16::NEG_INFINITY.to_bits(); s.n_tokens * mask_row];
        for t in 0..s.n_tokens {
            for c in 0..s.n_kv {
                if visible(t, c) {
                    mask[t * mask_row + c] = 0;
                }
            }
        }
        Case {
            shape,
            q,
            k,
            v,
            mask,
            mask_row,
        }
    }

    impl Case {
        pub(crate) fn inputs(&self) -> AttentionInputs<'_> {
            let s = self.shape;
            AttentionInputs {
                shape: s,
                q: &self.q,
                q_head_stride: s.d_k,
                q_token_stride: s.d_k * s.n_head,
                k: &self.k,
                k_cell_stride: s.d_k * s.n_head_kv,
                k_head_stride: s.d_k,
                v: &self.v,
                v_cell_stride: s.d_v * s.n_head_kv,
                v_head_stride: s.d_v,
                mask: &self.mask,
                mask_row_stride: self.mask_row,
                scale: 1.0 / (s.d_k as f32).sqrt(),
            }
        }

        fn run(&self, portable: bool) -> Vec<f32> {
            let s = self.shape;
            let inputs = self.inputs();
            let mut out = vec![f32::NAN; s.n_tokens * s.n_head * s.d_v];
            let mut scratch = Scratch::default();
            let mut rest = out.as_mut_slice();
            for b in 0..s.n_blocks() {
                let (block, tail) = rest.split_at_mut(s.block_out_len(b));
                if portable {
                    attend_block_portable(&inputs, b, block);
                } else {
                    attend_block(&inputs, b, block, &mut scratch).unwrap();
                }
                rest = tail;
            }
            out
        }
    }

    fn shape(n_tokens: usize, n_kv: usize, n_head: usize, n_head_kv: usize) -> AttentionShape {
        AttentionShape {
            d_k: 64,
            d_v: 48,
            n_tokens,
            n_kv,
            n_head,
            n_head_kv,
        }
    }

    /// The kernel against the F64 reference: softmax weights sum to one, so
    /// each output is a convex mix of V values (|v| <= 2) and its error is
    /// bounded by F32 rounding of the scores and sums.
    fn check(c: &Case) {
        let ours = c.run(false);
        let reference = c.run(true);
        for (i, (a, b)) in ours.iter().zip(&reference).enumerate() {
            assert!((a - b).abs() <= 2e-5, "{:?} [{i}]: {a} vs {b}", c.shape);
        }
    }

    #[test]
    fn causal_prompt_matches_reference() {
        // Tokens not a multiple of the block, cells not of the tile; GQA
        // groups of 1 to 7 heads (the register blocks take up to 4).
        for (n_head, n_head_kv) in [(4, 1), (1, 1), (6, 2), (7, 1), (8, 2)] {
            let c = case(shape(37, 37, n_head, n_head_kv), 1, |t, c| c <= t);
            check(&c);
        }
        // A prompt after 100 cached cells.
        let c = case(shape(50, 150, 4, 1), 2, |t, c| c <= t + 100);
        check(&c);
    }

    #[test]
    fn sliding_window_and_several_sequences() {
        let c = case(shape(70, 70, 4, 2), 3, |t, c| c <= t && t - c < 20);
        check(&c);
        // Two sequences interleaved cell by cell, and a token that sees
        // nothing (all -inf): zeros, as ggml gives.
        let c = case(shape(40, 40, 2, 1), 4, |t, c| {
            t != 17 && c <= t && c % 2 == t % 2
        });
        let out = c.run(false);
        let s = c.shape;
        assert!(out[17 * s.n_head * s.d_v..18 * s.n_head * s.d_v]
            .iter()
            .all(|&x| x == 0.0));
        check(&c);
    }

    #[test]
    fn large_scores_do_not_overflow() {
        let mut c = case(shape(20, 20, 2, 1), 5, |t, c| c <= t);
        for q in &mut c.q {
            *q *= 40.0; // scores in the hundreds: exp would overflow unshifted
        }
        let ours = c.run(false);
        assert!(ours.iter().all(|x| x.is_finite()));
        check(&c);
    }

    #[test]
    fn bad_inputs_are_errors() {
        let c = case(shape(20, 20, 2, 1), 6, |t, c| c <= t);
        let mut inputs = c.inputs();
        let mut scratch = Scratch::default();
        let mut out = vec![0.0; c.shape.block_out_len(0)];
        assert!(attend_block(&inputs, 0, &mut out, &mut scratch).is_ok());
        assert!(attend_block(&inputs, 2, &mut out, &mut scratch).is_err());
        assert!(attend_block(&inputs, 0, &mut out[1..], &mut scratch).is_err());
        inputs.k = &c.k[1..];
        assert!(attend_block(&inputs, 0, &mut out, &mut scratch).is_err());
        let mut odd = c.inputs();
        odd.shape.n_head = 3;
        assert!(odd.validate().is_err());
        let mut short = c.inputs();
        short.mask_row_stride = 10;
        assert!(short.validate().is_err());
    }

    #[test]
    fn snake_order_covers_every_block_once_and_balances_causal_work() {
        for nth in 1..=5 {
            let mut seen = [0; 37];
            for ith in 0..nth {
                for b in thread_blocks(37, ith, nth) {
                    seen[b] += 1;
                }
            }
            assert!(seen.iter().all(|&n| n == 1), "nth {nth}");
        }
        // Causal cost of block b is about b + 1: 32 blocks, 2 threads.
        let cost = |ith| thread_blocks(32, ith, 2).map(|b| b + 1).sum::<usize>();
        assert_eq!(cost(0), cost(1));
    }
}
