//! Kernels for the 256-value super-block types of K-quant files: `Q4_K`,
//! `Q5_K` and `Q6_K` (what a typical Q4_K_M or Q5_K_M file is made of).
//!
//! Activations are quantized per 256 values ("Q8_K", as ggml does for these
//! types): `x ≈ dx * q` with `dx = max / -127` of the value largest in
//! magnitude, `q` in -127..=127, plus the sum of every 16 `q`s (`bsums`).
//!
//! # The canonical sums
//!
//! Every instruction set computes exactly the same numbers, defined here by
//! the portable code: 16 float lanes per (row, column), block after block.
//! Lane `l` of block `b` takes the values `64g + 4l .. 64g + 4l + 4` for
//! `g` in 0..4 (the four 64-value quarters: one `vpdpbusd` lane each), so
//! with `D(g, l)` the integer dot product of those four weights `u` (the
//! unsigned stored values) and activations `q`:
//!
//! - `Q4_K` / `Q5_K` (`w = d·sc_j·u - dmin·m_j`, 8 runs of 32):
//!   `I_l = Σ_g sc[2g + l/8]·D(g, l)` and `M_l = m[l/2]·bsum_l`;
//!   the lane takes `acc = fma(I_l, d·dx, acc)`, then `acc = fma(M_l, -(dmin·dx), acc)`;
//! - `Q6_K` (`w = d·sc_j·(u - 32)`, 16 runs of 16, signed `sc`):
//!   `I_l = Σ_g sc[4g + l/4]·D(g, l) - 32·sc[l]·bsum_l`; `acc = fma(I_l, d·dx, acc)`.
//!
//! The integers are exact in every kernel, the float steps are the same
//! correctly rounded operations, and the 16 lanes are summed at the end of
//! the row in one fixed tree ([`reduce_lanes`]). So the vector kernels give
//! the portable kernel's results bit for bit, and a column's result never
//! depends on the other columns of the call or on how rows are split
//! between threads (batch invariance at full speed: no separate mode).
//!
//! The products sum in another order than ggml's `vec_dot` (which keeps 8
//! lanes), so results match ggml's to float rounding, not bit for bit.

use std::cell::RefCell;
use std::ops::Range;

use super::{check_len, Isa, KernelError};
use crate::quant::blocks::{f16_le, k4_scales_mins};
use crate::quant::{GgmlType, QK_K};

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;

/// Float lanes of the canonical sums.
const LANES: usize = 16;

/// Values per activation sum (`bsums`).
const QK_SUM: usize = 16;

/// Bytes of one `Q4_K` block: d, dmin, 12 scale bytes, 128 nibble bytes.
const Q4K_BYTES: usize = 144;
/// Bytes of one `Q5_K` block: d, dmin, 12 scale bytes, 32 high-bit bytes,
/// 128 nibble bytes.
const Q5K_BYTES: usize = 176;
/// Bytes of one `Q6_K` block: 128 low-nibble bytes, 64 high-bit bytes,
/// 16 signed scales, d.
const Q6K_BYTES: usize = 210;

/// Activation columns quantized per 256 values, as ggml's
/// `quantize_row_q8_K` does.
#[derive(Clone, Debug, Default)]
pub struct SuperActs {
    k: usize,
    n: usize,
    /// `n` columns of `k` signed bytes (see [`SuperActs::strides`]).
    qs: Vec<i8>,
    /// `n × k/256` scales.
    d: Vec<f32>,
    /// `n` columns of `k/16` sums of 16 consecutive `qs`.
    bsums: Vec<i32>,
}

