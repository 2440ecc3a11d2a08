//! Kernels for the 256-value super-block types of Q4_K_M files: `Q4_K`,
//! `Q5_K` and `Q6_K`.
//!
//! Activations are quantized per 256 values ("Q8_K", as ggml does for these
//! types): `x ≈ d * q` with `d = max / -127` of the value largest in
//! magnitude, `q` in -127..=127, plus the sum of every 16 `q`s. A block's
//! product is then two exact integers per column:
//!
//! - `Q4_K` (`w = d·sc_j·q - dmin·m_j`, 4-bit `q`, 8 runs of 32):
//!   `s1 = Σ_j sc_j Σ q·x`, `s2 = Σ_j m_j (bsum_2j + bsum_2j+1)`, and the
//!   block adds `(dx·d)·s1 - (dx·dmin)·s2`;
//! - `Q5_K`: as `Q4_K` with 5-bit `q` (a fifth bit per value from `qh`);
//! - `Q6_K` (`w = d·sc_j·(u - 32)`, 6-bit `u`, 16 runs of 16, signed `sc`):
//!   `s = Σ_j sc_j (Σ u·x - 32·bsum_j)`, and the block adds `(dx·d)·s`.
//!
//! Every kernel computes the same integers and then the same float steps in
//! block order, so the SIMD kernels give the scalar kernel's results bit for
//! bit, and a column's result never depends on the other columns of the
//! call (batch invariance).

use std::cell::RefCell;
use std::ops::Range;

use super::{check_len, Isa, KernelError};
use crate::quant::blocks::{f16_le, k4_scales_mins};
use crate::quant::{GgmlType, QK_K};

/// Columns that share one pass over the weights.
const GROUP: usize = 16;

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

/// Whether `ty` is handled here.
pub fn is_super_block_type(ty: GgmlType) -> bool {
    matches!(ty, GgmlType::Q4_K | GgmlType::Q5_K | GgmlType::Q6_K)
}

