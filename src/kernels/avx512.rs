//! AVX-512 (F, BW, VL) + VNNI kernel.
//!
//! Two weight rows are processed together: one 512-bit register holds block
//! `b` of row `r` in its low half and of row `r + 1` in its high half, and
//! each activation block (32 bytes) is broadcast to both halves, so one
//! `vpdpbusd` gives 8 partial sums per row for one column. Per block, the
//! work shared by all columns (loading and decoding the weights, their sum
//! for the unsigned-offset correction, the two row scales) is done once;
//! per column it is one `vpdpbusd`, a conversion and two float ops. Each
//! weight byte is read from memory once for up to 16 columns.
//!
//! `vpdpbusd` multiplies unsigned by signed bytes, so the activations are
//! stored as `q + 128` ([`ActsFormat::Offset128`]) and the accumulator
//! starts at `-128 * sum(w)` (computed from the weights once per block).

use std::arch::x86_64::*;
use std::ops::Range;

use super::avx2::hsum as hsum256;
use super::{row_bytes, ActsFormat, Isa, KernelError, MatmulKernel, QuantizedActs, QK};
use crate::quant::GgmlType;

fn detected() -> bool {
    is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512vl")
        && is_x86_feature_detected!("avx512vnni")
        && is_x86_feature_detected!("f16c")
        && is_x86_feature_detected!("fma")
}

/// The AVX-512 VNNI kernels, and proof that this CPU runs them: the private
/// field means only [`Avx512Kernel::detect`] makes one, so holding a value
/// is holding the result of feature detection, and the safe methods that
/// take one may call the `#[target_feature]` code of this file (and of
/// `kquants`' and `attention`'s AVX-512 paths).
#[derive(Clone, Copy, Debug)]
pub struct Avx512Kernel {
    _detected: (),
}

impl Avx512Kernel {
    /// The kernel, where the CPU has every feature this file is compiled
    /// for (std caches the detection).
    pub fn detect() -> Option<Avx512Kernel> {
        detected().then_some(Avx512Kernel { _detected: () })
    }

    /// For [`super::Isa::kernel`], which hands out `&'static dyn` kernels.
    pub(super) fn detect_static() -> Option<&'static Avx512Kernel> {
        static KERNEL: Avx512Kernel = Avx512Kernel { _detected: () };
        detected().then_some(&KERNEL)
    }
}

/// Columns handled in one pass over a row pair (accumulators stay in
/// registers: 16 of the 32 zmm registers, the rest for shared values).
const GROUP: usize = 16;

/// Loads block `b` of two rows: signed weights (row 0 in the low 256 bits,
/// row 1 in the high ones) and the row scales broadcast to match.
///
/// # Safety
/// Only for CPUs with the features of [`detected`].
trait Decode<const BYTES: usize> {
    unsafe fn load2(b0: &[u8; BYTES], b1: &[u8; BYTES]) -> (__m512i, __m512);
}

struct Q8;
struct Q5;
struct Q4;

/// Two f16 scales widened and spread: lanes 0-7 `d0`, lanes 8-15 `d1`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c,fma")]
fn scales2(d0: [u8; 2], d1: [u8; 2]) -> __m512 {
    let bits = u32::from(u16::from_le_bytes(d0)) | (u32::from(u16::from_le_bytes(d1)) << 16);
    let d = _mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32));
    let idx = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(d))
}

/// Two rows' 16 nibble bytes (row 0 in the low 256 bits): each row's bytes
/// twice, low nibbles as elements 0-15, high nibbles as elements 16-31.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c,fma")]
fn nibbles2(q0: __m128i, q1: __m128i) -> __m512i {
    let v = _mm512_inserti64x4::<1>(
        _mm512_castsi256_si512(_mm256_broadcastsi128_si256(q0)),
        _mm256_broadcastsi128_si256(q1),
    );
    let shifted = _mm512_srli_epi16::<4>(v);
    _mm512_and_si512(
        _mm512_mask_blend_epi8(0xFFFF_0000_FFFF_0000, v, shifted),
        _mm512_set1_epi8(0x0F),
    )
}

