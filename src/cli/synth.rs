//! `rbench synth`: write a synthetic model.

use super::UsageError;
use crate::model::synth::{self, SynthFtype};
use anyhow::Context;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct SynthArgs {
    /// Architecture: llama, qwen2, qwen3, gemma3 (with --size), or a whole preset name.
    #[arg(long)]
    arch: String,
    /// Size of the preset, e.g. 125m, 1b, 1.5b, 0.6b, 270m, 24b.
    #[arg(long)]
    size: Option<String>,
    /// File type: q4_k_m, q5_k_m, q4_0, q4_1, q8_0 or f16 (tensor types as llama-quantize picks them).
    #[arg(long, default_value = "q4_k_m")]
    ftype: String,
    /// Seed for the random weights.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Output file.
    #[arg(short = 'o', long = "output")]
    output: PathBuf,
}

pub fn run(args: SynthArgs) -> anyhow::Result<()> {
    let name = match &args.size {
        Some(size) => format!("{}-{}", args.arch, size.to_ascii_lowercase()),
        None => args.arch.clone(),
    };
    let preset = synth::preset(&name).ok_or_else(|| {
        UsageError(format!(
            "no synthetic preset '{name}' (presets: {})",
            synth::preset_names()
        ))
    })?;
    let ftype = SynthFtype::parse(&args.ftype).ok_or_else(|| {
        UsageError(format!(
            "unknown --ftype '{}' (choose {})",
            args.ftype,
            SynthFtype::names()
        ))
    })?;
    let start = std::time::Instant::now();
    synth::write_synthetic(preset, ftype, args.seed, &args.output)
        .with_context(|| format!("writing {}", args.output.display()))?;
    let size = std::fs::metadata(&args.output)
        .map(|m| m.len())
        .unwrap_or(0);
    eprintln!(
        "wrote {} ({} {}, {}, synthetic random weights) in {:.1} s",
        args.output.display(),
        preset.name,
        ftype.name(),
        crate::format::bytes(size),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
