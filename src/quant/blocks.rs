//! Byte layouts of ggml's block formats, parsed from little-endian byte
//! slices (no `#[repr(C)]` casts, so any alignment and any host works).
//!
//! Each `Block*` is a borrowed view of one block with its scale fields
//! decoded to `f32`. `dequantize` reproduces ggml's reference `to_float`
//! arithmetic operation for operation (same products, same order, no fused
//! multiply-adds) so the results are bit-identical.

use half::f16;

use super::QK_K;

/// Reads a little-endian IEEE half into `f32` (exact: every f16 is an f32).
#[inline(always)]
pub fn f16_le(bytes: &[u8; 2]) -> f32 {
    f16::from_le_bytes(*bytes).to_f32()
}

/// Takes the next `N` bytes off the front of `rest`.
#[inline(always)]
fn take<'a, const N: usize>(rest: &mut &'a [u8]) -> Option<&'a [u8; N]> {
    let (head, tail) = rest.split_first_chunk::<N>()?;
    *rest = tail;
    Some(head)
}

/// Takes the next `N` bytes off the front of a mutable `rest`.
#[inline(always)]
fn take_mut<'a, const N: usize>(rest: &mut &'a mut [u8]) -> Option<&'a mut [u8; N]> {
    let (head, tail) = std::mem::take(rest).split_first_chunk_mut::<N>()?;
    *rest = tail;
    Some(head)
}

/// Splits a 256-element output block into `K` equal runs.
#[inline(always)]
fn runs_mut<const K: usize>(out: &mut [f32; QK_K]) -> &mut [[f32; K]] {
    out.as_chunks_mut::<K>().0
}

/// `Q4_0`: 32 elements, `x = d * (q - 8)` with 4-bit `q`.
pub struct BlockQ4_0<'a> {
    pub d: f32,
    /// Element `j` in the low nibble of byte `j`, element `j + 16` in the high one.
    pub qs: &'a [u8; 16],
}

impl<'a> BlockQ4_0<'a> {
    pub const BYTES: usize = 18;
    pub const ELEMENTS: usize = 32;

    pub fn parse(mut b: &'a [u8]) -> Option<Self> {
        let d = f16_le(take(&mut b)?);
        let qs = take(&mut b)?;
        b.is_empty().then_some(Self { d, qs })
    }

    // Not inlined: inlined, LLVM vectorizes across blocks with scatters,
    // which is several times slower than vectorizing within a block.
    #[inline(never)]
    pub fn dequantize(&self, out: &mut [f32; 32]) {
        let (lo, hi) = out.split_at_mut(16);
        for ((q, y0), y1) in self.qs.iter().zip(lo).zip(hi) {
            // q - 8 is exact in f32 either way, so this equals ggml's int math.
            *y0 = (f32::from(q & 0x0F) - 8.0) * self.d;
            *y1 = (f32::from(q >> 4) - 8.0) * self.d;
        }
    }
}

/// `MXFP4` (OCP microscaling FP4): 32 elements, `x = v[q] * 2^(e - 128)`
/// with 4-bit E2M1 codes `q` (`v` holds their values doubled, as ggml's
/// table does, hence the halved scale) and one E8M0 exponent byte `e`.
pub struct BlockMxfp4<'a> {
    pub d: f32,
    /// Element `j` in the low nibble of byte `j`, element `j + 16` in the high one.
    pub qs: &'a [u8; 16],
}

/// E2M1 values times two, by code (sign in bit 3).
pub const MXFP4_VALUES: [i8; 16] = [0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12];

impl<'a> BlockMxfp4<'a> {
    pub const BYTES: usize = 17;
    pub const ELEMENTS: usize = 32;

    pub fn parse(mut b: &'a [u8]) -> Option<Self> {
        let [e] = *take::<1>(&mut b)?;
        let qs = take(&mut b)?;
        b.is_empty().then_some(Self {
            d: e8m0_half(e),
            qs,
        })
    }

    pub fn dequantize(&self, out: &mut [f32; 32]) {
        let (lo, hi) = out.split_at_mut(16);
        for ((q, y0), y1) in self.qs.iter().zip(lo).zip(hi) {
            // A small integer times a power of two: exact, as in ggml.
            *y0 = f32::from(MXFP4_VALUES[usize::from(q & 0x0F)]) * self.d;
            *y1 = f32::from(MXFP4_VALUES[usize::from(q >> 4)]) * self.d;
        }
    }
}

