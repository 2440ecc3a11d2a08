//! NEON kernel (aarch64): Q8_0 and Q5_0.
//!
//! Each weight block is decoded once per row into 32 signed bytes, then
//! dotted with every column by widening multiplies (`smull`, 16-bit
//! products, at most 127·128) and pairwise widening adds into four 32-bit
//! lanes: the exact integer the portable kernel computes, followed by the
//! same float step (`sum += (d_w·d_x)·sumi`), so its results are the
//! portable kernel's bit for bit and do not depend on the batch. (Plain
//! NEON, no `sdot`: every aarch64 CPU has it.)

use std::arch::aarch64::*;
use std::ops::Range;

use super::scalar::decode_block;
use super::{row_bytes, ActsFormat, Isa, MatmulKernel, QuantizedActs, QK};
use crate::quant::GgmlType;

pub(super) fn detected() -> bool {
    std::arch::is_aarch64_feature_detected!("neon")
}

pub struct NeonKernel;

/// The exact dot product of 32 signed weights with 32 signed activations
/// (stored as bytes).
#[inline]
#[target_feature(enable = "neon")]
fn dot32(w: &[i8; QK], x: &[u8; QK]) -> i32 {
    // SAFETY: both arrays are 32 bytes; each load reads 16 at offset 0 or 16.
    let (w0, w1, x0, x1) = unsafe {
        (
            vld1q_s8(w.as_ptr()),
            vld1q_s8(w.as_ptr().add(16)),
            vld1q_s8(x.as_ptr().cast()),
            vld1q_s8(x.as_ptr().add(16).cast()),
        )
    };
    let mut s = vpaddlq_s16(vmull_s8(vget_low_s8(w0), vget_low_s8(x0)));
    s = vpadalq_s16(s, vmull_high_s8(w0, x0));
    s = vpadalq_s16(s, vmull_s8(vget_low_s8(w1), vget_low_s8(x1)));
    s = vpadalq_s16(s, vmull_high_s8(w1, x1));
    vaddvq_s32(s)
}

#[target_feature(enable = "neon")]
fn run(
    ty: GgmlType,
    weights: &[u8],
    acts: &QuantizedActs,
    rows: Range<usize>,
    out: &mut [&mut [f32]],
) {
    let k = acts.k();
    let rb = row_bytes(ty, k);
    let n = acts.n().min(out.len());
    let columns: Vec<(&[[u8; QK]], &[f32])> = (0..n)
        .map(|c| (acts.column_qs(c).as_chunks::<QK>().0, acts.column_d(c)))
        .collect();
    let mut q = [0i8; QK];
    let mut acc = vec![0f32; n];
    for (i, r) in rows.enumerate() {
        let Some(row) = weights.get(r * rb..(r + 1) * rb) else {
            return;
        };
        acc.fill(0.0);
        for (b, block) in row.chunks_exact(ty.type_size()).enumerate() {
            let dw = decode_block(ty, block, &mut q);
            for (a, (xq, xd)) in acc.iter_mut().zip(&columns) {
                let (Some(x), Some(dx)) = (xq.get(b), xd.get(b)) else {
                    continue; // callers check sizes; never read out of bounds
                };
                *a += (dw * dx) * dot32(&q, x) as f32;
            }
        }
        for (col, a) in out.iter_mut().zip(&acc) {
            col[i] = *a;
        }
    }
}

impl MatmulKernel for NeonKernel {
    fn isa(&self) -> Isa {
        Isa::Neon
    }

    /// The super-block types have AVX-512 kernels only.
    fn supports(&self, ty: GgmlType) -> bool {
        matches!(ty, GgmlType::Q8_0 | GgmlType::Q5_0)
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
    ) {
        if !detected() || !self.supports(ty) {
            return;
        }
        // SAFETY: the CPU has NEON (checked just above).
        unsafe { run(ty, weights, acts, rows, out) }
    }
}
