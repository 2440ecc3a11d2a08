//! Tensor roles and the shapes the architectures share. Each architecture
//! lists its tensors (`model::arch`) from these; the synthetic-model writer,
//! the file check and the weight loader all read that one list, so they
//! agree by construction.

use super::hparams::Hparams;

/// What a tensor does in the network; decides its quantization in synthetic
/// files and how graphs use it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    TokenEmbd,
    OutputNorm,
    Output,
    AttnNorm,
    AttnQ,
    AttnK,
    AttnV,
    AttnOut,
    AttnQBias,
    AttnKBias,
    AttnVBias,
    AttnQNorm,
    AttnKNorm,
    AttnPostNorm,
    FfnNorm,
    FfnGate,
    FfnUp,
    FfnDown,
    FfnPostNorm,
    /// Llama 3's RoPE frequency factors (optional).
    RopeFreqs,
    /// Q, K and V projections in one matrix (Phi-3).
    AttnQkv,
    /// LongRoPE's wavelength divisors beyond and within the original context (Phi-3 128k).
    RopeFactorsLong,
    RopeFactorsShort,
    /// The router of a mixture-of-experts FFN: one score per expert.
    FfnGateInp,
    /// Every expert's gate, up and down projections, stacked `[.., .., n_expert]`.
    FfnGateExps,
    FfnUpExps,
    FfnDownExps,
    /// Bias of the attention output projection (gpt-oss).
    AttnOutBias,
    /// One learned soft-max logit per query head that takes attention
    /// without a value: "attention sinks" (gpt-oss).
    AttnSinks,
    /// Biases of the router and, one row per expert, of the experts' gate,
    /// up and down projections (gpt-oss).
    FfnGateInpBias,
    FfnGateExpsBias,
    FfnUpExpsBias,
    FfnDownExpsBias,
}

impl Role {
    pub const ALL: [Role; 33] = [
        Role::TokenEmbd,
        Role::OutputNorm,
        Role::Output,
        Role::AttnNorm,
        Role::AttnQ,
        Role::AttnK,
        Role::AttnV,
        Role::AttnOut,
        Role::AttnQBias,
        Role::AttnKBias,
        Role::AttnVBias,
        Role::AttnQNorm,
        Role::AttnKNorm,
        Role::AttnPostNorm,
        Role::FfnNorm,
        Role::FfnGate,
        Role::FfnUp,
        Role::FfnDown,
        Role::FfnPostNorm,
        Role::RopeFreqs,
        Role::AttnQkv,
        Role::RopeFactorsLong,
        Role::RopeFactorsShort,
        Role::FfnGateInp,
        Role::FfnGateExps,
        Role::FfnUpExps,
        Role::FfnDownExps,
        Role::AttnOutBias,
        Role::AttnSinks,
        Role::FfnGateInpBias,
        Role::FfnGateExpsBias,
        Role::FfnUpExpsBias,
        Role::FfnDownExpsBias,
    ];
    pub const COUNT: usize = Role::ALL.len();

    /// Its place in [`Role::ALL`] (tables indexed by role).
    pub fn index(self) -> usize {
        self as usize
    }

    /// Norm weights, biases and sinks (one-dimensional, or one row per
    /// expert) stay F32 in every file type and are never repacked.
    pub fn is_vector(self) -> bool {
        self.is_norm()
            || matches!(
                self,
                Role::AttnQBias
                    | Role::AttnKBias
                    | Role::AttnVBias
                    | Role::RopeFreqs
                    | Role::RopeFactorsLong
                    | Role::RopeFactorsShort
                    | Role::AttnOutBias
                    | Role::AttnSinks
                    | Role::FfnGateInpBias
                    | Role::FfnGateExpsBias
                    | Role::FfnUpExpsBias
                    | Role::FfnDownExpsBias
            )
    }

    /// Tensors ggml reads as F32 only (RoPE factors, sinks, the biases
    /// `add_id` picks per expert).
    pub fn needs_f32(self) -> bool {
        matches!(
            self,
            Role::RopeFreqs
                | Role::RopeFactorsLong
                | Role::RopeFactorsShort
                | Role::AttnSinks
                | Role::FfnGateExpsBias
                | Role::FfnUpExpsBias
                | Role::FfnDownExpsBias
        )
    }