/// `2^(e - 127) / 2` for an E8M0 exponent byte, built from its bits as ggml
/// does (subnormal for `e < 2`).
fn e8m0_half(e: u8) -> f32 {
    let bits = if e < 2 {
        0x0020_0000u32 << e
    } else {
        u32::from(e - 1) << 23
    };
    f32::from_bits(bits)
}

/// `Q4_1`: 32 elements, `x = d * q + m` with 4-bit `q`.
pub struct BlockQ4_1<'a> {
    pub d: f32,
    pub m: f32,
    pub qs: &'a [u8; 16],
}

impl<'a> BlockQ4_1<'a> {
    pub const BYTES: usize = 20;
    pub const ELEMENTS: usize = 32;

    pub fn parse(mut b: &'a [u8]) -> Option<Self> {
        let d = f16_le(take(&mut b)?);
        let m = f16_le(take(&mut b)?);
        let qs = take(&mut b)?;
        b.is_empty().then_some(Self { d, m, qs })
    }

    // Not inlined, as for Q4_0.
    #[inline(never)]
    pub fn dequantize(&self, out: &mut [f32; 32]) {
        let (lo, hi) = out.split_at_mut(16);
        for ((q, y0), y1) in self.qs.iter().zip(lo).zip(hi) {
            *y0 = (q & 0x0F) as f32 * self.d + self.m;
            *y1 = (q >> 4) as f32 * self.d + self.m;
        }
    }
}

/// `Q5_0`: 32 elements, `x = d * (q - 16)` with 5-bit `q`; bit 4 of element
/// `j` is bit `j` of the little-endian `qh`.
pub struct BlockQ5_0<'a> {
    pub d: f32,
    pub qh: u32,
    pub qs: &'a [u8; 16],
}

impl<'a> BlockQ5_0<'a> {
    pub const BYTES: usize = 22;
    pub const ELEMENTS: usize = 32;

    pub fn parse(mut b: &'a [u8]) -> Option<Self> {
        let d = f16_le(take(&mut b)?);
        let qh = u32::from_le_bytes(*take(&mut b)?);
        let qs = take(&mut b)?;
        b.is_empty().then_some(Self { d, qh, qs })
    }

    #[inline(always)]
    pub fn dequantize(&self, out: &mut [f32; 32]) {
        let (lo, hi) = out.split_at_mut(16);
        for (j, ((q, y0), y1)) in self.qs.iter().zip(lo).zip(hi).enumerate() {
            let h0 = ((self.qh >> j) << 4) & 0x10;
            let h1 = (self.qh >> (j + 12)) & 0x10;
            *y0 = ((u32::from(q & 0x0F) | h0) as i32 - 16) as f32 * self.d;
            *y1 = ((u32::from(q >> 4) | h1) as i32 - 16) as f32 * self.d;
        }
    }
}

/// `Q5_1`: 32 elements, `x = d * q + m` with 5-bit `q` (high bits as in `Q5_0`).
pub struct BlockQ5_1<'a> {
    pub d: f32,
    pub m: f32,
    pub qh: u32,
    pub qs: &'a [u8; 16],
}

impl<'a> BlockQ5_1<'a> {
    pub const BYTES: usize = 24;
    pub const ELEMENTS: usize = 32;

    pub fn parse(mut b: &'a [u8]) -> Option<Self> {
        let d = f16_le(take(&mut b)?);
        let m = f16_le(take(&mut b)?);
        let qh = u32::from_le_bytes(*take(&mut b)?);
        let qs = take(&mut b)?;
        b.is_empty().then_some(Self { d, m, qh, qs })
    }

    #[inline(always)]
    pub fn dequantize(&self, out: &mut [f32; 32]) {
        let (lo, hi) = out.split_at_mut(16);
        for (j, ((q, y0), y1)) in self.qs.iter().zip(lo).zip(hi).enumerate() {
            let h0 = ((self.qh >> j) << 4) & 0x10;
            let h1 = (self.qh >> (j + 12)) & 0x10;
            *y0 = (u32::from(q & 0x0F) | h0) as f32 * self.d + self.m;
            *y1 = (u32::from(q >> 4) | h1) as f32 * self.d + self.m;
        }
    }
}

