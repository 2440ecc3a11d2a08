//! Portable kernel: any CPU (and the reference the SIMD kernels are tested
//! against). Each weight block is decoded to 32 signed bytes once and then
//! dotted with every column, as ggml's generic `vec_dot` does per column:
//! `sum += (d_w * d_x) * sumi` with an exact integer `sumi`.

use std::ops::Range;

use super::{row_bytes, ActsFormat, Isa, MatmulKernel, QuantizedActs, QK};
use crate::quant::blocks::{BlockQ5_0, BlockQ8_0};
use crate::quant::GgmlType;

pub struct ScalarKernel;

/// Decodes one weight block into signed integers; returns its scale.
#[inline(always)]
pub(super) fn decode_block(ty: GgmlType, block: &[u8], q: &mut [i8; QK]) -> f32 {
    match ty {
        GgmlType::Q8_0 => match BlockQ8_0::parse(block) {
            Some(b) => {
                for (dst, &src) in q.iter_mut().zip(b.qs) {
                    *dst = src as i8;
                }
                b.d
            }
            None => 0.0,
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
                b.d
            }
            None => 0.0,
        },
        // `supports` keeps other types away; a zero row is the safe answer.
        _ => 0.0,
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
    ) {
        let k = acts.k();
        let rb = row_bytes(ty, k);
        let bytes = ty.type_size();
        let n = acts.n();
        let mut q = [0i8; QK];
        let mut acc = vec![0f32; n];
        for (i, r) in rows.enumerate() {
            let Some(row) = weights.get(r * rb..(r + 1) * rb) else {
                return;
            };
            acc.fill(0.0);
            for (b, block) in row.chunks_exact(bytes).enumerate() {
                let dw = decode_block(ty, block, &mut q);
                for (c, a) in acc.iter_mut().enumerate() {
                    let xq = &acts.column_qs(c)[b * QK..(b + 1) * QK];
                    let sumi: i32 = q
                        .iter()
                        .zip(xq)
                        .map(|(&w, &x)| i32::from(w) * i32::from(x as i8))
                        .sum();
                    *a += (dw * acts.column_d(c)[b]) * sumi as f32;
                }
            }
            for (col, a) in out.iter_mut().zip(&acc) {
                col[i] = *a;
            }
        }
    }
}
