//! How many KV cells a parallel run needs, and what they cost in memory.
//!
//! Every worker (slot) owns a fixed share of one unified cache: its prompt
//! plus its generation, rounded up so shares line up with attention's
//! padding. The cache is `workers × share` cells.

use super::KvShape;
use crate::model::hparams::Hparams;
use crate::quant::GgmlType;

/// A sequence's share of the cache is rounded up to this many cells.
pub const CELLS_ALIGN: usize = 256;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SizingError {
    #[error("{workers} workers × {per_seq} cells per sequence overflows the cell count")]
    Overflow { workers: usize, per_seq: usize },
    #[error("a {ty} {what} cache needs heads of a multiple of {block} values; this model's heads have {head}")]
    BadType {
        what: &'static str,
        ty: GgmlType,
        head: usize,
        block: usize,
    },
}

/// Cells one sequence needs for `n_prompt` prompt tokens and `n_predict`
/// generated ones, rounded up to [`CELLS_ALIGN`].
pub fn cells_per_sequence(n_prompt: usize, n_predict: usize) -> usize {
    n_prompt
        .saturating_add(n_predict)
        .max(1)
        .div_ceil(CELLS_ALIGN)
        .saturating_mul(CELLS_ALIGN)
}

/// Total cells for `workers` sequences of `per_seq` cells each.
pub fn n_ctx_for_workers(workers: usize, per_seq: usize) -> Result<usize, SizingError> {
    workers
        .checked_mul(per_seq)
        .filter(|&n| n <= u32::MAX as usize)
        .ok_or(SizingError::Overflow { workers, per_seq })
}

/// The cache shape a model needs for `n_ctx` cells of the given types.
pub fn kv_shape(
    hp: &Hparams,
    n_ctx: usize,
    type_k: GgmlType,
    type_v: GgmlType,
) -> Result<KvShape, SizingError> {
    let shape = KvShape {
        n_ctx,
        n_layer: hp.n_layer as usize,
        k_width: hp.n_embd_k_gqa() as usize,
        v_width: hp.n_embd_v_gqa() as usize,
        type_k,
        type_v,
    };
    // Attention views the cache one head at a time: each head must be whole
    // blocks (and so is every row).
    for (what, ty, head) in [("K", type_k, hp.head_dim_k), ("V", type_v, hp.head_dim_v)] {
        let head = head as usize;
        if !head.is_multiple_of(ty.block_size()) {
            return Err(SizingError::BadType {
                what,
                ty,
                head,
                block: ty.block_size(),
            });
        }
    }
    Ok(shape)
}

/// Bytes of K and V, all layers, for one cell.
pub fn bytes_per_cell(shape: &KvShape) -> u64 {
    KvShape { n_ctx: 1, ..*shape }.bytes()
}

/// The most workers whose caches fit in `budget` bytes, at `per_seq` cells each.
pub fn max_workers_within(budget: u64, shape: &KvShape, per_seq: usize) -> usize {
    let per_worker = bytes_per_cell(shape).saturating_mul(per_seq as u64);
    if per_worker == 0 {
        return 0;
    }
    usize::try_from(budget / per_worker).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::synth;

    #[test]
    fn shares_round_up_to_whole_blocks_of_cells() {
        assert_eq!(cells_per_sequence(128, 128), 256);
        assert_eq!(cells_per_sequence(128, 129), 512);
        assert_eq!(cells_per_sequence(128, 4096), 4352);
        assert_eq!(cells_per_sequence(0, 0), 256);
        assert_eq!(
            n_ctx_for_workers(8, cells_per_sequence(128, 4096)),
            Ok(34_816)
        );
        assert!(n_ctx_for_workers(usize::MAX, 256).is_err());
    }

    #[test]
    fn qwen2_1_5b_kv_bytes_match_hand_arithmetic() {
        let hp = synth::preset("qwen2-1.5b").unwrap().hparams();
        let shape = kv_shape(&hp, 34_816, GgmlType::F16, GgmlType::F16).unwrap();
        // 28 layers × 256 KV width × 2 bytes × (K + V) × cells
        assert_eq!(shape.bytes(), 28 * 256 * 2 * 2 * 34_816);
        assert_eq!(shape.bytes(), 998_244_352);
        let q8 = kv_shape(&hp, 34_816, GgmlType::Q8_0, GgmlType::Q8_0).unwrap();
        // q8_0: 34 bytes per 32 values
        assert_eq!(q8.bytes(), 28 * (256 / 32 * 34) * 2 * 34_816);
    }

    #[test]
    fn the_largest_fitting_worker_count_fits_and_one_more_does_not() {
        let hp = synth::preset("qwen2-1.5b").unwrap().hparams();
        let shape = kv_shape(&hp, 1, GgmlType::F16, GgmlType::F16).unwrap();
        let per_seq = 4352;
        let per_worker = bytes_per_cell(&shape) * per_seq as u64;
        let budget = per_worker * 5 + per_worker / 2;
        assert_eq!(max_workers_within(budget, &shape, per_seq), 5);
        assert_eq!(max_workers_within(0, &shape, per_seq), 0);
    }

    #[test]
    fn block_types_need_whole_blocks() {
        let mut hp = synth::preset("llama-15m").unwrap().hparams();
        hp.head_dim_k = 20;
        hp.head_dim_v = 20;
        hp.n_head_kv = 1;
        assert!(matches!(
            kv_shape(&hp, 256, GgmlType::Q8_0, GgmlType::F16),
            Err(SizingError::BadType { .. })
        ));
    }
}
