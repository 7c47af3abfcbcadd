//! OpenAI request bodies, checked and translated into what providers take: a generation [`Call`] (chat or
//! text) or an [`EmbedCall`]. Nothing here touches the network; bad input is an OpenAI-style 400 naming the
//! field.

use rand_core::{OsRng, RngCore};
use serde_json::Value;
use tensorgrid_types::inference::{Message, Prompt, Sampling};

use crate::openai::{
    self, ApiError, ChatRequest, CompletionRequest, Content, EmbeddingRequest, SamplingFields,
};

/// Chat answers are capped here unless the request says otherwise.
const DEFAULT_CHAT_MAX_TOKENS: u32 = 512;
/// OpenAI's default for text completions.
const DEFAULT_COMPLETION_MAX_TOKENS: u32 = 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Chat,
    Text,
}

/// OpenAI's sampling fields, checked, as the provider takes them.
fn sampling(fields: &SamplingFields, default_max: u32) -> Result<(Sampling, bool, bool), ApiError> {
    if fields.n.is_some_and(|n| n != 1) {
        return Err(ApiError::invalid("Only n = 1 is supported.", Some("n"), Some("invalid_value")));
    }
    let max_tokens = fields.max_completion_tokens.or(fields.max_tokens).unwrap_or(default_max);
    if max_tokens == 0 {
        return Err(ApiError::invalid(
            "max_tokens must be at least 1.",
            Some("max_tokens"),
            Some("invalid_value"),
        ));
    }
    let temperature = fields.temperature.unwrap_or(1.0);
    if !(0.0..=2.0).contains(&temperature) {
        return Err(ApiError::invalid(
            format!("{temperature} is not valid for temperature: it must be between 0 and 2."),
            Some("temperature"),
            Some("invalid_value"),
        ));
    }
    if let Some(p) = fields.top_p {
        if !(p > 0.0 && p <= 1.0) {
            return Err(ApiError::invalid(
                format!("{p} is not valid for top_p: it must be in (0, 1]."),
                Some("top_p"),
                Some("invalid_value"),
            ));
        }
    }
    let stop = fields.stop.clone().map(|s| s.into_vec()).unwrap_or_default();
    if stop.len() > 4 || stop.iter().any(String::is_empty) {
        return Err(ApiError::invalid(
            "stop takes up to 4 non-empty strings.",
            Some("stop"),
            Some("invalid_value"),
        ));
    }
    for (name, value) in
        [("frequency_penalty", fields.frequency_penalty), ("presence_penalty", fields.presence_penalty)]
    {
        if value.is_some_and(|v| !(-2.0..=2.0).contains(&v)) {
            return Err(ApiError::invalid(
                format!("{name} must be between -2 and 2."),
                Some(if name == "frequency_penalty" { "frequency_penalty" } else { "presence_penalty" }),
                Some("invalid_value"),
            ));
        }
    }
    // Without a seed every request samples differently, as OpenAI's do.
    let seed = fields.seed.unwrap_or_else(|| OsRng.next_u64());
    let include_usage = fields.stream_options.as_ref().is_some_and(|o| o.include_usage);
    Ok((
        Sampling {
            max_tokens,
            temperature,
            top_p: fields.top_p,
            top_k: fields.top_k,
            stop,
            seed,
            frequency_penalty: fields.frequency_penalty.unwrap_or(0.0),
            presence_penalty: fields.presence_penalty.unwrap_or(0.0),
        },
        fields.stream.unwrap_or(false),
        include_usage,
    ))
}

/// A generation request, checked and translated.
pub(crate) struct Call {
    pub(crate) model: String,
    pub(crate) prompt: Prompt,
    pub(crate) sampling: Sampling,
    pub(crate) stream: bool,
    pub(crate) include_usage: bool,
    pub(crate) kind: Kind,
}

