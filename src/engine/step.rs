//! One ubatch's graph: built for a shape, kept while the next ubatches have
//! the same shape (a decode loop: one token per sequence, the same cells
//! attended to up to the next multiple of `N_KV_PAD`), and fed new input
//! values each step from buffers that are reused too.

use half::f16;

use super::context::EngineError;
use crate::ggml::{self, Context, Graph, KeptGraph, Tensor, TensorId};
use crate::kernels::Kernels;
use crate::kv::{KvCache, TokenPlace};
use crate::model::blocks::{Builder, ForwardInputs, ForwardShape, KvLayer};
use crate::model::hparams::Hparams;
use crate::model::Model;
use crate::quant::GgmlType;

/// What a graph is built for: two ubatches with equal keys have the same
/// graph, only their input values differ.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct StepKey {
    pub shape: ForwardShape,
    pub n_outputs: usize,
    /// The cache the graph reads and writes ([`KvCache::id`]).
    pub kv_id: u64,
}

/// A built and allocated graph with the ids of its inputs.
pub(super) struct KeptStep<'m> {
    pub key: StepKey,
    pub graph: KeptGraph<'m>,
    inputs: InputIds,
    /// The logits are the graph's last node.
    logits_node: usize,
}

/// [`ForwardInputs`] as ids, to find them again in the kept graph's context.
struct InputIds {
    tokens: TensorId,
    pos: TensorId,
    kv_idx: TensorId,
    mask: TensorId,
    mask_swa: Option<TensorId>,
    out_ids: Option<TensorId>,
    attn_temp: Option<TensorId>,
}

impl InputIds {
    fn of(inputs: &ForwardInputs<'_>, ctx: &Context) -> Result<InputIds, EngineError> {
        let id = |t: Tensor<'_>| ctx.tensor_id(t);
        let opt = |t: Option<Tensor<'_>>| t.map(|t| ctx.tensor_id(t)).transpose();
        Ok(InputIds {
            tokens: id(inputs.tokens)?,
            pos: id(inputs.pos)?,
            kv_idx: id(inputs.kv_idx)?,
            mask: id(inputs.mask)?,
            mask_swa: opt(inputs.mask_swa)?,
            out_ids: opt(inputs.out_ids)?,
            attn_temp: opt(inputs.attn_temp)?,
        })
    }

    fn resolve<'c>(&self, ctx: &'c Context) -> Result<ForwardInputs<'c>, EngineError> {
        let opt = |id: Option<TensorId>| id.map(|id| ctx.tensor(id)).transpose();
        Ok(ForwardInputs {
            tokens: ctx.tensor(self.tokens)?,
            pos: ctx.tensor(self.pos)?,
            kv_idx: ctx.tensor(self.kv_idx)?,
            mask: ctx.tensor(self.mask)?,
            mask_swa: opt(self.mask_swa)?,
            out_ids: opt(self.out_ids)?,
            attn_temp: opt(self.attn_temp)?,
        })
    }
}

impl<'m> KeptStep<'m> {
    /// Builds the graph for `key` in a context of its own, keeping it with
    /// the KV cache's and the weights' contexts it reads. Not allocated yet.
    pub fn build(
        model: &'m Model,
        kv: &KvCache,
        key: StepKey,
        kernels: Kernels,
    ) -> Result<KeptStep<'m>, EngineError> {
        if key.kv_id != kv.id() {
            return Err(EngineError::Config(
                "a step graph was asked for another KV cache".into(),
            ));
        }
        let size = graph_size(model);
        let kept = KeptGraph::new(
            Context::for_graph(size)?,
            kv.contexts(),
            model.weights.contexts(),
        );
        let (graph, inputs, logits) = build_graph(
            model,
            kv,
            size,
            kept.context(),
            key.shape,
            key.n_outputs,
            kernels,
        )?;
        let inputs = InputIds::of(&inputs, kept.context())?;
        let logits_node = graph.n_nodes().saturating_sub(1);
        if !graph.node(logits_node).is_some_and(|t| t.same_as(logits)) {
            return Err(EngineError::Ggml(ggml::GgmlError::InvalidArgument(
                "the logits are not the graph's last node".into(),
            )));
        }
        kept.keep(graph)?;
        Ok(KeptStep {
            key,
            graph: kept,
            inputs,
            logits_node,
        })
    }

    /// The kept graph (always there: `build` keeps it).
    pub fn graph(&self) -> Result<&Graph<'_>, EngineError> {
        self.graph.graph().ok_or_else(|| {
            EngineError::Ggml(ggml::GgmlError::InvalidArgument(
                "the step has no graph".into(),
            ))
        })
    }

    /// The logits tensor, once computed.
    pub fn logits(&self) -> Result<Tensor<'_>, EngineError> {
        self.graph()?.node(self.logits_node).ok_or_else(|| {
            EngineError::Ggml(ggml::GgmlError::InvalidArgument(
                "the step graph lost its logits node".into(),
            ))
        })
    }

    /// Writes one ubatch's input values (staged in `scratch`).
    pub fn set_inputs(
        &self,
        hp: &Hparams,
        kv: &KvCache,
        ubatch: &Ubatch<'_>,
        scratch: &mut InputScratch,
    ) -> Result<(), EngineError> {
        let inputs = self.inputs.resolve(self.graph.context())?;
        let n_kv = self.key.shape.n_kv;
        let s = scratch;
        fill(&mut s.ints, ubatch.tokens.iter().map(|&t| t as i32));
        ggml::tensor_set_i32(inputs.tokens, &s.ints)?;
        fill(&mut s.ints, ubatch.places.iter().map(|p| p.pos));
        ggml::tensor_set_i32(inputs.pos, &s.ints)?;
        fill(&mut s.ints, ubatch.slots.iter().map(|&c| c as i32));
        ggml::tensor_set_i32(inputs.kv_idx, &s.ints)?;
        let mask_rows = inputs.mask.ne()[1] as usize;
        s.mask.clear();
        s.mask.resize(n_kv * mask_rows, f16::ZERO);
        kv.cells.fill_mask(ubatch.places, n_kv, None, &mut s.mask);
        ggml::tensor_set_f16(inputs.mask, &s.mask)?;
        if let Some(mask_swa) = inputs.mask_swa {
            kv.cells
                .fill_mask(ubatch.places, n_kv, Some(hp.n_swa), &mut s.mask);
            ggml::tensor_set_f16(mask_swa, &s.mask)?;
        }
        if let Some(t) = inputs.out_ids {
            ggml::tensor_set_i32(t, ubatch.out_ids)?;
        }
        if let Some(t) = inputs.attn_temp {
            let floor = hp.n_ctx_orig.max(1) as f32;
            let scale = hp.attn_temp_scale as f64;
            fill(
                &mut s.floats,
                ubatch.places.iter().map(|p| {
                    // llama.cpp's arithmetic: the floor in f32, the logarithm in f64.
                    let steps = (p.pos as f32 / floor).floor() as f64;
                    ((steps + 1.0).ln() * scale + 1.0) as f32
                }),
            );
            ggml::tensor_set_f32(t, &s.floats)?;
        }
        Ok(())
    }
}

