//! Memory checks before big allocations: a KV cache and compute buffers that
//! cannot fit, or a model file larger than RAM, are refused with the numbers
//! instead of failing (or swapping) halfway.

use crate::format::bytes;

/// Bytes to use instead of /proc/meminfo (both total and available), for
/// tests and for containers whose limit /proc/meminfo does not show.
pub const MEM_OVERRIDE_ENV: &str = "RBENCH_MEM_AVAILABLE";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryInfo {
    pub total: Option<u64>,
    pub available: Option<u64>,
    /// Whether the figures came from [`MEM_OVERRIDE_ENV`].
    pub overridden: bool,
}

impl MemoryInfo {
    /// This machine's memory, or the override; unknown figures skip the checks.
    pub fn detect() -> MemoryInfo {
        if let Some(n) = std::env::var(MEM_OVERRIDE_ENV)
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
        {
            return MemoryInfo {
                total: Some(n),
                available: Some(n),
                overridden: true,
            };
        }
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        MemoryInfo {
            total: crate::system::meminfo_bytes(&meminfo, "MemTotal"),
            available: crate::system::meminfo_bytes(&meminfo, "MemAvailable"),
            overridden: false,
        }
    }

    fn source(&self) -> &'static str {
        if self.overridden {
            MEM_OVERRIDE_ENV
        } else {
            "MemAvailable"
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    #[error("not enough memory for {what}: it needs {} ({need} bytes) but only {} are available ({measured_by}); {suggestion}", bytes(*.need), bytes(*.available))]
    Insufficient {
        what: String,
        need: u64,
        available: u64,
        measured_by: &'static str,
        suggestion: &'static str,
    },
    #[error("not enough memory on device {device} for {what}: it needs {} ({need} bytes) but {} are free; lower -ngl, keep the KV cache in host memory (-nkvo 1) or use a smaller context (-c)", bytes(*.need), bytes(*.free))]
    DeviceInsufficient {
        device: String,
        what: String,
        need: u64,
        free: u64,
    },
    #[error("the model's tensor data ({}) is larger than this machine's RAM ({}): every token would read it from disk again; use a smaller or more quantized model", bytes(*.model), bytes(*.ram))]
    ModelLargerThanRam { model: u64, ram: u64 },
}

/// What a context needs besides the weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContextNeed {
    pub kv_cache: u64,
    /// An estimate of ggml's compute buffer for the largest ubatch (it is
    /// measured exactly only by allocating it).
    pub compute: u64,
}

impl ContextNeed {
    pub fn total(&self) -> u64 {
        self.kv_cache.saturating_add(self.compute)
    }
}

/// The largest activations of one graph of `n_tokens` tokens over `n_kv`
/// cells: logits, FFN and embedding rows, masks and, without flash
/// attention, the attention scores. Saturates instead of overflowing.
pub fn compute_estimate(hp: &super::Hparams, n_tokens: u64, n_kv: u64, flash_attn: bool) -> u64 {
    let row = u64::from(hp.n_vocab) + 2 * u64::from(hp.n_ff) + 4 * u64::from(hp.n_embd);
    let activations = 4u64.saturating_mul(n_tokens).saturating_mul(row);
    let masks = 2 * 2u64.saturating_mul(n_tokens).saturating_mul(n_kv);
    let scores = if flash_attn {
        0
    } else {
        4u64.saturating_mul(u64::from(hp.n_head))
            .saturating_mul(n_tokens)
            .saturating_mul(n_kv)
    };
    activations.saturating_add(masks).saturating_add(scores)
}

/// Refuses a context whose KV cache and compute buffers exceed the available memory.
pub fn check_context(need: ContextNeed, mem: &MemoryInfo) -> Result<(), MemoryError> {
    match mem.available {
        Some(available) if need.total() > available => Err(MemoryError::Insufficient {
            what: format!(
                "the context (KV cache {}, compute buffers about {})",
                bytes(need.kv_cache),
                bytes(need.compute)
            ),
            need: need.total(),
            available,
            measured_by: mem.source(),
            suggestion: "use a smaller context (-c), fewer parallel workers, or a quantized KV cache (-ctk q8_0 -ctv q8_0)",
        }),
        _ => Ok(()),
    }
}

/// Refuses a model whose tensor data exceeds the RAM, before anything touches the mapping.
pub fn check_model(tensor_bytes: u64, mem: &MemoryInfo) -> Result<(), MemoryError> {
    match mem.total {
        Some(ram) if tensor_bytes > ram => Err(MemoryError::ModelLargerThanRam {
            model: tensor_bytes,
            ram,
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mem(n: u64) -> MemoryInfo {
        MemoryInfo {
            total: Some(n),
            available: Some(n),
            overridden: true,
        }
    }

    #[test]
    fn a_context_that_does_not_fit_is_refused_with_the_numbers() {
        let need = ContextNeed {
            kv_cache: 3 << 30,
            compute: 1 << 30,
        };
        assert!(check_context(need, &mem(5 << 30)).is_ok());
        let msg = check_context(need, &mem(2 << 30)).unwrap_err().to_string();
        for part in [
            "4.00 GiB",
            "2.00 GiB",
            "KV cache 3.00 GiB",
            "-c",
            "-ctk q8_0",
        ] {
            assert!(msg.contains(part), "{part} missing in: {msg}");
        }
        let unknown = MemoryInfo {
            total: None,
            available: None,
            overridden: false,
        };
        assert!(check_context(need, &unknown).is_ok());
    }

    #[test]
    fn a_model_larger_than_ram_is_refused() {
        assert!(check_model(1 << 30, &mem(2 << 30)).is_ok());
        let msg = check_model(3 << 30, &mem(2 << 30)).unwrap_err().to_string();
        assert!(
            msg.contains("3.00 GiB") && msg.contains("2.00 GiB"),
            "{msg}"
        );
    }

    #[test]
    fn estimates_saturate_instead_of_overflowing() {
        let hp = crate::model::synth::preset("llama-15m").unwrap().hparams();
        let small = compute_estimate(&hp, 512, 512, true);
        // Logits alone: 512 rows of 32000 f32.
        assert!(small > 512 * 32000 * 4, "{small}");
        assert!(compute_estimate(&hp, 512, 512, false) > small);
        assert_eq!(compute_estimate(&hp, u64::MAX, u64::MAX, false), u64::MAX);
        let need = ContextNeed {
            kv_cache: u64::MAX,
            compute: 1,
        };
        assert_eq!(need.total(), u64::MAX);
    }
}
