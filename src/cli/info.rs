//! `rbench info`: what a model file holds.

use crate::format;
use crate::format::{table, Align};
use crate::gguf::GgufFile;
use crate::model::info::ModelInfo;
use anyhow::Context;

#[derive(clap::Args, Debug)]
pub struct InfoArgs {
    /// Model file (GGUF) or synth:PRESET[:FTYPE].
    #[arg(short = 'm', long = "model")]
    model: String,
    /// Print JSON instead of tables.
    #[arg(long)]
    json: bool,
    /// List every tensor.
    #[arg(long)]
    tensors: bool,
}

pub fn run(args: InfoArgs) -> anyhow::Result<()> {
    let path = crate::model::resolve_model_path(&args.model)?;
    let file = GgufFile::open(&path).with_context(|| format!("reading {}", path.display()))?;
    let info =
        ModelInfo::from_gguf(&file).with_context(|| format!("reading {}", path.display()))?;
    if args.json {
        let mut value = serde_json::to_value(&info)?;
        value["model_filename"] = path.display().to_string().into();
        value["model_type"] = info.model_type().into();
        if args.tensors {
            value["tensors"] = serde_json::to_value(crate::model::info::tensor_rows(&file))?;
        }
        outln!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    print_human(&path.display().to_string(), &info, &file, args.tensors)?;
    Ok(())
}

fn print_human(
    path: &str,
    info: &ModelInfo,
    file: &GgufFile,
    list_tensors: bool,
) -> std::io::Result<()> {
    let label = if info.synthetic {
        "  [synthetic (random weights)]"
    } else {
        ""
    };
    let mut facts: Vec<(&str, String)> = vec![
        ("model", format!("{path}{label}")),
        ("name", info.name.clone().unwrap_or_else(|| "-".into())),
        ("architecture", info.architecture.clone()),
        ("file type", info.file_type.clone()),
        (
            "parameters",
            format!("{} ({})", format::params(info.n_params), info.n_params),
        ),
        (
            "tensor data",
            format!(
                "{} ({} bytes)",
                format::bytes(info.model_size),
                info.model_size
            ),
        ),
        (
            "file",
            format!(
                "{}, GGUF v{}, {} tensors",
                format::bytes(info.file_size),
                info.gguf_version,
                info.n_tensors
            ),
        ),
        ("context length", info.context_length.to_string()),
        ("layers", info.n_layer.to_string()),
        ("embedding width", info.n_embd.to_string()),
        (
            "heads / KV heads",
            format!("{} / {}", info.n_head, info.n_head_kv),
        ),
        ("head dim", info.head_dim.to_string()),
        ("FFN width", info.n_ff.to_string()),
        ("vocab size", info.n_vocab.to_string()),
        ("RoPE base", format!("{}", info.rope_freq_base)),
    ];
    if let Some(w) = info.sliding_window {
        facts.push(("sliding window", w.to_string()));
    }
    if let Some(e) = &info.experts {
        facts.push((
            "experts",
            format!(
                "{} ({} per token, {} wide; {} parameters active per token)",
                e.count,
                e.used,
                e.width,
                format::params(e.active_params)
            ),
        ));
    }
    facts.push((
        "tokenizer",
        match (&info.tokenizer_model, info.n_tokens) {
            (Some(m), Some(n)) => format!("{m} ({n} tokens)"),
            (Some(m), None) => m.clone(),
            _ => "none".into(),
        },
    ));
    let width = facts.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in &facts {
        outln!("{k:<width$} : {v}");
    }

    outln!();
    let types = table(
        &["type", "tensors", "bytes", "share"],
        info.types.iter().map(|t| {
            vec![
                t.ty.clone(),
                t.n_tensors.to_string(),
                format::bytes(t.n_bytes),
                format!("{:.1}%", t.share * 100.0),
            ]
        }),
        format::numbers_from(1),
    );
    outln!("{types}");

    outln!();
    let rows = if list_tensors {
        crate::model::info::tensor_rows(file)
    } else {
        info.largest_tensors.clone()
    };
    outln!(
        "{}",
        if list_tensors {
            "tensors:"
        } else {
            "largest tensors:"
        }
    );
    let tensors = table(
        &["name", "type", "shape", "bytes"],
        rows.into_iter().map(|t| {
            let shape = t
                .dims
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(" x ");
            vec![t.name, t.ty, shape, format::bytes(t.n_bytes)]
        }),
        |i| if i == 3 { Align::Right } else { Align::Left },
    );
    outln!("{tensors}");
    Ok(())
}
