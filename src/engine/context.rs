//! The decode loop: a batch is cut into ubatches; each one is placed in the
//! KV cell table, turned into a ggml graph by the model's builder, computed
//! (on the CPU backend, or split over the model's devices and the CPU by
//! ggml's scheduler when layers were offloaded), and its wanted logits
//! copied out.

use super::batch::{Batch, Logits};
use super::step::{build_graph, graph_size, InputScratch, KeptStep, StepKey, Ubatch};
use crate::ggml::{self, BufferType, Context, CpuBackend, Device, Gallocr, Scheduler};
use crate::kernels::Kernels;
use crate::kv::{KvCache, KvCacheError, KvError, TokenPlace};
use crate::model::blocks::{per_token_attention, ForwardShape};
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
    /// Compute a ubatch on the previous ubatch's graph when their shapes
    /// are equal (CPU only); off, every ubatch builds and allocates its own.
    pub reuse_graphs: bool,
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
            reuse_graphs: true,
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
    /// The last ubatch's graph, computed again while the shape holds (CPU
    /// runner only). It pins the graph allocator: drop it before anything
    /// that allocates or reserves.
    kept: Option<KeptStep<'m>>,
    graphs_built: usize,
    scratch: InputScratch,
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
            kept: None,
            graphs_built: 0,
            scratch: InputScratch::default(),
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

    /// Graphs built for ubatches so far (the rest reused a kept one).
    pub fn graphs_built(&self) -> usize {
        self.graphs_built
    }

    pub fn set_threads(&mut self, n: usize) -> Result<(), EngineError> {
        // The scheduler cannot change while a graph pins it.
        self.kept = None;
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
        let mut logits = Logits::default();
        self.decode_into(batch, &mut logits)?;
        Ok(logits)
    }

    /// [`decode`](Self::decode) into `logits`, whose memory is reused (a
    /// decode loop then allocates nothing per token).
    pub fn decode_into(&mut self, batch: &Batch, logits: &mut Logits) -> Result<(), EngineError> {
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
        logits.reset(n_vocab, &batch.want_logits);
        let mut placed = std::mem::take(&mut self.scratch.placed);
        placed.clear();
        let result = self.decode_ubatches(batch, logits, &mut placed);
        if result.is_err() {
            // All or nothing: earlier ubatches of this batch leave the cache too.
            self.kv.cells.free(&placed);
        }
        self.scratch.placed = placed;
        result
    }

    /// Places and computes the batch's ubatches in turn, recording the
    /// cells taken in `placed`.
    fn decode_ubatches(
        &mut self,
        batch: &Batch,
        logits: &mut Logits,
        placed: &mut Vec<u32>,
    ) -> Result<(), EngineError> {
        let mut out_row = 0;
        let mut start = 0;
        while start < batch.len() {
            let end = (start + self.cfg.n_ubatch).min(batch.len());
            let want = &batch.want_logits[start..end];
            let n_out = want.iter().filter(|w| **w).count();
            let places = &batch.places[start..end];
            // Wanted rows are read straight into their place in `logits`.
            let dest = (n_out > 0).then(|| logits.rows_mut(out_row, n_out));
            let first = placed.len();
            self.kv.cells.place_into(places, placed)?;
            let slots = &placed[first..];
            self.compute_ubatch(&batch.tokens[start..end], places, want, slots, dest)?;
            out_row += n_out;
            start = end;
        }
        Ok(())
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
        let mut out_ids = std::mem::take(&mut self.scratch.out_ids);
        out_ids.clear();
        out_ids.extend(
            want.iter()
                .enumerate()
                .filter(|(_, w)| **w)
                .map(|(i, _)| i as i32),
        );
        if out_ids.is_empty() {
            // The graph always ends in logits; compute the last row's and drop them.
            out_ids.push(n_tokens as i32 - 1);
        }
        let ubatch = Ubatch {
            tokens,
            places,
            slots,
            out_ids: &out_ids,
        };
        let result = self.compute_step(&ubatch, dest);
        self.scratch.out_ids = out_ids;
        result
    }

    fn compute_step(
        &mut self,
        ubatch: &Ubatch<'_>,
        dest: Option<&mut [f32]>,
    ) -> Result<(), EngineError> {
        let key = StepKey {
            shape: self.forward_shape(ubatch.tokens.len(), self.kv.cells.n_kv(N_KV_PAD)),
            n_outputs: ubatch.out_ids.len(),
            kv_id: self.kv.id(),
        };
        // The scheduler splits and allocates every graph anew; on the CPU a
        // graph of the same shape is computed again as it is.
        let reuse = self.cfg.reuse_graphs
            && matches!(self.runner, Runner::Cpu { .. })
            && self.kept.as_ref().is_some_and(|k| k.key == key);
        let step = match &mut self.kept {
            Some(step) if reuse => step,
            kept => {
                // Unpins the allocator for the new graph.
                *kept = None;
                let step = KeptStep::build(self.model, &self.kv, key, self.cfg.kernels)?;
                self.graphs_built += 1;
                match &mut self.runner {
                    Runner::Cpu { galloc, .. } => galloc.alloc_graph(step.graph()?)?,
                    Runner::Devices(sched) => sched.alloc_graph(step.graph()?)?,
                }
                kept.insert(step)
            }
        };
        step.set_inputs(&self.model.hparams, &self.kv, ubatch, &mut self.scratch)?;
        match &mut self.runner {
            Runner::Cpu { backend, .. } => backend.compute_kept(&step.graph)?,
            Runner::Devices(sched) => sched.compute(step.graph()?)?,
        }
        // Without a destination no row was wanted: the one computed is dropped.
        if let Some(dest) = dest {
            ggml::tensor_get_f32_into(step.logits()?, dest)?;
        }
        Ok(())
    }
}