/// `Q8_0`: 32 elements, `x = d * q` with signed 8-bit `q`.
pub struct BlockQ8_0<'a> {
    pub d: f32,
    pub qs: &'a [u8; 32],
}

impl<'a> BlockQ8_0<'a> {
    pub const BYTES: usize = 34;
    pub const ELEMENTS: usize = 32;

    pub fn parse(mut b: &'a [u8]) -> Option<Self> {
        let d = f16_le(take(&mut b)?);
        let qs = take(&mut b)?;
        b.is_empty().then_some(Self { d, qs })
    }

    #[inline(always)]
    pub fn dequantize(&self, out: &mut [f32; 32]) {
        for (q, y) in self.qs.iter().zip(out.iter_mut()) {
            *y = f32::from(*q as i8) * self.d;
        }
    }

    /// Writes a block; `None` if `out` is not exactly [`Self::BYTES`] long.
    pub fn write(mut out: &mut [u8], d: f16, qs: &[i8; 32]) -> Option<()> {
        *take_mut::<2>(&mut out)? = d.to_le_bytes();
        *take_mut::<32>(&mut out)? = qs.map(|q| q as u8);
        out.is_empty().then_some(())
    }
}

/// `Q2_K`: 256 elements in 16 runs of 16; run `i` has `scales[i]` = 4-bit
/// scale (low) and 4-bit min (high): `x = d*sc * q - dmin*m`, 2-bit `q`.
pub struct BlockQ2K<'a> {
    pub scales: &'a [u8; 16],
    /// Two 128-element halves of 32 bytes; within a half, bit pair `2*j` of
    /// byte `l` is element `32*j + l`.
    pub qs: &'a [u8; 64],
    pub d: f32,
    pub dmin: f32,
}

impl<'a> BlockQ2K<'a> {
    pub const BYTES: usize = 84;

    pub fn parse(mut b: &'a [u8]) -> Option<Self> {
        let scales = take(&mut b)?;
        let qs = take(&mut b)?;
        let d = f16_le(take(&mut b)?);
        let dmin = f16_le(take(&mut b)?);
        b.is_empty().then_some(Self {
            scales,
            qs,
            d,
            dmin,
        })
    }

    #[inline(always)]
    pub fn dequantize(&self, out: &mut [f32; QK_K]) {
        // Runs go: 128-element half, then bit pair, then which 16 bytes.
        let mut runs = runs_mut::<16>(out).iter_mut();
        let mut scales = self.scales.iter();
        for half in self.qs.as_chunks::<32>().0 {
            let (q_lo, q_hi) = half.split_at(16);
            for shift in [0, 2, 4, 6] {
                for q in [q_lo, q_hi] {
                    let (Some(run), Some(sc)) = (runs.next(), scales.next()) else {
                        return;
                    };
                    let dl = self.d * f32::from(sc & 0x0F);
                    let ml = self.dmin * f32::from(sc >> 4);
                    for (y, q) in run.iter_mut().zip(q) {
                        *y = dl * f32::from((q >> shift) & 3) - ml;
                    }
                }
            }
        }
    }
}

/// Unpacks `Q3_K`'s 16 six-bit scales (biased by 32) from 12 bytes: low
/// nibbles in bytes 0..8, high bit pairs in bytes 8..12.
#[inline(always)]
pub fn q3k_scales(s: &[u8; 12]) -> [i8; 16] {
    let mut out = [0i8; 16];
    for (i, o) in out.iter_mut().enumerate() {
        let low = if i < 8 { s[i] & 0x0F } else { s[i - 8] >> 4 };
        let high = (s[8 + i % 4] >> (2 * (i / 4))) & 3;
        *o = ((low | (high << 4)) as i8).wrapping_sub(32);
    }
    out
}

/// `Q3_K`: 256 elements in 16 runs of 16, `x = d * sc * (q - 4*!h)` with
/// 2 low bits in `qs`, the third bit in `hmask`, and a signed 6-bit `sc`.
pub struct BlockQ3K<'a> {
    pub hmask: &'a [u8; 32],
    pub qs: &'a [u8; 64],
    pub scales: &'a [u8; 12],
    pub d: f32,
}

impl<'a> BlockQ3K<'a> {
    pub const BYTES: usize = 110;

