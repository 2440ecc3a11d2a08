//! KV storage: one K and one V tensor per layer, `[row width, n_ctx]`, each
//! layer's in the memory of the device computing that layer (host memory
//! for CPU layers), plus the cell table that says what each row holds.

use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{CellTable, KvError};
use crate::ggml::{self, BufferType, Context, Tensor, TensorId};
use crate::quant::GgmlType;

static NEXT_CACHE_ID: AtomicU64 = AtomicU64::new(1);

/// The shape of a cache, independent of any architecture.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KvShape {
    pub n_ctx: usize,
    pub n_layer: usize,
    /// Row widths (all heads of one token) of K and V.
    pub k_width: usize,
    pub v_width: usize,
    pub type_k: GgmlType,
    pub type_v: GgmlType,
}

impl KvShape {
    /// Bytes of K and V over all layers (saturating: an absurd context must
    /// read as too large, not wrap around to a small number).
    pub fn bytes(&self) -> u64 {
        let k = self
            .type_k
            .bytes_for(self.k_width as u64)
            .unwrap_or(u64::MAX);
        let v = self
            .type_v
            .bytes_for(self.v_width as u64)
            .unwrap_or(u64::MAX);
        k.saturating_add(v)
            .saturating_mul(self.n_ctx as u64)
            .saturating_mul(self.n_layer as u64)
    }
}

pub struct KvCache {
    pub cells: CellTable,
    /// Unique per cache made, so a graph kept for one cache is never
    /// computed against another.
    id: u64,
    shape: KvShape,
    /// One context (and buffer) per memory kind the layers use; shared with
    /// the kept graphs that read and write them.
    ctxs: Vec<Rc<Context>>,
    /// Per layer: its context, K and V.
    layers: Vec<(usize, TensorId, TensorId)>,
    /// Bytes per buffer type name, in first-use order.
    pub bytes_by_buffer: Vec<(String, u64)>,
}

#[derive(Debug, thiserror::Error)]
pub enum KvCacheError {
    #[error(transparent)]
    Kv(#[from] KvError),
    #[error("KV cache: {0}")]
    Ggml(#[from] ggml::GgmlError),
    #[error("KV cache: no layer {layer} (the cache has {n_layer})")]
    NoLayer { layer: usize, n_layer: usize },
    #[error("KV cache rows of {width} values cannot be stored as {ty} (blocks of {block})")]
    BadType {
        width: usize,
        ty: GgmlType,
        block: usize,
    },
}

impl KvCache {
    /// A cache of `shape` (made by `sizing::kv_shape`, which checks the
    /// types against the model's heads; rows are checked again here since
    /// any shape can be passed).
    pub fn new(shape: KvShape) -> Result<KvCache, KvCacheError> {
        KvCache::placed(shape, &vec![BufferType::cpu(); shape.n_layer])
    }

    /// A cache whose layer `il` lives in memory of type `layer_buft[il]`.
    pub fn placed(shape: KvShape, layer_buft: &[BufferType]) -> Result<KvCache, KvCacheError> {
        for (width, ty) in [(shape.k_width, shape.type_k), (shape.v_width, shape.type_v)] {
            if width % ty.block_size() != 0 {
                return Err(KvCacheError::BadType {
                    width,
                    ty,
                    block: ty.block_size(),
                });
            }
        }
        if layer_buft.len() != shape.n_layer {
            return Err(KvCacheError::NoLayer {
                layer: layer_buft.len(),
                n_layer: shape.n_layer,
            });
        }
        let mut kinds: Vec<BufferType> = Vec::new();
        for b in layer_buft {
            if !kinds.contains(b) {
                kinds.push(*b);
            }
        }
        let ctxs = kinds
            .iter()
            .map(|_| Context::for_tensors(2 * shape.n_layer + 1).map(Rc::new))
            .collect::<Result<Vec<_>, _>>()?;
        let mut layers = Vec::with_capacity(shape.n_layer);
        for (il, buft) in layer_buft.iter().enumerate() {
            let c = kinds.iter().position(|b| b == buft).unwrap_or(0);
            let ctx = &ctxs[c];
            let kt = ctx.new_tensor_2d(shape.type_k, shape.k_width as i64, shape.n_ctx as i64)?;
            kt.set_name(&format!("cache_k_l{il}"));
            let vt = ctx.new_tensor_2d(shape.type_v, shape.v_width as i64, shape.n_ctx as i64)?;
            vt.set_name(&format!("cache_v_l{il}"));
            layers.push((c, ctx.tensor_id(kt)?, ctx.tensor_id(vt)?));
        }
        let mut bytes_by_buffer = Vec::with_capacity(kinds.len());
        for (ctx, buft) in ctxs.iter().zip(&kinds) {
            // Masked cells still enter attention as 0 * value: keep them finite.
            let buffer = ggml::alloc_ctx_tensors(ctx, *buft)?;
            buffer.clear(0)?;
            bytes_by_buffer.push((buft.name(), buffer.size() as u64));
        }
        Ok(KvCache {
            cells: CellTable::new(shape.n_ctx),
            id: NEXT_CACHE_ID.fetch_add(1, Ordering::Relaxed),
            shape,
            ctxs,
            layers,
            bytes_by_buffer,
        })
    }

    /// Tells this cache apart from every other one made in the process.
    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn shape(&self) -> &KvShape {
        &self.shape
    }

    /// The contexts of the K and V tensors, for a kept graph to hold on to.
    pub fn contexts(&self) -> Vec<Rc<Context>> {
        self.ctxs.clone()
    }

    pub fn layer(&self, il: usize) -> Result<(Tensor<'_>, Tensor<'_>), KvCacheError> {
        let &(c, k, v) = self.layers.get(il).ok_or(KvCacheError::NoLayer {
            layer: il,
            n_layer: self.layers.len(),
        })?;
        let ctx = &self.ctxs[c];
        Ok((ctx.tensor(k)?, ctx.tensor(v)?))
    }
}