impl SuperActs {
    /// Quantizes `n` columns of `k` values (`x` is column after column).
    pub fn quantize(&mut self, x: &[f32], k: usize, n: usize) -> Result<(), KernelError> {
        if k == 0 || !k.is_multiple_of(QK_K) {
            return Err(KernelError::BadRowLength { k });
        }
        check_len("activations", x.len(), k * n)?;
        self.k = k;
        self.n = n;
        let (qs_stride, sums_stride) = self.strides();
        self.qs.resize(qs_stride * n, 0);
        self.d.resize(k / QK_K * n, 0.0);
        self.bsums.resize(sums_stride * n, 0);
        let blocks = x.chunks_exact(k).enumerate().flat_map(|(c, xc)| {
            xc.chunks_exact(QK_K)
                .enumerate()
                .map(move |(b, xb)| (c, b, xb))
        });
        for (c, b, xb) in blocks {
            let qb = &mut self.qs[c * qs_stride + b * QK_K..][..QK_K];
            let d = &mut self.d[c * (k / QK_K) + b];
            let sums = &mut self.bsums[c * sums_stride + b * (QK_K / QK_SUM)..][..QK_K / QK_SUM];
            // The value largest in magnitude (the first of equals) maps to -127.
            let (mut amax, mut max) = (0f32, 0f32);
            for &v in xb {
                if v.abs() > amax {
                    amax = v.abs();
                    max = v;
                }
            }
            if amax == 0.0 {
                *d = 0.0;
                qb.fill(0);
                sums.fill(0);
                continue;
            }
            let iscale = -127.0 / max;
            for (q, &v) in qb.iter_mut().zip(xb) {
                *q = ((iscale * v).round_ties_even() as i32).min(127) as i8;
            }
            for (s, run) in sums.iter_mut().zip(qb.chunks_exact(QK_SUM)) {
                *s = run.iter().map(|&q| i32::from(q)).sum();
            }
            *d = 1.0 / iscale;
        }
        Ok(())
    }

    pub fn k(&self) -> usize {
        self.k
    }

    pub fn n(&self) -> usize {
        self.n
    }

    /// Values of column `c`.
    pub fn column_qs(&self, c: usize) -> &[i8] {
        self.column(c).qs
    }

    /// Block scales of column `c`.
    pub fn column_d(&self, c: usize) -> &[f32] {
        self.column(c).d
    }

    /// Sums of every 16 values of column `c`.
    pub fn column_bsums(&self, c: usize) -> &[i32] {
        self.column(c).bsums
    }

    /// Distances between columns' values and sums: one cache line more
    /// than a column needs, so that columns of rows whose length is a
    /// multiple of 4 KiB (an FFN down projection's 8192) do not all fall in
    /// the same L1 cache sets (measured: Q6_K at k = 8192, two columns, ran
    /// at half speed).
    fn strides(&self) -> (usize, usize) {
        (self.k + 64, self.k / QK_SUM + 16)
    }

    fn column(&self, c: usize) -> Column<'_> {
        let ((qs_stride, sums_stride), nb) = (self.strides(), self.k / QK_K);
        Column {
            qs: &self.qs[c * qs_stride..][..self.k],
            d: &self.d[c * nb..(c + 1) * nb],
            bsums: &self.bsums[c * sums_stride..][..self.k / QK_SUM],
        }
    }
}

/// One quantized activation column.
#[derive(Clone, Copy)]
struct Column<'a> {
    qs: &'a [i8],
    d: &'a [f32],
    bsums: &'a [i32],
}

impl<'a> Column<'a> {
    /// Block `b`: its 256 values, scale and 16 sums (callers keep `b` in range).
    #[inline]
    fn block(&self, b: usize) -> (&'a [i8], f32, &'a [i32]) {
        (
            &self.qs[b * QK_K..(b + 1) * QK_K],
            self.d[b],
            &self.bsums[b * (QK_K / QK_SUM)..(b + 1) * (QK_K / QK_SUM)],
        )
    }
}

/// Whether `ty` is handled here.
pub fn is_super_block_type(ty: GgmlType) -> bool {
    matches!(ty, GgmlType::Q4_K | GgmlType::Q5_K | GgmlType::Q6_K)
}

