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
//! the portable code. Per (row, column) and block `b`, two exact integers:
//!
//! - `Q4_K` / `Q5_K` (`w = d·sc_j·u - dmin·m_j`, 8 runs of 32 values, `u`
//!   the unsigned stored values): `I = Σ_v sc[v/32]·u_v·q_v` and
//!   `M = Σ_l m[l/2]·bsum_l`;
//! - `Q6_K` (`w = d·sc_j·(u - 32)`, 16 runs of 16, signed `sc`):
//!   `I = Σ_v sc[v/16]·u_v·q_v - 32·Σ_l sc[l]·bsum_l` (no `M`).
//!
//! and one float chain over the blocks in order: `acc = fma(I, d·dx, acc)`,
//! then for `Q4_K` / `Q5_K` `acc = fma(M, -(dmin·dx), acc)`; the result is
//! `acc`. The integers are exact however a kernel sums them (vector lanes
//! along the row, or columns side by side), and the float steps are the
//! same correctly rounded operations in the same order, so every kernel
//! gives the portable kernel's results bit for bit, and a column's result
//! never depends on the other columns of the call, on which path ran or on
//! how rows are split between threads (batch invariance at full speed: no
//! separate mode).
//!
//! The products sum in another order than ggml's `vec_dot` (which keeps
//! 8 float lanes), so results match ggml's to float rounding, not bit for
//! bit.

use std::cell::RefCell;
use std::ops::Range;

use super::{check_len, Isa, KernelError};
use crate::quant::blocks::{f16_le, k4_scales_mins};
use crate::quant::{GgmlType, QK_K};

#[cfg(target_arch = "x86_64")]
mod amx;
#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "aarch64")]
mod neon;

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
    /// The same columns side by side for kernels whose vector lanes are
    /// columns (see [`SuperActs::build_tiles`]); empty unless built.
    tiles: Tiles,
}

/// Columns side by side, [`TILE_COLUMNS`] to a group (the last one padded
/// with zero columns): per group and block, 64 runs of four values, each
/// as 16 columns' four bytes (one 64-byte vector); the block's 16-value
/// sums as 8 pairs, each as 16 columns' two `i16`s; and the 16 columns'
/// scales.
#[derive(Clone, Debug, Default)]
struct Tiles {
    groups: usize,
    qs: Vec<i8>,
    sums: Vec<i16>,
    d: Vec<f32>,
}

impl Tiles {
    /// Where tile `tile` (group · blocks + block) lies in `qs`, `sums` and `d`.
    fn spans(tile: usize) -> (Range<usize>, Range<usize>, Range<usize>) {
        let span = |len: usize| tile * len..(tile + 1) * len;
        (
            span(QK_K * TILE_COLUMNS),
            span(QK_K / QK_SUM * TILE_COLUMNS),
            span(TILE_COLUMNS),
        )
    }
}

/// Columns per group of [`Tiles`] (one 512-bit vector of 32-bit lanes).
pub const TILE_COLUMNS: usize = 16;

impl SuperActs {
    /// Quantizes `n` columns of `k` values (`x` is column after column).
    pub fn quantize(&mut self, x: &[f32], k: usize, n: usize) -> Result<(), KernelError> {
        if k == 0 || !k.is_multiple_of(QK_K) {
            return Err(KernelError::BadRowLength { k });
        }
        check_len("activations", x.len(), k * n)?;
        self.k = k;
        self.n = n;
        self.tiles.groups = 0;
        let (qs_stride, sums_stride) = self.strides();
        self.qs.resize(qs_stride * n, 0);
        self.d.resize(k / QK_K * n, 0.0);
        self.bsums.resize(sums_stride * n, 0);
        let blocks = x.chunks_exact(k).enumerate().flat_map(|(c, xc)| {
            xc.chunks_exact(QK_K)
                .enumerate()
                .map(move |(b, xb)| (c, b, xb))
        });
        #[cfg(target_arch = "x86_64")]
        let fast = super::avx512::Avx512Kernel::detect();
        for (c, b, xb) in blocks {
            let qb = &mut self.qs[c * qs_stride + b * QK_K..][..QK_K];
            let d = &mut self.d[c * (k / QK_K) + b];
            let sums = &mut self.bsums[c * sums_stride + b * (QK_K / QK_SUM)..][..QK_K / QK_SUM];
            #[cfg(target_arch = "x86_64")]
            if let Some(cpu) = fast {
                *d = avx512::quantize_block(
                    cpu,
                    block_array(xb),
                    block_array_mut(qb),
                    block_array_mut(sums),
                );
                continue;
            }
            *d = quantize_block(xb, qb, sums);
        }
        Ok(())
    }

