//! Record shapes: which JSON fields hold the prompt and the output, detected from the first
//! records or given as dotted field paths.

use serde::Serialize;
use serde_json::Value;

use super::error::AnalyzeError;

/// A path into nested JSON: names separated by dots; a number picks an array element.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldPath {
    text: String,
    parts: Vec<String>,
}

impl FieldPath {
    pub fn parse(text: &str) -> Result<FieldPath, AnalyzeError> {
        let parts: Vec<String> = text.split('.').map(str::to_string).collect();
        if parts.iter().any(String::is_empty) {
            return Err(AnalyzeError::BadFieldPath(text.to_string()));
        }
        Ok(FieldPath {
            text: text.to_string(),
            parts,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    fn lookup<'v>(&self, record: &'v Value) -> Option<&'v Value> {
        self.parts
            .iter()
            .try_fold(record, |value, part| match value {
                Value::Object(map) => map.get(part),
                Value::Array(items) => part.parse::<usize>().ok().and_then(|i| items.get(i)),
                _ => None,
            })
    }
}

/// One chat message, as a chat template sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

/// The prompt and output of one record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Exchange {
    /// The prompt is plain text.
    Text { prompt: String, output: String },
    /// The prompt is a conversation, to be rendered with the chat template.
    Chat {
        history: Vec<ChatMessage>,
        output: String,
    },
}

impl Exchange {
    pub fn output(&self) -> &str {
        match self {
            Exchange::Text { output, .. } | Exchange::Chat { output, .. } => output,
        }
    }
}

/// The record layouts we know.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Shape {
    /// `instruction` + `input` → prompt, `output` → output.
    Alpaca,
    PromptCompletion,
    PromptResponse,
    QuestionAnswer,
    /// OpenAI chat: `messages` with `role` / `content`.
    Messages,
    /// ShareGPT: `conversations` with `from` / `value`.
    ShareGpt,
    /// Given with `--prompt-field` / `--output-field`.
    Fields {
        prompt: FieldPath,
        output: FieldPath,
    },
}

/// Shapes tried when none is given, in order of preference on a tie.
pub const AUTO_SHAPES: [Shape; 6] = [
    Shape::Messages,
    Shape::ShareGpt,
    Shape::Alpaca,
    Shape::PromptCompletion,
    Shape::PromptResponse,
    Shape::QuestionAnswer,
];

/// Why a record does not fit the shape.
pub type Mismatch = String;

impl Shape {
    /// Short name used in reports.
    pub fn name(&self) -> String {
        match self {
            Shape::Alpaca => "alpaca".into(),
            Shape::PromptCompletion => "prompt/completion".into(),
            Shape::PromptResponse => "prompt/response".into(),
            Shape::QuestionAnswer => "question/answer".into(),
            Shape::Messages => "messages".into(),
            Shape::ShareGpt => "sharegpt".into(),
            Shape::Fields { prompt, output } => {
                format!("fields {}/{}", prompt.as_str(), output.as_str())
            }
        }
    }

    /// What the shape takes as prompt and output.
    pub fn description(&self) -> String {
        match self {
            Shape::Alpaca => "instruction + input -> prompt, output -> output".into(),
            Shape::PromptCompletion => "prompt -> prompt, completion -> output".into(),
            Shape::PromptResponse => "prompt -> prompt, response -> output".into(),
            Shape::QuestionAnswer => "question -> prompt, answer -> output".into(),
            Shape::Messages => {
                "messages before the last assistant one -> prompt, last assistant message -> output"
                    .into()
            }
            Shape::ShareGpt => {
                "conversations before the last gpt turn -> prompt, last gpt turn -> output".into()
            }
            Shape::Fields { prompt, output } => {
                format!(
                    "{} -> prompt, {} -> output",
                    prompt.as_str(),
                    output.as_str()
                )
            }
        }
    }

    /// Whether a record has this shape's keys (for detection; types are checked later).
    fn has_keys(&self, record: &Value) -> bool {
        let Value::Object(map) = record else {
            return false;
        };
        let both = |a: &str, b: &str| map.contains_key(a) && map.contains_key(b);
        match self {
            Shape::Alpaca => both("instruction", "output"),
            Shape::PromptCompletion => both("prompt", "completion"),
            Shape::PromptResponse => both("prompt", "response"),
            Shape::QuestionAnswer => both("question", "answer"),
            Shape::Messages => map.get("messages").is_some_and(Value::is_array),
            Shape::ShareGpt => map.get("conversations").is_some_and(Value::is_array),
            Shape::Fields { prompt, output } => {
                prompt.lookup(record).is_some() && output.lookup(record).is_some()
            }
        }
    }

