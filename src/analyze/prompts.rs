//! Prompts of a dataset as token ids, for runs that replay real prompts
//! (`rbench parallel --dataset`). The shape is found exactly as
//! `rbench analyze` finds it (the same sample of first records), so the two
//! commands read a file the same way.

use std::path::Path;

use super::chat::{join_messages, ChatTemplate};
use super::error::AnalyzeError;
use super::input::{Item, RecordReader, DEFAULT_MAX_RECORD_BYTES};
use super::pipeline::{detect_shape, parse};
use super::shape::{Exchange, Shape};
use crate::tokenizer::Tokenizer;

/// Up to the asked number of prompts, in file order.
#[derive(Clone, Debug)]
pub struct DatasetPrompts {
    /// Token ids, with BOS where the model adds it.
    pub prompts: Vec<Vec<u32>>,
    /// Tokens of each prompt's recorded answer (0 where the record has none).
    pub output_tokens: Vec<usize>,
    pub shape: Shape,
    /// Records left out (not JSON, not of the shape, empty prompt).
    pub skipped: u64,
}

/// Reads up to `want` prompts of `path`, rendered with the model's chat
/// template where the records are conversations (messages joined without
/// one) and tokenized with `tok`.
pub fn dataset_prompts(
    path: &Path,
    tok: &Tokenizer,
    want: usize,
) -> Result<DatasetPrompts, AnalyzeError> {
    let mut reader = RecordReader::open(path, DEFAULT_MAX_RECORD_BYTES)?;
    let (shape, first) = detect_shape(&mut reader)?;
    let piece = |id: Option<u32>| id.and_then(|i| tok.token_piece(i)).unwrap_or("");
    let template = tok
        .chat_template()
        .and_then(|t| ChatTemplate::new(t, piece(tok.bos_id()), piece(tok.eos_id())).ok());
    let prompt_of = |bytes: &[u8]| -> Option<(Vec<u32>, usize)> {
        let value = parse(bytes).ok()?;
        let exchange = shape.extract(&value).ok()?;
        let output = tok
            .encode(exchange.output(), false)
            .map_or(0, |ids| ids.len());
        let text = match exchange {
            Exchange::Text { prompt, .. } => prompt,
            Exchange::Chat { history, .. } => match &template {
                Some(t) => t.render(&history).ok()?,
                None => join_messages(&history),
            },
        };
        let ids = tok.encode(&text, tok.add_bos_default()).ok()?;
        (!text.is_empty() && !ids.is_empty()).then_some((ids, output))
    };
    let mut prompts = Vec::new();
    let mut output_tokens = Vec::new();
    let mut skipped = 0u64;
    let mut take = |item: Item, prompts: &mut Vec<Vec<u32>>, outputs: &mut Vec<usize>| match item {
        Item::Record(r) => match prompt_of(&r.bytes) {
            Some((ids, output)) => {
                prompts.push(ids);
                outputs.push(output);
            }
            None => skipped += 1,
        },
        Item::Problem(_) => skipped += 1,
    };
    // The records the shape was found on are all looked at (their problems
    // counted), as `analyze` does; past them, reading stops at `want`.
    for item in first {
        take(item, &mut prompts, &mut output_tokens);
    }
    while prompts.len() < want {
        let Some(item) = reader.next_item()? else {
            break;
        };
        take(item, &mut prompts, &mut output_tokens);
    }
    prompts.truncate(want);
    output_tokens.truncate(want);
    if prompts.is_empty() {
        return Err(AnalyzeError::NoRecords { skipped });
    }
    Ok(DatasetPrompts {
        prompts,
        output_tokens,
        shape,
        skipped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokenizer() -> (tempfile::TempDir, Tokenizer) {
        let (dir, model) = crate::model::synth::test_model(1);
        (dir, model.tokenizer)
    }

    #[test]
    fn prompts_come_in_file_order_and_bad_records_are_counted() {
        let (dir, tok) = tokenizer();
        let data = dir.path().join("d.jsonl");
        std::fs::write(
            &data,
            "{\"prompt\": \"a b\", \"completion\": \"c\"}\nnot json\n\
             {\"prompt\": \"\", \"completion\": \"x\"}\n\
             {\"prompt\": \"d e f\", \"completion\": \"g\"}\n\
             {\"prompt\": \"h\", \"completion\": \"i\"}\n",
        )
        .unwrap();
        let got = dataset_prompts(&data, &tok, 2).unwrap();
        assert_eq!(got.prompts.len(), 2);
        assert_eq!(
            got.prompts[0],
            tok.encode("a b", tok.add_bos_default()).unwrap()
        );
        assert_eq!(
            got.prompts[1],
            tok.encode("d e f", tok.add_bos_default()).unwrap()
        );
        // Both bad records are in the sample the shape was found on.
        assert_eq!(got.skipped, 2);
        let all = dataset_prompts(&data, &tok, 10).unwrap();
        assert_eq!(all.prompts.len(), 3);
    }

    #[test]
    fn a_file_of_no_known_shape_is_refused_as_analyze_refuses_it() {
        let (dir, tok) = tokenizer();
        let data = dir.path().join("d.jsonl");
        std::fs::write(&data, "{\"x\": 1}\n{\"y\": 2}\n").unwrap();
        let e = dataset_prompts(&data, &tok, 4).unwrap_err();
        assert!(matches!(e, AnalyzeError::NoShape { .. }), "{e}");
    }
}