    pub fn parse(mut b: &'a [u8]) -> Option<Self> {
        let hmask = take(&mut b)?;
        let qs = take(&mut b)?;
        let scales = take(&mut b)?;
        let d = f16_le(take(&mut b)?);
        b.is_empty().then_some(Self {
            hmask,
            qs,
            scales,
            d,
        })
    }

    #[inline(always)]
    pub fn dequantize(&self, out: &mut [f32; QK_K]) {
        let scales = q3k_scales(self.scales);
        let mut runs = runs_mut::<16>(out).iter_mut();
        let mut scales = scales.iter();
        let (hm_lo, hm_hi) = self.hmask.split_at(16);
        // The third bit of element `l` of bit pair `j` in half `n` is bit
        // `4n + j` of hmask[l].
        let mut hbit = 1u8;
        for half in self.qs.as_chunks::<32>().0 {
            let (q_lo, q_hi) = half.split_at(16);
            for shift in [0, 2, 4, 6] {
                for (q, hm) in [(q_lo, hm_lo), (q_hi, hm_hi)] {
                    let (Some(run), Some(sc)) = (runs.next(), scales.next()) else {
                        return;
                    };
                    let dl = self.d * f32::from(*sc);
                    for ((y, q), h) in run.iter_mut().zip(q).zip(hm) {
                        let v = ((q >> shift) & 3) as i8 - if h & hbit != 0 { 0 } else { 4 };
                        *y = dl * f32::from(v);
                    }
                }
                hbit = hbit.wrapping_shl(1);
            }
        }
    }
}

/// Unpacks the eight 6-bit (scale, min) pairs of `Q4_K`/`Q5_K`: pairs 0..4
/// sit in the low 6 bits of bytes 0..4 / 4..8; pairs 4..8 keep their low
/// nibbles in bytes 8..12 and their top 2 bits in the top of bytes 0..8.
#[inline(always)]
pub fn k4_scales_mins(s: &[u8; 12]) -> ([u8; 8], [u8; 8]) {
    let mut sc = [0u8; 8];
    let mut m = [0u8; 8];
    for j in 0..4 {
        sc[j] = s[j] & 63;
        m[j] = s[j + 4] & 63;
        sc[j + 4] = (s[j + 8] & 0x0F) | ((s[j] >> 6) << 4);
        m[j + 4] = (s[j + 8] >> 4) | ((s[j + 4] >> 6) << 4);
    }
    (sc, m)
}

/// Packs eight 6-bit scales and mins (values above 63 are cut to 6 bits)
/// into the 12-byte layout that [`k4_scales_mins`] reads.
pub fn k4_pack_scales_mins(sc: &[u8; 8], m: &[u8; 8]) -> [u8; 12] {
    let mut s = [0u8; 12];
    for j in 0..4 {
        s[j] = (sc[j] & 63) | ((sc[j + 4] >> 4) << 6);
        s[j + 4] = (m[j] & 63) | ((m[j + 4] >> 4) << 6);
        s[j + 8] = (sc[j + 4] & 0x0F) | ((m[j + 4] & 0x0F) << 4);
    }
    s
}

/// `Q4_K`: 256 elements in 8 runs of 32, `x = d*sc * q - dmin*m` with
/// 4-bit `q` and 6-bit `sc`, `m`.
pub struct BlockQ4K<'a> {
    pub d: f32,
    pub dmin: f32,
    pub scales: &'a [u8; 12],
    /// Four 32-byte groups; group `g` holds run `2g` in its low nibbles and
    /// run `2g + 1` in its high nibbles.
    pub qs: &'a [u8; 128],
}

impl<'a> BlockQ4K<'a> {
    pub const BYTES: usize = 144;

    pub fn parse(mut b: &'a [u8]) -> Option<Self> {
        let d = f16_le(take(&mut b)?);
        let dmin = f16_le(take(&mut b)?);
        let scales = take(&mut b)?;
        let qs = take(&mut b)?;
        b.is_empty().then_some(Self {
            d,
            dmin,
            scales,
            qs,
        })
    }

