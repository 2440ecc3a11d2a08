//! The engine's flags, one definition flattened into every command that
//! builds a single engine (`run`, `perplexity`, `parallel`; the bench
//! commands take comma lists of the same values), and the one function that
//! turns them into an [`EngineConfig`].

use super::placement_args::PlacementArgs;
use super::UsageError;
use crate::engine::{default_threads, EngineConfig};
use crate::kernels::Kernels;
use crate::model::weights::LoadOptions;
use crate::quant::GgmlType;

/// Flash attention (`-fa`). `auto` is on: flash attention is rbench's faster
/// CPU path; llama.cpp's `auto` also picks it where the backend has it.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlashAttn {
    #[value(alias = "1")]
    On,
    #[value(alias = "0")]
    Off,
    Auto,
}

impl FlashAttn {
    pub fn enabled(self) -> bool {
        !matches!(self, FlashAttn::Off)
    }
}

/// KV cache element type (`-ctk` / `-ctv`).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheType {
    F16,
    #[value(name = "q8_0")]
    Q8_0,
    F32,
}

impl CacheType {
    pub fn ggml(self) -> GgmlType {
        match self {
            CacheType::F16 => GgmlType::F16,
            CacheType::Q8_0 => GgmlType::Q8_0,
            CacheType::F32 => GgmlType::F32,
        }
    }
}

/// Who computes weight matmuls (`--kernels`).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelsArg {
    /// rbench's own where it has them, ggml's elsewhere.
    Rbench,
    /// ggml's everywhere.
    Ggml,
}

impl From<KernelsArg> for Kernels {
    fn from(k: KernelsArg) -> Kernels {
        match k {
            KernelsArg::Rbench => Kernels::Rbench,
            KernelsArg::Ggml => Kernels::Ggml,
        }
    }
}

/// Flags every engine-building command shares. `-ub`, `-fa`, `-ctk` and
/// `-ctv` are llama.cpp's spellings (rewritten to the long names before
/// clap sees them, see `bench::rewrite_argv`).
#[derive(clap::Args, Debug, Clone)]
pub struct EngineArgs {
    /// CPU threads [default: available parallelism].
    #[arg(short = 't', long = "threads")]
    pub threads: Option<usize>,
    /// Context size in tokens: KV cells in total, shared by all sequences
    /// [default: run 4096; perplexity 512, the chunk length; parallel
    /// workers × (n_prompt + n_predict, rounded up to 256)].
    #[arg(short = 'c', long = "ctx-size", visible_alias = "ctx")]
    pub ctx: Option<usize>,
    /// Most tokens per computed graph (`-ub`).
    #[arg(long = "ubatch-size", default_value_t = 512)]
    pub n_ubatch: usize,
    /// Flash attention (`-fa`).
    #[arg(long = "flash-attn", visible_alias = "fa", value_enum, default_value_t = FlashAttn::Auto)]
    pub flash_attn: FlashAttn,
    /// KV cache type for K (`-ctk`).
    #[arg(long = "cache-type-k", visible_alias = "ctk", value_enum, default_value_t = CacheType::F16)]
    pub cache_type_k: CacheType,
    /// KV cache type for V (`-ctv`); q8_0 needs flash attention.
    #[arg(long = "cache-type-v", visible_alias = "ctv", value_enum, default_value_t = CacheType::F16)]
    pub cache_type_v: CacheType,
    /// Weight matmul kernels.
    #[arg(long = "kernels", value_enum, default_value_t = KernelsArg::Rbench)]
    pub kernels: KernelsArg,
    /// Keep CPU weights in their file layout: no repacking into the CPU
    /// backend's faster layouts (AMX, interleaved rows) for ggml's kernels.
    #[arg(long)]
    pub no_repack: bool,
    #[command(flatten)]
    pub placement: PlacementArgs,
}

/// Largest `-ub` (as `-c`, positions are i32; a graph of more tokens than
/// this would not be built in any case).
const MAX_UBATCH: usize = 1 << 20;

impl EngineArgs {
    /// Checks what clap cannot: ranges and flag combinations.
    pub fn validate(&self) -> Result<(), UsageError> {
        if self.threads == Some(0) {
            return Err(UsageError("-t/--threads must be at least 1".into()));
        }
        super::check_threads(self.threads)?;
        if let Some(ctx) = self.ctx {
            if ctx == 0 {
                return Err(UsageError("-c/--ctx-size must be at least 1".into()));
            }
            super::check_ctx(ctx)?;
        }
        if self.n_ubatch == 0 || self.n_ubatch > MAX_UBATCH {
            return Err(UsageError(format!(
                "-ub/--ubatch-size must be within 1..={MAX_UBATCH}, got {}",
                self.n_ubatch
            )));
        }
        if !self.flash_attn.enabled() && self.cache_type_v == CacheType::Q8_0 {
            return Err(UsageError(
                "--cache-type-v q8_0: a quantized V cache needs flash attention (--flash-attn on)"
                    .into(),
            ));
        }
        Ok(())
    }

