//! Chat prompts as text: rendered with the model's Jinja chat template (the prompt as the
//! model would see it before answering), or joined when the model has no template.

use minijinja::value::{Value, ValueKind};
use minijinja::{context, Environment, Error, ErrorKind, State};

use super::error::AnalyzeError;
use super::shape::ChatMessage;

/// Separator of message contents when there is no chat template.
pub const JOIN_SEPARATOR: &str = "\n\n";

/// The prompt of a conversation without a template: the contents joined by a blank line.
pub fn join_messages(history: &[ChatMessage]) -> String {
    history
        .iter()
        .map(|m| m.content.as_str())
        .collect::<Vec<_>>()
        .join(JOIN_SEPARATOR)
}

/// A compiled chat template.
pub struct ChatTemplate {
    env: Environment<'static>,
    bos_token: String,
    eos_token: String,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("bos_token", &self.bos_token)
            .finish_non_exhaustive()
    }
}

const TEMPLATE_NAME: &str = "chat";

impl ChatTemplate {
    /// Compiles `source` the way Hugging Face renders chat templates (trimmed blocks,
    /// `raise_exception`, a few Python string methods).
    pub fn new(
        source: &str,
        bos_token: &str,
        eos_token: &str,
    ) -> Result<ChatTemplate, AnalyzeError> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.add_function(
            "raise_exception",
            |message: String| -> Result<Value, Error> {
                Err(Error::new(ErrorKind::InvalidOperation, message))
            },
        );
        // Templates that print today's date get a fixed one: lengths must not depend on the day.
        env.add_function("strftime_now", |_format: String| "01 Jan 2025".to_string());
        env.set_unknown_method_callback(python_method);
        env.add_template_owned(TEMPLATE_NAME, source.to_string())
            .map_err(|e| AnalyzeError::Template(e.to_string()))?;
        Ok(ChatTemplate {
            env,
            bos_token: bos_token.to_string(),
            eos_token: eos_token.to_string(),
        })
    }

    /// The prompt text of a conversation, ready for the answer (generation prompt added).
    /// A leading BOS text is removed, since tokens are counted without BOS.
    pub fn render(&self, history: &[ChatMessage]) -> Result<String, String> {
        let template = self
            .env
            .get_template(TEMPLATE_NAME)
            .map_err(|e| e.to_string())?;
        let text = template
            .render(context! {
                messages => history,
                add_generation_prompt => true,
                bos_token => &self.bos_token,
                eos_token => &self.eos_token,
            })
            .map_err(|e| format!("chat template failed: {e}"))?;
        Ok(match text.strip_prefix(self.bos_token.as_str()) {
            Some(rest) if !self.bos_token.is_empty() => rest.to_string(),
            _ => text,
        })
    }
}

/// The Python string and dict methods chat templates use most.
fn python_method(
    _state: &State,
    value: &Value,
    method: &str,
    args: &[Value],
) -> Result<Value, Error> {
    if value.kind() == ValueKind::Map && method == "items" && args.is_empty() {
        let pairs: Vec<Value> = value
            .try_iter()?
            .map(|key| {
                let item = value.get_item(&key).unwrap_or_default();
                Value::from(vec![key, item])
            })
            .collect();
        return Ok(Value::from(pairs));
    }
    let Some(s) = value.as_str() else {
        return Err(Error::from(ErrorKind::UnknownMethod));
    };
    let arg = |i: usize| args.get(i).and_then(Value::as_str);
    match (method, args.len()) {
        ("strip", 0) => Ok(Value::from(s.trim())),
        ("lstrip", 0) => Ok(Value::from(s.trim_start())),
        ("rstrip", 0) => Ok(Value::from(s.trim_end())),
        ("lower", 0) => Ok(Value::from(s.to_lowercase())),
        ("upper", 0) => Ok(Value::from(s.to_uppercase())),
        ("startswith", 1) => Ok(Value::from(arg(0).is_some_and(|p| s.starts_with(p)))),
        ("endswith", 1) => Ok(Value::from(arg(0).is_some_and(|p| s.ends_with(p)))),
        _ => Err(Error::from(ErrorKind::UnknownMethod)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(role: &str, content: &str) -> ChatMessage {
        ChatMessage {
            role: role.into(),
            content: content.into(),
        }
    }

    /// Gemma's template, in its essentials (roles renamed, turns marked).
    const GEMMA_LIKE: &str = "{{ bos_token }}{% for message in messages %}\
        {% if message['role'] == 'assistant' %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}\
        <start_of_turn>{{ role }}\n{{ message['content'] | trim }}<end_of_turn>\n{% endfor %}\
        {% if add_generation_prompt %}<start_of_turn>model\n{% endif %}";

    #[test]
    fn renders_template_without_bos() {
        let t = ChatTemplate::new(GEMMA_LIKE, "<bos>", "<eos>").unwrap();
        let text = t
            .render(&[
                msg("user", " Hi "),
                msg("assistant", "Hello"),
                msg("user", "Bye"),
            ])
            .unwrap();
        assert_eq!(
            text,
            "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\nHello<end_of_turn>\n\
             <start_of_turn>user\nBye<end_of_turn>\n<start_of_turn>model\n"
        );
    }

    #[test]
    fn python_methods_and_exceptions() {
        let source = "{% if messages[0]['content'].strip().startswith('x') %}\
            {{ raise_exception('no x allowed') }}{% endif %}\
            {{ messages[0]['content'].rstrip().upper() }}";
        let t = ChatTemplate::new(source, "", "").unwrap();
        assert_eq!(t.render(&[msg("user", "abc  ")]).unwrap(), "ABC");
        let err = t.render(&[msg("user", " xyz")]).unwrap_err();
        assert!(err.contains("no x allowed"), "{err}");
        let odd = ChatTemplate::new("{{ messages[0]['content'].casefold() }}", "", "").unwrap();
        assert!(odd.render(&[msg("user", "a")]).is_err());
    }

    #[test]
    fn loop_controls_and_tojson_compile() {
        let source = "{% for m in messages %}{% if loop.index > 1 %}{% break %}{% endif %}\
            {{ m | tojson }}{% endfor %}";
        let t = ChatTemplate::new(source, "", "").unwrap();
        assert_eq!(
            t.render(&[msg("user", "a"), msg("user", "b")]).unwrap(),
            r#"{"role":"user","content":"a"}"#
        );
    }

    #[test]
    fn broken_template_is_an_error() {
        assert!(matches!(
            ChatTemplate::new("{% for %}", "", ""),
            Err(AnalyzeError::Template(_))
        ));
    }

    #[test]
    fn joined_without_template() {
        assert_eq!(
            join_messages(&[msg("system", "S"), msg("user", "Q")]),
            "S\n\nQ"
        );
        assert_eq!(join_messages(&[]), "");
    }
}