impl Decode<34> for Q8 {
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c,fma")]
    unsafe fn load2(b0: &[u8; 34], b1: &[u8; 34]) -> (__m512i, __m512) {
        // SAFETY: bytes 2..34 of each 34-byte block are read (unaligned
        // loads are allowed).
        unsafe {
            let lo = _mm256_loadu_si256(b0.as_ptr().add(2).cast());
            let hi = _mm256_loadu_si256(b1.as_ptr().add(2).cast());
            let w = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi);
            (w, scales2([b0[0], b0[1]], [b1[0], b1[1]]))
        }
    }
}

impl Decode<22> for Q5 {
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c,fma")]
    unsafe fn load2(b0: &[u8; 22], b1: &[u8; 22]) -> (__m512i, __m512) {
        // SAFETY: bytes 6..22 (the 16 nibble bytes) of each 22-byte block
        // are read.
        unsafe {
            let nib = nibbles2(
                _mm_loadu_si128(b0.as_ptr().add(6).cast()),
                _mm_loadu_si128(b1.as_ptr().add(6).cast()),
            );
            // Bit j of qh is bit 4 of element j: elements without it get -16.
            let qh0 = u32::from_le_bytes([b0[2], b0[3], b0[4], b0[5]]);
            let qh1 = u32::from_le_bytes([b1[2], b1[3], b1[4], b1[5]]);
            let high = u64::from(qh0) | (u64::from(qh1) << 32);
            let w = _mm512_mask_sub_epi8(nib, !high, nib, _mm512_set1_epi8(16));
            (w, scales2([b0[0], b0[1]], [b1[0], b1[1]]))
        }
    }
}

impl Decode<18> for Q4 {
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c,fma")]
    unsafe fn load2(b0: &[u8; 18], b1: &[u8; 18]) -> (__m512i, __m512) {
        // SAFETY: bytes 2..18 (the 16 nibble bytes) of each 18-byte block
        // are read.
        unsafe {
            let nib = nibbles2(
                _mm_loadu_si128(b0.as_ptr().add(2).cast()),
                _mm_loadu_si128(b1.as_ptr().add(2).cast()),
            );
            // The weight is the nibble - 8.
            let w = _mm512_sub_epi8(nib, _mm512_set1_epi8(8));
            (w, scales2([b0[0], b0[1]], [b1[0], b1[1]]))
        }
    }
}

/// Dot products of two weight rows with `C` activation columns:
/// `[row0, row1]` per column. `xq[c]` / `xd[c]` are column `c`'s blocks
/// (offset bytes) and scales; all have at least as many blocks as the rows.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c,fma")]
fn rows2<const BYTES: usize, D: Decode<BYTES>, const C: usize>(
    row0: &[[u8; BYTES]],
    row1: &[[u8; BYTES]],
    ahead: [&[[u8; BYTES]]; 2],
    xq: &[&[[u8; QK]]; C],
    xd: &[&[f32]; C],
) -> [[f32; 2]; C] {
    let nb = row0.len().min(row1.len());
    let mut res = [[0f32; 2]; C];
    if xq.iter().any(|q| q.len() < nb) || xd.iter().any(|d| d.len() < nb) {
        return res; // callers check sizes; never read out of bounds
    }
    let mut acc = [_mm512_setzero_ps(); C];
    let offset = _mm512_set1_epi8(0x80u8 as i8);
    for b in 0..nb {
        // The next row pair, so it is in cache when its turn comes (the
        // hardware prefetcher alone does not keep two streams busy enough).
        for a in ahead {
            if let Some(blk) = a.get(b) {
                _mm_prefetch::<_MM_HINT_T0>(blk.as_ptr().cast());
            }
        }
        // SAFETY: this function's features are those `load2` needs.
        let (w, dw) = unsafe { D::load2(&row0[b], &row1[b]) };
        let neg_corr = _mm512_sub_epi32(
            _mm512_setzero_si512(),
            _mm512_dpbusd_epi32(_mm512_setzero_si512(), offset, w),
        );
        for c in 0..C {
            // SAFETY: every column has at least `nb` blocks and scales
            // (checked above); a block is 32 bytes, the load reads 32.
            let (x, d) = unsafe {
                let blk = xq[c].get_unchecked(b);
                (
                    _mm512_broadcast_i64x4(_mm256_loadu_si256(blk.as_ptr().cast())),
                    *xd[c].get_unchecked(b),
                )
            };
            let dot = _mm512_dpbusd_epi32(neg_corr, x, w);
            // Scale product first, then one FMA, in block order: the same
            // float steps as the one-column path (and ggml's `vec_dot`), so
            // a column's result does not depend on how many share the call.
            let s = _mm512_mul_ps(dw, _mm512_set1_ps(d));
            acc[c] = _mm512_fmadd_ps(s, _mm512_cvtepi32_ps(dot), acc[c]);
        }
    }
    for c in 0..C {
        let lo = _mm512_castps512_ps256(acc[c]);
        let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(acc[c])));
        res[c] = [hsum256(lo), hsum256(hi)];
    }
    res
}

