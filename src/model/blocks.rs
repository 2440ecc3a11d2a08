//! Building blocks shared by the architectures: norms, attention over the KV
//! cache, gated feed-forward networks.

use super::arch::RopeStyle;
use super::hparams::Hparams;
use super::layout::Role;
use super::weights::{LayerWeights, Weights};
use super::ModelError;
use crate::ggml::{self, Context, Graph, RopeMode, Tensor};
use crate::kernels::{self, Kernels};
use crate::quant::GgmlType;

type R<T> = Result<T, ModelError>;

/// Graph inputs of one ubatch, filled after allocation.
#[derive(Clone, Copy)]
pub struct ForwardInputs<'g> {
    /// I32 `[n_tokens]` token ids.
    pub tokens: Tensor<'g>,
    /// I32 `[n_tokens]` positions.
    pub pos: Tensor<'g>,
    /// I64 `[n_tokens]` KV cells the new keys/values are written to.
    pub kv_idx: Tensor<'g>,
    /// F16 `[n_kv, n_tokens]` attention mask (0 or -inf).
    pub mask: Tensor<'g>,
    /// Same for sliding-window layers.
    pub mask_swa: Option<Tensor<'g>>,
    /// I32 `[n_outputs]` rows whose logits are wanted; `None` = all rows.
    pub out_ids: Option<Tensor<'g>>,
    /// F32 `[1, 1, n_tokens]` query temperatures by position (Mistral 3).
    pub attn_temp: Option<Tensor<'g>>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ForwardShape {
    pub n_tokens: usize,
    /// Leading cache cells attention looks at.
    pub n_kv: usize,
    /// Cells of the cache: the context a sequence may grow to.
    pub n_ctx: usize,
    pub flash_attn: bool,
    /// Batch-invariant mode: flash attention one query row at a time,
    /// whatever the batch holds (see `Builder::attention`), and the
    /// super-block weight types through rbench's kernels too; off, ggml
    /// picks kernels by batch shape.
    pub batch_invariant: bool,
    /// Batch-invariant flash attention runs on rbench's per-token kernel
    /// ([`per_token_attention`]), decided once for the cache and CPU.
    pub per_token_attention: bool,
}

impl ForwardShape {
    /// Whether a lone token needs the masked twin: batch-invariant flash
    /// attention on ggml's row-by-row kernel (see `Builder::attention`).
    pub fn masked_twin(&self) -> bool {
        self.flash_attn && self.batch_invariant && !self.per_token_attention
    }

    /// Rows of the attention mask: a lone token and its twin make two.
    pub fn mask_rows(&self) -> usize {
        if self.masked_twin() && self.n_tokens == 1 {
            2
        } else {
            self.n_tokens
        }
    }
}

/// One layer's K and V cache tensors, `[n_embd_{k,v}_gqa, n_ctx]`.
#[derive(Clone, Copy)]
pub struct KvLayer<'k> {
    pub k: Tensor<'k>,
    pub v: Tensor<'k>,
}

/// Everything a graph builder works with.
pub struct Builder<'g> {
    pub ctx: &'g Context,
    pub graph: Graph<'g>,
    pub hp: &'g Hparams,
    pub shape: ForwardShape,
    pub inputs: ForwardInputs<'g>,
    /// Who computes weight matmuls of few tokens.
    pub kernels: Kernels,
    /// The model's weights, for the plain twins of repacked ones.
    pub weights: &'g Weights,
}

/// How a mixture-of-experts FFN weighs and computes its experts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MoeStyle {
    pub weights: ExpertWeights,
    pub act: ExpertAct,
    /// The router and every expert projection carry biases (gpt-oss).
    pub biases: bool,
}

impl MoeStyle {
    /// Mixtral and Qwen3-MoE: soft-max over all experts, the chosen
    /// probabilities renormalised, a SiLU (or GELU) gate, no biases.
    pub fn renormalised(gelu: bool) -> MoeStyle {
        MoeStyle {
            weights: ExpertWeights::Renormalised,
            act: if gelu {
                ExpertAct::Gelu
            } else {
                ExpertAct::Silu
            },
            biases: false,
        }
    }
}

