//! Facts about a model file that `rbench info`, benchmark JSON and reports show.

use super::hparams::{Hparams, HparamsError};
use crate::gguf::keys;
use crate::gguf::GgufFile;
use crate::quant::{self, GgmlType};
use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
pub struct TypeShare {
    #[serde(rename = "type")]
    pub ty: String,
    pub n_tensors: usize,
    pub n_bytes: u64,
    pub n_elements: u64,
    pub share: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct TensorRow {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: String,
    pub dims: Vec<u64>,
    pub n_bytes: u64,
}

/// One row per tensor of the file, in file order.
pub fn tensor_rows(f: &GgufFile) -> Vec<TensorRow> {
    f.tensors()
        .iter()
        .map(|t| TensorRow {
            name: t.name.clone(),
            ty: t.ggml_type.name().to_string(),
            dims: t.dims.clone(),
            n_bytes: t.n_bytes,
        })
        .collect()
}

#[derive(Clone, Debug, Serialize)]
pub struct ModelInfo {
    pub name: Option<String>,
    pub architecture: String,
    pub synthetic: bool,
    /// Total elements of all tensors, as llama.cpp counts parameters.
    pub n_params: u64,
    /// Bytes of tensor data (llama-bench's `model_size`).
    pub model_size: u64,
    pub file_size: u64,
    pub file_type: String,
    pub gguf_version: u32,
    pub n_tensors: usize,
    pub context_length: u32,
    pub n_layer: u32,
    pub n_embd: u32,
    pub n_head: u32,
    pub n_head_kv: u32,
    pub head_dim: u32,
    pub n_ff: u32,
    pub n_vocab: u32,
    pub sliding_window: Option<u32>,
    /// Mixture of experts: how many, how many per token, how wide.
    pub experts: Option<ExpertInfo>,
    pub rope_freq_base: f32,
    pub tokenizer_model: Option<String>,
    pub n_tokens: Option<usize>,
    /// `general.size_label` ("270M"), the size name llama.cpp's model_type uses.
    pub size_label: Option<String>,
    pub types: Vec<TypeShare>,
    pub largest_tensors: Vec<TensorRow>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ExpertInfo {
    pub count: u32,
    pub used: u32,
    pub width: u32,
    /// Parameters one token computes with: all but the unchosen experts' share.
    pub active_params: u64,
}

impl ModelInfo {
    /// Reads the facts; architectures rbench cannot run are refused.
    pub fn from_gguf(f: &GgufFile) -> Result<ModelInfo, HparamsError> {
        let hp = Hparams::from_gguf(f)?;
        let n_params = f.tensors().iter().map(|t| t.n_elements).sum();
        let mix = quant::type_mix(
            f.tensors()
                .iter()
                .map(|t| (t.ggml_type, t.n_elements, t.n_bytes)),
        );
        let file_type = match f.get_u32(keys::GENERAL_FILE_TYPE) {
            Some(id) => quant::file_type_name(id)
                .map(str::to_string)
                .unwrap_or_else(|| format!("unknown ({id})")),
            None => guess_file_type(f),
        };
        let experts = hp.is_moe().then(|| {
            let expert_params: u64 = f
                .tensors()
                .iter()
                .filter(|t| t.name.ends_with("_exps.weight"))
                .map(|t| t.n_elements)
                .sum();
            let unused =
                expert_params / u64::from(hp.n_expert) * u64::from(hp.n_expert - hp.n_expert_used);
            ExpertInfo {
                count: hp.n_expert,
                used: hp.n_expert_used,
                width: hp.n_ff_exp,
                active_params: n_params - unused,
            }
        });
        let mut largest = tensor_rows(f);
        largest.sort_by(|a, b| b.n_bytes.cmp(&a.n_bytes).then_with(|| a.name.cmp(&b.name)));
        largest.truncate(5);
        Ok(ModelInfo {
            name: f.get_str(keys::GENERAL_NAME).map(str::to_string),
            architecture: hp.arch.name().to_string(),
            synthetic: f.get_bool(keys::SYNTHETIC).unwrap_or(false),
            n_params,
            model_size: f.tensor_data_size(),
            file_size: f.file_size(),
            file_type,
            gguf_version: f.version(),
            n_tensors: f.tensors().len(),
            context_length: hp.n_ctx_train,
            n_layer: hp.n_layer,
            n_embd: hp.n_embd,
            n_head: hp.n_head,
            n_head_kv: hp.n_head_kv,
            head_dim: hp.head_dim_k,
            n_ff: hp.n_ff,
            n_vocab: hp.n_vocab,
            sliding_window: (hp.n_swa > 0).then_some(hp.n_swa),
            experts,
            rope_freq_base: hp.rope_freq_base,
            tokenizer_model: f.get_str(keys::TOKENIZER_MODEL).map(str::to_string),
            n_tokens: f.get_array(keys::TOKENIZER_TOKENS).map(<[_]>::len),
            size_label: f.get_str(keys::GENERAL_SIZE_LABEL).map(str::to_string),
            types: mix
                .rows
                .iter()
                .map(|r| TypeShare {
                    ty: r.ty.name().to_string(),
                    n_tensors: r.n_tensors,
                    n_bytes: r.n_bytes,
                    n_elements: r.n_elements,
                    share: r.share,
                })
                .collect(),
            largest_tensors: largest,
        })
    }

    /// llama-bench's `model_type` field, e.g. "gemma3 270M Q4_K - Medium".
    pub fn model_type(&self) -> String {
        format!(
            "{} {} {}",
            self.architecture,
            self.size_label
                .clone()
                .unwrap_or_else(|| size_label(self.n_params)),
            self.file_type
        )
    }
}

/// "270M", "1.5B" style label from a parameter count.
pub fn size_label(n_params: u64) -> String {
    let n = n_params as f64;
    if n >= 1e9 {
        format!("{:.1}B", n / 1e9)
    } else {
        format!("{:.0}M", n / 1e6)
    }
}

/// Without `general.file_type`, name the type that holds most weight bytes.
fn guess_file_type(f: &GgufFile) -> String {
    let mix = quant::type_mix(
        f.tensors()
            .iter()
            .filter(|t| t.dims.len() >= 2)
            .map(|t| (t.ggml_type, t.n_elements, t.n_bytes)),
    );
    match mix.rows.first() {
        Some(r) if r.ty == GgmlType::F32 => "all F32 (guessed)".to_string(),
        Some(r) => format!("{} (guessed)", r.ty.name().to_uppercase()),
        None => "unknown".to_string(),
    }
}