    #[inline(always)]
    pub fn dequantize(&self, out: &mut [f32; QK_K]) {
        let (sc, m) = k4_scales_mins(self.scales);
        let groups = self.qs.as_chunks::<32>().0;
        let outs = runs_mut::<64>(out);
        for (g, (q, y)) in groups.iter().zip(outs.iter_mut()).enumerate() {
            let d1 = self.d * f32::from(sc[2 * g]);
            let m1 = self.dmin * f32::from(m[2 * g]);
            let d2 = self.d * f32::from(sc[2 * g + 1]);
            let m2 = self.dmin * f32::from(m[2 * g + 1]);
            let (lo, hi) = y.split_at_mut(32);
            for ((q, y0), y1) in q.iter().zip(lo).zip(hi) {
                *y0 = d1 * f32::from(q & 0x0F) - m1;
                *y1 = d2 * f32::from(q >> 4) - m2;
            }
        }
    }

    /// Writes a block from its super-scales, eight 6-bit (scale, min) pairs
    /// and 256 four-bit quants in element order; `None` if `out` is not
    /// exactly [`Self::BYTES`] long.
    pub fn write(
        mut out: &mut [u8],
        d: f16,
        dmin: f16,
        sc: &[u8; 8],
        m: &[u8; 8],
        q: &[u8; QK_K],
    ) -> Option<()> {
        *take_mut::<2>(&mut out)? = d.to_le_bytes();
        *take_mut::<2>(&mut out)? = dmin.to_le_bytes();
        *take_mut::<12>(&mut out)? = k4_pack_scales_mins(sc, m);
        let qs = take_mut::<128>(&mut out)?;
        for (bytes, runs) in qs
            .as_chunks_mut::<32>()
            .0
            .iter_mut()
            .zip(q.as_chunks::<64>().0)
        {
            let (lo, hi) = runs.split_at(32);
            for ((b, l), h) in bytes.iter_mut().zip(lo).zip(hi) {
                *b = (l & 0x0F) | (h << 4);
            }
        }
        out.is_empty().then_some(())
    }
}

/// `Q5_K`: as `Q4_K` with a fifth bit per element: bit `2g` (`2g + 1`) of
/// `qh[l]` is the high bit of element `l` of run `2g` (`2g + 1`).
pub struct BlockQ5K<'a> {
    pub d: f32,
    pub dmin: f32,
    pub scales: &'a [u8; 12],
    pub qh: &'a [u8; 32],
    pub qs: &'a [u8; 128],
}

impl<'a> BlockQ5K<'a> {
    pub const BYTES: usize = 176;

    pub fn parse(mut b: &'a [u8]) -> Option<Self> {
        let d = f16_le(take(&mut b)?);
        let dmin = f16_le(take(&mut b)?);
        let scales = take(&mut b)?;
        let qh = take(&mut b)?;
        let qs = take(&mut b)?;
        b.is_empty().then_some(Self {
            d,
            dmin,
            scales,
            qh,
            qs,
        })
    }

    #[inline(always)]
    pub fn dequantize(&self, out: &mut [f32; QK_K]) {
        let (sc, m) = k4_scales_mins(self.scales);
        let groups = self.qs.as_chunks::<32>().0;
        let outs = runs_mut::<64>(out);
        for (g, (q, y)) in groups.iter().zip(outs.iter_mut()).enumerate() {
            let d1 = self.d * f32::from(sc[2 * g]);
            let m1 = self.dmin * f32::from(m[2 * g]);
            let d2 = self.d * f32::from(sc[2 * g + 1]);
            let m2 = self.dmin * f32::from(m[2 * g + 1]);
            let (u1, u2) = (1u8 << (2 * g), 2u8 << (2 * g));
            let (lo, hi) = y.split_at_mut(32);
            for (((q, h), y0), y1) in q.iter().zip(self.qh).zip(lo).zip(hi) {
                let h1 = if h & u1 != 0 { 16 } else { 0 };
                let h2 = if h & u2 != 0 { 16 } else { 0 };
                *y0 = d1 * f32::from((q & 0x0F) + h1) - m1;
                *y1 = d2 * f32::from((q >> 4) + h2) - m2;
            }
        }
    }
}

/// `Q6_K`: 256 elements in 16 runs of 16, `x = d * sc * (q - 32)` with
/// 6-bit `q` (4 bits in `ql`, 2 in `qh`) and signed 8-bit `sc`.
pub struct BlockQ6K<'a> {
    /// Per 128-element half: 64 bytes; byte `l` holds elements `l` (low
    /// nibble) and `l + 64` (high), byte `l + 32` elements `l + 32` / `l + 96`.
    pub ql: &'a [u8; 128],
    /// Per half: 32 bytes; bit pairs 0..4 of byte `l` are the high bits of
    /// elements `l`, `l + 32`, `l + 64`, `l + 96`.
    pub qh: &'a [u8; 64],
    pub scales: &'a [u8; 16],
    pub d: f32,
}

