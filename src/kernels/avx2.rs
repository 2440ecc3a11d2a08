//! AVX2 kernel (placeholder until written: not yet available).

use std::ops::Range;

use super::{ActsFormat, Isa, MatmulKernel, QuantizedActs};
use crate::quant::GgmlType;

pub(super) fn detected() -> bool {
    false
}

pub struct Avx2Kernel;

impl MatmulKernel for Avx2Kernel {
    fn isa(&self) -> Isa {
        Isa::Avx2
    }

    fn acts_format(&self) -> ActsFormat {
        ActsFormat::Signed
    }

    fn matmul_rows(
        &self,
        _ty: GgmlType,
        _weights: &[u8],
        _acts: &QuantizedActs,
        _rows: Range<usize>,
        _out: &mut [&mut [f32]],
    ) {
    }
}