    /// Lays the columns out side by side as well ([`Tiles`]), for the
    /// kernels that take many columns at once.
    pub fn build_tiles(&mut self) {
        let nb = self.k / QK_K;
        let groups = self.n.div_ceil(TILE_COLUMNS);
        // Taken out while the columns are read (the vectors keep their capacity).
        let mut t = std::mem::take(&mut self.tiles);
        t.groups = groups;
        // Zero first: padded columns must contribute nothing.
        t.qs.clear();
        t.qs.resize(groups * nb * QK_K * TILE_COLUMNS, 0);
        t.sums.clear();
        t.sums
            .resize(groups * nb * (QK_K / QK_SUM) * TILE_COLUMNS, 0);
        t.d.clear();
        t.d.resize(groups * nb * TILE_COLUMNS, 0.0);
        for c in 0..self.n {
            let (g, lane) = (c / TILE_COLUMNS, c % TILE_COLUMNS);
            let col = self.column(c);
            for b in 0..nb {
                let (qs, d, sums) = col.block(b);
                let (q_span, s_span, d_span) = Tiles::spans(g * nb + b);
                let q_tile = &mut t.qs[q_span];
                for (run, four) in qs.chunks_exact(4).enumerate() {
                    q_tile[run * 4 * TILE_COLUMNS + 4 * lane..][..4].copy_from_slice(four);
                }
                let s_tile = &mut t.sums[s_span];
                for (pair, two) in sums.chunks_exact(2).enumerate() {
                    // At most 16·127 in magnitude: exact in 16 bits.
                    s_tile[pair * 2 * TILE_COLUMNS + 2 * lane] = two[0] as i16;
                    s_tile[pair * 2 * TILE_COLUMNS + 2 * lane + 1] = two[1] as i16;
                }
                t.d[d_span][lane] = d;
            }
        }
        self.tiles = t;
    }

    /// Groups of [`Tiles`] built for the current columns (0 if none).
    pub fn tile_groups(&self) -> usize {
        self.tiles.groups
    }