/// All rows of `rows` against columns `c0..c0 + C`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c,fma")]
fn run_group<const BYTES: usize, D: Decode<BYTES>, const C: usize>(
    weights: &[u8],
    rb: usize,
    acts: &QuantizedActs,
    c0: usize,
    rows: Range<usize>,
    out: &mut [&mut [f32]],
) {
    let xq: [&[[u8; QK]]; C] = std::array::from_fn(|c| acts.column_qs(c0 + c).as_chunks().0);
    let xd: [&[f32]; C] = std::array::from_fn(|c| acts.column_d(c0 + c));
    let row = |r: usize| -> &[[u8; BYTES]] {
        weights
            .get(r * rb..(r + 1) * rb)
            .map_or(&[], |s| s.as_chunks::<BYTES>().0)
    };
    let mut r = rows.start;
    while r < rows.end {
        let i = r - rows.start;
        if r + 1 < rows.end {
            let ahead = [row(r + 2), row(r + 3)];
            let res = rows2::<BYTES, D, C>(row(r), row(r + 1), ahead, &xq, &xd);
            for (c, v) in res.iter().enumerate() {
                out[c0 + c][i] = v[0];
                out[c0 + c][i + 1] = v[1];
            }
            r += 2;
        } else {
            // A last odd row goes through both halves; the high one is dropped.
            let res = rows2::<BYTES, D, C>(row(r), row(r), [&[], &[]], &xq, &xd);
            for (c, v) in res.iter().enumerate() {
                out[c0 + c][i] = v[0];
            }
            r += 1;
        }
    }
}

/// Weight rows per tile of the tiled path: one output vector.
const TILE_ROWS: usize = 16;

/// Columns per register block of the tiled path.
const TILE_COLS: usize = 8;

/// One tile of 16 weight rows repacked for the tiled path: per block, eight
/// vectors whose lane `r` holds 4 consecutive signed weights of row `r`
/// (vector `s` has weights `4s..4s + 4`), the rows' scales, and
/// `-128 · Σw` per row for the unsigned-offset correction.
#[derive(Default)]
struct Tile {
    w: Vec<__m512i>,
    neg_corr: Vec<__m512i>,
    dw: Vec<__m512>,
}

impl Tile {
    /// Repacks rows `rows[0..16]` (any may repeat, to pad a last tile).
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c,fma")]
    fn pack<const BYTES: usize, D: Decode<BYTES>>(
        &mut self,
        rows: [&[[u8; BYTES]]; TILE_ROWS],
        nb: usize,
    ) {
        self.w.clear();
        self.neg_corr.clear();
        self.dw.clear();
        if rows.iter().any(|r| r.len() < nb) {
            return; // callers pass whole rows; never read out of bounds
        }
        // Row r's 32 weights of the current block, as 8 dwords.
        let mut plain = [[0i32; 8]; TILE_ROWS];
        let mut dw = [0f32; TILE_ROWS];
        // Lane r of gathered vector s reads dword s of row r.
        let idx = _mm512_setr_epi32(
            0, 8, 16, 24, 32, 40, 48, 56, 64, 72, 80, 88, 96, 104, 112, 120,
        );
        let offset = _mm512_set1_epi8(0x80u8 as i8);
        #[allow(clippy::needless_range_loop)] // `b` indexes all 16 rows
        for b in 0..nb {
            for p in 0..TILE_ROWS / 2 {
                // SAFETY: this function's features are those `load2` needs.
                let (w, d) = unsafe { D::load2(&rows[2 * p][b], &rows[2 * p + 1][b]) };
                // SAFETY: rows 2p and 2p + 1 of `plain` are 64 contiguous bytes.
                unsafe { _mm512_storeu_si512(plain[2 * p].as_mut_ptr().cast(), w) };
                let mut lanes = [0f32; 16];
                // SAFETY: 16 floats.
                unsafe { _mm512_storeu_ps(lanes.as_mut_ptr(), d) };
                dw[2 * p] = lanes[0];
                dw[2 * p + 1] = lanes[8];
            }
            let mut corr = _mm512_setzero_si512();
            for s in 0..8i32 {
                // SAFETY: indices s + 8r (r < 16) stay inside the 128 dwords of `plain`.
                let v = unsafe {
                    _mm512_i32gather_epi32::<4>(
                        _mm512_add_epi32(idx, _mm512_set1_epi32(s)),
                        plain.as_ptr().cast(),
                    )
                };
                corr = _mm512_dpbusd_epi32(corr, offset, v);
                self.w.push(v);
            }
            self.neg_corr
                .push(_mm512_sub_epi32(_mm512_setzero_si512(), corr));
            // SAFETY: 16 floats.
            self.dw.push(unsafe { _mm512_loadu_ps(dw.as_ptr()) });
        }
    }