/// One ubatch as the step sees it.
pub(super) struct Ubatch<'a> {
    pub tokens: &'a [u32],
    pub places: &'a [TokenPlace],
    /// Cells the tokens were placed in.
    pub slots: &'a [u32],
    /// Rows whose logits are wanted (at least one).
    pub out_ids: &'a [i32],
}

/// Staging buffers for input values, reused from step to step.
#[derive(Default)]
pub(super) struct InputScratch {
    ints: Vec<i32>,
    floats: Vec<f32>,
    mask: Vec<f16>,
    pub out_ids: Vec<i32>,
    /// Cells a batch has taken so far (freed again if it fails).
    pub placed: Vec<u32>,
}

fn fill<T>(buf: &mut Vec<T>, values: impl Iterator<Item = T>) {
    buf.clear();
    buf.extend(values);
}

pub(super) fn graph_size(model: &Model) -> usize {
    // Generous: about 40 nodes per layer plus inputs and the head.
    (model.hparams.n_layer as usize * 64 + 256).max(2048)
}

pub(super) fn build_graph<'g>(
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

#[cfg(test)]
mod tests {
    use crate::engine::{Batch, Engine, EngineConfig, Logits};
    use crate::kv::KvCache;
    use crate::model::Model;

    /// A prompt, then single tokens past the first `N_KV_PAD` window: the
    /// logits of every step, and how many graphs the engine built.
    fn decode_steps(model: &Model, reuse_graphs: bool, n_steps: usize) -> (Vec<f32>, usize) {
        let cfg = EngineConfig {
            n_ctx: 512,
            n_threads: 2,
            reuse_graphs,
            ..EngineConfig::default()
        };
        let mut engine = Engine::new(model, cfg).unwrap();
        let prompt = [1, 17, 42, 7, 99];
        let mut all = Vec::new();
        let mut logits = Logits::default();
        engine
            .decode_into(&Batch::from_prompt(&prompt, 0, 0).unwrap(), &mut logits)
            .unwrap();
        all.extend_from_slice(logits.last().unwrap());
        for i in 0..n_steps {
            let mut b = Batch::new();
            let pos = (prompt.len() + i) as i32;
            b.add((i as u32 * 7919) % 1000, pos, &[0], true).unwrap();
            engine.decode_into(&b, &mut logits).unwrap();
            all.extend_from_slice(logits.last().unwrap());
        }
        (all, engine.graphs_built())
    }

    #[test]
    fn a_new_cache_gets_a_new_graph() {
        let (_dir, model) = crate::model::synth::test_model(3);
        let cfg = EngineConfig {
            n_ctx: 256,
            n_threads: 2,
            ..EngineConfig::default()
        };
        let one_token = Batch::from_prompt(&[42], 0, 0).unwrap();
        let mut engine = Engine::new(&model, cfg).unwrap();
        let first = engine.decode(&one_token).unwrap().last().unwrap().to_vec();
        assert_eq!(engine.graphs_built(), 1);
        // Same shape on a fresh cache: the kept graph would write the old one.
        engine.kv = KvCache::new(*engine.kv.shape()).unwrap();
        let again = engine.decode(&one_token).unwrap().last().unwrap().to_vec();
        assert_eq!(engine.graphs_built(), 2);
        assert_eq!(engine.kv.cells.n_used(), 1);
        assert!(first
            .iter()
            .zip(&again)
            .all(|(a, b)| a.to_bits() == b.to_bits()));
    }

    #[test]
    fn kept_graphs_give_the_rebuilt_graphs_logits_bit_for_bit() {
        let (_dir, model) = crate::model::synth::test_model(3);
        // 5 prompt cells and 300 more cross from 256 attended cells to 512.
        let (rebuilt, built_each_step) = decode_steps(&model, false, 300);
        let (kept, built_kept) = decode_steps(&model, true, 300);
        assert_eq!(built_each_step, 301);
        // The prompt's graph, the first window's, the second window's.
        assert_eq!(built_kept, 3);
        assert_eq!(rebuilt.len(), kept.len());
        let differ = rebuilt
            .iter()
            .zip(&kept)
            .filter(|(a, b)| a.to_bits() != b.to_bits())
            .count();
        assert_eq!(differ, 0, "{differ} logits differ");
    }
}