    /// Stacked expert matrices, multiplied through `mul_mat_id`.
    pub fn is_experts(self) -> bool {
        matches!(
            self,
            Role::FfnGateExps | Role::FfnUpExps | Role::FfnDownExps
        )
    }

    pub fn is_norm(self) -> bool {
        matches!(
            self,
            Role::OutputNorm
                | Role::AttnNorm
                | Role::AttnQNorm
                | Role::AttnKNorm
                | Role::AttnPostNorm
                | Role::FfnNorm
                | Role::FfnPostNorm
        )
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct TensorSpec {
    pub name: String,
    /// GGUF order: ne0 (row length) first.
    pub dims: Vec<u64>,
    pub role: Role,
    pub layer: Option<u32>,
    /// Used when the file has it; synthetic files leave it out.
    pub optional: bool,
}

fn global(name: &str, dims: Vec<u64>, role: Role) -> TensorSpec {
    TensorSpec {
        name: name.into(),
        dims,
        role,
        layer: None,
        optional: false,
    }
}

fn layer_tensor(il: u32, suffix: &str, dims: Vec<u64>, role: Role) -> TensorSpec {
    TensorSpec {
        name: format!("blk.{il}.{suffix}.weight"),
        dims,
        role,
        layer: Some(il),
        optional: false,
    }
}

/// The token embedding, first in every file.
pub fn token_embd(hp: &Hparams) -> TensorSpec {
    global(
        "token_embd.weight",
        vec![hp.n_embd as u64, hp.n_vocab as u64],
        Role::TokenEmbd,
    )
}

/// The final norm and (unless tied to the embedding) the output
/// projection, last in every file.
pub fn head(hp: &Hparams, tied_output: bool) -> Vec<TensorSpec> {
    let e = hp.n_embd as u64;
    let mut out = vec![global("output_norm.weight", vec![e], Role::OutputNorm)];
    if !tied_output {
        out.push(global(
            "output.weight",
            vec![e, hp.n_vocab as u64],
            Role::Output,
        ));
    }
    out
}

/// Llama 3's RoPE frequency factors, one per rotated pair.
pub fn rope_freqs(hp: &Hparams) -> TensorSpec {
    TensorSpec {
        optional: true,
        ..global(
            "rope_freqs.weight",
            vec![(hp.n_rot / 2) as u64],
            Role::RopeFreqs,
        )
    }
}

/// LongRoPE's two sets of wavelength divisors (Phi-3 128k), required when
/// the model's context goes beyond the one it was trained at.
pub fn rope_factors_long_short(hp: &Hparams) -> Vec<TensorSpec> {
    let optional = hp.n_ctx_orig >= hp.n_ctx_train;
    let n = (hp.n_rot / 2) as u64;
    [
        ("rope_factors_long.weight", Role::RopeFactorsLong),
        ("rope_factors_short.weight", Role::RopeFactorsShort),
    ]
    .into_iter()
    .map(|(name, role)| TensorSpec {
        optional,
        ..global(name, vec![n], role)
    })
    .collect()
}

/// The pre-attention norm and the fused Q/K/V projection (Phi-3).
pub fn attn_norm_qkv_fused(hp: &Hparams, il: u32) -> Vec<TensorSpec> {
    let e = hp.n_embd as u64;
    let width = q_width(hp) + (hp.n_embd_k_gqa() + hp.n_embd_v_gqa()) as u64;
    vec![
        layer_tensor(il, "attn_norm", vec![e], Role::AttnNorm),
        layer_tensor(il, "attn_qkv", vec![e, width], Role::AttnQkv),
    ]
}

/// The pre-FFN norm, the fused gate/up projection (gate rows first) and
/// the down projection (Phi-3).
pub fn ffn_norm_fused_up(hp: &Hparams, il: u32) -> Vec<TensorSpec> {
    let (e, ff) = (hp.n_embd as u64, hp.n_ff as u64);
    vec![
        layer_tensor(il, "ffn_norm", vec![e], Role::FfnNorm),
        layer_tensor(il, "ffn_down", vec![ff, e], Role::FfnDown),
        layer_tensor(il, "ffn_up", vec![e, 2 * ff], Role::FfnUp),
    ]
}

/// The pre-attention norm and the Q, K, V projections.
pub fn attn_norm_qkv(hp: &Hparams, il: u32) -> Vec<TensorSpec> {
    let e = hp.n_embd as u64;
    vec![
        layer_tensor(il, "attn_norm", vec![e], Role::AttnNorm),
        layer_tensor(il, "attn_q", vec![e, q_width(hp)], Role::AttnQ),
        layer_tensor(il, "attn_k", vec![e, hp.n_embd_k_gqa() as u64], Role::AttnK),
        layer_tensor(il, "attn_v", vec![e, hp.n_embd_v_gqa() as u64], Role::AttnV),
    ]
}

fn q_width(hp: &Hparams) -> u64 {
    (hp.n_head * hp.head_dim_k) as u64
}

/// Biases of the Q, K, V projections (Qwen2).
pub fn qkv_biases(hp: &Hparams, il: u32) -> Vec<TensorSpec> {
    [
        ("attn_q", q_width(hp), Role::AttnQBias),
        ("attn_k", hp.n_embd_k_gqa() as u64, Role::AttnKBias),
        ("attn_v", hp.n_embd_v_gqa() as u64, Role::AttnVBias),
    ]
    .into_iter()
    .map(|(suffix, n, role)| TensorSpec {
        name: format!("blk.{il}.{suffix}.bias"),
        dims: vec![n],
        role,
        layer: Some(il),
        optional: false,
    })
    .collect()
}

/// Per-head RMS norms of queries and keys (Qwen3, Gemma 3).
pub fn qk_norms(hp: &Hparams, il: u32) -> Vec<TensorSpec> {
    let hd = hp.head_dim_k as u64;
    vec![
        layer_tensor(il, "attn_q_norm", vec![hd], Role::AttnQNorm),
        layer_tensor(il, "attn_k_norm", vec![hd], Role::AttnKNorm),
    ]
}

/// The attention output projection.
pub fn attn_output(hp: &Hparams, il: u32) -> TensorSpec {
    layer_tensor(
        il,
        "attn_output",
        vec![(hp.n_head * hp.head_dim_v) as u64, hp.n_embd as u64],
        Role::AttnOut,
    )
}

/// A norm of the residual stream's width in layer `il` (`post_attention_norm`,
/// `post_ffw_norm`).
pub fn layer_norm(hp: &Hparams, il: u32, suffix: &str, role: Role) -> TensorSpec {
    layer_tensor(il, suffix, vec![hp.n_embd as u64], role)
}

/// The pre-FFN norm and the gated FFN's gate, up and down projections.
pub fn ffn_norm_gated(hp: &Hparams, il: u32) -> Vec<TensorSpec> {
    let (e, ff) = (hp.n_embd as u64, hp.n_ff as u64);
    vec![
        layer_tensor(il, "ffn_norm", vec![e], Role::FfnNorm),
        layer_tensor(il, "ffn_gate", vec![e, ff], Role::FfnGate),
        layer_tensor(il, "ffn_up", vec![e, ff], Role::FfnUp),
        layer_tensor(il, "ffn_down", vec![ff, e], Role::FfnDown),
    ]
}

/// The pre-FFN norm, the router and the stacked experts of a
/// mixture-of-experts FFN, in the converters' order.
pub fn ffn_norm_moe(hp: &Hparams, il: u32) -> Vec<TensorSpec> {
    let mut out = vec![layer_norm(hp, il, "ffn_norm", Role::FfnNorm)];
    out.extend(moe_experts(hp, il));
    out
}

/// The router and the stacked experts (gpt-oss, whose pre-FFN norm is
/// named `post_attention_norm`, has them without `ffn_norm`).
pub fn moe_experts(hp: &Hparams, il: u32) -> Vec<TensorSpec> {
    let (e, ff, n) = (hp.n_embd as u64, hp.n_ff_exp as u64, hp.n_expert as u64);
    vec![
        layer_tensor(il, "ffn_gate_inp", vec![e, n], Role::FfnGateInp),
        layer_tensor(il, "ffn_gate_exps", vec![e, ff, n], Role::FfnGateExps),
        layer_tensor(il, "ffn_down_exps", vec![ff, e, n], Role::FfnDownExps),
        layer_tensor(il, "ffn_up_exps", vec![e, ff, n], Role::FfnUpExps),
    ]
}

/// A bias named after its weight (`blk.N.{suffix}.bias`).
pub fn layer_bias(il: u32, suffix: &str, dims: Vec<u64>, role: Role) -> TensorSpec {
    TensorSpec {
        name: format!("blk.{il}.{suffix}.bias"),
        ..layer_tensor(il, suffix, dims, role)
    }
}

/// gpt-oss's attention extras: the output projection's bias and one sink
/// logit per query head.
pub fn attn_out_bias_sinks(hp: &Hparams, il: u32) -> Vec<TensorSpec> {
    vec![
        layer_bias(il, "attn_output", vec![hp.n_embd as u64], Role::AttnOutBias),
        layer_tensor(il, "attn_sinks", vec![hp.n_head as u64], Role::AttnSinks),
    ]
}

/// Biases of the router and of every expert's projections (gpt-oss).
pub fn moe_biases(hp: &Hparams, il: u32) -> Vec<TensorSpec> {
    let (e, ff, n) = (hp.n_embd as u64, hp.n_ff_exp as u64, hp.n_expert as u64);
    vec![
        layer_bias(il, "ffn_gate_inp", vec![n], Role::FfnGateInpBias),
        layer_bias(il, "ffn_gate_exps", vec![ff, n], Role::FfnGateExpsBias),
        layer_bias(il, "ffn_down_exps", vec![e, n], Role::FfnDownExpsBias),
        layer_bias(il, "ffn_up_exps", vec![ff, n], Role::FfnUpExpsBias),
    ]
}

/// The pre-FFN norm and the FFN: experts when the model has them, else
/// the dense gated FFN.
pub fn ffn_any(hp: &Hparams, il: u32) -> Vec<TensorSpec> {
    if hp.is_moe() {
        ffn_norm_moe(hp, il)
    } else {
        ffn_norm_gated(hp, il)
    }
}

/// Every tensor a model of this shape carries, as its architecture lists
/// them. `tied_output`: the output projection reuses `token_embd.weight`
/// (no `output.weight`).
pub fn expected_tensors(hp: &Hparams, tied_output: bool) -> Vec<TensorSpec> {
    hp.arch.def().tensors(hp, tied_output)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::synth;

    #[test]
    fn role_indices_follow_the_table() {
        for (i, role) in Role::ALL.iter().enumerate() {
            assert_eq!(role.index(), i, "{role:?}");
        }
    }

    #[test]
    fn every_architecture_lists_each_tensor_once_with_the_shared_ends() {
        for preset in [
            "llama-15m",
            "qwen2-1.5b",
            "qwen3-0.6b",
            "gemma3-270m",
            "qwen3moe-1b",
            "mixtral-tiny",
            "gemma2-tiny",
            "phi3-tiny",
            "mistral3-tiny",
        ] {
            let hp = synth::preset(preset).unwrap().hparams();
            let specs = expected_tensors(&hp, false);
            let mut names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
            assert_eq!(names[0], "token_embd.weight", "{preset}");
            assert!(names.contains(&"output.weight"), "{preset}");
            names.sort_unstable();
            let n = names.len();
            names.dedup();
            assert_eq!(names.len(), n, "{preset}: a tensor listed twice");
            // Every layer has the same roles.
            let roles = |il| {
                let mut r: Vec<Role> = specs
                    .iter()
                    .filter(|s| s.layer == Some(il))
                    .map(|s| s.role)
                    .collect();
                r.sort_by_key(|r| r.index());
                r
            };
            for il in 1..hp.n_layer {
                assert_eq!(roles(il), roles(0), "{preset} layer {il}");
            }
            let tied = expected_tensors(&hp, true);
            assert!(tied.iter().all(|s| s.role != Role::Output), "{preset}");
        }
    }
}