/// Where the chosen experts' weights come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpertWeights {
    /// Soft-max over every expert's score, top-k, renormalised to sum to one.
    Renormalised,
    /// Top-k of the raw scores, then a soft-max over those k (gpt-oss).
    SoftMaxOfChosen,
}

/// The experts' gated activation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ExpertAct {
    Silu,
    Gelu,
    /// gpt-oss's clamped SwiGLU: `g · sigmoid(alpha · g) · (u + 1)` with the
    /// gate `g` capped at `limit` and the up value `u` clamped to ±`limit`.
    SwigluOai {
        alpha: f32,
        limit: f32,
    },
}

/// Whether batch-invariant flash attention runs on rbench's per-token
/// kernel ([`kernels::seq_attention`]): its vectorized form on this CPU,
/// F16 cache, head sizes in whole 16-lane vectors. Otherwise it falls back
/// to ggml's row-by-row kernel over every cell.
pub fn per_token_attention(hp: &Hparams, type_k: GgmlType, type_v: GgmlType) -> bool {
    kernels::seq_attention::fast()
        && hp.attn_logit_softcap.is_none()
        && !hp.attn_sinks
        && type_k == GgmlType::F16
        && type_v == GgmlType::F16
        && hp.head_dim_k.is_multiple_of(16)
        && hp.head_dim_v.is_multiple_of(16)
}