/// Activation columns quantized per 256 values, as ggml's
/// `quantize_row_q8_K` does.
#[derive(Clone, Debug, Default)]
pub struct SuperActs {
    k: usize,
    n: usize,
    /// `n × k` signed bytes, column after column.
    qs: Vec<i8>,
    /// `n × k/256` scales.
    d: Vec<f32>,
    /// `n × k/16` sums of 16 consecutive `qs`.
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
        self.qs.resize(k * n, 0);
        self.d.resize(k / QK_K * n, 0.0);
        self.bsums.resize(k / QK_SUM * n, 0);
        for (((xb, qb), d), sums) in x
            .chunks_exact(QK_K)
            .zip(self.qs.chunks_exact_mut(QK_K))
            .zip(self.d.iter_mut())
            .zip(self.bsums.chunks_exact_mut(QK_K / QK_SUM))
        {
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

    fn column(&self, c: usize) -> Column<'_> {
        let (nb, ns) = (self.k / QK_K, self.k / QK_SUM);
        Column {
            qs: &self.qs[c * self.k..(c + 1) * self.k],
            d: &self.d[c * nb..(c + 1) * nb],
            bsums: &self.bsums[c * ns..(c + 1) * ns],
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

/// One weight block decoded for the integer products: unsigned values in
/// element order (`Q4_K`: 0..=15, `Q5_K`: 0..=31, `Q6_K`: 0..=63), the integer scales, and
/// the float factors.
struct Decoded {
    u: [u8; QK_K],
    /// Run scales, widened: `Q4_K` / `Q5_K` 8 scales then 8 mins, `Q6_K`
    /// its 16 signed scales. The vector decoders write them as one 64-byte
    /// vector, as the vector products read them (scalar writes read back as
    /// a vector would stall store forwarding).
    lanes: [i32; 16],
    d: f32,
    dmin: f32,
}

impl Decoded {
    fn new() -> Self {
        Decoded {
            u: [0; QK_K],
            lanes: [0; 16],
            d: 0.0,
            dmin: 0.0,
        }
    }

    /// The header `Q4_K` and `Q5_K` share: d, dmin, 8 scales and 8 mins
    /// packed in 12 bytes (bytes 0..16 of the block).
    fn k4_header(&mut self, b: &[u8]) {
        self.d = f16_le(&[b[0], b[1]]);
        self.dmin = f16_le(&[b[2], b[3]]);
        let scales: &[u8; 12] = b[4..16].try_into().unwrap_or(&[0; 12]);
        let (sc, m) = k4_scales_mins(scales);
        for j in 0..8 {
            self.lanes[j] = i32::from(sc[j]);
            self.lanes[8 + j] = i32::from(m[j]);
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
        for (s, &v) in self.lanes.iter_mut().zip(scales) {
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
}

/// The float steps every kernel takes per block and column, in this order.
#[inline(always)]
fn q4_k_update(acc: f32, dx: f32, d: f32, dmin: f32, s1: i32, s2: i32) -> f32 {
    let acc = acc + (dx * d) * s1 as f32;
    acc - (dx * dmin) * s2 as f32
}

#[inline(always)]
fn q6_k_update(acc: f32, dx: f32, d: f32, s: i32) -> f32 {
    acc + (dx * d) * s as f32
}

/// The integers of one decoded block and one column (portable).
fn q4_k_ints(w: &Decoded, x: &[i8], bsums: &[i32]) -> (i32, i32) {
    let mut s1 = 0i32;
    for j in 0..8 {
        let dot: i32 = w.u[32 * j..32 * j + 32]
            .iter()
            .zip(&x[32 * j..32 * j + 32])
            .map(|(&u, &x)| i32::from(u) * i32::from(x))
            .sum();
        s1 += w.lanes[j] * dot;
    }
    let s2 = (0..8)
        .map(|j| w.lanes[8 + j] * (bsums[2 * j] + bsums[2 * j + 1]))
        .sum();
    (s1, s2)
}

fn q6_k_ints(w: &Decoded, x: &[i8], bsums: &[i32]) -> i32 {
    (0..16)
        .map(|j| {
            let dot: i32 = w.u[16 * j..16 * j + 16]
                .iter()
                .zip(&x[16 * j..16 * j + 16])
                .map(|(&u, &x)| i32::from(u) * i32::from(x))
                .sum();
            w.lanes[j] * (dot - 32 * bsums[j])
        })
        .sum()
}

/// `out[c][i] = dot(row rows.start + i, column c)` for `Q4_K` / `Q5_K` / `Q6_K`
/// weights (`weights` holds whole rows of `acts.k()` values), with the
/// instruction set's integer products.
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
    let columns: Vec<Column<'_>> = (0..acts.n).map(|c| acts.column(c)).collect();
    #[cfg(target_arch = "x86_64")]
    if let Some(cpu) = (isa == Isa::Avx512Vnni)
        .then(super::avx512::Avx512Kernel::detect)
        .flatten()
    {
        // SAFETY: `cpu` exists only where detection found every feature
        // `run_groups_fast` is compiled for.
        unsafe { simd::run_groups_fast(cpu, ty, weights, rb, rows, &columns, out) };
        return Ok(());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = isa; // only x86-64 has vector kernels for these types
    run_groups(ty, None, weights, rb, rows, &columns, out);
    Ok(())
}

/// The products by groups of columns (the body of [`matmul_rows`]); with
/// `simd` (proof of AVX-512 VNNI) it is inlined into an AVX-512 function so
/// the vector helpers inline. Sizes are checked by [`matmul_rows`].
#[inline(always)]
fn run_groups(
    ty: GgmlType,
    simd: Option<simd::Cpu>,
    weights: &[u8],
    rb: usize,
    rows: Range<usize>,
    columns: &[Column<'_>],
    out: &mut [&mut [f32]],
) {
    let mut w = Decoded::new();
    let mut acc = [0f32; GROUP];
    // Columns in groups, so a group's activations stay in cache while every
    // row passes (each block is decoded once per group).
    for (g, group) in columns.chunks(GROUP).enumerate() {
        for (i, r) in rows.clone().enumerate() {
            let acc = &mut acc[..group.len()];
            acc.fill(0.0);
            let row = &weights[r * rb..(r + 1) * rb];
            // `chunks_exact` of the type's size: every block converts.
            for (b, block) in row.chunks_exact(ty.type_size()).enumerate() {
                match (ty, simd) {
                    (GgmlType::Q4_K, None) => w.q4_k(block_array(block)),
                    (GgmlType::Q4_K, Some(cpu)) => {
                        simd::decode_q4_k(cpu, &mut w, block_array(block))
                    }
                    (GgmlType::Q5_K, None) => w.q5_k(block_array(block)),
                    (GgmlType::Q5_K, Some(cpu)) => {
                        simd::decode_q5_k(cpu, &mut w, block_array(block))
                    }
                    (_, None) => w.q6_k(block_array(block)),
                    (_, Some(cpu)) => simd::decode_q6_k(cpu, &mut w, block_array(block)),
                }
                for (a, col) in acc.iter_mut().zip(group) {
                    let (x, dx, bsums) = col.block(b);
                    *a = match ty {
                        GgmlType::Q4_K | GgmlType::Q5_K => {
                            let (s1, s2) = match simd {
                                Some(cpu) => simd::q4_k_ints(cpu, &w, x, bsums),
                                None => q4_k_ints(&w, x, bsums),
                            };
                            q4_k_update(*a, dx, w.d, w.dmin, s1, s2)
                        }
                        _ => {
                            let s = match simd {
                                Some(cpu) => simd::q6_k_ints(cpu, &w, x, bsums),
                                None => q6_k_ints(&w, x, bsums),
                            };
                            q6_k_update(*a, dx, w.d, s)
                        }
                    };
                }
            }
            for (col, a) in out[g * GROUP..].iter_mut().zip(acc.iter()) {
                col[i] = *a;
            }
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

/// The integer products with AVX-512 VNNI (`vpdpbusd`: unsigned weights
/// times signed activations, 4 products per 32-bit lane).
#[cfg(target_arch = "x86_64")]
mod simd {
    use super::{Decoded, Q4K_BYTES, Q5K_BYTES, Q6K_BYTES, QK_K};
    use crate::quant::blocks::{f16_le, k4_scales_mins};
    use std::arch::x86_64::*;

    /// Proof that this CPU has AVX-512 F/BW/VL/VNNI: the safe functions
    /// below take one before they run code compiled for those features.
    pub(super) type Cpu = crate::kernels::avx512::Avx512Kernel;

    /// [`Decoded::k4_header`] with one vector store of the lanes.
    fn k4_header(_cpu: Cpu, w: &mut Decoded, b: &[u8]) {
        w.d = f16_le(&[b[0], b[1]]);
        w.dmin = f16_le(&[b[2], b[3]]);
        let (sc, m) = k4_scales_mins(super::block_array(&b[4..16]));
        // Built from registers: a vector load of bytes just stored as two
        // halves would stall store forwarding.
        let (sc, m) = (i64::from_le_bytes(sc), i64::from_le_bytes(m));
        // SAFETY: `_cpu` proves the features `store_lanes` is compiled for.
        unsafe { store_lanes(&mut w.lanes, _mm_set_epi64x(m, sc), false) }
    }

    /// [`Decoded::q4_k`] with vector nibble unpacking (same values).
    pub(super) fn decode_q4_k(cpu: Cpu, w: &mut Decoded, b: &[u8; Q4K_BYTES]) {
        k4_header(cpu, w, b);
        // SAFETY: `cpu` proves the features `unpack_q4` is compiled for.
        unsafe { unpack_q4(&mut w.u, b) }
    }

    /// [`Decoded::q5_k`] with vector unpacking (same values).
    pub(super) fn decode_q5_k(cpu: Cpu, w: &mut Decoded, b: &[u8; Q5K_BYTES]) {
        k4_header(cpu, w, b);
        // SAFETY: `cpu` proves the features `unpack_q5` is compiled for.
        unsafe { unpack_q5(&mut w.u, b) }
    }

    /// # Safety
    /// The CPU must have AVX-512 F/BW/VL/VNNI.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn unpack_q5(u: &mut [u8; QK_K], b: &[u8; Q5K_BYTES]) {
        let mask = _mm256_set1_epi8(0x0F);
        let one = _mm256_set1_epi8(1);
        // SAFETY: the 32 high-bit bytes at 16 of the 176-byte block.
        let qh = unsafe { _mm256_loadu_si256(b.as_ptr().add(16).cast()) };
        for g in 0..4 {
            // Bits 2g and 2g + 1 of each qh byte, moved to bit 4 (16-bit
            // shifts, masked per byte afterwards).
            let h_lo = _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * g as i32)), one);
            let h_hi = _mm256_and_si256(
                _mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * g as i32 + 1)),
                one,
            );
            // SAFETY: 32 bytes at 48 + 32g of the 176-byte block; 64 bytes
            // written at 64g of the 256-byte output.
            unsafe {
                let q = _mm256_loadu_si256(b.as_ptr().add(48 + 32 * g).cast());
                let lo = _mm256_or_si256(_mm256_and_si256(q, mask), _mm256_slli_epi16::<4>(h_lo));
                let hi = _mm256_or_si256(
                    _mm256_and_si256(_mm256_srli_epi16::<4>(q), mask),
                    _mm256_slli_epi16::<4>(h_hi),
                );
                let both = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi);
                _mm512_storeu_si512(u.as_mut_ptr().add(64 * g).cast(), both);
            }
        }
    }

    /// Widens 16 bytes (unsigned, or signed for `Q6_K`) into `lanes` with
    /// one vector store.
    ///
    /// # Safety
    /// The CPU must have AVX-512 F/BW/VL/VNNI.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn store_lanes(lanes: &mut [i32; 16], v: __m128i, signed: bool) {
        let wide = if signed {
            _mm512_cvtepi8_epi32(v)
        } else {
            _mm512_cvtepu8_epi32(v)
        };
        // SAFETY: 64 bytes written to a 16 × i32 array.
        unsafe { _mm512_storeu_si512(lanes.as_mut_ptr().cast(), wide) }
    }

    /// # Safety
    /// The CPU must have AVX-512 F/BW/VL/VNNI.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn unpack_q4(u: &mut [u8; QK_K], b: &[u8; Q4K_BYTES]) {
        let mask = _mm256_set1_epi8(0x0F);
        for g in 0..4 {
            // SAFETY: 32 bytes at 16 + 32g of the 144-byte block; 64 bytes
            // written at 64g of the 256-byte output.
            unsafe {
                let q = _mm256_loadu_si256(b.as_ptr().add(16 + 32 * g).cast());
                let lo = _mm256_and_si256(q, mask);
                let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(q), mask);
                let both = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi);
                _mm512_storeu_si512(u.as_mut_ptr().add(64 * g).cast(), both);
            }
        }
    }

    /// [`Decoded::q6_k`] with vector unpacking (same values).
    pub(super) fn decode_q6_k(_cpu: Cpu, w: &mut Decoded, b: &[u8; Q6K_BYTES]) {
        w.d = f16_le(&[b[208], b[209]]);
        // SAFETY: `_cpu` proves the features `store_lanes` and `unpack_q6`
        // are compiled for; bytes 192..208 of the 210-byte block are read.
        unsafe {
            store_lanes(
                &mut w.lanes,
                _mm_loadu_si128(b.as_ptr().add(192).cast()),
                true,
            );
            unpack_q6(&mut w.u, b)
        }
    }

    /// # Safety
    /// The CPU must have AVX-512 F/BW/VL/VNNI.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn unpack_q6(u: &mut [u8; QK_K], b: &[u8; Q6K_BYTES]) {
        let nib = _mm512_set1_epi8(0x0F);
        let two = _mm512_set1_epi8(3);
        // Per 256-bit half: which bit pair of `qh` the values take.
        let shift = |lo: i16, hi: i16| {
            _mm512_inserti64x4::<1>(
                _mm512_castsi256_si512(_mm256_set1_epi16(lo)),
                _mm256_set1_epi16(hi),
            )
        };
        let (s_lo, s_hi) = (shift(0, 2), shift(4, 6));
        for half in 0..2 {
            // SAFETY: 64 bytes of `ql` at 64·half, 32 of `qh` at 128 + 32·half;
            // 128 bytes written at 128·half of the 256-byte output.
            unsafe {
                let ql = _mm512_loadu_si512(b.as_ptr().add(64 * half).cast());
                let qh = _mm512_broadcast_i64x4(_mm256_loadu_si256(
                    b.as_ptr().add(128 + 32 * half).cast(),
                ));
                let h_lo = _mm512_and_si512(_mm512_srlv_epi16(qh, s_lo), two);
                let h_hi = _mm512_and_si512(_mm512_srlv_epi16(qh, s_hi), two);
                let lo = _mm512_or_si512(_mm512_and_si512(ql, nib), _mm512_slli_epi16::<4>(h_lo));
                let hi = _mm512_or_si512(
                    _mm512_and_si512(_mm512_srli_epi16::<4>(ql), nib),
                    _mm512_slli_epi16::<4>(h_hi),
                );
                _mm512_storeu_si512(u.as_mut_ptr().add(128 * half).cast(), lo);
                _mm512_storeu_si512(u.as_mut_ptr().add(128 * half + 64).cast(), hi);
            }
        }
    }

    /// [`super::run_groups`] compiled for AVX-512 (a function of its own,
    /// not a safe wrapper, so that `run_groups` and the helpers inline into
    /// code compiled for these features).
    ///
    /// # Safety
    /// None beyond holding `cpu`; `unsafe` only because a `#[target_feature]`
    /// function cannot be called safely from code without the features.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    pub(super) unsafe fn run_groups_fast(
        cpu: Cpu,
        ty: crate::quant::GgmlType,
        weights: &[u8],
        rb: usize,
        rows: std::ops::Range<usize>,
        columns: &[super::Column<'_>],
        out: &mut [&mut [f32]],
    ) {
        super::run_groups(ty, Some(cpu), weights, rb, rows, columns, out)
    }

    /// The same integers as [`super::q4_k_ints`]; `x` holds 256 values and
    /// `bsums` 16 (checked in debug builds; asserted before the loads).
    pub(super) fn q4_k_ints(_cpu: Cpu, w: &Decoded, x: &[i8], bsums: &[i32]) -> (i32, i32) {
        assert!(
            x.len() >= QK_K && bsums.len() >= 16,
            "a Q8_K block of activations"
        );
        // SAFETY: `_cpu` proves the features `q4_k` is compiled for; the
        // lengths were checked just above.
        unsafe { q4_k(w, x, bsums) }
    }

    /// The same integer as [`super::q6_k_ints`]; sizes as for `q4_k_ints`.
    pub(super) fn q6_k_ints(_cpu: Cpu, w: &Decoded, x: &[i8], bsums: &[i32]) -> i32 {
        assert!(
            x.len() >= QK_K && bsums.len() >= 16,
            "a Q8_K block of activations"
        );
        // SAFETY: as above.
        unsafe { q6_k(w, x, bsums) }
    }

    /// Lane sums of 64 unsigned weights times 64 signed activations.
    ///
    /// # Safety
    /// The CPU must have AVX-512 F/BW/VL/VNNI; 64 bytes must be readable at
    /// each pointer.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn dot64(u: *const u8, x: *const i8) -> __m512i {
        // SAFETY: callers pass 64 readable bytes at each pointer.
        unsafe {
            _mm512_dpbusd_epi32(
                _mm512_setzero_si512(),
                _mm512_loadu_si512(u.cast()),
                _mm512_loadu_si512(x.cast()),
            )
        }
    }

    /// # Safety
    /// The CPU must have AVX-512 F/BW/VL/VNNI; `x` holds 256 values and
    /// `bsums` 16.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn q4_k(w: &Decoded, x: &[i8], bsums: &[i32]) -> (i32, i32) {
        // SAFETY: `lanes` is 16 i32; `bsums` has 16 (checked by the caller).
        let (scm, sums) = unsafe {
            (
                _mm512_loadu_si512(w.lanes.as_ptr().cast()),
                _mm512_loadu_si512(bsums.as_ptr().cast()),
            )
        };
        let mut acc = _mm512_setzero_si512();
        for g in 0..4 {
            // Runs 2g (lanes 0-7) and 2g + 1 (lanes 8-15).
            // SAFETY: 64 bytes at 64g of 256-byte arrays.
            let lanes = unsafe { dot64(w.u.as_ptr().add(64 * g), x.as_ptr().add(64 * g)) };
            let (a, b) = (2 * g as i32, 2 * g as i32 + 1);
            let idx = _mm512_set_epi32(b, b, b, b, b, b, b, b, a, a, a, a, a, a, a, a);
            let sc = _mm512_permutexvar_epi32(idx, scm);
            acc = _mm512_add_epi32(acc, _mm512_mullo_epi32(lanes, sc));
        }
        let s1 = _mm512_reduce_add_epi32(acc);
        // Mins (lanes 8-15) times the run sums (pairs of 16-value sums).
        let mins = _mm512_permutexvar_epi32(
            _mm512_set_epi32(15, 15, 14, 14, 13, 13, 12, 12, 11, 11, 10, 10, 9, 9, 8, 8),
            scm,
        );
        let s2 = _mm512_reduce_add_epi32(_mm512_mullo_epi32(mins, sums));
        (s1, s2)
    }

    /// # Safety
    /// As for `q4_k`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn q6_k(w: &Decoded, x: &[i8], bsums: &[i32]) -> i32 {
        // SAFETY: `lanes` is 16 i32; `bsums` has 16 (checked by the caller).
        let (scales, sums) = unsafe {
            (
                _mm512_loadu_si512(w.lanes.as_ptr().cast()),
                _mm512_loadu_si512(bsums.as_ptr().cast()),
            )
        };
        let mut acc = _mm512_setzero_si512();
        for g in 0..4 {
            // Runs 4g..4g + 4, four lanes each.
            // SAFETY: 64 bytes at 64g of 256-byte arrays.
            let lanes = unsafe { dot64(w.u.as_ptr().add(64 * g), x.as_ptr().add(64 * g)) };
            let j = 4 * g as i32;
            let idx = _mm512_set_epi32(
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
            );
            let sc = _mm512_permutexvar_epi32(idx, scales);
            acc = _mm512_add_epi32(acc, _mm512_mullo_epi32(lanes, sc));
        }
        let s1 = _mm512_reduce_add_epi32(acc);
        let s2 = _mm512_reduce_add_epi32(_mm512_mullo_epi32(scales, sums));
        s1 - 32 * s2
    }
}

/// No vector kernels for these types outside x86-64: a proof that can never
/// be made, so only the portable arms of `run_groups` run.
#[cfg(not(target_arch = "x86_64"))]
mod simd {
    use super::{Decoded, Q4K_BYTES, Q5K_BYTES, Q6K_BYTES};

    #[derive(Clone, Copy)]
    pub(super) enum Cpu {}

    pub(super) fn decode_q4_k(cpu: Cpu, _: &mut Decoded, _: &[u8; Q4K_BYTES]) {
        match cpu {}
    }

    pub(super) fn decode_q5_k(cpu: Cpu, _: &mut Decoded, _: &[u8; Q5K_BYTES]) {
        match cpu {}
    }

    pub(super) fn decode_q6_k(cpu: Cpu, _: &mut Decoded, _: &[u8; Q6K_BYTES]) {
        match cpu {}
    }

    pub(super) fn q4_k_ints(cpu: Cpu, _: &Decoded, _: &[i8], _: &[i32]) -> (i32, i32) {
        match cpu {}
    }

    pub(super) fn q6_k_ints(cpu: Cpu, _: &Decoded, _: &[i8], _: &[i32]) -> i32 {
        match cpu {}
    }
}