    pub fn kernels(&self) -> Kernels {
        self.kernels.into()
    }

    pub fn n_threads(&self) -> usize {
        self.threads.unwrap_or_else(default_threads)
    }

    /// How to place the weights: on the devices `-ngl`/`-dev`/`-ts` say;
    /// batch-invariant engines need rbench's kernels on the plain layout
    /// (see [`LoadOptions::for_kernels`]). Unknown devices are usage errors.
    pub fn load_options(&self, batch_invariant: bool) -> Result<LoadOptions, UsageError> {
        let base = if batch_invariant {
            LoadOptions::for_kernels(self.kernels())
        } else {
            LoadOptions::default()
        };
        let mut opts = base.placed(self.placement.spec()?, self.placement.mmap);
        opts.repack &= !self.no_repack;
        Ok(opts)
    }

    /// The engine configuration for a context of `n_ctx` cells (the
    /// command's choice when `-c` was not given).
    pub fn config(&self, n_ctx: usize, batch_invariant: bool) -> EngineConfig {
        EngineConfig {
            n_ctx,
            n_ubatch: self.n_ubatch.min(n_ctx.max(1)),
            n_threads: self.n_threads(),
            flash_attn: self.flash_attn.enabled(),
            type_k: self.cache_type_k.ggml(),
            type_v: self.cache_type_v.ggml(),
            kernels: self.kernels(),
            batch_invariant,
            offload_kv: self.placement.offload_kv(),
            reuse_graphs: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cmd {
        #[command(flatten)]
        engine: EngineArgs,
    }

    fn parse(args: &[&str]) -> Result<EngineArgs, clap::Error> {
        Cmd::try_parse_from(std::iter::once("cmd").chain(args.iter().copied())).map(|c| c.engine)
    }

    #[test]
    fn defaults_are_the_engine_defaults() {
        let e = parse(&[]).unwrap();
        let cfg = e.config(4096, false);
        let d = EngineConfig::default();
        assert_eq!(
            (
                cfg.n_ctx,
                cfg.n_ubatch,
                cfg.flash_attn,
                cfg.type_k,
                cfg.type_v,
                cfg.kernels
            ),
            (
                d.n_ctx,
                d.n_ubatch,
                d.flash_attn,
                d.type_k,
                d.type_v,
                d.kernels
            )
        );
        assert!(!cfg.batch_invariant);
    }

    #[test]
    fn values_and_aliases_parse() {
        let e = parse(&[
            "--fa",
            "0",
            "--ctk",
            "q8_0",
            "--ctv",
            "f32",
            "--kernels",
            "ggml",
            "-t",
            "3",
            "--ctx",
            "64",
            "--ubatch-size",
            "128",
        ])
        .unwrap();
        e.validate().unwrap();
        let cfg = e.config(e.ctx.unwrap(), true);
        assert!(!cfg.flash_attn && cfg.batch_invariant);
        assert_eq!((cfg.type_k, cfg.type_v), (GgmlType::Q8_0, GgmlType::F32));
        assert_eq!(cfg.kernels, Kernels::Ggml);
        assert_eq!((cfg.n_threads, cfg.n_ctx, cfg.n_ubatch), (3, 64, 64));
        assert!(parse(&["--flash-attn", "1"]).unwrap().flash_attn.enabled());
    }

    #[test]
    fn bad_values_and_combinations_are_usage_errors() {
        assert!(parse(&["--cache-type-k", "q3"]).is_err());
        assert!(parse(&["--flash-attn", "maybe"]).is_err());
        assert!(parse(&["--kernels", "avx2"]).is_err());
        let e = parse(&["--fa", "off", "--ctv", "q8_0"]).unwrap();
        assert!(e.validate().unwrap_err().0.contains("flash attention"));
        assert!(parse(&["-t", "0"]).unwrap().validate().is_err());
        assert!(parse(&["-c", "0"]).unwrap().validate().is_err());
        assert!(parse(&["--ubatch-size", "0"]).unwrap().validate().is_err());
    }
}
