//! Hyperparameters of the supported architectures, read from GGUF keys.

use crate::gguf::GgufFile;
use serde::Serialize;
use std::fmt;

/// Architectures rbench can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    Llama,
    Qwen2,
    Qwen3,
    Gemma3,
}

impl Arch {
    pub const ALL: [Arch; 4] = [Arch::Llama, Arch::Qwen2, Arch::Qwen3, Arch::Gemma3];

    /// The `general.architecture` string.
    pub fn name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Qwen2 => "qwen2",
            Arch::Qwen3 => "qwen3",
            Arch::Gemma3 => "gemma3",
        }
    }

    pub fn from_name(name: &str) -> Option<Arch> {
        Arch::ALL.into_iter().find(|a| a.name() == name)
    }

    pub fn supported_list() -> String {
        Arch::ALL.map(Arch::name).join(", ")
    }

    /// RoPE flavour: rotate adjacent pairs (normal) or halves (neox).
    pub fn rope_neox(self) -> bool {
        !matches!(self, Arch::Llama)
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HparamsError {
    #[error("the file has no general.architecture key: not a model GGUF")]
    NoArchitecture,
    #[error("unsupported architecture '{0}' (supported: {list})", list = Arch::supported_list())]
    UnsupportedArch(String),
    #[error("missing required key '{0}'")]
    MissingKey(String),
    #[error("key '{key}' has an invalid value: {why}")]
    InvalidValue { key: String, why: String },
}

/// Everything the graph builders and the KV cache need to know about a model's shape.
#[derive(Clone, Debug, Serialize)]
pub struct Hparams {
    pub arch: Arch,
    pub n_ctx_train: u32,
    pub n_embd: u32,
    pub n_layer: u32,
    pub n_head: u32,
    pub n_head_kv: u32,
    /// Per-head width of queries/keys.
    pub head_dim_k: u32,
    /// Per-head width of values.
    pub head_dim_v: u32,
    pub n_ff: u32,
    pub n_vocab: u32,
    pub rms_eps: f32,
    /// Dimensions rotated by RoPE (usually the whole head).
    pub n_rot: u32,
    pub rope_freq_base: f32,
    pub rope_freq_scale: f32,
    /// RoPE base of sliding-window layers (Gemma 3's local layers).
    pub rope_freq_base_swa: f32,
    /// Sliding window size in tokens; 0 = none.
    pub n_swa: u32,
    /// Every `swa_period`-th layer (the last of each group) is global; 0 = all layers windowed when n_swa > 0.
    pub swa_period: u32,
    /// Scale applied to queries before attention.
    pub attn_scale: f32,
    pub final_logit_softcap: Option<f32>,
}

fn key(arch: Arch, suffix: &str) -> String {
    format!("{}.{}", arch.name(), suffix)
}

fn req_u32(f: &GgufFile, k: &str) -> Result<u32, HparamsError> {
    f.get(k)
        .ok_or_else(|| HparamsError::MissingKey(k.to_string()))?
        .as_u32()
        .ok_or_else(|| HparamsError::InvalidValue {
            key: k.to_string(),
            why: "expected an unsigned 32-bit integer".into(),
        })
}

fn opt_u32(f: &GgufFile, k: &str) -> Result<Option<u32>, HparamsError> {
    match f.get(k) {
        None => Ok(None),
        Some(v) => v
            .as_u32()
            .map(Some)
            .ok_or_else(|| HparamsError::InvalidValue {
                key: k.to_string(),
                why: "expected an unsigned 32-bit integer".into(),
            }),
    }
}

fn opt_f32(f: &GgufFile, k: &str) -> Result<Option<f32>, HparamsError> {
    match f.get(k) {
        None => Ok(None),
        Some(v) => v
            .as_f32()
            .map(Some)
            .ok_or_else(|| HparamsError::InvalidValue {
                key: k.to_string(),
                why: "expected a number".into(),
            }),
    }
}

fn positive(k: &str, v: u32, max: u32) -> Result<u32, HparamsError> {
    if v == 0 || v > max {
        return Err(HparamsError::InvalidValue {
            key: k.to_string(),
            why: format!("{v} is outside 1..={max}"),
        });
    }
    Ok(v)
}

impl Hparams {
    /// The architecture named by the file, refusing unsupported ones.
    pub fn arch_of(f: &GgufFile) -> Result<Arch, HparamsError> {
        let name = f
            .get_str("general.architecture")
            .ok_or(HparamsError::NoArchitecture)?;
        Arch::from_name(name).ok_or_else(|| HparamsError::UnsupportedArch(name.to_string()))
    }

    pub fn from_gguf(f: &GgufFile) -> Result<Hparams, HparamsError> {
        let arch = Hparams::arch_of(f)?;
        let k = |s: &str| key(arch, s);
        // Upper bounds are generous but stop absurd values from sizing allocations.
        let n_embd = positive(
            &k("embedding_length"),
            req_u32(f, &k("embedding_length"))?,
            1 << 17,
        )?;
        let n_layer = positive(&k("block_count"), req_u32(f, &k("block_count"))?, 1024)?;
        let n_head = positive(
            &k("attention.head_count"),
            req_u32(f, &k("attention.head_count"))?,
            4096,
        )?;
        let n_head_kv = match opt_u32(f, &k("attention.head_count_kv"))? {
            Some(v) => positive(&k("attention.head_count_kv"), v, n_head)?,
            None => n_head,
        };
        if n_head % n_head_kv != 0 {
            return Err(HparamsError::InvalidValue {
                key: k("attention.head_count_kv"),
                why: format!("{n_head} query heads are not a multiple of {n_head_kv} KV heads"),
            });
        }
        let head_dim_k = match opt_u32(f, &k("attention.key_length"))? {
            Some(v) => positive(&k("attention.key_length"), v, 4096)?,
            None => {
                if n_embd % n_head != 0 {
                    return Err(HparamsError::MissingKey(k("attention.key_length")));
                }
                n_embd / n_head
            }
        };
        let head_dim_v = match opt_u32(f, &k("attention.value_length"))? {
            Some(v) => positive(&k("attention.value_length"), v, 4096)?,
            None => head_dim_k,
        };
        let n_ff = positive(
            &k("feed_forward_length"),
            req_u32(f, &k("feed_forward_length"))?,
            1 << 20,
        )?;
        let n_ctx_train = opt_u32(f, &k("context_length"))?.unwrap_or(4096).max(1);
        let n_vocab = match opt_u32(f, &k("vocab_size"))? {
            Some(v) => v,
            None => match f.get_array("tokenizer.ggml.tokens") {
                Some(a) => a.len() as u32,
                None => f
                    .tensor("token_embd.weight")
                    .and_then(|t| t.dims.get(1).copied())
                    .and_then(|v| u32::try_from(v).ok())
                    .ok_or_else(|| HparamsError::MissingKey(k("vocab_size")))?,
            },
        };
        let n_vocab = positive("vocab size", n_vocab, 1 << 24)?;
        let rms_eps = opt_f32(f, &k("attention.layer_norm_rms_epsilon"))?.unwrap_or(1e-6);
        let n_rot = opt_u32(f, &k("rope.dimension_count"))?.unwrap_or(head_dim_k);
        if n_rot > head_dim_k || n_rot % 2 != 0 {
            return Err(HparamsError::InvalidValue {
                key: k("rope.dimension_count"),
                why: format!("{n_rot} must be even and at most the head size {head_dim_k}"),
            });
        }
        let default_base = match arch {
            Arch::Gemma3 | Arch::Qwen2 | Arch::Qwen3 => 1_000_000.0,
            Arch::Llama => 10_000.0,
        };
        let rope_freq_base = opt_f32(f, &k("rope.freq_base"))?.unwrap_or(default_base);
        let rope_freq_scale = match opt_f32(f, &k("rope.scaling.factor"))? {
            Some(factor)
                if factor > 0.0 && f.get_str(&k("rope.scaling.type")) == Some("linear") =>
            {
                1.0 / factor
            }
            _ => 1.0,
        };
        let (n_swa, swa_period, rope_freq_base_swa) = match arch {
            Arch::Gemma3 => {
                let n_swa = opt_u32(f, &k("attention.sliding_window"))?.unwrap_or(0);
                let period = opt_u32(f, &k("attention.sliding_window_pattern"))?.unwrap_or(6);
                let base = opt_f32(f, &k("rope.freq_base_swa"))?.unwrap_or(10_000.0);
                (n_swa, period, base)
            }
            _ => (0, 0, rope_freq_base),
        };
        // Gemma 3 scales queries by 1/sqrt(head dim) explicitly (27B uses n_embd/n_head).
        let attn_scale = match arch {
            Arch::Gemma3 if n_layer == 62 => 1.0 / ((n_embd / n_head) as f32).sqrt(),
            _ => 1.0 / (head_dim_k as f32).sqrt(),
        };
        let final_logit_softcap = opt_f32(f, &k("final_logit_softcapping"))?.filter(|v| *v > 0.0);
        Ok(Hparams {
            arch,
            n_ctx_train,
            n_embd,
            n_layer,
            n_head,
            n_head_kv,
            head_dim_k,
            head_dim_v,
            n_ff,
            n_vocab,
            rms_eps,
            n_rot,
            rope_freq_base,
            rope_freq_scale,
            rope_freq_base_swa,
            n_swa,
            swa_period,
            attn_scale,
            final_logit_softcap,
        })
    }

    /// Whether layer `il` attends through a sliding window.
    pub fn is_swa_layer(&self, il: u32) -> bool {
        if self.n_swa == 0 {
            return false;
        }
        self.swa_period == 0 || il % self.swa_period < self.swa_period - 1
    }

    /// RoPE base of layer `il`.
    pub fn rope_base(&self, il: u32) -> f32 {
        if self.is_swa_layer(il) {
            self.rope_freq_base_swa
        } else {
            self.rope_freq_base
        }
    }

    /// Width of all K heads of one token (one KV cell of one layer).
    pub fn n_embd_k_gqa(&self) -> u32 {
        self.head_dim_k * self.n_head_kv
    }

    pub fn n_embd_v_gqa(&self) -> u32 {
        self.head_dim_v * self.n_head_kv
    }
}