    /// The shape most of `samples` have (earlier in [`AUTO_SHAPES`] on a tie), with how
    /// many samples have it; `None` when no sample has any known shape.
    pub fn detect(samples: &[Value]) -> Option<(Shape, usize)> {
        let mut best: Option<(Shape, usize)> = None;
        for shape in AUTO_SHAPES {
            let n = samples.iter().filter(|s| shape.has_keys(s)).count();
            if n > 0 && best.as_ref().is_none_or(|(_, m)| n > *m) {
                best = Some((shape, n));
            }
        }
        best
    }

    /// Takes the prompt and output out of a record.
    pub fn extract(&self, record: &Value) -> Result<Exchange, Mismatch> {
        if !record.is_object() {
            return Err(format!("record is {}, not an object", type_name(record)));
        }
        match self {
            Shape::Alpaca => {
                let instruction = string_field(record, "instruction")?;
                let input = optional_string_field(record, "input")?;
                let output = string_field(record, "output")?;
                let prompt = if input.is_empty() {
                    instruction.to_string()
                } else {
                    format!("{instruction}\n\n{input}")
                };
                Ok(text(prompt, output))
            }
            Shape::PromptCompletion => pair(record, "prompt", "completion"),
            Shape::PromptResponse => pair(record, "prompt", "response"),
            Shape::QuestionAnswer => pair(record, "question", "answer"),
            Shape::Messages => chat(record, "messages", "role", "content", "assistant"),
            Shape::ShareGpt => chat(record, "conversations", "from", "value", "gpt"),
            Shape::Fields { prompt, output } => {
                let prompt = path_string(record, prompt)?;
                let output = path_string(record, output)?;
                Ok(text(prompt.to_string(), output))
            }
        }
    }
}

fn text(prompt: String, output: &str) -> Exchange {
    Exchange::Text {
        prompt,
        output: output.to_string(),
    }
}

fn pair(record: &Value, prompt: &str, output: &str) -> Result<Exchange, Mismatch> {
    Ok(text(
        string_field(record, prompt)?.to_string(),
        string_field(record, output)?,
    ))
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn string_field<'v>(record: &'v Value, name: &str) -> Result<&'v str, Mismatch> {
    match record.get(name) {
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(format!(
            "field `{name}` is {}, not a string",
            type_name(other)
        )),
        None => Err(format!("field `{name}` is missing")),
    }
}

/// A string field that may be absent or null (Alpaca's `input`).
fn optional_string_field<'v>(record: &'v Value, name: &str) -> Result<&'v str, Mismatch> {
    match record.get(name) {
        None | Some(Value::Null) => Ok(""),
        Some(_) => string_field(record, name),
    }
}

fn path_string<'v>(record: &'v Value, path: &FieldPath) -> Result<&'v str, Mismatch> {
    match path.lookup(record) {
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(format!(
            "field `{}` is {}, not a string",
            path.as_str(),
            type_name(other)
        )),
        None => Err(format!("field `{}` is missing", path.as_str())),
    }
}

/// The text of a message's content: a string, null (no text), or OpenAI's list of parts,
/// whose text parts are joined.
fn content_text(content: Option<&Value>, field: &str) -> Result<String, Mismatch> {
    match content {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(parts)) => Ok(parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .concat()),
        Some(other) => Err(format!(
            "message `{field}` is {}, not a string",
            type_name(other)
        )),
    }
}

/// ShareGPT speaker names as chat-template roles.
fn role_name(role: &str) -> &str {
    match role {
        "human" | "user" => "user",
        "gpt" | "assistant" => "assistant",
        other => other,
    }
}

