//! Hyperparameters of the supported architectures, read from GGUF keys.

pub use super::arch::Arch;
use crate::gguf::keys;
use crate::gguf::GgufFile;
use serde::Serialize;

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
    /// YaRN's extrapolation mix: 1 with `rope.scaling.type = yarn`, else 0.
    pub rope_ext_factor: f32,
    /// YaRN's correction range, in rotations.
    pub yarn_beta_fast: f32,
    pub yarn_beta_slow: f32,
    /// Llama 4 style attention temperature (Mistral 3): queries at position
    /// `p` are scaled by `1 + scale * ln(floor(p / n_ctx_orig) + 1)`; 0 = off.
    pub attn_temp_scale: f32,
    /// RoPE base of sliding-window layers (Gemma 3's local layers).
    pub rope_freq_base_swa: f32,
    /// RoPE frequency scale of sliding-window layers: the global layers'
    /// unless the architecture says otherwise (Gemma 3's stay unscaled).
    pub rope_freq_scale_swa: f32,
    /// Sliding window size in tokens; 0 = none.
    pub n_swa: u32,
    /// Every `swa_period`-th layer (the last of each group) is global; 0 = all layers windowed when n_swa > 0.
    pub swa_period: u32,
    /// Scale applied to queries before attention.
    pub attn_scale: f32,
    pub final_logit_softcap: Option<f32>,
    /// RoPE's magnitude factor (`rope.scaling.attn_factor`; Phi-3 128k: 1.19):
    /// rotated queries and keys are scaled by it.
    pub rope_attn_factor: f32,
    /// Context the model was trained for before RoPE scaling
    /// (`rope.scaling.original_context_length`, else `context_length`).
    pub n_ctx_orig: u32,
    /// Attention scores soft-capped as `cap * tanh(score / cap)` (Gemma 2).
    pub attn_logit_softcap: Option<f32>,
    /// Experts of each mixture-of-experts FFN; 0 = dense FFNs.
    pub n_expert: u32,
    /// Experts each token is routed to.
    pub n_expert_used: u32,
    /// Hidden width of one expert.
    pub n_ff_exp: u32,
    /// Each layer has learned per-head attention sinks (gpt-oss).
    pub attn_sinks: bool,
}