    /// The tile's 16 rows against `C` columns: per block, eight `vpdpbusd`
    /// give each row's exact integer block product, then one scale product
    /// and one FMA for all 16 rows.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c,fma")]
    fn columns<const C: usize>(&self, xq: &[&[[u8; QK]]; C], xd: &[&[f32]; C]) -> [__m512; C] {
        let nb = self.dw.len();
        let mut acc = [_mm512_setzero_ps(); C];
        if self.w.len() < 8 * nb
            || self.neg_corr.len() < nb
            || xq.iter().any(|q| q.len() < nb)
            || xd.iter().any(|d| d.len() < nb)
        {
            return acc; // callers check sizes; never read out of bounds
        }
        for b in 0..nb {
            // SAFETY: b < nb and every slice has nb (8 nb) entries (checked above).
            unsafe {
                let w: [__m512i; 8] = std::array::from_fn(|s| *self.w.get_unchecked(8 * b + s));
                let start = *self.neg_corr.get_unchecked(b);
                let dw = *self.dw.get_unchecked(b);
                for c in 0..C {
                    let x = xq[c].get_unchecked(b).as_ptr().cast::<i32>();
                    let mut dot = start;
                    for (s, w) in w.iter().enumerate() {
                        dot = _mm512_dpbusd_epi32(
                            dot,
                            _mm512_set1_epi32(x.add(s).read_unaligned()),
                            *w,
                        );
                    }
                    let scale = _mm512_mul_ps(dw, _mm512_set1_ps(*xd[c].get_unchecked(b)));
                    acc[c] = _mm512_fmadd_ps(scale, _mm512_cvtepi32_ps(dot), acc[c]);
                }
            }
        }
        acc
    }
}

/// The tiled path for many columns: rows are repacked 16 at a time so that
/// one vector lane is one row; per block and column that is 8 `vpdpbusd`
/// and 3 float operations for 16 rows, against 32 operations in the
/// row-pair path. The float sums run in another order than the row-pair
/// path (and ggml's `vec_dot`): a column's result depends on which path
/// ran, so batch-invariant engines never take this one.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c,fma")]
fn run_tiled<const BYTES: usize, D: Decode<BYTES>>(
    weights: &[u8],
    rb: usize,
    acts: &QuantizedActs,
    rows: Range<usize>,
    out: &mut [&mut [f32]],
) {
    let n = acts.n().min(out.len());
    let nb = acts.k() / QK;
    let row = |r: usize| -> &[[u8; BYTES]] {
        weights
            .get(r * rb..(r + 1) * rb)
            .map_or(&[], |s| s.as_chunks::<BYTES>().0)
    };
    let mut tile = Tile::default();
    let mut r0 = rows.start;
    while r0 < rows.end {
        let count = (rows.end - r0).min(TILE_ROWS);
        // A short last tile repeats its last row; the copies are dropped.
        tile.pack::<BYTES, D>(std::array::from_fn(|i| row(r0 + i.min(count - 1))), nb);
        let i0 = r0 - rows.start;
        let mut c0 = 0;
        while c0 < n {
            let cnt = (n - c0).min(TILE_COLS);
            macro_rules! block {
                ($($c:literal)*) => {
                    match cnt {
                        $($c => {
                            let xq: [&[[u8; QK]]; $c] =
                                std::array::from_fn(|c| acts.column_qs(c0 + c).as_chunks().0);
                            let xd: [&[f32]; $c] = std::array::from_fn(|c| acts.column_d(c0 + c));
                            let res = tile.columns::<$c>(&xq, &xd);
                            for (c, v) in res.iter().enumerate() {
                                let mut lanes = [0f32; TILE_ROWS];
                                // SAFETY: 16 floats.
                                unsafe { _mm512_storeu_ps(lanes.as_mut_ptr(), *v) };
                                if let Some(dst) = out[c0 + c].get_mut(i0..i0 + count) {
                                    dst.copy_from_slice(&lanes[..count]);
                                }
                            }
                        })*
                        _ => {}
                    }
                };
            }
            block!(1 2 3 4 5 6 7 8);
            c0 += cnt;
        }
        r0 += count;
    }
}