fn chat(
    record: &Value,
    list: &str,
    role_key: &str,
    content_key: &str,
    answer_role: &str,
) -> Result<Exchange, Mismatch> {
    let messages = match record.get(list) {
        Some(Value::Array(m)) => m,
        Some(other) => {
            return Err(format!(
                "field `{list}` is {}, not an array",
                type_name(other)
            ))
        }
        None => return Err(format!("field `{list}` is missing")),
    };
    let mut parsed = Vec::with_capacity(messages.len());
    for (i, m) in messages.iter().enumerate() {
        let role = match m.get(role_key) {
            Some(Value::String(r)) => role_name(r).to_string(),
            Some(other) => {
                return Err(format!(
                    "{list}[{i}].{role_key} is {}, not a string",
                    type_name(other)
                ))
            }
            None => return Err(format!("{list}[{i}] has no `{role_key}`")),
        };
        let content = content_text(m.get(content_key), content_key)?;
        parsed.push(ChatMessage { role, content });
    }
    let answer = role_name(answer_role);
    let last = parsed
        .iter()
        .rposition(|m| m.role == answer)
        .ok_or_else(|| format!("`{list}` has no {answer_role} message"))?;
    parsed.truncate(last + 1);
    let output = parsed.pop().map(|m| m.content).unwrap_or_default();
    Ok(Exchange::Chat {
        history: parsed,
        output,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn text_of(e: Exchange) -> (String, String) {
        match e {
            Exchange::Text { prompt, output } => (prompt, output),
            Exchange::Chat { .. } => panic!("expected text"),
        }
    }

    #[test]
    fn alpaca_joins_instruction_and_input() {
        let r = json!({"instruction": "Sum", "input": "1 2", "output": "3"});
        assert_eq!(
            text_of(Shape::Alpaca.extract(&r).unwrap()),
            ("Sum\n\n1 2".into(), "3".into())
        );
        let r = json!({"instruction": "Hi", "output": "Hello"});
        assert_eq!(
            text_of(Shape::Alpaca.extract(&r).unwrap()),
            ("Hi".into(), "Hello".into())
        );
        let r = json!({"instruction": "Hi", "input": "", "output": 5});
        assert_eq!(
            Shape::Alpaca.extract(&r).unwrap_err(),
            "field `output` is a number, not a string"
        );
    }

    #[test]
    fn simple_pairs() {
        let r = json!({"question": "Why?", "answer": "Because."});
        assert_eq!(
            text_of(Shape::QuestionAnswer.extract(&r).unwrap()),
            ("Why?".into(), "Because.".into())
        );
        assert_eq!(
            Shape::PromptCompletion.extract(&r).unwrap_err(),
            "field `prompt` is missing"
        );
        assert_eq!(
            Shape::PromptResponse.extract(&json!([1])).unwrap_err(),
            "record is an array, not an object"
        );
    }

    #[test]
    fn messages_split_at_last_assistant() {
        let r = json!({"messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Hi "}, {"type": "text", "text": "there"}]},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "Bye"},
            {"role": "assistant", "content": "Bye!"},
            {"role": "user", "content": "unanswered"}
        ]});
        let Exchange::Chat { history, output } = Shape::Messages.extract(&r).unwrap() else {
            panic!("expected chat")
        };
        assert_eq!(output, "Bye!");
        let roles: Vec<&str> = history.iter().map(|m| m.role.as_str()).collect();
        assert_eq!(roles, ["system", "user", "assistant", "user"]);
        assert_eq!(history[1].content, "Hi there");
        let no_answer = json!({"messages": [{"role": "user", "content": "x"}]});
        assert_eq!(
            Shape::Messages.extract(&no_answer).unwrap_err(),
            "`messages` has no assistant message"
        );
        let bad_role = json!({"messages": [{"role": 3, "content": "x"}]});
        assert!(Shape::Messages
            .extract(&bad_role)
            .unwrap_err()
            .contains("not a string"));
    }

    #[test]
    fn sharegpt_roles_are_mapped() {
        let r = json!({"conversations": [
            {"from": "system", "value": "S"},
            {"from": "human", "value": "Q"},
            {"from": "gpt", "value": "A"}
        ]});
        let Exchange::Chat { history, output } = Shape::ShareGpt.extract(&r).unwrap() else {
            panic!("expected chat")
        };
        assert_eq!(output, "A");
        assert_eq!(
            history,
            vec![
                ChatMessage {
                    role: "system".into(),
                    content: "S".into()
                },
                ChatMessage {
                    role: "user".into(),
                    content: "Q".into()
                }
            ]
        );
    }

    #[test]
    fn dotted_paths_reach_into_objects_and_arrays() {
        let shape = Shape::Fields {
            prompt: FieldPath::parse("data.turns.0").unwrap(),
            output: FieldPath::parse("data.reply.text").unwrap(),
        };
        let r = json!({"data": {"turns": ["first", "second"], "reply": {"text": "ok"}}});
        assert_eq!(
            text_of(shape.extract(&r).unwrap()),
            ("first".into(), "ok".into())
        );
        let r = json!({"data": {"turns": [], "reply": {"text": "ok"}}});
        assert_eq!(
            shape.extract(&r).unwrap_err(),
            "field `data.turns.0` is missing"
        );
        assert!(FieldPath::parse("a..b").is_err());
        assert!(FieldPath::parse("").is_err());
    }

    #[test]
    fn detection_picks_the_most_common_shape() {
        let samples = vec![
            json!({"prompt": "a", "completion": "b"}),
            json!({"prompt": "a", "response": "b"}),
            json!({"prompt": "a", "response": "b"}),
            json!("not an object"),
        ];
        assert_eq!(Shape::detect(&samples), Some((Shape::PromptResponse, 2)));
        assert_eq!(Shape::detect(&[json!({"text": "x"})]), None);
        assert_eq!(Shape::detect(&[]), None);
    }
}
