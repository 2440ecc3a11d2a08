//! Synthetic models: valid GGUF files with random weights in the real tensor
//! layout of an architecture, so benchmarks run without downloading anything.

use super::hparams::{Arch, Hparams};
use super::layout::{expected_tensors, Role, TensorSpec};
use crate::gguf::keys;
use crate::gguf::{GgufError, GgufWriter, TensorSource, Value, ValueType};
use crate::quant::{self, GgmlType, QK_K};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use std::path::{Path, PathBuf};

/// Bumped whenever the bytes written for a preset change, so cached files are remade.
pub const SYNTH_FORMAT_VERSION: u32 = 2;

/// A real model's shape.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Preset {
    pub name: &'static str,
    pub arch: Arch,
    pub n_embd: u32,
    pub n_layer: u32,
    pub n_head: u32,
    pub n_head_kv: u32,
    pub head_dim: u32,
    pub n_ff: u32,
    pub n_vocab: u32,
    pub n_ctx_train: u32,
    pub rope_freq_base: f32,
    pub n_swa: u32,
    pub tied_output: bool,
    /// Mixture of experts: expert count (0 = dense), experts per token, expert width.
    pub n_expert: u32,
    pub n_expert_used: u32,
    pub n_ff_exp: u32,
    /// Linear RoPE scaling factor of the global layers (Gemma 3 4B and up: 8); 1 = none.
    pub rope_linear_factor: f32,
    /// Soft-caps of attention scores and final logits (Gemma 2: 50 and 30).
    pub logit_softcaps: Option<(f32, f32)>,
}

/// Phi-3 128k's LongRoPE: trained at 4096 tokens, its RoPE magnitude
/// factor sqrt(1 + ln(32) / ln(4096)).
const PHI3_ORIG_CTX: u32 = 4096;
const PHI3_ROPE_ATTN_FACTOR: f32 = 1.190_239;

/// Ministral 3's YaRN (factor 16) and Llama 4 style query temperature,
/// made to show within a short check: an original context of 64 tokens
/// instead of 16384 (the temperature steps up every original context's
/// worth of positions) and a temperature scale of 1 instead of 0.1 (at 0.1
/// these random weights hardly react: leaving the temperature out moved
/// the KL-divergence against llama.cpp by 4e-6; at 1 by 5e-4). YaRN's
/// magnitude factor (0.1 ln 16 + 1) cancels against the one ggml's kernel
/// multiplies in.
const MISTRAL3_YARN_FACTOR: f32 = 16.0;
const MISTRAL3_ORIG_CTX: u32 = 64;
const MISTRAL3_TEMP_SCALE: f32 = 1.0;

/// gpt-oss's YaRN: 32x over a 4096-token original context (its magnitude
/// factor cancels against the one ggml's kernel multiplies in).
const GPT_OSS_YARN_FACTOR: f32 = 32.0;
const GPT_OSS_ORIG_CTX: u32 = 4096;

/// A dense model's expert fields.
const DENSE: (u32, u32, u32) = (0, 0, 0);

