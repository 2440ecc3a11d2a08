//! The decode loop: a batch is cut into ubatches; each one is placed in the
//! KV cell table, turned into a ggml graph by the model's builder, computed
//! (on the CPU backend, or split over the model's devices and the CPU by
//! ggml's scheduler when layers were offloaded), and its wanted logits
//! copied out.

use super::batch::{Batch, Logits};
use crate::ggml::{
    self, BufferType, Context, CpuBackend, Device, Gallocr, Graph, Scheduler, Tensor,
};
use crate::kernels::Kernels;
use crate::kv::{KvCache, KvCacheError, KvError, TokenPlace};
use crate::model::blocks::{per_token_attention, Builder, ForwardInputs, ForwardShape, KvLayer};
use crate::model::memory::{check_context, compute_estimate, ContextNeed, MemoryError, MemoryInfo};
use crate::model::{Model, ModelError};
use crate::quant::GgmlType;

/// Cells attention looks at are rounded up to this, so graphs repeat shapes.
const N_KV_PAD: usize = 256;
/// Largest context: positions are i32.
pub const MAX_CTX: usize = i32::MAX as usize;

#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// KV cells in total (shared by all sequences).
    pub n_ctx: usize,
    /// Most tokens computed in one graph.
    pub n_ubatch: usize,
    pub n_threads: usize,
    pub flash_attn: bool,
    pub type_k: GgmlType,
    pub type_v: GgmlType,
    /// Who computes weight matmuls (ggml or rbench kernels).
    pub kernels: Kernels,
    /// A sequence's results do not depend on what shares its batch
    /// (continuous batching): flash attention runs one query row at a time,
    /// and with rbench kernels every weight matmul goes through them (the
    /// model must then be loaded without repacking, see
    /// `LoadOptions::for_kernels`). Off, ggml's tiled and KV-split attention
    /// kernels and its repacked weights are used where they are faster.
    pub batch_invariant: bool,
    /// Keep each offloaded layer's KV cells on its device (`-nkvo 0`); off,
    /// the whole cache stays in host memory.
    pub offload_kv: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            n_ctx: 4096,
            n_ubatch: 512,
            n_threads: default_threads(),
            flash_attn: true,
            type_k: GgmlType::F16,
            type_v: GgmlType::F16,
            kernels: Kernels::default(),
            batch_invariant: false,
            offload_kv: true,
        }
    }
}

