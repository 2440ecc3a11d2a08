//! Portable kernel: any CPU (and the reference the SIMD kernels are tested
//! against). Each weight block is decoded to 32 signed bytes once and then
//! dotted with every column, as ggml's generic `vec_dot` does per column:
//! `sum += (d_w * d_x) * sumi` with an exact integer `sumi`.

use std::ops::Range;

use super::{row_bytes, ActsFormat, Isa, KernelError, MatmulKernel, QuantizedActs, QK};
use crate::quant::blocks::{BlockQ4_0, BlockQ5_0, BlockQ8_0};
use crate::quant::GgmlType;

pub struct ScalarKernel;

/// Decodes one weight block into signed integers; returns its scale, or
/// `None` for a type without a kernel or a block of the wrong size.
#[inline(always)]
fn decode_block(ty: GgmlType, block: &[u8], q: &mut [i8; QK]) -> Option<f32> {
    match ty {
        GgmlType::Q8_0 => match BlockQ8_0::parse(block) {
            Some(b) => {
                for (dst, &src) in q.iter_mut().zip(b.qs) {
                    *dst = src as i8;
                }
                Some(b.d)
            }
            None => None,
        },
        GgmlType::Q5_0 => match BlockQ5_0::parse(block) {
            Some(b) => {
                let (lo, hi) = q.split_at_mut(QK / 2);
                for (j, ((&byte, y0), y1)) in b.qs.iter().zip(lo).zip(hi).enumerate() {
                    let h0 = ((b.qh >> j) << 4) & 0x10;
                    let h1 = (b.qh >> (j + 12)) & 0x10;
                    *y0 = ((u32::from(byte & 0x0F) | h0) as i32 - 16) as i8;
                    *y1 = ((u32::from(byte >> 4) | h1) as i32 - 16) as i8;
                }
                Some(b.d)
            }
            None => None,
        },
        GgmlType::Q4_0 => match BlockQ4_0::parse(block) {
            Some(b) => {
                let (lo, hi) = q.split_at_mut(QK / 2);
                for ((&byte, y0), y1) in b.qs.iter().zip(lo).zip(hi) {
                    *y0 = (byte & 0x0F) as i8 - 8;
                    *y1 = (byte >> 4) as i8 - 8;
                }
                Some(b.d)
            }
            None => None,
        },
        _ => None,
    }
}

impl MatmulKernel for ScalarKernel {
    fn isa(&self) -> Isa {
        Isa::Scalar
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
        rows_by_blocks(ty, weights, acts, rows, out, |w, x| {
            w.iter()
                .zip(x)
                .map(|(&w, &x)| i32::from(w) * i32::from(x as i8))
                .sum()
        })
    }
}

/// The portable kernel's loop with the block product `dot` (an exact
/// integer, from signed weights and signed activation bytes): each weight
/// block is decoded once per row, then `sum += (d_w·d_x)·dot` per column.
/// The NEON kernel runs it with its vector product, so the two agree bit
/// for bit. Sizes are the caller's to check ([`super::check_rows`]): a
/// short slice panics rather than leave outputs unwritten.
#[inline(always)]
pub(super) fn rows_by_blocks(
    ty: GgmlType,
    weights: &[u8],
    acts: &QuantizedActs,
    rows: Range<usize>,
    out: &mut [&mut [f32]],
    dot: impl Fn(&[i8; QK], &[u8; QK]) -> i32,
) -> Result<(), KernelError> {
    let rb = row_bytes(ty, acts.k());
    let n = acts.n();
    debug_assert_eq!(out.len(), n, "one output slice per activation column");
    let columns: Vec<(&[[u8; QK]], &[f32])> = (0..n)
        .map(|c| (acts.column_qs(c).as_chunks::<QK>().0, acts.column_d(c)))
        .collect();
    let mut q = [0i8; QK];
    let mut acc = vec![0f32; n];
    for (i, r) in rows.enumerate() {
        let row = &weights[r * rb..(r + 1) * rb];
        acc.fill(0.0);
        for (b, block) in row.chunks_exact(ty.type_size()).enumerate() {
            let dw = decode_block(ty, block, &mut q).ok_or(KernelError::Unsupported(ty))?;
            for (a, (xq, xd)) in acc.iter_mut().zip(&columns) {
                *a += (dw * xd[b]) * dot(&q, &xq[b]) as f32;
            }
        }
        for (col, a) in out.iter_mut().zip(&acc) {
            col[i] = *a;
        }
    }
    Ok(())
}