pub const PRESETS: &[Preset] = &[
    // TinyStories-sized Llama (stories15M shape).
    Preset {
        name: "llama-15m",
        arch: Arch::Llama,
        n_embd: 288,
        n_layer: 6,
        n_head: 6,
        n_head_kv: 6,
        head_dim: 48,
        n_ff: 768,
        n_vocab: 32000,
        n_ctx_train: 2048,
        rope_freq_base: 10_000.0,
        n_swa: 0,
        tied_output: false,
        n_expert: DENSE.0,
        n_expert_used: DENSE.1,
        n_ff_exp: DENSE.2,
        rope_linear_factor: 1.0,
        logit_softcaps: None,
    },
    Preset {
        name: "llama-125m",
        arch: Arch::Llama,
        n_embd: 768,
        n_layer: 12,
        n_head: 12,
        n_head_kv: 12,
        head_dim: 64,
        n_ff: 2048,
        n_vocab: 32000,
        n_ctx_train: 4096,
        rope_freq_base: 10_000.0,
        n_swa: 0,
        tied_output: false,
        n_expert: DENSE.0,
        n_expert_used: DENSE.1,
        n_ff_exp: DENSE.2,
        rope_linear_factor: 1.0,
        logit_softcaps: None,
    },
    // Llama-3.2-1B.
    Preset {
        name: "llama-1b",
        arch: Arch::Llama,
        n_embd: 2048,
        n_layer: 16,
        n_head: 32,
        n_head_kv: 8,
        head_dim: 64,
        n_ff: 8192,
        n_vocab: 128256,
        n_ctx_train: 131072,
        rope_freq_base: 500_000.0,
        n_swa: 0,
        tied_output: true,
        n_expert: DENSE.0,
        n_expert_used: DENSE.1,
        n_ff_exp: DENSE.2,
        rope_linear_factor: 1.0,
        logit_softcaps: None,
    },
    // Qwen2-1.5B.
    Preset {
        name: "qwen2-1.5b",
        arch: Arch::Qwen2,
        n_embd: 1536,
        n_layer: 28,
        n_head: 12,
        n_head_kv: 2,
        head_dim: 128,
        n_ff: 8960,
        n_vocab: 151936,
        n_ctx_train: 32768,
        rope_freq_base: 1_000_000.0,
        n_swa: 0,
        tied_output: true,
        n_expert: DENSE.0,
        n_expert_used: DENSE.1,
        n_ff_exp: DENSE.2,
        rope_linear_factor: 1.0,
        logit_softcaps: None,
    },
    // Qwen3-0.6B.
    Preset {
        name: "qwen3-0.6b",
        arch: Arch::Qwen3,
        n_embd: 1024,
        n_layer: 28,
        n_head: 16,
        n_head_kv: 8,
        head_dim: 128,
        n_ff: 3072,
        n_vocab: 151936,
        n_ctx_train: 40960,
        rope_freq_base: 1_000_000.0,
        n_swa: 0,
        tied_output: true,
        n_expert: DENSE.0,
        n_expert_used: DENSE.1,
        n_ff_exp: DENSE.2,
        rope_linear_factor: 1.0,
        logit_softcaps: None,
    },
    // Gemma 3 270M.
    Preset {
        name: "gemma3-270m",
        arch: Arch::Gemma3,
        n_embd: 640,
        n_layer: 18,
        n_head: 4,
        n_head_kv: 1,
        head_dim: 256,
        n_ff: 2048,
        n_vocab: 262144,
        n_ctx_train: 32768,
        rope_freq_base: 1_000_000.0,
        n_swa: 512,
        tied_output: true,
        n_expert: DENSE.0,
        n_expert_used: DENSE.1,
        n_ff_exp: DENSE.2,
        rope_linear_factor: 1.0,
        logit_softcaps: None,
    },
    // Devstral-Small / Mistral-Small 24B.
    Preset {
        name: "mistral-24b",
        arch: Arch::Llama,
        n_embd: 5120,
        n_layer: 40,
        n_head: 32,
        n_head_kv: 8,
        head_dim: 128,
        n_ff: 32768,
        n_vocab: 131072,
        n_ctx_train: 131072,
        rope_freq_base: 1_000_000_000.0,
        n_swa: 0,
        tied_output: false,
        n_expert: DENSE.0,
        n_expert_used: DENSE.1,
        n_ff_exp: DENSE.2,
        rope_linear_factor: 1.0,
        logit_softcaps: None,
    },
    // Qwen3-30B-A3B scaled down (128 experts, 8 per token, 768 wide, in 48
    // layers of 2048): the same head layout and routing, 32 experts of 4
    // per token, 512 wide, in 12 layers of 1024.
    Preset {
        name: "qwen3moe-1b",
        arch: Arch::Qwen3Moe,
        n_embd: 1024,
        n_layer: 12,
        n_head: 16,
        n_head_kv: 2,
        head_dim: 128,
        n_ff: 3072,
        n_vocab: 151936,
        n_ctx_train: 40960,
        rope_freq_base: 1_000_000.0,
        n_swa: 0,
        tied_output: false,
        n_expert: 32,
        n_expert_used: 4,
        n_ff_exp: 512,
        rope_linear_factor: 1.0,
        logit_softcaps: None,
    },
    // gpt-oss-20b scaled down for benchmarks (24 layers of 2880, 64 query
    // heads of 64 over 8 KV heads, 32 experts of 2880 with 4 per token, a
    // 201088-token vocabulary): 12 layers of 1024, 16 query heads over 4,
    // 32 experts of 512 with 4 per token, the same window and vocabulary.
    Preset {
        name: "gpt-oss-1b",
        arch: Arch::GptOss,
        n_embd: 1024,
        n_layer: 12,
        n_head: 16,
        n_head_kv: 4,
        head_dim: 64,
        n_ff: 512,
        n_vocab: 201_088,
        n_ctx_train: 131_072,
        rope_freq_base: 150_000.0,
        n_swa: 128,
        tied_output: false,
        n_expert: 32,
        n_expert_used: 4,
        n_ff_exp: 512,
        rope_linear_factor: 1.0,
        logit_softcaps: None,
    },
    // Mixtral 8x7B's routing (8 experts, 2 per token) in a small llama.
    Preset {
        name: "mixtral-tiny",
        arch: Arch::Llama,
        n_embd: 512,
        n_layer: 4,
        n_head: 8,
        n_head_kv: 2,
        head_dim: 64,
        n_ff: 1024,
        n_vocab: 32000,
        n_ctx_train: 32768,
        rope_freq_base: 1_000_000.0,
        n_swa: 0,
        tied_output: false,
        n_expert: 8,
        n_expert_used: 2,
        n_ff_exp: 1024,
        rope_linear_factor: 1.0,
        logit_softcaps: None,
    },
    // Small models of each architecture for checks against llama.cpp
    // (`scripts/check-kld-archs.sh`): real layouts, seconds to run.
    Preset {
        name: "llama-tiny",
        arch: Arch::Llama,
        rope_freq_base: 500_000.0,
        ..TINY
    },
    Preset {
        name: "qwen2-tiny",
        arch: Arch::Qwen2,
        rope_freq_base: 1_000_000.0,
        ..TINY
    },
    Preset {
        name: "qwen3-tiny",
        arch: Arch::Qwen3,
        rope_freq_base: 1_000_000.0,
        ..TINY
    },
    Preset {
        name: "qwen3moe-tiny",
        arch: Arch::Qwen3Moe,
        rope_freq_base: 1_000_000.0,
        tied_output: false,
        n_expert: 16,
        n_expert_used: 4,
        n_ff_exp: 256,
        ..TINY
    },
    // Six layers: five with a 64-token window, one global.
    Preset {
        name: "gemma3-tiny",
        arch: Arch::Gemma3,
        n_layer: 6,
        n_head_kv: 1,
        rope_freq_base: 1_000_000.0,
        n_swa: 64,
        ..TINY
    },
    // The same with Gemma 3 4B's linear RoPE scaling (factor 8, global layers only).
    Preset {
        name: "gemma3-tiny-scaled",
        arch: Arch::Gemma3,
        n_layer: 6,
        n_head_kv: 1,
        rope_freq_base: 1_000_000.0,
        n_swa: 64,
        rope_linear_factor: 8.0,
        ..TINY
    },
    // Gemma 2's shape in small: a 64-token window on every other layer.
    Preset {
        name: "gemma2-tiny",
        arch: Arch::Gemma2,
        n_swa: 64,
        logit_softcaps: Some((50.0, 30.0)),
        ..TINY
    },
    // Ministral 3's llama layout with YaRN and query temperature, in small.
    Preset {
        name: "mistral3-tiny",
        arch: Arch::Mistral3,
        n_ctx_train: 262_144,
        rope_freq_base: 1_000_000.0,
        tied_output: false,
        ..TINY
    },
    // gpt-oss-20b's layout in small (32 experts of which 4 per token, a
    // 128-token window on every other layer, YaRN 32x over 4096 tokens):
    // 16 experts, 4 per token, a 64-token window, the same YaRN.
    Preset {
        name: "gpt-oss-tiny",
        arch: Arch::GptOss,
        n_ctx_train: 131_072,
        rope_freq_base: 150_000.0,
        n_swa: 64,
        tied_output: false,
        n_expert: 16,
        n_expert_used: 4,
        n_ff_exp: 256,
        ..TINY
    },
    // Phi-3-mini-128k's layout in small: fused QKV and gate/up, LongRoPE factors.
    Preset {
        name: "phi3-tiny",
        arch: Arch::Phi3,
        n_head_kv: 4,
        n_ctx_train: 131072,
        tied_output: false,
        ..TINY
    },
];