/// Quantizes 32-value blocks exactly as [`super::quantize_block`] does
/// (`max|x|`, `127 / max|x|`, products rounded half to even by the CPU's
/// default rounding mode), 16 values per instruction: `xs`, `qs` and `ds`
/// hold the same number of blocks.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c,fma")]
pub(super) fn quantize_blocks(xs: &[[f32; QK]], qs: &mut [[u8; QK]], ds: &mut [f32], flip: u8) {
    for ((x, q), d) in xs.iter().zip(qs.iter_mut()).zip(ds.iter_mut()) {
        // SAFETY: a block is 32 floats; the two loads read 16 each.
        let (lo, hi) = unsafe {
            (
                _mm512_loadu_ps(x.as_ptr()),
                _mm512_loadu_ps(x.as_ptr().add(16)),
            )
        };
        let amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(lo), _mm512_abs_ps(hi)));
        let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
        *d = half::f16::from_f32(amax / 127.0).to_f32();
        let mul = _mm512_set1_ps(id);
        // |x * id| <= 127, so the narrowing never saturates.
        let q_lo = _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(lo, mul)));
        let q_hi = _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(hi, mul)));
        let both = _mm256_xor_si256(
            _mm256_inserti128_si256::<1>(_mm256_castsi128_si256(q_lo), q_hi),
            _mm256_set1_epi8(flip as i8),
        );
        // SAFETY: `q` is 32 bytes; the store writes 32.
        unsafe { _mm256_storeu_si256(q.as_mut_ptr().cast(), both) };
    }
}

/// One weight block as unsigned bytes `w + OFFSET` (256 bits), for the
/// one-column path.
///
/// # Safety
/// Only for CPUs with the features of [`detected`].
trait DecodeOne<const BYTES: usize> {
    /// What the unsigned bytes exceed the signed weights by.
    const OFFSET: i32;
    unsafe fn load(b: &[u8; BYTES]) -> __m256i;
}

impl DecodeOne<34> for Q8 {
    const OFFSET: i32 = 128;
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c,fma")]
    unsafe fn load(b: &[u8; 34]) -> __m256i {
        // SAFETY: bytes 2..34 of the 34-byte block are read.
        let w = unsafe { _mm256_loadu_si256(b.as_ptr().add(2).cast()) };
        _mm256_xor_si256(w, _mm256_set1_epi8(0x80u8 as i8))
    }
}

impl DecodeOne<22> for Q5 {
    const OFFSET: i32 = 16;
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c,fma")]
    unsafe fn load(b: &[u8; 22]) -> __m256i {
        // SAFETY: bytes 6..22 (the 16 nibble bytes) of the block are read.
        let q = unsafe { _mm_loadu_si128(b.as_ptr().add(6).cast()) };
        let v = _mm256_broadcastsi128_si256(q);
        // Low nibbles are elements 0-15, high nibbles 16-31.
        let nib = _mm256_and_si256(
            _mm256_blend_epi32::<0xF0>(v, _mm256_srli_epi16::<4>(v)),
            _mm256_set1_epi8(0x0F),
        );
        // Bit j of qh is bit 4 of element j; w + 16 = nibble + 16 * bit.
        let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
        _mm256_mask_add_epi8(nib, qh, nib, _mm256_set1_epi8(16))
    }
}