pub(crate) fn chat_call(body: &[u8]) -> Result<Call, ApiError> {
    let request: ChatRequest = openai::parse(body)?;
    if request.messages.is_empty() {
        return Err(ApiError::invalid(
            "messages must not be empty.",
            Some("messages"),
            Some("invalid_value"),
        ));
    }
    let mut messages = Vec::with_capacity(request.messages.len());
    for m in &request.messages {
        if !matches!(m.role.as_str(), "system" | "developer" | "user" | "assistant" | "tool") {
            return Err(ApiError::invalid(
                format!(
                    "Invalid value: '{}'. Supported roles are system, developer, user, assistant and tool.",
                    m.role
                ),
                Some("messages"),
                Some("invalid_value"),
            ));
        }
        let content = match &m.content {
            Some(Content::Text(t)) => t.clone(),
            Some(Content::Parts(parts)) => {
                let mut text = String::new();
                for p in parts {
                    match (p.kind.as_str(), &p.text) {
                        ("text", Some(t)) => text.push_str(t),
                        _ => {
                            return Err(ApiError::invalid(
                                format!(
                                    "Content parts of type `{}` are not supported by text models.",
                                    p.kind
                                ),
                                Some("messages"),
                                Some("invalid_value"),
                            ))
                        }
                    }
                }
                text
            }
            None => String::new(),
        };
        // Templates know `system`; OpenAI's newer `developer` role means the same.
        let role = if m.role == "developer" { "system".to_string() } else { m.role.clone() };
        messages.push(Message { role, content });
    }
    let (sampling, stream, include_usage) = sampling(&request.sampling, DEFAULT_CHAT_MAX_TOKENS)?;
    Ok(Call {
        model: request.model,
        prompt: Prompt::Chat { messages },
        sampling,
        stream,
        include_usage,
        kind: Kind::Chat,
    })
}

pub(crate) fn text_call(body: &[u8]) -> Result<Call, ApiError> {
    let request: CompletionRequest = openai::parse(body)?;
    let prompts = request.prompt.clone().into_vec();
    if prompts.len() != 1 {
        return Err(ApiError::invalid("prompt takes one string.", Some("prompt"), Some("invalid_value")));
    }
    let text = prompts.into_iter().next().unwrap_or_default();
    if text.is_empty() {
        return Err(ApiError::invalid("prompt must not be empty.", Some("prompt"), Some("invalid_value")));
    }
    let (sampling, stream, include_usage) = sampling(&request.sampling, DEFAULT_COMPLETION_MAX_TOKENS)?;
    Ok(Call {
        model: request.model,
        prompt: Prompt::Text { text },
        sampling,
        stream,
        include_usage,
        kind: Kind::Text,
    })
}

/// An embeddings request, checked.
pub(crate) struct EmbedCall {
    pub(crate) model: String,
    pub(crate) input: Vec<String>,
    pub(crate) base64: bool,
    pub(crate) dimensions: Option<u32>,
}

pub(crate) fn embed_call(body: &[u8]) -> Result<EmbedCall, ApiError> {
    let request: EmbeddingRequest = openai::parse(body)?;
    let input: Vec<String> = match &request.input {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_string) => {
            items.iter().filter_map(|v| v.as_str().map(str::to_string)).collect()
        }
        Value::Array(items) if !items.is_empty() => {
            return Err(ApiError::invalid(
                "input must be a string or a list of strings; token arrays are not supported.",
                Some("input"),
                Some("invalid_value"),
            ))
        }
        _ => {
            return Err(ApiError::invalid(
                "input must be a non-empty string or list of strings.",
                Some("input"),
                Some("invalid_value"),
            ))
        }
    };
    if input.iter().any(String::is_empty) {
        return Err(ApiError::invalid(
            "input must not contain empty strings.",
            Some("input"),
            Some("invalid_value"),
        ));
    }
    let base64 = match request.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(ApiError::invalid(
                format!("encoding_format `{other}` is not one of float, base64."),
                Some("encoding_format"),
                Some("invalid_value"),
            ))
        }
    };
    Ok(EmbedCall { model: request.model, input, base64, dimensions: request.dimensions })
}
