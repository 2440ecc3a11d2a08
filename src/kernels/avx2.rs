//! AVX2 + FMA + F16C kernel, for x86-64 CPUs without AVX-512 VNNI: Q8_0,
//! Q5_0 and Q4_0 (the super-block types are in `kquants`).
//!
//! Each weight block is decoded into signed bytes once per pass of up to 8
//! columns (8 accumulators). A block product is ggml's
//! AVX2 one: `vpmaddubsw` of `|w|` with `x` carrying `w`'s sign (at most
//! 2·127·127 per 16-bit pair, so no saturation), `vpmaddwd` with ones to 8
//! 32-bit sums, converted, and one FMA with the scale product `d_w·d_x`.
//! Every column takes these steps whatever the column count, so results do
//! not depend on the batch, and they are the steps of ggml's AVX2
//! `vec_dot` for these types.

use std::arch::x86_64::*;
use std::ops::Range;

use super::{row_bytes, ActsFormat, Isa, KernelError, MatmulKernel, QuantizedActs, QK};
use crate::quant::GgmlType;

fn detected() -> bool {
    is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
        && is_x86_feature_detected!("f16c")
}

/// The AVX2 kernels, and proof that this CPU runs them: only
/// [`Avx2Kernel::detect_static`] makes one (private field), so its safe
/// methods may call this file's `#[target_feature]` code.
#[derive(Clone, Copy, Debug)]
pub struct Avx2Kernel {
    _detected: (),
}

impl Avx2Kernel {
    /// The kernel by value (for `kquants`' AVX2 path), where the CPU has
    /// AVX2, FMA and F16C.
    pub fn detect() -> Option<Avx2Kernel> {
        detected().then_some(Avx2Kernel { _detected: () })
    }

    /// The kernel, where the CPU has AVX2, FMA and F16C.
    pub(super) fn detect_static() -> Option<&'static Avx2Kernel> {
        static KERNEL: Avx2Kernel = Avx2Kernel { _detected: () };
        detected().then_some(&KERNEL)
    }
}

/// Columns per pass over a weight row (accumulators in registers).
const GROUP: usize = 8;

/// Decodes one weight block into 32 signed bytes and its scale.
///
/// # Safety
/// Only for CPUs with the features of [`detected`].
trait Decode<const BYTES: usize> {
    unsafe fn load(b: &[u8; BYTES]) -> (__m256i, f32);
}

struct Q8;
struct Q5;
struct Q4;

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn f16_scale(lo: u8, hi: u8) -> f32 {
    let bits = i32::from(u16::from_le_bytes([lo, hi]));
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits)))
}

/// 16 nibble bytes as 32 values: low nibbles are elements 0-15, high
/// nibbles 16-31.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn nibbles(q: __m128i) -> __m256i {
    _mm256_and_si256(
        _mm256_set_m128i(_mm_srli_epi16::<4>(q), q),
        _mm256_set1_epi8(0x0F),
    )
}

impl Decode<34> for Q8 {
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn load(b: &[u8; 34]) -> (__m256i, f32) {
        // SAFETY: bytes 2..34 of the 34-byte block.
        let w = unsafe { _mm256_loadu_si256(b.as_ptr().add(2).cast()) };
        (w, f16_scale(b[0], b[1]))
    }
}

impl Decode<18> for Q4 {
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn load(b: &[u8; 18]) -> (__m256i, f32) {
        // SAFETY: bytes 2..18 (the 16 nibble bytes) of the 18-byte block.
        let nib = nibbles(unsafe { _mm_loadu_si128(b.as_ptr().add(2).cast()) });
        // w = nibble - 8.
        (
            _mm256_sub_epi8(nib, _mm256_set1_epi8(8)),
            f16_scale(b[0], b[1]),
        )
    }
}

impl Decode<22> for Q5 {
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn load(b: &[u8; 22]) -> (__m256i, f32) {
        // SAFETY: bytes 6..22 (the 16 nibble bytes) of the 22-byte block.
        let nib = nibbles(unsafe { _mm_loadu_si128(b.as_ptr().add(6).cast()) });
        // Bit j of qh is bit 4 of element j: spread bit j to byte j
        // (0xFF where set), then elements without it get 0xF0 or'ed in,
        // which is `nibble - 16` as a signed byte.
        let qh = i32::from_le_bytes([b[2], b[3], b[4], b[5]]);
        let spread = _mm256_shuffle_epi8(
            _mm256_set1_epi32(qh),
            _mm256_set_epi64x(
                0x0303_0303_0303_0303,
                0x0202_0202_0202_0202,
                0x0101_0101_0101_0101,
                0,
            ),
        );
        let bit_set = _mm256_cmpeq_epi8(
            _mm256_or_si256(spread, _mm256_set1_epi64x(0x7fbf_dfef_f7fb_fdfe)),
            _mm256_set1_epi64x(-1),
        );
        let w = _mm256_or_si256(
            nib,
            _mm256_andnot_si256(bit_set, _mm256_set1_epi8(0xF0u8 as i8)),
        );
        (w, f16_scale(b[0], b[1]))
    }
}