impl DecodeOne<18> for Q4 {
    const OFFSET: i32 = 8;
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c,fma")]
    unsafe fn load(b: &[u8; 18]) -> __m256i {
        // SAFETY: bytes 2..18 (the 16 nibble bytes) of the block are read.
        let q = unsafe { _mm_loadu_si128(b.as_ptr().add(2).cast()) };
        let v = _mm256_broadcastsi128_si256(q);
        // Low nibbles are elements 0-15, high nibbles 16-31: w + 8 is the nibble.
        _mm256_and_si256(
            _mm256_blend_epi32::<0xF0>(v, _mm256_srli_epi16::<4>(v)),
            _mm256_set1_epi8(0x0F),
        )
    }
}

/// f16 bits at the start of a block, widened.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c,fma")]
fn block_scale(b: &[u8]) -> f32 {
    let bits = match b {
        [lo, hi, ..] => u16::from_le_bytes([*lo, *hi]),
        _ => 0,
    };
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(bits))))
}

/// How far ahead of the block being read the one-column path prefetches.
/// Rows are read strictly one after another: interleaving several rows
/// (more independent chains) measured 8 GB/s against 17 for one sequential
/// stream, the hardware prefetcher following one stream best; the software
/// prefetch adds a little on top (30 GB/s at 2 threads on the test machine).
const PREFETCH_BYTES: usize = 2048;

/// One activation column against one weight row: `vpdpbusd` of the
/// unsigned weights (`w + OFFSET`) with the signed activations, starting
/// from `-OFFSET * sum(x)` per lane, so no per-block weight correction is
/// needed. Per block it is one load, the decode, one `vpdpbusd`, a
/// conversion and one FMA: memory-bound, where the multi-column path's
/// per-block work (shared by up to 16 columns) is not for one column.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c,fma")]
fn gemv_row<const BYTES: usize, D: DecodeOne<BYTES>>(
    row: &[[u8; BYTES]],
    x: &[[u8; QK]],
    init: &[__m256i],
    xd: &[f32],
) -> f32 {
    let nb = x.len().min(init.len()).min(xd.len());
    if row.len() < nb {
        return 0.0; // callers check sizes; never read out of bounds
    }
    // One accumulator in block order, as ggml's `vec_dot` sums (the same
    // per-lane integers, scale products and FMA order), so one-column
    // results are bit-identical to ggml's; the FMA chain still keeps up
    // with memory.
    let mut acc = _mm256_setzero_ps();
    for b in 0..nb {
        // SAFETY: `b < nb`, and every slice has at least `nb` entries
        // (checked above); an activation block is 32 bytes, the load reads 32.
        let (xv, start, d, blk) = unsafe {
            (
                _mm256_loadu_si256(x.get_unchecked(b).as_ptr().cast()),
                *init.get_unchecked(b),
                *xd.get_unchecked(b),
                row.get_unchecked(b),
            )
        };
        // Prefetching never faults, so a pointer past the end is harmless.
        _mm_prefetch::<_MM_HINT_T0>(blk.as_ptr().wrapping_add(PREFETCH_BYTES).cast());
        // SAFETY: this function's features are those `load` needs.
        let w = unsafe { D::load(blk) };
        let dot = _mm256_dpbusd_epi32(start, w, xv);
        let s = _mm256_set1_ps(block_scale(blk) * d);
        acc = _mm256_fmadd_ps(s, _mm256_cvtepi32_ps(dot), acc);
    }
    hsum256(acc)
}

