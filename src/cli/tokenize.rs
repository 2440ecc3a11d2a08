//! `rbench tokenize`: text to token ids with the model's own vocabulary.

use super::UsageError;
use crate::gguf::GgufFile;
use crate::tokenizer::Tokenizer;
use anyhow::Context;

#[derive(clap::Args, Debug)]
pub struct TokenizeArgs {
    /// Model file (GGUF) or synth:PRESET[:FTYPE].
    #[arg(short = 'm', long = "model")]
    model: String,
    /// Text to tokenize.
    #[arg(short = 'p', long = "prompt", conflicts_with = "file")]
    prompt: Option<String>,
    /// Read the text from a file.
    #[arg(short = 'f', long = "file")]
    file: Option<std::path::PathBuf>,
    /// Print only the id list, like `[2, 9259, 1902]`.
    #[arg(long)]
    ids: bool,
    /// Do not add the BOS token even if the model asks for it.
    #[arg(long)]
    no_bos: bool,
}

pub fn load_tokenizer(model: &str) -> anyhow::Result<(GgufFile, Tokenizer)> {
    let path = crate::model::resolve_model_path(model)?;
    let file = GgufFile::open(&path).with_context(|| format!("reading {}", path.display()))?;
    let tok = Tokenizer::from_gguf(&file)
        .with_context(|| format!("loading the tokenizer of {}", path.display()))?;
    Ok((file, tok))
}

pub fn read_text(prompt: Option<String>, file: Option<&std::path::Path>) -> anyhow::Result<String> {
    match (prompt, file) {
        (Some(p), _) => Ok(p),
        (None, Some(f)) => {
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))
        }
        (None, None) => Err(UsageError("give the text with -p TEXT or -f FILE".into()).into()),
    }
}

pub fn run(args: TokenizeArgs) -> anyhow::Result<()> {
    let text = read_text(args.prompt, args.file.as_deref())?;
    let (_file, tok) = load_tokenizer(&args.model)?;
    let add_bos = tok.add_bos_default() && !args.no_bos;
    let ids = tok.encode(&text, add_bos)?;
    if args.ids {
        let list: Vec<String> = ids.iter().map(u32::to_string).collect();
        outln!("[{}]", list.join(", "));
    } else {
        for id in ids {
            let piece = tok.token_piece(id).unwrap_or("");
            outln!("{id:>6} -> '{piece}'");
        }
    }
    Ok(())
}