/// `out[c][i] = dot(row rows.start + i, column c)` for `Q4_K` / `Q5_K` / `Q6_K`
/// weights (`weights` holds whole rows of `acts.k()` values), with the
/// instruction set's kernel (the portable one where the CPU lacks it).
pub fn matmul_rows(
    isa: Isa,
    ty: GgmlType,
    weights: &[u8],
    acts: &SuperActs,
    rows: Range<usize>,
    out: &mut [&mut [f32]],
) -> Result<(), KernelError> {
    if !is_super_block_type(ty) {
        return Err(KernelError::Unsupported(ty));
    }
    let nb = acts.k / QK_K;
    let rb = nb * ty.type_size();
    if rows.start > rows.end || rows.end * rb > weights.len() {
        return Err(KernelError::BadRows {
            start: rows.start,
            end: rows.end,
            n_rows: weights.len() / rb.max(1),
        });
    }
    check_len("output columns", out.len(), acts.n)?;
    for col in out.iter() {
        check_len("output rows", col.len(), rows.len())?;
    }
    let weights = &weights[rows.start * rb..rows.end * rb];
    #[cfg(target_arch = "x86_64")]
    match isa {
        Isa::Avx512Vnni => {
            if let Some(cpu) = super::avx512::Avx512Kernel::detect() {
                avx512::matmul(cpu, ty, weights, acts, out);
                return Ok(());
            }
        }
        Isa::Avx2 => {
            if let Some(cpu) = super::avx2::Avx2Kernel::detect() {
                avx2::matmul(cpu, ty, weights, acts, out);
                return Ok(());
            }
        }
        _ => {}
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = isa; // the portable kernel is the only one outside x86-64 so far
    portable_matmul(ty, weights, acts, out);
    Ok(())
}

/// Sums the 16 lanes of a row's accumulator: halves, then quarters, then
/// pairs (`acc[i] + acc[i + 8]`, ...), the order every kernel keeps.
#[inline(always)]
pub(crate) fn reduce_lanes(acc: &[f32; LANES]) -> f32 {
    let mut h = [0f32; 8];
    for i in 0..8 {
        h[i] = acc[i] + acc[i + 8];
    }
    let q = [h[0] + h[4], h[1] + h[5], h[2] + h[6], h[3] + h[7]];
    let p = [q[0] + q[2], q[1] + q[3]];
    p[0] + p[1]
}

/// One weight block decoded for the portable kernel: unsigned values in
/// element order (`Q4_K`: 0..=15, `Q5_K`: 0..=31, `Q6_K`: 0..=63), the run
/// scales and mins (`Q6_K`: 16 signed scales, no mins) and the float factors.
struct Decoded {
    u: [u8; QK_K],
    scales: [i32; 16],
    mins: [i32; 8],
    d: f32,
    dmin: f32,
}

impl Decoded {
    fn new() -> Self {
        Decoded {
            u: [0; QK_K],
            scales: [0; 16],
            mins: [0; 8],
            d: 0.0,
            dmin: 0.0,
        }
    }

    /// The header `Q4_K` and `Q5_K` share: d, dmin, 8 scales and 8 mins
    /// packed in 12 bytes (bytes 0..16 of the block).
    fn k4_header(&mut self, b: &[u8]) {
        self.d = f16_le(&[b[0], b[1]]);
        self.dmin = f16_le(&[b[2], b[3]]);
        let (sc, m) = k4_scales_mins(block_array(&b[4..16]));
        for j in 0..8 {
            self.scales[j] = i32::from(sc[j]);
            self.mins[j] = i32::from(m[j]);
        }
    }

    fn q4_k(&mut self, b: &[u8; Q4K_BYTES]) {
        self.k4_header(b);
        for (g, bytes) in b[16..].chunks_exact(32).enumerate() {
            for (l, &q) in bytes.iter().enumerate() {
                self.u[64 * g + l] = q & 0x0F;
                self.u[64 * g + 32 + l] = q >> 4;
            }
        }
    }

    fn q5_k(&mut self, b: &[u8; Q5K_BYTES]) {
        self.k4_header(b);
        let qh = &b[16..48];
        // Run 2g takes bit 2g of qh[l], run 2g + 1 bit 2g + 1.
        for (g, bytes) in b[48..].chunks_exact(32).enumerate() {
            for (l, &q) in bytes.iter().enumerate() {
                let h = qh[l] >> (2 * g);
                self.u[64 * g + l] = (q & 0x0F) | ((h & 1) << 4);
                self.u[64 * g + 32 + l] = (q >> 4) | (((h >> 1) & 1) << 4);
            }
        }
    }

    fn q6_k(&mut self, b: &[u8; Q6K_BYTES]) {
        let (ql, rest) = b.split_at(128);
        let (qh, rest) = rest.split_at(64);
        let (scales, d) = rest.split_at(16);
        self.d = f16_le(&[d[0], d[1]]);
        for (s, &v) in self.scales.iter_mut().zip(scales) {
            *s = i32::from(v as i8);
        }
        for half in 0..2 {
            let (ql, qh) = (
                &ql[64 * half..64 * half + 64],
                &qh[32 * half..32 * half + 32],
            );
            let u = &mut self.u[128 * half..128 * half + 128];
            for l in 0..32 {
                let h = qh[l];
                u[l] = (ql[l] & 0x0F) | ((h & 3) << 4);
                u[l + 32] = (ql[l + 32] & 0x0F) | (((h >> 2) & 3) << 4);
                u[l + 64] = (ql[l] >> 4) | (((h >> 4) & 3) << 4);
                u[l + 96] = (ql[l + 32] >> 4) | (((h >> 6) & 3) << 4);
            }
        }
    }

    /// `D(g, l)`: four weights times four activations (see the module docs).
    #[inline(always)]
    fn dot4(&self, x: &[i8], g: usize, l: usize) -> i32 {
        let at = 64 * g + 4 * l;
        (at..at + 4)
            .map(|i| i32::from(self.u[i]) * i32::from(x[i]))
            .sum()
    }

    /// One block of one column into the lanes (the module docs' steps).
    fn accumulate(&self, ty: GgmlType, x: &[i8], dx: f32, bsums: &[i32], acc: &mut [f32; LANES]) {
        for (l, a) in acc.iter_mut().enumerate() {
            if ty == GgmlType::Q6_K {
                let i: i32 = (0..4)
                    .map(|g| self.scales[4 * g + l / 4] * self.dot4(x, g, l))
                    .sum::<i32>()
                    - 32 * self.scales[l] * bsums[l];
                *a = (i as f32).mul_add(self.d * dx, *a);
            } else {
                let i: i32 = (0..4)
                    .map(|g| self.scales[2 * g + l / 8] * self.dot4(x, g, l))
                    .sum();
                let m = self.mins[l / 2] * bsums[l];
                *a = (i as f32).mul_add(self.d * dx, *a);
                *a = (m as f32).mul_add(-(self.dmin * dx), *a);
            }
        }
    }
}

/// The canonical sums, portably (`weights` holds exactly the output rows).
fn portable_matmul(ty: GgmlType, weights: &[u8], acts: &SuperActs, out: &mut [&mut [f32]]) {
    let rb = acts.k / QK_K * ty.type_size();
    let mut w = Decoded::new();
    let mut acc = vec![[0f32; LANES]; acts.n];
    for (i, row) in weights.chunks_exact(rb).enumerate() {
        acc.fill([0.0; LANES]);
        // `chunks_exact` of the type's size: every block converts.
        for (b, block) in row.chunks_exact(ty.type_size()).enumerate() {
            match ty {
                GgmlType::Q4_K => w.q4_k(block_array(block)),
                GgmlType::Q5_K => w.q5_k(block_array(block)),
                _ => w.q6_k(block_array(block)),
            }
            for (c, a) in acc.iter_mut().enumerate() {
                let (x, dx, bsums) = acts.column(c).block(b);
                w.accumulate(ty, x, dx, bsums, a);
            }
        }
        for (col, a) in out.iter_mut().zip(&acc) {
            col[i] = reduce_lanes(a);
        }
    }
}

/// A block of `N` bytes (`row.chunks_exact(N)` hands out nothing else).
#[inline(always)]
fn block_array<const N: usize>(block: &[u8]) -> &[u8; N] {
    debug_assert_eq!(block.len(), N);
    &block.as_chunks::<N>().0[0]
}

thread_local! {
    /// Per-thread activation scratch (see `super::with_thread_acts`).
    static SUPER_ACTS: RefCell<SuperActs> = RefCell::new(SuperActs::default());
}

/// Quantizes `x` into this thread's scratch and runs `f` with it.
pub fn with_thread_acts<T>(
    x: &[f32],
    k: usize,
    n: usize,
    f: impl FnOnce(&SuperActs) -> T,
) -> Result<T, KernelError> {
    super::with_scratch(&SUPER_ACTS, |a| a.quantize(x, k, n), f)
}