/// The one-column product for `rows`: signed activations and per-lane
/// start values are prepared once, then the rows go one after another.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c,fma")]
fn gemv<const BYTES: usize, D: DecodeOne<BYTES>>(
    weights: &[u8],
    rb: usize,
    acts: &QuantizedActs,
    rows: Range<usize>,
    out: &mut [f32],
) {
    // The stored bytes are `q + 128`; flip back to signed `q`.
    let x: Vec<[u8; QK]> = acts
        .column_qs(0)
        .as_chunks::<QK>()
        .0
        .iter()
        .map(|b| b.map(|v| v ^ 0x80))
        .collect();
    let xd = acts.column_d(0);
    let ones = _mm256_set1_epi8(1);
    let neg_offset = _mm256_set1_epi32(-D::OFFSET);
    let init: Vec<__m256i> = x
        .iter()
        .map(|b| {
            // SAFETY: a block is 32 bytes; the load reads 32.
            let xv = unsafe { _mm256_loadu_si256(b.as_ptr().cast()) };
            let lane_sums = _mm256_dpbusd_epi32(_mm256_setzero_si256(), ones, xv);
            _mm256_mullo_epi32(lane_sums, neg_offset)
        })
        .collect();
    for (r, o) in rows.zip(out.iter_mut()) {
        let row = weights
            .get(r * rb..(r + 1) * rb)
            .map_or(&[][..], |s| s.as_chunks::<BYTES>().0);
        *o = gemv_row::<BYTES, D>(row, &x, &init, xd);
    }
}

/// Runs the columns in groups of at most [`GROUP`].
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c,fma")]
fn run<const BYTES: usize, D: Decode<BYTES>>(
    weights: &[u8],
    rb: usize,
    acts: &QuantizedActs,
    rows: Range<usize>,
    out: &mut [&mut [f32]],
) {
    let n = acts.n().min(out.len());
    let mut c0 = 0;
    while c0 < n {
        let cnt = (n - c0).min(GROUP);
        macro_rules! group {
            ($($c:literal)*) => {
                match cnt {
                    $($c => run_group::<BYTES, D, $c>(weights, rb, acts, c0, rows.clone(), out),)*
                    _ => {}
                }
            };
        }
        group!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16);
        c0 += cnt;
    }
}

impl MatmulKernel for Avx512Kernel {
    fn isa(&self) -> Isa {
        Isa::Avx512Vnni
    }

    fn acts_format(&self) -> ActsFormat {
        ActsFormat::Offset128
    }

    fn matmul_rows(
        &self,
        ty: GgmlType,
        weights: &[u8],
        acts: &QuantizedActs,
        rows: Range<usize>,
        out: &mut [&mut [f32]],
    ) -> Result<(), KernelError> {
        let rb = row_bytes(ty, acts.k());
        match (ty, out) {
            // SAFETY: `self` exists only where the CPU has every feature
            // `gemv` and `run` are compiled for (`Avx512Kernel::detect`).
            (GgmlType::Q8_0, [col]) => unsafe { gemv::<34, Q8>(weights, rb, acts, rows, col) },
            // SAFETY: as above.
            (GgmlType::Q5_0, [col]) => unsafe { gemv::<22, Q5>(weights, rb, acts, rows, col) },
            // SAFETY: as above.
            (GgmlType::Q4_0, [col]) => unsafe { gemv::<18, Q4>(weights, rb, acts, rows, col) },
            // SAFETY: as above.
            (GgmlType::Q8_0, out) => unsafe { run::<34, Q8>(weights, rb, acts, rows, out) },
            // SAFETY: as above.
            (GgmlType::Q5_0, out) => unsafe { run::<22, Q5>(weights, rb, acts, rows, out) },
            // SAFETY: as above.
            (GgmlType::Q4_0, out) => unsafe { run::<18, Q4>(weights, rb, acts, rows, out) },
            _ => return Err(KernelError::Unsupported(ty)),
        }
        Ok(())
    }

    fn matmul_rows_tiled(
        &self,
        ty: GgmlType,
        weights: &[u8],
        acts: &QuantizedActs,
        rows: Range<usize>,
        out: &mut [&mut [f32]],
    ) -> bool {
        let rb = row_bytes(ty, acts.k());
        match ty {
            // SAFETY: `self` exists only where the CPU has every feature
            // `run_tiled` is compiled for (`Avx512Kernel::detect`).
            GgmlType::Q8_0 => unsafe { run_tiled::<34, Q8>(weights, rb, acts, rows, out) },
            // SAFETY: as above.
            GgmlType::Q5_0 => unsafe { run_tiled::<22, Q5>(weights, rb, acts, rows, out) },
            // SAFETY: as above.
            GgmlType::Q4_0 => unsafe { run_tiled::<18, Q4>(weights, rb, acts, rows, out) },
            _ => return false,
        }
        true
    }
}
