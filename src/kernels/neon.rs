//! NEON kernel (aarch64): Q8_0, Q5_0 and Q4_0 (Q4_K, Q5_K and Q6_K are in
//! `kquants::neon`).
//!
//! The portable kernel's loop (`scalar::rows_by_blocks`: each weight block
//! decoded once per row into 32 signed bytes), with the block products by
//! widening multiplies (`smull`, 16-bit
//! products, at most 127·128) and pairwise widening adds into four 32-bit
//! lanes: the exact integer the portable kernel computes, followed by the
//! same float step (`sum += (d_w·d_x)·sumi`), so its results are the
//! portable kernel's bit for bit and do not depend on the batch. (Plain
//! NEON, no `sdot`: every aarch64 CPU has it.)

use std::arch::aarch64::*;
use std::ops::Range;

use super::scalar::rows_by_blocks;
use super::{ActsFormat, Isa, KernelError, MatmulKernel, QuantizedActs, QK};
use crate::quant::GgmlType;

fn detected() -> bool {
    std::arch::is_aarch64_feature_detected!("neon")
}

/// The NEON kernels, and proof that this CPU runs them: only
/// [`NeonKernel::detect_static`] makes one (private field), so its safe
/// methods may call this file's `#[target_feature]` code.
#[derive(Debug)]
pub struct NeonKernel {
    _detected: (),
}

impl NeonKernel {
    /// The kernel, where the CPU has NEON.
    pub(super) fn detect_static() -> Option<&'static NeonKernel> {
        static KERNEL: NeonKernel = NeonKernel { _detected: () };
        detected().then_some(&KERNEL)
    }
}

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

/// The types this file's kernel (`run`) multiplies.
fn is_block32_type(ty: GgmlType) -> bool {
    matches!(ty, GgmlType::Q8_0 | GgmlType::Q5_0 | GgmlType::Q4_0)
}

#[target_feature(enable = "neon")]
fn run(
    ty: GgmlType,
    weights: &[u8],
    acts: &QuantizedActs,
    rows: Range<usize>,
    out: &mut [&mut [f32]],
) -> Result<(), KernelError> {
    rows_by_blocks(ty, weights, acts, rows, out, |w, x| dot32(w, x))
}

impl MatmulKernel for NeonKernel {
    fn isa(&self) -> Isa {
        Isa::Neon
    }

    /// The block-32 types here, the super-block ones in `kquants::neon`.
    fn supports(&self, ty: GgmlType) -> bool {
        is_block32_type(ty) || super::kquants::is_super_block_type(ty)
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
        // The super-block types come through `kquants`, never here.
        if !is_block32_type(ty) {
            return Err(KernelError::Unsupported(ty));
        }
        // SAFETY: `self` exists only where the CPU has NEON
        // (`NeonKernel::detect_static`).
        unsafe { run(ty, weights, acts, rows, out) }
    }
}