/// Physical cores are what ggml scales with; without a better source use
/// the available parallelism.
pub fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Kv(#[from] KvError),
    #[error(transparent)]
    KvCache(#[from] KvCacheError),
    #[error(transparent)]
    Memory(#[from] MemoryError),
    #[error("ggml: {0}")]
    Ggml(#[from] ggml::GgmlError),
    #[error("token id {token} at batch index {index} is outside the vocabulary of {n_vocab}")]
    BadToken {
        token: u32,
        index: usize,
        n_vocab: usize,
    },
    #[error("the batch is empty")]
    EmptyBatch,
    #[error("invalid engine setting: {0}")]
    Config(String),
}

/// What computes the graphs.
enum Runner {
    /// Everything on the CPU: one backend, one compute buffer.
    Cpu {
        backend: CpuBackend,
        galloc: Gallocr,
    },
    /// Layers on devices: ggml's scheduler over them and the CPU.
    Devices(Scheduler),
}

pub struct Engine<'m> {
    model: &'m Model,
    pub kv: KvCache,
    runner: Runner,
    cfg: EngineConfig,
}

impl<'m> Engine<'m> {
    pub fn new(model: &'m Model, cfg: EngineConfig) -> Result<Engine<'m>, EngineError> {
        if cfg.n_ctx == 0 || cfg.n_ubatch == 0 || cfg.n_threads == 0 {
            return Err(EngineError::Config(format!(
                "n_ctx {}, n_ubatch {} and threads {} must all be at least 1",
                cfg.n_ctx, cfg.n_ubatch, cfg.n_threads
            )));
        }
        // Positions are i32, as in ggml's rope.
        if cfg.n_ctx > MAX_CTX {
            return Err(EngineError::Config(format!(
                "a context of {} tokens is above the maximum of {MAX_CTX}",
                cfg.n_ctx
            )));
        }
        if !cfg.flash_attn && cfg.type_v != GgmlType::F16 && cfg.type_v != GgmlType::F32 {
            return Err(EngineError::Config(format!(
                "a {} V cache needs flash attention (use --flash-attn on or --cache-type-v f16)",
                cfg.type_v
            )));
        }
        let hp = &model.hparams;
        let shape = crate::kv::sizing::kv_shape(hp, cfg.n_ctx, cfg.type_k, cfg.type_v)
            .map_err(|e| EngineError::Config(e.to_string()))?;
        let placement = &model.weights.placement;
        // Each layer's cells where the layer runs (unless -nkvo).
        let layer_device: Vec<Option<Device>> = (0..shape.n_layer)
            .map(|il| placement.layer_device(il).filter(|_| cfg.offload_kv))
            .collect();
        let n_tokens = cfg.n_ubatch.min(cfg.n_ctx) as u64;
        let per_layer = shape.bytes() / shape.n_layer.max(1) as u64;
        let host_layers = layer_device.iter().filter(|d| d.is_none()).count() as u64;
        let need = ContextNeed {
            kv_cache: per_layer * host_layers,
            compute: compute_estimate(hp, n_tokens, cfg.n_ctx as u64, cfg.flash_attn),
        };
        check_context(need, &MemoryInfo::detect())?;
        for device in placement.used_devices() {
            let layers = layer_device.iter().filter(|d| **d == Some(device)).count() as u64;
            let want = per_layer * layers;
            let (free, _) = device.memory();
            if want > free as u64 {
                return Err(MemoryError::DeviceInsufficient {
                    device: device.name(),
                    what: format!("the KV cache of {layers} layers"),
                    need: want,
                    free: free as u64,
                }
                .into());
            }
        }
        let layer_buft: Vec<BufferType> = layer_device
            .iter()
            .map(|d| {
                d.and_then(Device::buffer_type)
                    .unwrap_or_else(BufferType::cpu)
            })
            .collect();
        let kv = KvCache::placed(shape, &layer_buft)?;
        let runner = if placement.uses_devices() {
            let mut backends = Vec::new();
            for d in placement.used_devices() {
                backends.push(d.init_backend()?);
            }
            let cpu = Device::cpu()
                .ok_or_else(|| EngineError::Config("ggml has no CPU device".into()))?;
            backends.push(cpu.init_backend()?);
            let mut sched = Scheduler::new(backends, graph_size(model), true)?;
            sched.set_cpu_threads(cfg.n_threads)?;
            Runner::Devices(sched)
        } else {
            let mut backend = CpuBackend::new()?;
            backend.set_n_threads(cfg.n_threads)?;
            Runner::Cpu {
                backend,
                galloc: Gallocr::new(BufferType::cpu())?,
            }
        };
        let mut engine = Engine {
            model,
            kv,
            runner,
            cfg,
        };
        engine.reserve()?;
        Ok(engine)
    }

    pub fn model(&self) -> &'m Model {
        self.model
    }

    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    /// Bytes of the compute buffers ggml's allocator measured for the
    /// largest ubatch (over every backend).
    pub fn compute_buffer_bytes(&self) -> usize {
        match &self.runner {
            Runner::Cpu { galloc, .. } => galloc.buffer_size(),
            Runner::Devices(sched) => (0..sched.backends().len())
                .map(|i| sched.buffer_size(i))
                .sum(),
        }
    }

    /// The backends computing graphs, devices first ("Vulkan0, CPU").
    pub fn backend_names(&self) -> Vec<String> {
        match &self.runner {
            Runner::Cpu { backend, .. } => vec![backend.backend().name()],
            Runner::Devices(sched) => sched.backends().iter().map(|b| b.name()).collect(),
        }
    }

    pub fn set_threads(&mut self, n: usize) -> Result<(), EngineError> {
        match &mut self.runner {
            Runner::Cpu { backend, .. } => backend.set_n_threads(n)?,
            Runner::Devices(sched) => sched.set_cpu_threads(n)?,
        }
        self.cfg.n_threads = n;
        Ok(())
    }

    /// Forgets every sequence.
    pub fn clear(&mut self) {
        self.kv.cells.clear();
    }

    /// Sizes the compute buffer from the worst case: a full ubatch attending
    /// to the whole context with every row's logits wanted.
    fn reserve(&mut self) -> Result<(), EngineError> {
        let n_tokens = self.cfg.n_ubatch.min(self.cfg.n_ctx);
        let shape = self.forward_shape(n_tokens, self.cfg.n_ctx);
        let graph_size = graph_size(self.model);
        let gctx = Context::for_graph(graph_size)?;
        let (graph, _, _) = build_graph(
            self.model,
            &self.kv,
            graph_size,
            &gctx,
            shape,
            n_tokens,
            self.cfg.kernels,
        )?;
        match &mut self.runner {
            Runner::Cpu { galloc, .. } => galloc.reserve(&graph)?,
            Runner::Devices(sched) => sched.reserve(&graph)?,
        }
        Ok(())
    }

    /// The shape of a forward pass of `n_tokens` over the first `n_kv` cells.
    fn forward_shape(&self, n_tokens: usize, n_kv: usize) -> ForwardShape {
        let kv = self.kv.shape();
        ForwardShape {
            n_tokens,
            n_kv,
            n_ctx: self.cfg.n_ctx,
            flash_attn: self.cfg.flash_attn,
            batch_invariant: self.cfg.batch_invariant,
            per_token_attention: per_token_attention(&self.model.hparams, kv.type_k, kv.type_v),
        }
    }

    /// Runs a batch; returns the logits of the entries that asked for them.
    /// On error the batch's tokens are removed from the cache again.
    pub fn decode(&mut self, batch: &Batch) -> Result<Logits, EngineError> {
        if batch.is_empty() {
            return Err(EngineError::EmptyBatch);
        }
        let n_vocab = self.model.hparams.n_vocab as usize;
        if let Some((index, &token)) = batch
            .tokens
            .iter()
            .enumerate()
            .find(|(_, &t)| t as usize >= n_vocab)
        {
            return Err(EngineError::BadToken {
                token,
                index,
                n_vocab,
            });
        }
        let mut logits = Logits::new(n_vocab, &batch.want_logits);
        let mut placed: Vec<u32> = Vec::with_capacity(batch.len());
        let mut out_row = 0;
        let mut start = 0;
        while start < batch.len() {
            let end = (start + self.cfg.n_ubatch).min(batch.len());
            let want = &batch.want_logits[start..end];
            let n_out = want.iter().filter(|w| **w).count();
            let places = &batch.places[start..end];
            // Wanted rows are read straight into their place in `logits`.
            let dest = (n_out > 0).then(|| logits.rows_mut(out_row, n_out));
            let result = self
                .kv
                .cells
                .place(places)
                .map_err(EngineError::from)
                .and_then(|slots| {
                    placed.extend_from_slice(&slots);
                    self.compute_ubatch(&batch.tokens[start..end], places, want, &slots, dest)
                });
            if let Err(e) = result {
                // All or nothing: earlier ubatches of this batch leave the cache too.
                self.kv.cells.free(&placed);
                return Err(e);
            }
            out_row += n_out;
            start = end;
        }
        Ok(logits)
    }

    fn compute_ubatch(
        &mut self,
        tokens: &[u32],
        places: &[TokenPlace],
        want: &[bool],
        slots: &[u32],
        dest: Option<&mut [f32]>,
    ) -> Result<(), EngineError> {
        let n_tokens = tokens.len();
        let mut out_ids: Vec<i32> = want
            .iter()
            .enumerate()
            .filter(|(_, w)| **w)
            .map(|(i, _)| i as i32)
            .collect();
        if out_ids.is_empty() {
            // The graph always ends in logits; compute the last row's and drop them.
            out_ids.push(n_tokens as i32 - 1);
        }
        let n_kv = self.kv.cells.n_kv(N_KV_PAD);
        let shape = self.forward_shape(n_tokens, n_kv);
        let graph_size = graph_size(self.model);
        let gctx = Context::for_graph(graph_size)?;
        let (graph, inputs, logits) = build_graph(
            self.model,
            &self.kv,
            graph_size,
            &gctx,
            shape,
            out_ids.len(),
            self.cfg.kernels,
        )?;
        match &mut self.runner {
            Runner::Cpu { galloc, .. } => galloc.alloc_graph(&graph)?,
            Runner::Devices(sched) => sched.alloc_graph(&graph)?,
        }

        let ids: Vec<i32> = tokens.iter().map(|&t| t as i32).collect();
        ggml::tensor_set_i32(inputs.tokens, &ids)?;
        let pos: Vec<i32> = places.iter().map(|p| p.pos).collect();
        ggml::tensor_set_i32(inputs.pos, &pos)?;
        let idx: Vec<i32> = slots.iter().map(|&c| c as i32).collect();
        ggml::tensor_set_i32(inputs.kv_idx, &idx)?;
        let mask_rows = inputs.mask.ne()[1] as usize;
        let mut mask = vec![half::f16::ZERO; n_kv * mask_rows];
        self.kv.cells.fill_mask(places, n_kv, None, &mut mask);
        ggml::tensor_set(inputs.mask, &f16_bytes(&mask), 0)?;
        if let Some(mask_swa) = inputs.mask_swa {
            self.kv
                .cells
                .fill_mask(places, n_kv, Some(self.model.hparams.n_swa), &mut mask);
            ggml::tensor_set(mask_swa, &f16_bytes(&mask), 0)?;
        }
        if let Some(t) = inputs.out_ids {
            ggml::tensor_set_i32(t, &out_ids)?;
        }
        if let Some(t) = inputs.attn_temp {
            let hp = &self.model.hparams;
            let floor = hp.n_ctx_orig.max(1) as f32;
            let temps: Vec<f32> = pos
                .iter()
                .map(|&p| {
                    // llama.cpp's arithmetic: the floor in f32, the logarithm in f64.
                    let steps = (p as f32 / floor).floor() as f64;
                    ((steps + 1.0).ln() * hp.attn_temp_scale as f64 + 1.0) as f32
                })
                .collect();
            ggml::tensor_set_f32(t, &temps)?;
        }
        match &mut self.runner {
            Runner::Cpu { backend, .. } => backend.compute(&graph)?,
            Runner::Devices(sched) => sched.compute(&graph)?,
        }
        // Without a destination no row was wanted: the one computed is dropped.
        if let Some(dest) = dest {
            ggml::tensor_get_f32_into(logits, dest)?;
        }
        Ok(())
    }
}

fn graph_size(model: &Model) -> usize {
    // Generous: about 40 nodes per layer plus inputs and the head.
    (model.hparams.n_layer as usize * 64 + 256).max(2048)
}

fn f16_bytes(v: &[half::f16]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn build_graph<'g>(
    model: &'g Model,
    kv: &'g KvCache,
    graph_size: usize,
    gctx: &'g Context,
    shape: ForwardShape,
    n_outputs: usize,
    kernels: Kernels,
) -> Result<(Graph<'g>, ForwardInputs<'g>, Tensor<'g>), EngineError> {
    let t = shape.n_tokens as i64;
    let tokens = gctx.new_tensor_1d(GgmlType::I32, t)?.named("inp_tokens");
    let pos = gctx.new_tensor_1d(GgmlType::I32, t)?.named("inp_pos");
    let kv_idx = gctx.new_tensor_1d(GgmlType::I32, t)?.named("inp_kv_idx");
    let mask_rows = shape.mask_rows() as i64;
    let mask = gctx
        .new_tensor_2d(GgmlType::F16, shape.n_kv as i64, mask_rows)?
        .named("inp_mask");
    let hp = &model.hparams;
    let mask_swa = if hp.n_swa > 0 {
        Some(
            gctx.new_tensor_2d(GgmlType::F16, shape.n_kv as i64, mask_rows)?
                .named("inp_mask_swa"),
        )
    } else {
        None
    };
    let attn_temp = if hp.attn_temp_scale != 0.0 {
        Some(
            gctx.new_tensor_3d(GgmlType::F32, 1, 1, t)?
                .named("inp_attn_temp"),
        )
    } else {
        None
    };
    let out_ids = if n_outputs < shape.n_tokens {
        Some(
            gctx.new_tensor_1d(GgmlType::I32, n_outputs as i64)?
                .named("inp_out_ids"),
        )
    } else {
        None
    };
    for x in [
        Some(tokens),
        Some(pos),
        Some(kv_idx),
        Some(mask),
        mask_swa,
        out_ids,
        attn_temp,
    ]
    .into_iter()
    .flatten()
    {
        x.set_input();
    }
    let inputs = ForwardInputs {
        tokens,
        pos,
        kv_idx,
        mask,
        mask_swa,
        out_ids,
        attn_temp,
    };
    let mut cache = Vec::with_capacity(hp.n_layer as usize);
    for il in 0..hp.n_layer as usize {
        let (k, v) = kv.layer(il)?;
        cache.push(KvLayer { k, v });
    }
    let graph = Graph::new(gctx, graph_size)?;
    let mut b = Builder {
        ctx: gctx,
        graph,
        hp,
        shape,
        inputs,
        kernels,
        weights: &model.weights,
    };
    let logits = model.build_forward(&mut b, &cache)?;
    logits.set_output();
    b.graph.build_forward_expand(logits)?;
    Ok((b.graph, inputs, logits))
}