impl<'g> Builder<'g> {
    /// `W x` for a weight `w`: rbench's kernel when chosen and applicable
    /// (type, plain layout, `kernels::MIN_COLUMNS..=MAX_COLUMNS` tokens),
    /// otherwise ggml's `mul_mat`. A repacked weight with a plain twin
    /// goes to rbench's kernel on the twin below
    /// [`kernels::TILED_MIN_COLUMNS`] tokens (generation), and for prompts
    /// too where rbench's tiled kernel leads
    /// ([`kernels::super_block_prompt_lead`]); otherwise it stays with
    /// ggml's repacked kernels for prompts.
    pub fn matmul(&self, w: Tensor<'g>, x: Tensor<'g>) -> R<Tensor<'g>> {
        if self.kernels == Kernels::Rbench {
            let ne = x.ne();
            let isa = kernels::best().isa();
            let cols = ne[1] as usize;
            let w_ours = match self.weights.plain_twin(w) {
                Some(twin)
                    if cols < kernels::TILED_MIN_COLUMNS
                        || kernels::super_block_prompt_lead(w.ty(), cols) =>
                {
                    twin
                }
                Some(_) => return Ok(self.ctx.mul_mat(w, x)?),
                None => w,
            };
            // The portable kernel is a reference, not faster than ggml.
            if isa != kernels::Isa::Scalar
                && (kernels::MIN_COLUMNS..=kernels::MAX_COLUMNS).contains(&cols)
                && ne[2] == 1
                && ne[3] == 1
                && x.ty() == GgmlType::F32
                && x.is_contiguous()
                && ggml::rbench_weight_problem(w_ours, isa).is_none()
                // Q4_K / Q5_K / Q6_K outside batch-invariant runs: rbench's
                // below the tiled path's column count, and for prompts where
                // its tiled kernel is faster (`cargo bench --bench kernels`),
                // on CPUs where that was measured; ggml's otherwise.
                && (self.shape.batch_invariant
                    || !kernels::kquants::is_super_block_type(w_ours.ty())
                    || (cols < kernels::TILED_MIN_COLUMNS && kernels::super_block_kernels_lead())
                    || kernels::super_block_prompt_lead(w_ours.ty(), cols))
            {
                return Ok(self
                    .ctx
                    .custom_mul_mat(w_ours, x, isa, self.shape.batch_invariant)?);
            }
        }
        Ok(self.ctx.mul_mat(w, x)?)
    }

    /// RMS norm times a weight vector.
    pub fn norm(&self, x: Tensor<'g>, w: Tensor<'g>) -> R<Tensor<'g>> {
        let n = self.ctx.rms_norm(x, self.hp.rms_eps)?;
        Ok(self.ctx.mul(n, w)?)
    }

    /// `W x (+ b)`.
    pub fn linear(&self, w: Tensor<'g>, x: Tensor<'g>, b: Option<Tensor<'g>>) -> R<Tensor<'g>> {
        let y = self.matmul(w, x)?;
        Ok(match b {
            Some(b) => self.ctx.add(y, b)?,
            None => y,
        })
    }

    /// Q, K and V projections of `h` (with biases where the layer has them),
    /// as `[head_dim, heads, n_tokens]`.
    pub fn qkv(
        &self,
        h: Tensor<'g>,
        w: &'g Weights,
        lw: &LayerWeights,
    ) -> R<(Tensor<'g>, Tensor<'g>, Tensor<'g>)> {
        let hp = self.hp;
        let t = self.shape.n_tokens as i64;
        let q = self.linear(
            w.layer(lw, Role::AttnQ)?,
            h,
            w.layer_opt(lw, Role::AttnQBias)?,
        )?;
        let k = self.linear(
            w.layer(lw, Role::AttnK)?,
            h,
            w.layer_opt(lw, Role::AttnKBias)?,
        )?;
        let v = self.linear(
            w.layer(lw, Role::AttnV)?,
            h,
            w.layer_opt(lw, Role::AttnVBias)?,
        )?;
        Ok((
            self.ctx
                .reshape_3d(q, hp.head_dim_k as i64, hp.n_head as i64, t)?,
            self.ctx
                .reshape_3d(k, hp.head_dim_k as i64, hp.n_head_kv as i64, t)?,
            self.ctx
                .reshape_3d(v, hp.head_dim_v as i64, hp.n_head_kv as i64, t)?,
        ))
    }

    /// RoPE of `[head_dim, n_head, n_tokens]` at layer `il`.
    pub fn rope(&self, x: Tensor<'g>, il: u32, freq_factors: Option<Tensor<'g>>) -> R<Tensor<'g>> {
        let hp = self.hp;
        let mode = match hp.arch.rope_style() {
            RopeStyle::Neox => RopeMode::NEOX,
            RopeStyle::Normal => RopeMode::NORMAL,
        };
        Ok(self.ctx.rope_ext(
            x,
            self.inputs.pos,
            freq_factors,
            hp.n_rot as usize,
            mode,
            hp.n_ctx_orig as usize,
            hp.rope_base(il),
            hp.rope_scale(il),
            hp.rope_ext_factor,
            hp.rope_attn_factor,
            hp.yarn_beta_fast,
            hp.yarn_beta_slow,
        )?)
    }

    /// Writes this ubatch's keys and values into the cache, then attends over
    /// the first `n_kv` cells. `q` `[hd, n_head, T]`, `k`/`v` `[hd, n_head_kv, T]`.
    /// Returns `[hd_v * n_head, T]`.
    pub fn attention(
        &mut self,
        il: u32,
        q: Tensor<'g>,
        k: Tensor<'g>,
        v: Tensor<'g>,
        cache: KvLayer<'g>,
        kq_scale: f32,
    ) -> R<Tensor<'g>> {
        self.attention_with_sinks(il, q, k, v, cache, kq_scale, None)
    }

    /// [`Builder::attention`] with per-head sinks (F32 `[n_head]`): logits
    /// that join each row's soft-max without a value (gpt-oss). Sinks run
    /// on ggml's attention ops, which take them.
    #[allow(clippy::too_many_arguments)]
    pub fn attention_with_sinks(
        &mut self,
        il: u32,
        q: Tensor<'g>,
        k: Tensor<'g>,
        v: Tensor<'g>,
        cache: KvLayer<'g>,
        kq_scale: f32,
        sinks: Option<Tensor<'g>>,
    ) -> R<Tensor<'g>> {
        let ctx = self.ctx;
        let hp = self.hp;
        let t = self.shape.n_tokens as i64;
        let n_kv = self.shape.n_kv as i64;
        let (hd_k, hd_v) = (hp.head_dim_k as i64, hp.head_dim_v as i64);
        let (n_head, n_head_kv) = (hp.n_head as i64, hp.n_head_kv as i64);

        let k2 = ctx.reshape_2d(k, hd_k * n_head_kv, t)?;
        let v2 = ctx.reshape_2d(v, hd_v * n_head_kv, t)?;
        let wk = ctx.set_rows(cache.k, k2, self.inputs.kv_idx)?;
        let wv = ctx.set_rows(cache.v, v2, self.inputs.kv_idx)?;
        self.graph.build_forward_expand(wk)?;
        self.graph.build_forward_expand(wv)?;

        // Views over the first n_kv cells: [hd, n_kv, n_head_kv] with heads outermost.
        let kn = cache.k.nb();
        let vn = cache.v.nb();
        let k_row = kn[1];
        let v_row = vn[1];
        let k_head = k_row / n_head_kv as usize;
        let v_head = v_row / n_head_kv as usize;
        let kview = ctx.view_3d(cache.k, hd_k, n_kv, n_head_kv, k_row, k_head, 0)?;
        let vview = ctx.view_3d(cache.v, hd_v, n_kv, n_head_kv, v_row, v_head, 0)?;

        let mask = if hp.is_swa_layer(il) {
            self.inputs.mask_swa.unwrap_or(self.inputs.mask)
        } else {
            self.inputs.mask
        };
        // rbench's attention kernels read the cache directly: only where it
        // is in host memory. A layer offloaded to a device uses ggml's ops.
        let on_host = cache.k.in_host_memory() && cache.v.in_host_memory();
        // Soft-capped scores (Gemma 2) and sinks (gpt-oss): ggml's ops,
        // which take them.
        let softcap = hp.attn_logit_softcap.unwrap_or(0.0);
        // ggml's fused attention with F32 accumulation and the sinks.
        let ggml_flash = |q, k, v, mask| -> R<Tensor<'g>> {
            let o = ctx.flash_attn_ext(q, k, v, Some(mask), kq_scale, 0.0, softcap)?;
            if let Some(sinks) = sinks {
                ctx.flash_attn_ext_add_sinks(o, sinks)?;
            }
            ctx.flash_attn_ext_set_prec_f32(o)?;
            Ok(o)
        };
        let out = if self.shape.flash_attn
            && self.shape.batch_invariant
            && self.shape.per_token_attention
            && softcap == 0.0
            && sinks.is_none()
            && on_host
        {
            // Each token over only its own sequence's cells, in a fixed
            // order whatever the batch holds: batch-invariant, and the
            // work follows each sequence's length, not the cache's.
            let o = ctx.custom_sequence_attention(q, kview, vview, mask, kq_scale)?;
            ctx.reshape_2d(o, hd_v * n_head, t)?
        } else if self.shape.flash_attn && self.shape.batch_invariant && on_host {
            // Fallback (quantized cache): one query row per dim-3 slice: ggml then runs every row through
            // the same row-by-row kernel whatever the batch holds (its tiled
            // and KV-split kernels, picked by row count and context length,
            // round differently), so a sequence's results do not depend on
            // what shares its batch. A lone token gets a masked twin so the
            // KV-split kernel is never picked either.
            let rows = self.shape.mask_rows() as i64;
            let mut q4 = ctx.reshape_4d(q, hd_k, 1, n_head, t)?;
            if rows > t {
                q4 = ctx.concat(q4, q4, 3)?;
            }
            let k4 =
                ctx.view_3d_repeated(cache.k, [hd_k, n_kv, n_head_kv], k_row, k_head, 0, rows)?;
            let v4 =
                ctx.view_3d_repeated(cache.v, [hd_v, n_kv, n_head_kv], v_row, v_head, 0, rows)?;
            let mask4 = ctx.reshape_4d(mask, n_kv, 1, 1, rows)?;
            let o = ggml_flash(q4, k4, v4, mask4)?;
            // [hd_v, n_head, 1, rows] → [hd_v * n_head, T]
            let o = ctx.reshape_2d(o, hd_v * n_head, rows)?;
            if rows > t {
                ctx.view_2d(o, hd_v * n_head, t, o.nb()[1], 0)?
            } else {
                o
            }
        } else if self.shape.flash_attn
            && self.kernels == Kernels::Rbench
            && on_host
            && softcap == 0.0
            && sinks.is_none()
            && self.shape.n_tokens >= kernels::attention::MIN_TOKENS
            && ggml::attention_problem(q, kview, vview, mask).is_none()
        {
            let o = ctx.custom_attention(q, kview, vview, mask, kq_scale)?;
            // [hd_v, n_head, T]
            ctx.reshape_2d(o, hd_v * n_head, t)?
        } else if self.shape.flash_attn {
            let q = ctx.permute(q, 0, 2, 1, 3)?; // [hd, T, n_head]
            let o = ggml_flash(q, kview, vview, mask)?;
            // [hd_v, n_head, T]
            ctx.reshape_2d(o, hd_v * n_head, t)?
        } else {
            let q = ctx.permute(q, 0, 2, 1, 3)?; // [hd, T, n_head]
            let mut kq = ctx.mul_mat(kview, q)?; // [n_kv, T, n_head]
            if softcap > 0.0 {
                kq = ctx.scale(ctx.tanh(ctx.scale(kq, 1.0 / softcap)?)?, softcap)?;
            }
            let kq = ctx.soft_max_ext(kq, Some(mask), kq_scale, 0.0)?;
            if let Some(sinks) = sinks {
                ctx.soft_max_add_sinks(kq, sinks)?;
            }
            // V as [n_kv, hd_v, n_head_kv] so the weighted sum is a matmul.
            let vt = ctx.cont(ctx.permute(vview, 1, 0, 2, 3)?)?;
            let kqv = ctx.mul_mat(vt, kq)?; // [hd_v, T, n_head]
            let kqv = ctx.permute(kqv, 0, 2, 1, 3)?; // [hd_v, n_head, T]
            ctx.reshape_2d(ctx.cont(kqv)?, hd_v * n_head, t)?
        };
        Ok(out)
    }

    /// Gated FFN: `down(act(gate x) * up x)` with SiLU or GELU.
    pub fn ffn(
        &self,
        x: Tensor<'g>,
        w: &'g Weights,
        lw: &LayerWeights,
        gelu: bool,
    ) -> R<Tensor<'g>> {
        let g = self.matmul(w.layer(lw, Role::FfnGate)?, x)?;
        let u = self.matmul(w.layer(lw, Role::FfnUp)?, x)?;
        let down = w.layer(lw, Role::FfnDown)?;
        let h = self.gated(g, u, gelu)?;
        self.matmul(down, h)
    }

    /// `act(gate) * up` with GELU or SiLU.
    fn gated(&self, gate: Tensor<'g>, up: Tensor<'g>, gelu: bool) -> R<Tensor<'g>> {
        Ok(if gelu {
            self.ctx.geglu_split(gate, up)?
        } else {
            self.ctx.swiglu_split(gate, up)?
        })
    }

    /// The layer's FFN on `x`: its experts when the model has them, else the
    /// dense gated FFN.
    pub fn ffn_any(
        &mut self,
        x: Tensor<'g>,
        w: &'g Weights,
        lw: &LayerWeights,
        gelu: bool,
    ) -> R<Tensor<'g>> {
        if self.hp.is_moe() {
            self.moe_ffn(x, w, lw, MoeStyle::renormalised(gelu))
        } else {
            self.ffn(x, w, lw, gelu)
        }
    }

    /// Mixture-of-experts FFN: the router scores every expert, each token
    /// goes to its `n_expert_used` best-scored experts, and the result is
    /// those experts' gated FFNs summed with weights that `style` derives
    /// from the scores (see [`ExpertWeights`]). `x` `[n_embd, T]` →
    /// `[n_embd, T]`.
    pub fn moe_ffn(
        &mut self,
        x: Tensor<'g>,
        w: &'g Weights,
        lw: &LayerWeights,
        style: MoeStyle,
    ) -> R<Tensor<'g>> {
        let ctx = self.ctx;
        let hp = self.hp;
        let t = x.ne()[1];
        let (n_expert, n_used) = (hp.n_expert as i64, hp.n_expert_used as i64);
        let n_embd = x.ne()[0];
        let bias = |role: Role| -> R<Option<Tensor<'g>>> {
            if style.biases {
                Ok(Some(w.layer(lw, role)?))
            } else {
                Ok(None)
            }
        };
        let mut logits = self.matmul(w.layer(lw, Role::FfnGateInp)?, x)?; // [n_expert, T]
        if let Some(b) = bias(Role::FfnGateInpBias)? {
            logits = ctx.add(logits, b)?;
        }
        let scores = match style.weights {
            ExpertWeights::Renormalised => ctx.soft_max_ext(logits, None, 1.0, 0.0)?,
            ExpertWeights::SoftMaxOfChosen => logits,
        };
        let selected = ctx.argsort_top_k(scores, n_used as usize)?; // I32 [n_used, T]
        let scores3 = ctx.reshape_3d(scores, 1, n_expert, t)?;
        let chosen = ctx.reshape_2d(ctx.get_rows(scores3, selected)?, n_used, t)?;
        let weights = match style.weights {
            // The chosen probabilities sum to at least n_used / n_expert, so
            // the division needs no guard against zero.
            ExpertWeights::Renormalised => ctx.div(chosen, ctx.sum_rows(chosen)?)?,
            ExpertWeights::SoftMaxOfChosen => ctx.soft_max_ext(chosen, None, 1.0, 0.0)?,
        };
        let weights = ctx.reshape_3d(weights, 1, n_used, t)?;
        // The routing is complete before the experts run.
        self.graph.build_forward_expand(weights)?;

        let x3 = ctx.reshape_3d(x, n_embd, 1, t)?;
        let experts = |role: Role, input: Tensor<'g>, bias_role: Role| -> R<Tensor<'g>> {
            let y = ctx.mul_mat_id(w.layer(lw, role)?, input, selected)?;
            Ok(match bias(bias_role)? {
                Some(b) => ctx.add_id(y, b, selected)?,
                None => y,
            })
        };
        let up = experts(Role::FfnUpExps, x3, Role::FfnUpExpsBias)?;
        let gate = experts(Role::FfnGateExps, x3, Role::FfnGateExpsBias)?;
        let h = match style.act {
            ExpertAct::Silu => self.gated(gate, up, false)?,
            ExpertAct::Gelu => self.gated(gate, up, true)?,
            ExpertAct::SwigluOai { alpha, limit } => ctx.swiglu_oai(gate, up, alpha, limit)?,
        }; // [n_ff_exp, n_used, T]
        let out = experts(Role::FfnDownExps, h, Role::FfnDownExpsBias)?;
        let out = ctx.mul(out, weights)?; // [n_embd, n_used, T]
        self.graph.build_forward_expand(out)?;
        // Sum over the slots in slot order, as llama.cpp adds them.
        let slot = |i: i64| ctx.view_2d(out, n_embd, t, out.nb()[2], i as usize * out.nb()[1]);
        let mut sum = slot(0)?;
        for i in 1..n_used {
            sum = ctx.add(sum, slot(i)?)?;
        }
        if n_used == 1 {
            sum = ctx.cont(sum)?;
        }
        Ok(sum)
    }

    /// Keeps only the rows whose logits are wanted (applied before the last
    /// layer's FFN, so unwanted rows skip it).
    pub fn select_outputs(&self, x: Tensor<'g>) -> R<Tensor<'g>> {
        Ok(match self.inputs.out_ids {
            Some(ids) => self.ctx.get_rows(x, ids)?,
            None => x,
        })
    }
}