/// The sum of 8 floats (pairwise, as ggml's `hsum_float_8`); the AVX-512
/// kernel uses it too.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

/// One weight row against columns `c0..c0 + C`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn row_group<const BYTES: usize, D: Decode<BYTES>, const C: usize>(
    row: &[[u8; BYTES]],
    acts: &QuantizedActs,
    c0: usize,
) -> [f32; C] {
    let nb = row.len();
    let xq: [&[[u8; QK]]; C] = std::array::from_fn(|c| acts.column_qs(c0 + c).as_chunks().0);
    let xd: [&[f32]; C] = std::array::from_fn(|c| acts.column_d(c0 + c));
    let mut res = [0f32; C];
    if xq.iter().any(|q| q.len() < nb) || xd.iter().any(|d| d.len() < nb) {
        return res; // callers check sizes; never read out of bounds
    }
    let ones = _mm256_set1_epi16(1);
    let mut acc = [_mm256_setzero_ps(); C];
    for (b, block) in row.iter().enumerate() {
        // SAFETY: this function's features are those `load` needs.
        let (w, dw) = unsafe { D::load(block) };
        let abs_w = _mm256_sign_epi8(w, w);
        for c in 0..C {
            // SAFETY: b < nb <= every column's length (checked above); a
            // block is 32 bytes and the load reads 32.
            let (x, dx) = unsafe {
                (
                    _mm256_loadu_si256(xq[c].get_unchecked(b).as_ptr().cast()),
                    *xd[c].get_unchecked(b),
                )
            };
            let pairs = _mm256_maddubs_epi16(abs_w, _mm256_sign_epi8(x, w));
            let sums = _mm256_cvtepi32_ps(_mm256_madd_epi16(pairs, ones));
            acc[c] = _mm256_fmadd_ps(_mm256_set1_ps(dw * dx), sums, acc[c]);
        }
    }
    for (r, a) in res.iter_mut().zip(acc) {
        *r = hsum(a);
    }
    res
}

#[target_feature(enable = "avx2,fma,f16c")]
fn run<const BYTES: usize, D: Decode<BYTES>>(
    weights: &[u8],
    rb: usize,
    acts: &QuantizedActs,
    rows: Range<usize>,
    out: &mut [&mut [f32]],
) {
    let n = acts.n().min(out.len());
    for (i, r) in rows.enumerate() {
        let row = weights
            .get(r * rb..(r + 1) * rb)
            .map_or(&[][..], |s| s.as_chunks::<BYTES>().0);
        let mut c0 = 0;
        while c0 < n {
            let cnt = (n - c0).min(GROUP);
            macro_rules! group {
                ($($c:literal)*) => {
                    match cnt {
                        $($c => {
                            let res = row_group::<BYTES, D, $c>(row, acts, c0);
                            for (c, v) in res.iter().enumerate() {
                                out[c0 + c][i] = *v;
                            }
                        })*
                        _ => {}
                    }
                };
            }
            group!(1 2 3 4 5 6 7 8);
            c0 += cnt;
        }
    }
}

impl MatmulKernel for Avx2Kernel {
    fn isa(&self) -> Isa {
        Isa::Avx2
    }

    /// Q8_0, Q5_0 and Q4_0 here; Q4_K, Q5_K and Q6_K in `kquants`.
    fn supports(&self, ty: GgmlType) -> bool {
        matches!(ty, GgmlType::Q8_0 | GgmlType::Q5_0 | GgmlType::Q4_0)
            || super::kquants::is_super_block_type(ty)
    }

    fn acts_format(&self) -> ActsFormat {
        ActsFormat::Signed
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
        match ty {
            // SAFETY: `self` exists only where the CPU has every feature
            // `run` is compiled for (`Avx2Kernel::detect_static`).
            GgmlType::Q8_0 => unsafe { run::<34, Q8>(weights, rb, acts, rows, out) },
            // SAFETY: as above.
            GgmlType::Q5_0 => unsafe { run::<22, Q5>(weights, rb, acts, rows, out) },
            // SAFETY: as above.
            GgmlType::Q4_0 => unsafe { run::<18, Q4>(weights, rb, acts, rows, out) },
            _ => return Err(KernelError::Unsupported(ty)),
        }
        Ok(())
    }
}