impl<'a> BlockQ6K<'a> {
    pub const BYTES: usize = 210;

    pub fn parse(mut b: &'a [u8]) -> Option<Self> {
        let ql = take(&mut b)?;
        let qh = take(&mut b)?;
        let scales = take(&mut b)?;
        let d = f16_le(take(&mut b)?);
        b.is_empty().then_some(Self { ql, qh, scales, d })
    }

    #[inline(always)]
    pub fn dequantize(&self, out: &mut [f32; QK_K]) {
        let ql_halves = self.ql.as_chunks::<64>().0;
        let qh_halves = self.qh.as_chunks::<32>().0;
        let sc_halves = self.scales.as_chunks::<8>().0;
        let outs = runs_mut::<128>(out);
        for (((ql, qh), sc), y) in ql_halves.iter().zip(qh_halves).zip(sc_halves).zip(outs) {
            // d * sc first, as ggml does: (d * sc) * q.
            let ds: [f32; 8] = sc.map(|s| self.d * f32::from(s as i8));
            let (ql_a, ql_b) = ql.split_at(32);
            let quarters = y.as_chunks_mut::<32>().0;
            let [y1, y2, y3, y4] = quarters else { return };
            for (l, (((a, b), h), ((o1, o2), (o3, o4)))) in ql_a
                .iter()
                .zip(ql_b)
                .zip(qh)
                .zip(
                    y1.iter_mut()
                        .zip(y2.iter_mut())
                        .zip(y3.iter_mut().zip(y4.iter_mut())),
                )
                .enumerate()
            {
                let is = l / 16;
                let q1 = ((a & 0x0F) | ((h & 3) << 4)) as i8 - 32;
                let q2 = ((b & 0x0F) | (((h >> 2) & 3) << 4)) as i8 - 32;
                let q3 = ((a >> 4) | (((h >> 4) & 3) << 4)) as i8 - 32;
                let q4 = ((b >> 4) | (((h >> 6) & 3) << 4)) as i8 - 32;
                *o1 = ds[is] * f32::from(q1);
                *o2 = ds[is + 2] * f32::from(q2);
                *o3 = ds[is + 4] * f32::from(q3);
                *o4 = ds[is + 6] * f32::from(q4);
            }
        }
    }

    /// Writes a block from its super-scale, 16 signed run scales and 256
    /// quants in -32..=31 (element order); `None` if `out` is not exactly
    /// [`Self::BYTES`] long.
    pub fn write(mut out: &mut [u8], d: f16, scales: &[i8; 16], q: &[i8; QK_K]) -> Option<()> {
        let ql = take_mut::<128>(&mut out)?;
        let qh = take_mut::<64>(&mut out)?;
        for ((ql, qh), q) in ql
            .as_chunks_mut::<64>()
            .0
            .iter_mut()
            .zip(qh.as_chunks_mut::<32>().0.iter_mut())
            .zip(q.as_chunks::<128>().0)
        {
            let (ql_a, ql_b) = ql.split_at_mut(32);
            let [q1, q2, q3, q4] = q.as_chunks::<32>().0 else {
                return None;
            };
            for (((((a, b), h), (v1, v2)), v3), v4) in ql_a
                .iter_mut()
                .zip(ql_b.iter_mut())
                .zip(qh.iter_mut())
                .zip(q1.iter().zip(q2))
                .zip(q3)
                .zip(q4)
            {
                let [u1, u2, u3, u4] = [v1, v2, v3, v4].map(|v| (v.wrapping_add(32) as u8) & 63);
                *a = (u1 & 0x0F) | ((u3 & 0x0F) << 4);
                *b = (u2 & 0x0F) | ((u4 & 0x0F) << 4);
                *h = (u1 >> 4) | ((u2 >> 4) << 2) | ((u3 >> 4) << 4) | ((u4 >> 4) << 6);
            }
        }
        *take_mut::<16>(&mut out)? = scales.map(|s| s as u8);
        *take_mut::<2>(&mut out)? = d.to_le_bytes();
        out.is_empty().then_some(())
    }
}