/// What the small check models share (`*-tiny`): 4 layers of 256, 4 query
/// heads of 64 over 2 KV heads, a 32000-token vocabulary.
const TINY: Preset = Preset {
    name: "tiny",
    arch: Arch::Llama,
    n_embd: 256,
    n_layer: 4,
    n_head: 4,
    n_head_kv: 2,
    head_dim: 64,
    n_ff: 768,
    n_vocab: 32000,
    n_ctx_train: 8192,
    rope_freq_base: 10_000.0,
    n_swa: 0,
    tied_output: true,
    n_expert: DENSE.0,
    n_expert_used: DENSE.1,
    n_ff_exp: DENSE.2,
    rope_linear_factor: 1.0,
    logit_softcaps: None,
};

/// The preset used when no model is given.
pub const DEFAULT_PRESET: &str = "llama-125m";

pub fn preset(name: &str) -> Option<&'static Preset> {
    PRESETS.iter().find(|p| p.name.eq_ignore_ascii_case(name))
}

pub fn preset_names() -> String {
    PRESETS
        .iter()
        .map(|p| p.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// File types a synthetic model can be written in: the common llama.cpp
/// `llama-quantize` types, with its tensor-type choices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SynthFtype {
    Q4KM,
    Q5KM,
    Q4_0,
    Q4_1,
    Q8_0,
    F16,
    /// gpt-oss's release format: experts in MXFP4, every other matrix Q8_0.
    Mxfp4Moe,
}

impl SynthFtype {
    pub const ALL: [SynthFtype; 7] = [
        SynthFtype::Q4KM,
        SynthFtype::Q5KM,
        SynthFtype::Q4_0,
        SynthFtype::Q4_1,
        SynthFtype::Q8_0,
        SynthFtype::F16,
        SynthFtype::Mxfp4Moe,
    ];

    pub fn parse(s: &str) -> Option<SynthFtype> {
        let s = s.to_ascii_lowercase();
        SynthFtype::ALL.into_iter().find(|f| f.name() == s)
    }

    pub fn name(self) -> &'static str {
        match self {
            SynthFtype::Q4KM => "q4_k_m",
            SynthFtype::Q5KM => "q5_k_m",
            SynthFtype::Q4_0 => "q4_0",
            SynthFtype::Q4_1 => "q4_1",
            SynthFtype::Q8_0 => "q8_0",
            SynthFtype::F16 => "f16",
            SynthFtype::Mxfp4Moe => "mxfp4_moe",
        }
    }

    /// The names, for messages.
    pub fn names() -> String {
        SynthFtype::ALL.map(SynthFtype::name).join(", ")
    }

    /// llama.cpp's `general.file_type` id.
    pub fn file_type_id(self) -> u32 {
        match self {
            SynthFtype::Q4KM => 15,
            SynthFtype::Q5KM => 17,
            SynthFtype::Q4_0 => 2,
            SynthFtype::Q4_1 => 3,
            SynthFtype::Q8_0 => 7,
            SynthFtype::F16 => 1,
            SynthFtype::Mxfp4Moe => 38,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    #[error("unknown synthetic model '{0}' (presets: {list})", list = preset_names())]
    UnknownPreset(String),
    #[error("unknown file type '{0}' (choose {list})", list = SynthFtype::names())]
    UnknownFtype(String),
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error(transparent)]
    Quant(#[from] quant::QuantError),
    #[error("cannot create cache directory {path}: {source}")]
    CacheDir {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl Preset {
    /// The hyperparameters a file of this preset carries.
    pub fn hparams(&self) -> Hparams {
        let gemma2 = self.arch == Arch::Gemma2;
        let phi3 = self.arch == Arch::Phi3;
        let mistral3 = self.arch == Arch::Mistral3;
        let gpt_oss = self.arch == Arch::GptOss;
        let yarn_factor = if mistral3 {
            Some(MISTRAL3_YARN_FACTOR)
        } else if gpt_oss {
            Some(GPT_OSS_YARN_FACTOR)
        } else {
            None
        };
        let rope_freq_scale = 1.0 / yarn_factor.unwrap_or(self.rope_linear_factor);
        // Gemma 3's windowed layers have a RoPE base of their own, Gemma 2's share it.
        let rope_freq_base_swa = if self.n_swa > 0 && self.arch == Arch::Gemma3 {
            10_000.0
        } else {
            self.rope_freq_base
        };
        Hparams {
            arch: self.arch,
            n_ctx_train: self.n_ctx_train,
            n_embd: self.n_embd,
            n_layer: self.n_layer,
            n_head: self.n_head,
            n_head_kv: self.n_head_kv,
            head_dim_k: self.head_dim,
            head_dim_v: self.head_dim,
            n_ff: self.n_ff,
            n_vocab: self.n_vocab,
            rms_eps: 1e-6,
            n_rot: self.head_dim,
            rope_freq_base: self.rope_freq_base,
            rope_freq_scale,
            rope_ext_factor: if yarn_factor.is_some() { 1.0 } else { 0.0 },
            yarn_beta_fast: 32.0,
            yarn_beta_slow: 1.0,
            attn_temp_scale: if mistral3 { MISTRAL3_TEMP_SCALE } else { 0.0 },
            rope_freq_base_swa,
            // Gemma 3's windowed layers stay unscaled.
            rope_freq_scale_swa: if self.arch == Arch::Gemma3 {
                1.0
            } else {
                rope_freq_scale
            },
            n_swa: self.n_swa,
            swa_period: match (self.n_swa, gemma2 || gpt_oss) {
                (0, _) => 0,
                (_, true) => 2,
                (_, false) => 6,
            },
            attn_scale: 1.0 / (self.head_dim as f32).sqrt(),
            final_logit_softcap: self.logit_softcaps.map(|c| c.1),
            rope_attn_factor: if phi3 { PHI3_ROPE_ATTN_FACTOR } else { 1.0 },
            n_ctx_orig: if phi3 {
                PHI3_ORIG_CTX
            } else if mistral3 {
                MISTRAL3_ORIG_CTX
            } else if gpt_oss {
                GPT_OSS_ORIG_CTX
            } else {
                self.n_ctx_train
            },
            attn_logit_softcap: self.logit_softcaps.map(|c| c.0),
            n_expert: self.n_expert,
            n_expert_used: self.n_expert_used,
            n_ff_exp: self.n_ff_exp,
            attn_sinks: gpt_oss,
        }
    }

    /// The tensors a file of this preset carries (optional ones left out).
    pub fn tensors(&self) -> Vec<TensorSpec> {
        expected_tensors(&self.hparams(), self.tied_output)
            .into_iter()
            .filter(|t| !t.optional)
            .collect()
    }
}

/// llama.cpp's Q4_K_M rule: a few more bits for the first and last eighth of
/// the layers and every third one between.
fn use_more_bits(il: u32, n_layer: u32) -> bool {
    il < n_layer / 8 || il >= 7 * n_layer / 8 || (il - n_layer / 8) % 3 == 2
}

/// K-quants need rows that are whole super-blocks; llama.cpp falls back to these.
fn fallback_if_needed(ty: GgmlType, ne0: u64) -> GgmlType {
    if ne0.is_multiple_of(QK_K as u64) {
        return ty;
    }
    match ty {
        GgmlType::Q4_K => GgmlType::Q5_0,
        GgmlType::Q5_K => GgmlType::Q5_1,
        GgmlType::Q6_K => GgmlType::Q8_0,
        other => other,
    }
}

/// The storage type of a tensor in a file of type `ftype`, as
/// `llama-quantize` chooses it: the output projection (or the embedding it
/// is tied to) at Q6_K unless the file is Q8_0; in the K-quant mixes, the V
/// projection and FFN down projection of some layers at Q6_K.
pub fn tensor_type(spec: &TensorSpec, ftype: SynthFtype, preset: &Preset) -> GgmlType {
    let (n_layer, tied_output, n_expert) = (preset.n_layer, preset.tied_output, preset.n_expert);
    // llama-quantize keeps the expert router in F32.
    if spec.role.is_vector() || spec.role == Role::FfnGateInp {
        return GgmlType::F32;
    }
    let ne0 = spec.dims[0];
    let base = match ftype {
        SynthFtype::F16 => return GgmlType::F16,
        SynthFtype::Q8_0 => return GgmlType::Q8_0,
        // llama-quantize's MXFP4_MOE: stacked experts MXFP4, the rest Q8_0.
        SynthFtype::Mxfp4Moe if spec.role.is_experts() => return GgmlType::MXFP4,
        SynthFtype::Mxfp4Moe => return GgmlType::Q8_0,
        SynthFtype::Q4KM => GgmlType::Q4_K,
        SynthFtype::Q5KM => GgmlType::Q5_K,
        SynthFtype::Q4_0 => GgmlType::Q4_0,
        SynthFtype::Q4_1 => GgmlType::Q4_1,
    };
    let k_mix = matches!(ftype, SynthFtype::Q4KM | SynthFtype::Q5KM);
    let ty = match spec.role {
        Role::Output => GgmlType::Q6_K,
        Role::TokenEmbd if tied_output => GgmlType::Q6_K,
        // Eight experts (Mixtral): K and V at Q8_0, the output projection at Q5_K.
        Role::AttnK | Role::AttnV if n_expert == 8 => GgmlType::Q8_0,
        Role::AttnOut if n_expert == 8 && ftype == SynthFtype::Q4KM => GgmlType::Q5_K,
        Role::AttnV | Role::FfnDown | Role::FfnDownExps
            if k_mix && spec.layer.is_some_and(|il| use_more_bits(il, n_layer)) =>
        {
            GgmlType::Q6_K
        }
        _ => base,
    };
    fallback_if_needed(ty, ne0)
}

/// Byte tokens, printable ASCII characters and padding up to `n_vocab`:
/// enough to tokenize any text, while the vocabulary has the real model's size.
pub fn synthetic_vocab(n_vocab: u32) -> (Vec<String>, Vec<f32>, Vec<i32>) {
    const NORMAL: i32 = 1;
    const UNKNOWN: i32 = 2;
    const CONTROL: i32 = 3;
    const UNUSED: i32 = 5;
    const BYTE: i32 = 6;
    let n = n_vocab as usize;
    let mut tokens = Vec::with_capacity(n);
    let mut scores = Vec::with_capacity(n);
    let mut types = Vec::with_capacity(n);
    for (t, ty) in [("<unk>", UNKNOWN), ("<s>", CONTROL), ("</s>", CONTROL)] {
        tokens.push(t.to_string());
        scores.push(0.0);
        types.push(ty);
    }
    for b in 0..=255u8 {
        tokens.push(format!("<0x{b:02X}>"));
        scores.push(0.0);
        types.push(BYTE);
    }
    // ' ' is written as U+2581 in SentencePiece vocabularies.
    let chars = std::iter::once('\u{2581}').chain((0x21u8..=0x7e).map(char::from));
    for (rank, c) in chars.enumerate() {
        tokens.push(c.to_string());
        scores.push(-(rank as f32));
        types.push(NORMAL);
    }
    let mut i = 0;
    while tokens.len() < n {
        tokens.push(format!("<unused_{i}>"));
        scores.push(0.0);
        types.push(UNUSED);
        i += 1;
    }
    tokens.truncate(n);
    scores.truncate(n);
    types.truncate(n);
    (tokens, scores, types)
}

fn str_array(items: Vec<String>) -> Value {
    Value::Array {
        elem: ValueType::String,
        items: items.into_iter().map(Value::String).collect(),
    }
}

/// Deterministic per-tensor seed.
fn tensor_seed(seed: u64, index: usize) -> u64 {
    seed ^ (index as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

fn fill_floats(ty: GgmlType, role: Role, seed: u64) -> TensorSource {
    TensorSource::Fill(Box::new(move |buf: &mut [u8]| {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let mut next = || -> f32 {
            if role.is_norm() {
                // Norm weights near one keep activations in a realistic range.
                1.0 + rng.gen_range(-0.05..0.05)
            } else if role == Role::FfnGateInp {
                // Router scores spread over a few units, as trained routers'
                // are: near-ties between the k-th and next expert stay rare.
                rng.gen_range(-0.25..0.25)
            } else if role == Role::AttnSinks {
                // Sink logits that take a real share of attention over a
                // few hundred near-uniform scores, so a check sees them.
                rng.gen_range(1.0..4.0)
            } else if matches!(role, Role::RopeFactorsLong | Role::RopeFactorsShort) {
                // Wavelength divisors, as LongRoPE's lie (1 to tens).
                rng.gen_range(1.0..4.0)
            } else {
                rng.gen_range(-0.04..0.04)
            }
        };
        match ty {
            GgmlType::F32 => {
                for c in buf.chunks_exact_mut(4) {
                    c.copy_from_slice(&next().to_le_bytes());
                }
            }
            _ => {
                for c in buf.chunks_exact_mut(2) {
                    c.copy_from_slice(&half::f16::from_f32(next()).to_le_bytes());
                }
            }
        }
    }))
}

/// Writes a synthetic model of `preset` in `ftype` to `path`.
pub fn write_synthetic(
    preset: &Preset,
    ftype: SynthFtype,
    seed: u64,
    path: &Path,
) -> Result<(), SynthError> {
    let hp = preset.hparams();
    let a = preset.arch.name();
    let mut w = GgufWriter::new();
    w.add_kv(keys::GENERAL_ARCHITECTURE, Value::String(a.into()));
    w.add_kv(keys::GENERAL_TYPE, Value::String("model".into()));
    w.add_kv(
        keys::GENERAL_NAME,
        Value::String(format!(
            "synthetic {} {} (random weights)",
            preset.name,
            ftype.name()
        )),
    );
    w.add_kv(keys::GENERAL_FILE_TYPE, Value::U32(ftype.file_type_id()));
    // "llama-125m" -> "125M", the label llama.cpp's model_type shows.
    if let Some((_, size)) = preset.name.rsplit_once('-') {
        w.add_kv(
            keys::GENERAL_SIZE_LABEL,
            Value::String(size.to_ascii_uppercase()),
        );
    }
    w.add_kv(keys::GENERAL_QUANTIZATION_VERSION, Value::U32(2));
    w.add_kv(keys::SYNTHETIC, Value::Bool(true));
    w.add_kv(keys::SYNTHETIC_PRESET, Value::String(preset.name.into()));
    w.add_kv(keys::SYNTHETIC_SEED, Value::U64(seed));
    w.add_kv(keys::SYNTHETIC_VERSION, Value::U32(SYNTH_FORMAT_VERSION));
    w.add_kv(
        keys::arch_key(a, keys::CONTEXT_LENGTH),
        Value::U32(hp.n_ctx_train),
    );
    w.add_kv(
        keys::arch_key(a, keys::EMBEDDING_LENGTH),
        Value::U32(hp.n_embd),
    );
    w.add_kv(keys::arch_key(a, keys::BLOCK_COUNT), Value::U32(hp.n_layer));
    w.add_kv(
        keys::arch_key(a, keys::FEED_FORWARD_LENGTH),
        Value::U32(hp.n_ff),
    );
    w.add_kv(keys::arch_key(a, keys::HEAD_COUNT), Value::U32(hp.n_head));
    w.add_kv(
        keys::arch_key(a, keys::HEAD_COUNT_KV),
        Value::U32(hp.n_head_kv),
    );
    w.add_kv(
        keys::arch_key(a, keys::KEY_LENGTH),
        Value::U32(hp.head_dim_k),
    );
    w.add_kv(
        keys::arch_key(a, keys::VALUE_LENGTH),
        Value::U32(hp.head_dim_v),
    );
    w.add_kv(keys::arch_key(a, keys::RMS_EPSILON), Value::F32(hp.rms_eps));
    w.add_kv(
        keys::arch_key(a, keys::ROPE_FREQ_BASE),
        Value::F32(hp.rope_freq_base),
    );
    w.add_kv(
        keys::arch_key(a, keys::ROPE_DIMENSION_COUNT),
        Value::U32(hp.n_rot),
    );
    w.add_kv(keys::arch_key(a, keys::VOCAB_SIZE), Value::U32(hp.n_vocab));
    if hp.is_moe() {
        w.add_kv(
            keys::arch_key(a, keys::EXPERT_COUNT),
            Value::U32(hp.n_expert),
        );
        w.add_kv(
            keys::arch_key(a, keys::EXPERT_USED_COUNT),
            Value::U32(hp.n_expert_used),
        );
        w.add_kv(
            keys::arch_key(a, keys::EXPERT_FEED_FORWARD_LENGTH),
            Value::U32(hp.n_ff_exp),
        );
    }
    for (key, cap) in [
        (keys::ATTN_LOGIT_SOFTCAPPING, hp.attn_logit_softcap),
        (keys::FINAL_LOGIT_SOFTCAPPING, hp.final_logit_softcap),
    ] {
        if let Some(cap) = cap {
            w.add_kv(keys::arch_key(a, key), Value::F32(cap));
        }
    }
    if preset.arch == Arch::Phi3 {
        w.add_kv(
            keys::arch_key(a, keys::ROPE_SCALING_ORIG_CTX),
            Value::U32(hp.n_ctx_orig),
        );
        w.add_kv(
            keys::arch_key(a, keys::ROPE_SCALING_ATTN_FACTOR),
            Value::F32(hp.rope_attn_factor),
        );
    }
    let yarn = |w: &mut GgufWriter, factor: f32, orig_ctx: u32| {
        w.add_kv(
            keys::arch_key(a, keys::ROPE_SCALING_TYPE),
            Value::String("yarn".into()),
        );
        w.add_kv(
            keys::arch_key(a, keys::ROPE_SCALING_FACTOR),
            Value::F32(factor),
        );
        w.add_kv(
            keys::arch_key(a, keys::ROPE_SCALING_ORIG_CTX),
            Value::U32(orig_ctx),
        );
    };
    if preset.arch == Arch::Mistral3 {
        yarn(&mut w, MISTRAL3_YARN_FACTOR, MISTRAL3_ORIG_CTX);
        w.add_kv(
            keys::arch_key(a, keys::ROPE_SCALING_YARN_BETA_FAST),
            Value::F32(32.0),
        );
        w.add_kv(
            keys::arch_key(a, keys::ROPE_SCALING_YARN_BETA_SLOW),
            Value::F32(1.0),
        );
        w.add_kv(
            keys::arch_key(a, keys::ATTENTION_TEMPERATURE_SCALE),
            Value::F32(MISTRAL3_TEMP_SCALE),
        );
    }
    if preset.arch == Arch::GptOss {
        yarn(&mut w, GPT_OSS_YARN_FACTOR, GPT_OSS_ORIG_CTX);
    }
    if preset.rope_linear_factor != 1.0 {
        w.add_kv(
            keys::arch_key(a, keys::ROPE_SCALING_TYPE),
            Value::String("linear".into()),
        );
        w.add_kv(
            keys::arch_key(a, keys::ROPE_SCALING_FACTOR),
            Value::F32(preset.rope_linear_factor),
        );
    }
    if hp.n_swa > 0 {
        w.add_kv(
            keys::arch_key(a, keys::SLIDING_WINDOW),
            Value::U32(hp.n_swa),
        );
    }
    let (mut tokens, scores, mut types) = synthetic_vocab(hp.n_vocab);
    if preset.arch == Arch::Phi3 {
        // llama.cpp sets attributes of Phi-3's end-of-text token by name.
        if let Some(i) = tokens.iter().position(|t| t.starts_with("<unused_")) {
            tokens[i] = "<|endoftext|>".into();
            types[i] = 3; // control
        }
    }
    w.add_kv(keys::TOKENIZER_MODEL, Value::String("llama".into()));
    w.add_kv(keys::TOKENIZER_TOKENS, str_array(tokens));
    w.add_kv(
        keys::TOKENIZER_SCORES,
        Value::Array {
            elem: ValueType::F32,
            items: scores.into_iter().map(Value::F32).collect(),
        },
    );
    w.add_kv(
        keys::TOKENIZER_TOKEN_TYPE,
        Value::Array {
            elem: ValueType::I32,
            items: types.into_iter().map(Value::I32).collect(),
        },
    );
    w.add_kv(keys::TOKENIZER_UNK_ID, Value::U32(0));
    w.add_kv(keys::TOKENIZER_BOS_ID, Value::U32(1));
    w.add_kv(keys::TOKENIZER_EOS_ID, Value::U32(2));
    w.add_kv(keys::TOKENIZER_ADD_BOS, Value::Bool(true));
    w.add_kv(keys::TOKENIZER_ADD_SPACE_PREFIX, Value::Bool(false));

    for (index, spec) in preset.tensors().iter().enumerate() {
        let ty = tensor_type(spec, ftype, preset);
        let seed = tensor_seed(seed, index);
        let source = if ty.is_quantized() {
            if !quant::RANDOM_BLOCK_TYPES.contains(&ty) {
                return Err(SynthError::Quant(quant::QuantError::Unsupported(ty)));
            }
            TensorSource::Fill(Box::new(move |buf: &mut [u8]| {
                // The type was checked above and the writer sizes `buf` in whole
                // blocks, so filling cannot fail.
                let _ = quant::fill_random_blocks(ty, buf, seed);
            }))
        } else {
            fill_floats(ty, spec.role, seed)
        };
        w.add_tensor(spec.name.clone(), &spec.dims, ty, source)?;
    }
    w.write_file(path)?;
    Ok(())
}

/// Where `synth:NAME` models are cached.
pub fn cache_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("RBENCH_CACHE_DIR") {
        return PathBuf::from(dir).join("synth");
    }
    dirs::cache_dir()
        .unwrap_or_else(std::env::temp_dir)
        .join("rbench")
        .join("synth")
}

/// A model spec `synth:PRESET[:FTYPE]`, parsed; `None` if `spec` is a plain path.
pub fn parse_spec(spec: &str) -> Option<Result<(&'static Preset, SynthFtype), SynthError>> {
    let rest = spec.strip_prefix("synth:")?;
    let (name, ftype) = match rest.split_once(':') {
        Some((n, f)) => (n, Some(f)),
        None => (rest, None),
    };
    Some((|| {
        let p = preset(name).ok_or_else(|| SynthError::UnknownPreset(name.to_string()))?;
        let ft = match ftype {
            Some(f) => {
                SynthFtype::parse(f).ok_or_else(|| SynthError::UnknownFtype(f.to_string()))?
            }
            None => SynthFtype::Q4KM,
        };
        Ok((p, ft))
    })())
}

/// Path of the cached synthetic model, writing it first when missing.
pub fn ensure_cached(preset: &Preset, ftype: SynthFtype) -> Result<PathBuf, SynthError> {
    let dir = cache_dir();
    std::fs::create_dir_all(&dir).map_err(|source| SynthError::CacheDir {
        path: dir.clone(),
        source,
    })?;
    let path = dir.join(format!(
        "{}-{}-v{}.gguf",
        preset.name,
        ftype.name(),
        SYNTH_FORMAT_VERSION
    ));
    if !path.exists() {
        write_synthetic(preset, ftype, 42, &path)?;
    }
    Ok(path)
}

/// The smallest preset (`llama-15m`, F16 weights, random with `seed`) in a
/// temporary directory, loaded: the model unit tests of other modules run on.
#[cfg(test)]
pub(crate) fn test_model(seed: u64) -> (tempfile::TempDir, super::Model) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("m.gguf");
    let preset = preset("llama-15m").expect("the llama-15m preset");
    write_synthetic(preset, SynthFtype::F16, seed, &path).expect("synthetic model written");
    let model = super::Model::load(&path, &super::weights::LoadOptions::default())
        .expect("synthetic model loads");
    (dir, model)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q4_k_m_mix_follows_upstream_rules() {
        let p = preset("llama-125m").unwrap();
        let specs = p.tensors();
        let ty_of = |name: &str| {
            let s = specs.iter().find(|s| s.name == name).unwrap();
            tensor_type(s, SynthFtype::Q4KM, p)
        };
        assert_eq!(ty_of("blk.0.attn_v.weight"), GgmlType::Q6_K);
        assert_eq!(ty_of("blk.2.attn_v.weight"), GgmlType::Q4_K);
        assert_eq!(ty_of("blk.0.attn_q.weight"), GgmlType::Q4_K);
        assert_eq!(ty_of("blk.0.attn_norm.weight"), GgmlType::F32);
        assert_eq!(ty_of("output.weight"), GgmlType::Q6_K);
        // gemma3-270m rows of 640 are not whole super-blocks.
        let g = preset("gemma3-270m").unwrap();
        let gs = g.tensors();
        let q = gs.iter().find(|s| s.name == "blk.1.attn_q.weight").unwrap();
        assert_eq!(tensor_type(q, SynthFtype::Q4KM, g), GgmlType::Q5_0);
        let emb = gs.iter().find(|s| s.name == "token_embd.weight").unwrap();
        assert_eq!(tensor_type(emb, SynthFtype::Q4KM, g), GgmlType::Q8_0);
    }

    #[test]
    fn other_file_types_follow_upstream_rules() {
        let p = preset("llama-1b").unwrap();
        let specs = p.tensors();
        let ty_of = |name: &str, ftype| {
            let s = specs.iter().find(|s| s.name == name).unwrap();
            tensor_type(s, ftype, p)
        };
        // Llama 3.2 1B ties its output to the embedding: Q6_K but in Q8_0 files.
        for (ftype, body) in [
            (SynthFtype::Q4_0, GgmlType::Q4_0),
            (SynthFtype::Q4_1, GgmlType::Q4_1),
            (SynthFtype::Q5KM, GgmlType::Q5_K),
            (SynthFtype::Q8_0, GgmlType::Q8_0),
        ] {
            assert_eq!(ty_of("blk.3.attn_q.weight", ftype), body, "{ftype:?}");
            assert_eq!(ty_of("blk.3.ffn_up.weight", ftype), body, "{ftype:?}");
            let embd = if ftype == SynthFtype::Q8_0 {
                GgmlType::Q8_0
            } else {
                GgmlType::Q6_K
            };
            assert_eq!(ty_of("token_embd.weight", ftype), embd, "{ftype:?}");
        }
        // Only the K-quant mixes give some V and FFN down projections more bits.
        assert_eq!(
            ty_of("blk.0.ffn_down.weight", SynthFtype::Q5KM),
            GgmlType::Q6_K
        );
        assert_eq!(
            ty_of("blk.3.ffn_down.weight", SynthFtype::Q5KM),
            GgmlType::Q5_K
        );
        assert_eq!(
            ty_of("blk.0.ffn_down.weight", SynthFtype::Q4_0),
            GgmlType::Q4_0
        );
        assert_eq!(SynthFtype::parse("Q4_1"), Some(SynthFtype::Q4_1));
        assert_eq!(SynthFtype::parse("q3_k_s"), None);
    }

    #[test]
    fn vocab_has_requested_size_and_byte_tokens() {
        let (t, s, ty) = synthetic_vocab(1000);
        assert_eq!((t.len(), s.len(), ty.len()), (1000, 1000, 1000));
        assert_eq!(t[3], "<0x00>");
        assert_eq!(t[258], "<0xFF>");
        assert_eq!(t[259], "\u{2581}");
        assert!(t[999].starts_with("<unused_"));
    }

    #[test]
    fn spec_parsing() {
        assert!(parse_spec("model.gguf").is_none());
        let (p, f) = parse_spec("synth:llama-125m").unwrap().unwrap();
        assert_eq!((p.name, f), ("llama-125m", SynthFtype::Q4KM));
        let (_, f) = parse_spec("synth:qwen3-0.6b:q8_0").unwrap().unwrap();
        assert_eq!(f, SynthFtype::Q8_0);
        assert!(matches!(
            parse_spec("synth:nope"),
            Some(Err(SynthError::UnknownPreset(_)))
        ));
        assert!(matches!(
            parse_spec("synth:llama-15m:q3"),
            Some(Err(SynthError::UnknownFtype(_)))
        ));
    }

    #[test]
    fn param_counts_match_the_real_models() {
        let n = |name: &str| -> u64 {
            preset(name)
                .unwrap()
                .tensors()
                .iter()
                .map(|t| t.dims.iter().product::<u64>())
                .sum()
        };
        // llama.cpp reports 268.10 M for Gemma 3 270M.
        assert_eq!(n("gemma3-270m"), 268_098_176);
        // Qwen2-1.5B: 1.54 B; Llama-3.2-1B: 1.24 B; Mistral-Small-24B: 23.57 B.
        assert!((1.50e9..1.60e9).contains(&(n("qwen2-1.5b") as f64)));
        assert!((1.20e9..1.30e9).contains(&(n("llama-1b") as f64)));
        assert!((23.0e9..24.0e9).contains(&(n("mistral-24b") as f64)));
    }
}
