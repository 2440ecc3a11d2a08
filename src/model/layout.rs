//! The tensors each architecture expects: names, shapes, roles. Shared by the
//! synthetic-model writer and the weight loader, so both agree by construction.

use super::hparams::{Arch, Hparams};

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
}

impl Role {
    /// One-dimensional tensors (norm weights, biases) stay F32 in every file type.
    pub fn is_vector(self) -> bool {
        matches!(
            self,
            Role::OutputNorm
                | Role::AttnNorm
                | Role::AttnQBias
                | Role::AttnKBias
                | Role::AttnVBias
                | Role::AttnQNorm
                | Role::AttnKNorm
                | Role::AttnPostNorm
                | Role::FfnNorm
                | Role::FfnPostNorm
        )
    }

    pub fn is_norm(self) -> bool {
        self.is_vector() && !matches!(self, Role::AttnQBias | Role::AttnKBias | Role::AttnVBias)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct TensorSpec {
    pub name: String,
    /// GGUF order: ne0 (row length) first.
    pub dims: Vec<u64>,
    pub role: Role,
    pub layer: Option<u32>,
}

fn layer_tensor(il: u32, suffix: &str, dims: Vec<u64>, role: Role) -> TensorSpec {
    TensorSpec {
        name: format!("blk.{il}.{suffix}.weight"),
        dims,
        role,
        layer: Some(il),
    }
}

/// Every tensor a model of this shape carries, in the order llama.cpp's
/// converters write them. `tied_output`: the output projection reuses
/// `token_embd.weight` (no `output.weight`).
pub fn expected_tensors(hp: &Hparams, tied_output: bool) -> Vec<TensorSpec> {
    let e = hp.n_embd as u64;
    let q = (hp.n_head * hp.head_dim_k) as u64;
    let k = hp.n_embd_k_gqa() as u64;
    let v = hp.n_embd_v_gqa() as u64;
    let ff = hp.n_ff as u64;
    let vocab = hp.n_vocab as u64;
    let hd = hp.head_dim_k as u64;
    let mut out = vec![TensorSpec {
        name: "token_embd.weight".into(),
        dims: vec![e, vocab],
        role: Role::TokenEmbd,
        layer: None,
    }];
    for il in 0..hp.n_layer {
        out.push(layer_tensor(il, "attn_norm", vec![e], Role::AttnNorm));
        out.push(layer_tensor(il, "attn_q", vec![e, q], Role::AttnQ));
        out.push(layer_tensor(il, "attn_k", vec![e, k], Role::AttnK));
        out.push(layer_tensor(il, "attn_v", vec![e, v], Role::AttnV));
        if hp.arch == Arch::Qwen2 {
            for (suffix, n, role) in [
                ("attn_q", q, Role::AttnQBias),
                ("attn_k", k, Role::AttnKBias),
                ("attn_v", v, Role::AttnVBias),
            ] {
                out.push(TensorSpec {
                    name: format!("blk.{il}.{suffix}.bias"),
                    dims: vec![n],
                    role,
                    layer: Some(il),
                });
            }
        }
        if matches!(hp.arch, Arch::Qwen3 | Arch::Gemma3) {
            out.push(layer_tensor(il, "attn_q_norm", vec![hd], Role::AttnQNorm));
            out.push(layer_tensor(il, "attn_k_norm", vec![hd], Role::AttnKNorm));
        }
        out.push(layer_tensor(
            il,
            "attn_output",
            vec![(hp.n_head * hp.head_dim_v) as u64, e],
            Role::AttnOut,
        ));
        if hp.arch == Arch::Gemma3 {
            out.push(layer_tensor(
                il,
                "post_attention_norm",
                vec![e],
                Role::AttnPostNorm,
            ));
        }
        out.push(layer_tensor(il, "ffn_norm", vec![e], Role::FfnNorm));
        out.push(layer_tensor(il, "ffn_gate", vec![e, ff], Role::FfnGate));
        out.push(layer_tensor(il, "ffn_up", vec![e, ff], Role::FfnUp));
        out.push(layer_tensor(il, "ffn_down", vec![ff, e], Role::FfnDown));
        if hp.arch == Arch::Gemma3 {
            out.push(layer_tensor(
                il,
                "post_ffw_norm",
                vec![e],
                Role::FfnPostNorm,
            ));
        }
    }
    out.push(TensorSpec {
        name: "output_norm.weight".into(),
        dims: vec![e],
        role: Role::OutputNorm,
        layer: None,
    });
    if !tied_output {
        out.push(TensorSpec {
            name: "output.weight".into(),
            dims: vec![e, vocab],
            role: Role::Output,
            layer: None,
        });
    }
    out
}