    /// Group `g`'s tile of block `b`: values, sum pairs and scales.
    #[cfg(any(target_arch = "x86_64", test))]
    fn tile(&self, g: usize, b: usize) -> (&[i8], &[i16], &[f32]) {
        let (q_span, s_span, d_span) = Tiles::spans(g * (self.k / QK_K) + b);
        let t = &self.tiles;
        (&t.qs[q_span], &t.sums[s_span], &t.d[d_span])
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
    #[cfg(target_arch = "aarch64")]
    if isa == Isa::Neon {
        if let Some(cpu) = super::neon::NeonKernel::detect_static() {
            neon::matmul(cpu, ty, weights, acts, out);
            return Ok(());
        }
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    let _ = isa; // the portable kernel is the only one elsewhere
    portable_matmul(ty, weights, acts, out);
    Ok(())
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

    /// The block's exact integers `(I, M)` against one column (module docs).
    fn integers(&self, ty: GgmlType, x: &[i8], bsums: &[i32]) -> (i32, i32) {
        let run = if ty == GgmlType::Q6_K { 16 } else { 32 };
        let dots: i32 = (0..QK_K)
            .map(|v| self.scales[v / run] * i32::from(self.u[v]) * i32::from(x[v]))
            .sum();
        if ty == GgmlType::Q6_K {
            let offsets: i32 = (0..16).map(|l| self.scales[l] * bsums[l]).sum();
            (dots - 32 * offsets, 0)
        } else {
            (dots, (0..16).map(|l| self.mins[l / 2] * bsums[l]).sum())
        }
    }
}

/// One block's float steps of the canonical chain.
#[inline(always)]
pub(crate) fn chain_step(
    ty: GgmlType,
    (i, m): (i32, i32),
    d: f32,
    dmin: f32,
    dx: f32,
    acc: f32,
) -> f32 {
    let acc = (i as f32).mul_add(d * dx, acc);
    if ty == GgmlType::Q6_K {
        acc
    } else {
        (m as f32).mul_add(-(dmin * dx), acc)
    }
}

/// The canonical sums, portably (`weights` holds exactly the output rows).
fn portable_matmul(ty: GgmlType, weights: &[u8], acts: &SuperActs, out: &mut [&mut [f32]]) {
    let rb = acts.k / QK_K * ty.type_size();
    let mut w = Decoded::new();
    let mut acc = vec![0f32; acts.n];
    for (i, row) in weights.chunks_exact(rb).enumerate() {
        acc.fill(0.0);
        // `chunks_exact` of the type's size: every block converts.
        for (b, block) in row.chunks_exact(ty.type_size()).enumerate() {
            match ty {
                GgmlType::Q4_K => w.q4_k(block_array(block)),
                GgmlType::Q5_K => w.q5_k(block_array(block)),
                _ => w.q6_k(block_array(block)),
            }
            for (c, a) in acc.iter_mut().enumerate() {
                let (x, dx, bsums) = acts.column(c).block(b);
                *a = chain_step(ty, w.integers(ty, x, bsums), w.d, w.dmin, dx, *a);
            }
        }
        for (col, a) in out.iter_mut().zip(&acc) {
            col[i] = *a;
        }
    }
}

/// Quantizes one block of 256 values (`quantize_row_q8_K`'s steps) into
/// `qb` and the sums of every 16 into `sums`; returns the block's scale.
fn quantize_block(xb: &[f32], qb: &mut [i8], sums: &mut [i32]) -> f32 {
    // The value largest in magnitude (the first of equals) maps to -127.
    let (mut amax, mut max) = (0f32, 0f32);
    for &v in xb {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    if amax == 0.0 {
        qb.fill(0);
        sums.fill(0);
        return 0.0;
    }
    let iscale = -127.0 / max;
    for (q, &v) in qb.iter_mut().zip(xb) {
        *q = ((iscale * v).round_ties_even() as i32).min(127) as i8;
    }
    for (s, run) in sums.iter_mut().zip(qb.chunks_exact(QK_SUM)) {
        *s = run.iter().map(|&q| i32::from(q)).sum();
    }
    1.0 / iscale
}

/// A mutable block of `N` values (callers pass exactly `N`).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn block_array_mut<T, const N: usize>(block: &mut [T]) -> &mut [T; N] {
    debug_assert_eq!(block.len(), N);
    &mut block.as_chunks_mut::<N>().0[0]
}

/// A block of `N` bytes (`row.chunks_exact(N)` hands out nothing else).
#[inline(always)]
fn block_array<T, const N: usize>(block: &[T]) -> &[T; N] {
    debug_assert_eq!(block.len(), N);
    &block.as_chunks::<N>().0[0]
}

thread_local! {
    /// Per-thread activation scratch (see `super::with_thread_acts`).
    static SUPER_ACTS: RefCell<SuperActs> = RefCell::new(SuperActs::default());
}

/// Quantizes `x` into this thread's scratch (with [`Tiles`] where `isa`'s
/// kernel takes them for `n` columns) and runs `f` with it.
pub fn with_thread_acts<T>(
    isa: Isa,
    x: &[f32],
    k: usize,
    n: usize,
    f: impl FnOnce(&SuperActs) -> T,
) -> Result<T, KernelError> {
    super::with_scratch(
        &SUPER_ACTS,
        |a| {
            a.quantize(x, k, n)?;
            if uses_tiles(isa, n) {
                a.build_tiles();
            }
            Ok(())
        },
        f,
    )
}

/// Whether `isa`'s kernel multiplies `ty` weights by `n` columns on AMX
/// tiles (`Q4_K`, many columns, a CPU with AMX-INT8).
pub fn amx_runs(isa: Isa, ty: GgmlType, n: usize) -> bool {
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx512Vnni {
        return amx::Amx::for_matmul(ty, n).is_some();
    }
    let _ = (isa, ty, n);
    false
}

/// Whether `isa`'s kernel runs `n` columns side by side ([`Tiles`]).
pub fn uses_tiles(isa: Isa, n: usize) -> bool {
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx512Vnni {
        return n >= avx512::TILED_MIN_COLUMNS;
    }
    let _ = (isa, n);
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Blocks that reach every branch: random values, equal magnitudes of
    /// both signs (the first decides the sign of the scale), an all-zero
    /// block, products landing on .5 and values far below the largest.
    #[cfg(target_arch = "x86_64")]
    fn blocks() -> Vec<[f32; QK_K]> {
        let mut out = Vec::new();
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        };
        for _ in 0..64 {
            out.push(std::array::from_fn(|_| next() * 8.0));
        }
        let mut ties = [0.25f32; QK_K];
        ties[7] = 3.0;
        ties[200] = -3.0;
        out.push(ties);
        ties[7] = -3.0;
        ties[200] = 3.0;
        out.push(ties);
        out.push([0.0; QK_K]);
        // -127/-2.54 = 50: 0.01 -> 0.5 and 0.03 -> 1.5 round to even.
        let mut halves = [0.01f32; QK_K];
        halves[3] = -2.54;
        halves[9] = 0.03;
        halves[100] = 1e-30;
        out.push(halves);
        out
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx512_quantization_equals_the_portable_one() {
        let Some(cpu) = crate::kernels::avx512::Avx512Kernel::detect() else {
            eprintln!("skipped: this CPU has no AVX-512 VNNI");
            return;
        };
        for (i, xb) in blocks().iter().enumerate() {
            let (mut q1, mut s1) = ([0i8; QK_K], [0i32; 16]);
            let (mut q2, mut s2) = ([0i8; QK_K], [0i32; 16]);
            let d1 = quantize_block(xb, &mut q1, &mut s1);
            let d2 = avx512::quantize_block(cpu, xb, &mut q2, &mut s2);
            assert_eq!(d1.to_bits(), d2.to_bits(), "block {i}: scale");
            assert_eq!(q1, q2, "block {i}: values");
            assert_eq!(s1, s2, "block {i}: sums");
        }
    }

    #[test]
    fn tiles_hold_every_column_side_by_side() {
        let (k, n) = (2 * QK_K, 19);
        let x: Vec<f32> = (0..k * n)
            .map(|i| ((i * 7919 % 1000) as f32 - 500.0) / 97.0)
            .collect();
        let mut acts = SuperActs::default();
        acts.quantize(&x, k, n).unwrap();
        acts.build_tiles();
        assert_eq!(acts.tile_groups(), 2);
        for c in 0..TILE_COLUMNS * 2 {
            let (g, lane) = (c / TILE_COLUMNS, c % TILE_COLUMNS);
            for b in 0..k / QK_K {
                let (q, sums, d) = acts.tile(g, b);
                for v in 0..QK_K {
                    let want = if c < n {
                        acts.column_qs(c)[b * QK_K + v]
                    } else {
                        0
                    };
                    assert_eq!(
                        q[(v / 4) * 64 + 4 * lane + v % 4],
                        want,
                        "column {c} value {v}"
                    );
                }
                for l in 0..16 {
                    let want = if c < n {
                        acts.column_bsums(c)[b * 16 + l]
                    } else {
                        0
                    };
                    assert_eq!(i32::from(sums[(l / 2) * 32 + 2 * lane + l % 2]), want);
                }
                let want = if c < n { acts.column_d(c)[b] } else { 0.0 };
                assert_eq!(d[lane], want);
            }
        }
    }
}