/// `Q8_K`: 256 elements, `x = d * q` with an `f32` `d` and signed 8-bit `q`;
/// `bsums` (sums of each run of 16 quants) only serve dot products.
pub struct BlockQ8K<'a> {
    pub d: f32,
    pub qs: &'a [u8; QK_K],
    pub bsums: &'a [u8; 32],
}

impl<'a> BlockQ8K<'a> {
    pub const BYTES: usize = 292;

    pub fn parse(mut b: &'a [u8]) -> Option<Self> {
        let d = f32::from_le_bytes(*take(&mut b)?);
        let qs = take(&mut b)?;
        let bsums = take(&mut b)?;
        b.is_empty().then_some(Self { d, qs, bsums })
    }

    /// The sum of quants of run `i` as stored.
    pub fn bsum(&self, i: usize) -> Option<i16> {
        self.bsums
            .as_chunks::<2>()
            .0
            .get(i)
            .map(|b| i16::from_le_bytes(*b))
    }

    #[inline(always)]
    pub fn dequantize(&self, out: &mut [f32; QK_K]) {
        for (q, y) in self.qs.iter().zip(out.iter_mut()) {
            *y = self.d * f32::from(*q as i8);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_requires_exact_length() {
        let bytes = [0u8; 300];
        assert!(BlockQ4K::parse(&bytes[..144]).is_some());
        assert!(BlockQ4K::parse(&bytes[..143]).is_none());
        assert!(BlockQ4K::parse(&bytes[..145]).is_none());
        assert!(BlockQ6K::parse(&bytes[..210]).is_some());
        assert!(BlockQ8K::parse(&bytes[..292]).is_some());
        assert!(BlockQ8_0::parse(&bytes[..33]).is_none());
    }

    #[test]
    fn k4_scale_packing_round_trips_all_six_bit_values() {
        for base in 0..64u8 {
            let sc: [u8; 8] = std::array::from_fn(|j| (base + 7 * j as u8) % 64);
            let m: [u8; 8] = std::array::from_fn(|j| (base * 3 + 11 * j as u8) % 64);
            let packed = k4_pack_scales_mins(&sc, &m);
            assert_eq!(k4_scales_mins(&packed), (sc, m));
        }
    }

    #[test]
    fn q3k_scales_reads_low_nibbles_and_high_pairs() {
        // scale i = 32 + i (so sc - 32 = i) written by hand in the packed layout.
        let mut s = [0u8; 12];
        for i in 0..16usize {
            let v = (32 + i) as u8;
            if i < 8 {
                s[i] |= v & 0x0F;
            } else {
                s[i - 8] |= (v & 0x0F) << 4;
            }
            s[8 + i % 4] |= ((v >> 4) & 3) << (2 * (i / 4));
        }
        let expected: [i8; 16] = std::array::from_fn(|i| i as i8);
        assert_eq!(q3k_scales(&s), expected);
    }

    #[test]
    fn q8_0_dequantizes_signed_quants() {
        let mut b = [0u8; 34];
        b[..2].copy_from_slice(&f16::from_f32(0.5).to_le_bytes());
        b[2] = 0xFF; // -1
        b[3] = 0x80; // -128
        b[4] = 127;
        let blk = BlockQ8_0::parse(&b).unwrap();
        let mut out = [0f32; 32];
        blk.dequantize(&mut out);
        assert_eq!(&out[..4], &[-0.5, -64.0, 63.5, 0.0]);
    }

    #[test]
    fn q4k_element_order_follows_nibble_groups() {
        let mut b = [0u8; 144];
        b[..2].copy_from_slice(&f16::from_f32(1.0).to_le_bytes());
        b[2..4].copy_from_slice(&f16::from_f32(0.0).to_le_bytes());
        b[4..16].copy_from_slice(&k4_pack_scales_mins(&[1; 8], &[0; 8]));
        // Byte 16 + 32 (group 1, l = 0): low nibble -> element 64, high -> element 96.
        b[16 + 32] = 0x53;
        let blk = BlockQ4K::parse(&b).unwrap();
        let mut out = [0f32; QK_K];
        blk.dequantize(&mut out);
        assert_eq!(out[64], 3.0);
        assert_eq!(out[96], 5.0);
        assert_eq!(out.iter().filter(|v| **v != 0.0).count(), 2);
    }
}