fn key(arch: Arch, suffix: &str) -> String {
    keys::arch_key(arch.name(), suffix)
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

pub(crate) fn opt_u32(f: &GgufFile, k: &str) -> Result<Option<u32>, HparamsError> {
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

pub(crate) fn opt_f32(f: &GgufFile, k: &str) -> Result<Option<f32>, HparamsError> {
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

/// RoPE scaling as llama.cpp reads it.
struct RopeScaling {
    freq_scale: f32,
    ext_factor: f32,
    attn_factor: f32,
    beta_fast: f32,
    beta_slow: f32,
}

/// `rope.scaling.factor` divides the frequencies unless the type is
/// `none` (a missing type means linear); `yarn` also mixes in
/// extrapolation and scales magnitudes by its attention factor
/// (`0.1 ln(factor) + 1`, or the ratio with `yarn_log_multiplier`, divided
/// by `1 + 0.1 ln(factor)` as ggml's kernel multiplies that back in),
/// times `rope.scaling.attn_factor`.
fn read_rope_scaling(
    f: &GgufFile,
    k: &dyn Fn(&str) -> String,
) -> Result<RopeScaling, HparamsError> {
    let kind = f.get_str(&k(keys::ROPE_SCALING_TYPE)).unwrap_or("linear");
    let factor = opt_f32(f, &k(keys::ROPE_SCALING_FACTOR))?.filter(|v| *v > 0.0);
    let freq_scale = match (kind, factor) {
        ("none", _) | (_, None) => 1.0,
        (_, Some(factor)) => 1.0 / factor,
    };
    let yarn = kind == "yarn";
    let mut attn_factor = 1.0;
    if yarn {
        let factor = 1.0 / freq_scale;
        let mscale = |scale: f32, m: f32| {
            if scale <= 1.0 {
                1.0
            } else {
                0.1 * m * scale.ln() + 1.0
            }
        };
        attn_factor = match opt_f32(f, &k(keys::ROPE_SCALING_YARN_LOG_MUL))? {
            Some(log_mul) if log_mul != 0.0 => mscale(factor, 1.0) / mscale(factor, log_mul),
            _ => mscale(factor, 1.0),
        };
        attn_factor /= 1.0 + 0.1 * factor.ln();
    }
    attn_factor *= opt_f32(f, &k(keys::ROPE_SCALING_ATTN_FACTOR))?
        .filter(|v| *v > 0.0)
        .unwrap_or(1.0);
    Ok(RopeScaling {
        freq_scale,
        ext_factor: if yarn { 1.0 } else { 0.0 },
        attn_factor,
        beta_fast: opt_f32(f, &k(keys::ROPE_SCALING_YARN_BETA_FAST))?.unwrap_or(32.0),
        beta_slow: opt_f32(f, &k(keys::ROPE_SCALING_YARN_BETA_SLOW))?.unwrap_or(1.0),
    })
}

/// Expert count, experts per token and expert width: `(0, 0, 0)` for a
/// dense model. A file without `expert_feed_forward_length` (Mixtral) has
/// experts as wide as `feed_forward_length`.
fn read_experts(f: &GgufFile, arch: Arch, n_ff: u32) -> Result<(u32, u32, u32), HparamsError> {
    let k = |s: &str| key(arch, s);
    let n_expert = opt_u32(f, &k(keys::EXPERT_COUNT))?.unwrap_or(0);
    if n_expert == 0 {
        return Ok((0, 0, 0));
    }
    let n_expert = positive(&k(keys::EXPERT_COUNT), n_expert, 1 << 12)?;
    let used_key = k(keys::EXPERT_USED_COUNT);
    let n_used = positive(&used_key, req_u32(f, &used_key)?, n_expert)?;
    let n_ff_exp = match opt_u32(f, &k(keys::EXPERT_FEED_FORWARD_LENGTH))? {
        Some(v) => positive(&k(keys::EXPERT_FEED_FORWARD_LENGTH), v, 1 << 20)?,
        None => n_ff,
    };
    Ok((n_expert, n_used, n_ff_exp))
}

impl Hparams {
    /// Whether the FFNs are mixtures of experts.
    pub fn is_moe(&self) -> bool {
        self.n_expert > 0
    }

    /// The architecture named by the file, refusing unsupported ones.
    pub fn arch_of(f: &GgufFile) -> Result<Arch, HparamsError> {
        let name = f
            .get_str(keys::GENERAL_ARCHITECTURE)
            .ok_or(HparamsError::NoArchitecture)?;
        Arch::from_name(name).ok_or_else(|| HparamsError::UnsupportedArch(name.to_string()))
    }

    pub fn from_gguf(f: &GgufFile) -> Result<Hparams, HparamsError> {
        let arch = Hparams::arch_of(f)?;
        let k = |s: &str| key(arch, s);
        // Upper bounds are generous but stop absurd values from sizing allocations.
        let n_embd = positive(
            &k(keys::EMBEDDING_LENGTH),
            req_u32(f, &k(keys::EMBEDDING_LENGTH))?,
            1 << 17,
        )?;
        let n_layer = positive(
            &k(keys::BLOCK_COUNT),
            req_u32(f, &k(keys::BLOCK_COUNT))?,
            1024,
        )?;
        let n_head = positive(
            &k(keys::HEAD_COUNT),
            req_u32(f, &k(keys::HEAD_COUNT))?,
            4096,
        )?;
        let n_head_kv = match opt_u32(f, &k(keys::HEAD_COUNT_KV))? {
            Some(v) => positive(&k(keys::HEAD_COUNT_KV), v, n_head)?,
            None => n_head,
        };
        if n_head % n_head_kv != 0 {
            return Err(HparamsError::InvalidValue {
                key: k(keys::HEAD_COUNT_KV),
                why: format!("{n_head} query heads are not a multiple of {n_head_kv} KV heads"),
            });
        }
        let head_dim_k = match opt_u32(f, &k(keys::KEY_LENGTH))? {
            Some(v) => positive(&k(keys::KEY_LENGTH), v, 4096)?,
            None => {
                if n_embd % n_head != 0 {
                    return Err(HparamsError::MissingKey(k(keys::KEY_LENGTH)));
                }
                n_embd / n_head
            }
        };
        let head_dim_v = match opt_u32(f, &k(keys::VALUE_LENGTH))? {
            Some(v) => positive(&k(keys::VALUE_LENGTH), v, 4096)?,
            None => head_dim_k,
        };
        let n_ff = positive(
            &k(keys::FEED_FORWARD_LENGTH),
            req_u32(f, &k(keys::FEED_FORWARD_LENGTH))?,
            1 << 20,
        )?;
        let n_ctx_train = opt_u32(f, &k(keys::CONTEXT_LENGTH))?.unwrap_or(4096).max(1);
        let n_vocab = match opt_u32(f, &k(keys::VOCAB_SIZE))? {
            Some(v) => v,
            None => match f.get_array(keys::TOKENIZER_TOKENS) {
                Some(a) => a.len() as u32,
                None => f
                    .tensor("token_embd.weight")
                    .and_then(|t| t.dims.get(1).copied())
                    .and_then(|v| u32::try_from(v).ok())
                    .ok_or_else(|| HparamsError::MissingKey(k(keys::VOCAB_SIZE)))?,
            },
        };
        let n_vocab = positive("vocab size", n_vocab, 1 << 24)?;
        let rms_eps = opt_f32(f, &k(keys::RMS_EPSILON))?.unwrap_or(1e-6);
        let n_rot = opt_u32(f, &k(keys::ROPE_DIMENSION_COUNT))?.unwrap_or(head_dim_k);
        if n_rot > head_dim_k || n_rot % 2 != 0 {
            return Err(HparamsError::InvalidValue {
                key: k(keys::ROPE_DIMENSION_COUNT),
                why: format!("{n_rot} must be even and at most the head size {head_dim_k}"),
            });
        }
        let def = arch.def();
        let rope_freq_base =
            opt_f32(f, &k(keys::ROPE_FREQ_BASE))?.unwrap_or(def.default_rope_base());
        let n_ctx_orig = opt_u32(f, &k(keys::ROPE_SCALING_ORIG_CTX))?
            .filter(|v| *v > 0)
            .unwrap_or(n_ctx_train);
        let rope = read_rope_scaling(f, &k)?;
        let final_logit_softcap =
            opt_f32(f, &k(keys::FINAL_LOGIT_SOFTCAPPING))?.filter(|v| *v > 0.0);
        let (n_expert, n_expert_used, n_ff_exp) = read_experts(f, arch, n_ff)?;
        let mut hp = Hparams {
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
            rope_freq_scale: rope.freq_scale,
            rope_ext_factor: rope.ext_factor,
            yarn_beta_fast: rope.beta_fast,
            yarn_beta_slow: rope.beta_slow,
            attn_temp_scale: 0.0,
            // Sliding windows and the attention scale as most architectures
            // have them; those that differ say so in `read_hparams`.
            rope_freq_base_swa: rope_freq_base,
            rope_freq_scale_swa: rope.freq_scale,
            n_swa: 0,
            swa_period: 0,
            attn_scale: 1.0 / (head_dim_k as f32).sqrt(),
            final_logit_softcap,
            rope_attn_factor: rope.attn_factor,
            n_ctx_orig,
            attn_logit_softcap: None,
            n_expert,
            n_expert_used,
            n_ff_exp,
            attn_sinks: false,
        };
        def.read_hparams(f, &mut hp)?;
        Ok(hp)
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

    /// RoPE frequency scale of layer `il`: sliding-window layers have their
    /// own (llama.cpp's `rope_freq_scale_train_swa`), which Gemma 3 keeps
    /// at 1 while its global layers are scaled.
    pub fn rope_scale(&self, il: u32) -> f32 {
        if self.is_swa_layer(il) {
            self.rope_freq_scale_swa
        } else {
            self.rope_freq_scale
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

#[cfg(test)]
mod tests {
    #[test]
    fn linear_rope_scaling_skips_sliding_window_layers() {
        let mut hp = crate::model::synth::preset("gemma3-270m")
            .unwrap()
            .hparams();
        assert!(hp.n_swa > 0 && hp.swa_period == 6, "{hp:?}");
        hp.rope_freq_scale = 0.125;
        let scales: Vec<f32> = (0..6).map(|il| hp.rope_scale(il)).collect();
        assert_eq!(scales, [1.0, 1.0, 1.0, 1.0, 1.0, 0.125]);
        hp.n_swa = 0;
        assert_eq!(hp.rope_scale(0), 0.125);
    }

    /// Read from files: Gemma 3's windowed layers stay unscaled, gpt-oss's
    /// share the global layers' YaRN; gpt-oss windows every other layer
    /// from the first and has sinks.
    #[test]
    fn swa_layers_scale_as_their_architecture_says() {
        use crate::gguf::GgufFile;
        use crate::model::synth::{self, SynthFtype};
        let dir = tempfile::tempdir().unwrap();
        let read = |name: &str| {
            let path = dir.path().join(format!("{name}.gguf"));
            let preset = synth::preset(name).unwrap();
            synth::write_synthetic(preset, SynthFtype::F16, 1, &path).unwrap();
            super::Hparams::from_gguf(&GgufFile::open(&path).unwrap()).unwrap()
        };
        let gemma = read("gemma3-tiny-scaled");
        let scales: Vec<f32> = (0..6).map(|il| gemma.rope_scale(il)).collect();
        assert_eq!(scales, [1.0, 1.0, 1.0, 1.0, 1.0, 0.125]);
        let oss = read("gpt-oss-tiny");
        assert!(oss.attn_sinks && oss.rope_ext_factor == 1.0, "{oss:?}");
        let windowed: Vec<bool> = (0..4).map(|il| oss.is_swa_layer(il)).collect();
        assert_eq!(windowed, [true, false, true, false]);
        assert!((0..4).all(|il| oss.rope_scale(il) == 1.0 / 32.0));
        assert_eq!(oss.n_ctx_orig, 4096);
    }
}
