//! A model's text side as one content-addressed file, and the code both sides of a paid answer run on it.
//!
//! Billing by tokens is only fair if the payer can count them. A provider's offer names its tokenizer file by
//! blake3 hash; the gateway fetches the file once from a provider (checked against the hash) and, with the
//! same [`TextCodec`] the provider's engine uses, counts the prompt itself ([`TextCodec::prompt_ids`],
//! [`TextCodec::count`]) and turns the token ids the provider streams into text ([`StreamDecoder`], the very
//! decoder the engine runs, stop strings and held-back characters included). So a gateway pays for exactly
//! its own prompt count plus the ids it received, and its client reads exactly the text those ids decode to.
//!
//! The file is JSON: a format tag, Hugging Face's `tokenizer.json` document, the chat template, the begin and
//! end tokens the template may use, the ids that end an answer, and whether encoding adds special tokens
//! (embedding models do). Built from the same model file it is byte-for-byte the same, so every provider of
//! one model names the same hash.
#![deny(clippy::unwrap_used, clippy::panic)]

use std::str::FromStr;

use serde::{Deserialize, Serialize};
use tensorgrid_types::inference::{FinishReason, Prompt};
use tensorgrid_types::Hash;
use tokenizers::Tokenizer;

pub use tensorgrid_types::inference::Message as ChatMessage;

/// The format tag every tokenizer file starts with.
pub const FORMAT: &str = "tensorgrid-tokenizer/1";

/// The largest tokenizer file a gateway accepts (vocabularies of 256k tokens with their merges fit).
pub const MAX_FILE_BYTES: usize = 64 * 1024 * 1024;

/// What can be wrong with a tokenizer file or with text run through it.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("tokenizer file: {0}")]
    Format(String),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("chat template: {0}")]
    ChatTemplate(String),
    #[error("this model has no chat template; send text, not messages")]
    NoChatTemplate,
    #[error("the prompt is empty")]
    EmptyPrompt,
    #[error("the answer already ended; token {0} comes after its end")]
    PastTheEnd(u32),
}

pub type Result<T, E = TokenizerError> = std::result::Result<T, E>;

/// The template used when a chat model's file carries none: ChatML, which most small instruct models speak.
pub const CHATML: &str =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + \
'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// The file's JSON body. Field order is the serialized order, which keeps the bytes canonical.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileBody {
    format: String,
    tokenizer: serde_json::Value,
    chat_template: Option<String>,
    bos: Option<String>,
    eos: Option<String>,
    stop_ids: Vec<u32>,
    add_special_tokens: bool,
}

/// What a codec is made of besides the tokenizer.
#[derive(Clone, Debug, Default)]
pub struct Parts {
    /// The chat template (Jinja); `None` for models that only take text (embedding models).
    pub chat_template: Option<String>,
    pub bos: Option<String>,
    pub eos: Option<String>,
    /// Tokens that end an answer.
    pub stop_ids: Vec<u32>,
    /// Whether encoding adds the model's special tokens (`[CLS]`/`[SEP]` for BERT; chat models get theirs
    /// from the template).
    pub add_special_tokens: bool,
}

/// The text side of a model: tokenizer, special tokens and chat template, with the file it was read from.
#[derive(Debug)]
pub struct TextCodec {
    tokenizer: Tokenizer,
    parts: Parts,
    bytes: Vec<u8>,
    hash: Hash,
}

impl TextCodec {
    /// A codec from a built tokenizer; its file is serialized here, so equal inputs give equal bytes.
    pub fn new(mut tokenizer: Tokenizer, parts: Parts) -> Result<Self> {
        // Truncating or padding would change counts silently; a model's limits are checked, not applied.
        tokenizer.with_truncation(None).map_err(|e| TokenizerError::Tokenizer(e.to_string()))?;
        tokenizer.with_padding(None);
        let json = tokenizer.to_string(false).map_err(|e| TokenizerError::Tokenizer(e.to_string()))?;
        let tokenizer_value: serde_json::Value =
            serde_json::from_str(&json).map_err(|e| TokenizerError::Tokenizer(e.to_string()))?;
        let body = FileBody {
            format: FORMAT.into(),
            tokenizer: tokenizer_value,
            chat_template: parts.chat_template.clone(),
            bos: parts.bos.clone(),
            eos: parts.eos.clone(),
            stop_ids: parts.stop_ids.clone(),
            add_special_tokens: parts.add_special_tokens,
        };
        let bytes = serde_json::to_vec(&body).map_err(|e| TokenizerError::Format(e.to_string()))?;
        Self::from_bytes(&bytes)
    }

    /// Reads a tokenizer file. Its hash is the hash of these exact bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        if bytes.len() > MAX_FILE_BYTES {
            return Err(TokenizerError::Format(format!(
                "{} bytes, more than the {MAX_FILE_BYTES} a tokenizer may have",
                bytes.len()
            )));
        }
        let body: FileBody =
            serde_json::from_slice(bytes).map_err(|e| TokenizerError::Format(e.to_string()))?;
        if body.format != FORMAT {
            return Err(TokenizerError::Format(format!("format `{}` is not `{FORMAT}`", body.format)));
        }
        let tokenizer = Tokenizer::from_str(&body.tokenizer.to_string())
            .map_err(|e| TokenizerError::Format(format!("tokenizer: {e}")))?;
        let vocab = tokenizer.get_vocab_size(true) as u64;
        if let Some(bad) = body.stop_ids.iter().find(|&&id| u64::from(id) >= vocab) {
            return Err(TokenizerError::Format(format!(
                "stop id {bad} is outside the vocabulary of {vocab}"
            )));
        }
        let parts = Parts {
            chat_template: body.chat_template,
            bos: body.bos,
            eos: body.eos,
            stop_ids: body.stop_ids,
            add_special_tokens: body.add_special_tokens,
        };
        let codec = Self { tokenizer, parts, bytes: bytes.to_vec(), hash: Hash::of(bytes) };
        if codec.parts.chat_template.is_some() {
            // A template that does not even parse is a broken file; better to know at load than at a chat.
            codec.render_chat(&[ChatMessage { role: "user".into(), content: "hello".into() }])?;
        }
        Ok(codec)
    }

    /// The file, as served to gateways.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// blake3 of the file: what an offer names.
    pub fn hash(&self) -> Hash {
        self.hash
    }

    pub fn vocab_size(&self) -> u32 {
        u32::try_from(self.tokenizer.get_vocab_size(true)).unwrap_or(u32::MAX)
    }

    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self
            .tokenizer
            .encode(text, self.parts.add_special_tokens)
            .map_err(|e| TokenizerError::Tokenizer(e.to_string()))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Decodes tokens to text, leaving out control tokens.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.tokenizer.decode(ids, true).map_err(|e| TokenizerError::Tokenizer(e.to_string()))
    }

    pub fn is_stop(&self, id: u32) -> bool {
        self.parts.stop_ids.contains(&id)
    }

    pub fn stop_ids(&self) -> &[u32] {
        &self.parts.stop_ids
    }

    /// Renders a conversation with the model's chat template, ready for the assistant's turn.
    pub fn render_chat(&self, messages: &[ChatMessage]) -> Result<String> {
        let source = self.parts.chat_template.as_deref().ok_or(TokenizerError::NoChatTemplate)?;
        let mut env = minijinja::Environment::new();
        env.add_function("raise_exception", |msg: String| -> std::result::Result<String, minijinja::Error> {
            Err(minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, msg))
        });
        env.add_template("chat", source).map_err(|e| TokenizerError::ChatTemplate(e.to_string()))?;
        let template = env.get_template("chat").map_err(|e| TokenizerError::ChatTemplate(e.to_string()))?;
        template
            .render(minijinja::context! {
                messages => messages,
                add_generation_prompt => true,
                bos_token => self.parts.bos.clone().unwrap_or_default(),
                eos_token => self.parts.eos.clone().unwrap_or_default(),
            })
            .map_err(|e| TokenizerError::ChatTemplate(e.to_string()))
    }

    /// The token ids a generation reads: a conversation rendered with the template, or raw text. The
    /// provider feeds these to its model and the gateway counts them; both call this.
    pub fn prompt_ids(&self, prompt: &Prompt) -> Result<Vec<u32>> {
        let text = match prompt {
            Prompt::Chat { messages } if messages.is_empty() => return Err(TokenizerError::EmptyPrompt),
            Prompt::Chat { messages } => self.render_chat(messages)?,
            Prompt::Text { text } => text.clone(),
        };
        let ids = self.encode(&text)?;
        if ids.is_empty() {
            return Err(TokenizerError::EmptyPrompt);
        }
        Ok(ids)
    }

    /// Token counts of texts to embed, special tokens included.
    pub fn count(&self, inputs: &[String]) -> Result<Vec<u32>> {
        inputs.iter().map(|t| Ok(u32::try_from(self.encode(t)?.len()).unwrap_or(u32::MAX))).collect()
    }
}

/// What one more token adds to an answer's text, and whether it ended the answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// Text that may be shown now (empty while a stop string or a UTF-8 character might be forming).
    pub text: String,
    pub finish: Option<FinishReason>,
}

/// Turns an answer's token ids into the text a client sees, one id at a time: text is held back while it
/// might be the start of a stop string or an unfinished UTF-8 character, the answer ends before the first
/// stop string, at a stop token, or at `max_tokens`. The engine emits exactly what this yields, and the
/// gateway rebuilds the text from the ids with it, so neither side trusts the other's text.
#[derive(Clone, Debug)]
pub struct StreamDecoder {
    generated: Vec<u32>,
    /// Bytes of the decoded text already yielded.
    sent: usize,
    stops: Vec<String>,
    max_tokens: u32,
    finished: Option<FinishReason>,
}

impl StreamDecoder {
    pub fn new(stops: Vec<String>, max_tokens: u32) -> Self {
        Self { generated: Vec::new(), sent: 0, stops, max_tokens, finished: None }
    }

    /// Every id taken so far, the one that ended the answer included.
    pub fn generated(&self) -> &[u32] {
        &self.generated
    }

    pub fn finished(&self) -> Option<FinishReason> {
        self.finished
    }

    /// Takes the next id. `context_full` ends the answer at this token for lack of room (only the engine,
    /// which knows its cache, says so). An id after the end is an error and is not taken.
    pub fn push(&mut self, codec: &TextCodec, id: u32, context_full: bool) -> Result<Step> {
        if self.finished.is_some() {
            return Err(TokenizerError::PastTheEnd(id));
        }
        if codec.is_stop(id) {
            // The end-of-turn token is sampled work like any other and is counted; it releases whatever text
            // was held back for a stop string that never came.
            let text = codec.decode(&self.generated)?;
            let rest = text.get(self.sent..).unwrap_or_default().to_string();
            self.generated.push(id);
            self.sent = text.len();
            self.finished = Some(FinishReason::Stop);
            return Ok(Step { text: rest, finish: self.finished });
        }
        self.generated.push(id);
        let text = codec.decode(&self.generated)?;
        let longest = self.stops.iter().map(String::len).max().unwrap_or(0);
        let search_from = floor_char_boundary(&text, self.sent.saturating_sub(longest));
        let hit = self
            .stops
            .iter()
            .filter_map(|stop| text.get(search_from..)?.find(stop.as_str()).map(|p| p + search_from))
            .min();
        let at_length = self.generated.len() as u64 >= u64::from(self.max_tokens) || context_full;
        let (end, finish) = match hit {
            Some(p) => (p, Some(FinishReason::Stop)),
            None if at_length => (text.len(), Some(FinishReason::Length)),
            None => (safe_end(&text, self.sent, &self.stops), None),
        };
        let delta = text.get(self.sent..end.max(self.sent)).unwrap_or_default().to_string();
        self.sent = end.max(self.sent);
        self.finished = finish;
        Ok(Step { text: delta, finish })
    }
}

fn floor_char_boundary(text: &str, mut at: usize) -> usize {
    at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// How far the decoded text can be sent: not into an unfinished UTF-8 character (shown as U+FFFD by the
/// decoder) and not into a tail that could still grow into a stop string.
fn safe_end(text: &str, sent: usize, stops: &[String]) -> usize {
    let mut end = text.len();
    while text[..end].ends_with('\u{FFFD}') {
        end -= '\u{FFFD}'.len_utf8();
    }
    for stop in stops {
        for k in (1..stop.len()).rev() {
            if !stop.is_char_boundary(k) {
                continue;
            }
            if text[..end].ends_with(&stop[..k]) {
                end -= k;
                break;
            }
        }
    }
    end.max(sent)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use tokenizers::models::wordlevel::WordLevel;
    use tokenizers::pre_tokenizers::whitespace::WhitespaceSplit;

    /// A word-level tokenizer over a handful of words, with `<end>` as its stop token.
    fn codec() -> TextCodec {
        let words = ["<unk>", "<end>", "hello", "world", "stop", "here", "the", "answer", "is", "4"];
        let vocab = words.iter().enumerate().map(|(i, w)| (w.to_string(), i as u32)).collect();
        let model = WordLevel::builder().vocab(vocab).unk_token("<unk>".into()).build().unwrap();
        let mut tokenizer = Tokenizer::new(model);
        tokenizer.with_pre_tokenizer(Some(WhitespaceSplit));
        tokenizer.add_special_tokens([tokenizers::AddedToken::from("<end>", true)]).unwrap();
        tokenizer.with_decoder(Some(tokenizers::decoders::wordpiece::WordPiece::default()));
        let parts = Parts {
            chat_template: Some("{% for m in messages %}{{ m.role }} {{ m.content }} {% endfor %}".into()),
            stop_ids: vec![1],
            ..Parts::default()
        };
        TextCodec::new(tokenizer, parts).unwrap()
    }

    #[test]
    fn the_file_is_canonical_and_reads_back_to_the_same_counts() {
        let a = codec();
        let b = codec();
        assert_eq!(a.bytes(), b.bytes(), "the same tokenizer serializes to the same bytes");
        assert_eq!(a.hash(), Hash::of(a.bytes()));
        let read = TextCodec::from_bytes(a.bytes()).unwrap();
        assert_eq!(read.hash(), a.hash());
        let prompt = Prompt::Text { text: "hello world the answer is 4".into() };
        assert_eq!(read.prompt_ids(&prompt).unwrap(), a.prompt_ids(&prompt).unwrap());
        assert_eq!(a.prompt_ids(&prompt).unwrap().len(), 6);
        let chat =
            Prompt::Chat { messages: vec![ChatMessage { role: "user".into(), content: "hello".into() }] };
        assert_eq!(a.prompt_ids(&chat).unwrap().len(), 2, "`user hello`: the role counts too");
    }

    #[test]
    fn malformed_files_are_typed_errors() {
        assert!(matches!(TextCodec::from_bytes(b"not json"), Err(TokenizerError::Format(_))));
        let mut body: serde_json::Value = serde_json::from_slice(codec().bytes()).unwrap();
        body["format"] = "other/9".into();
        let wrong = serde_json::to_vec(&body).unwrap();
        assert!(
            matches!(TextCodec::from_bytes(&wrong), Err(TokenizerError::Format(m)) if m.contains("other/9"))
        );
        body["format"] = FORMAT.into();
        body["stop_ids"] = serde_json::json!([99_999]);
        let wrong = serde_json::to_vec(&body).unwrap();
        assert!(
            matches!(TextCodec::from_bytes(&wrong), Err(TokenizerError::Format(m)) if m.contains("99999"))
        );
        assert!(matches!(
            codec().prompt_ids(&Prompt::Chat { messages: vec![] }),
            Err(TokenizerError::EmptyPrompt)
        ));
    }

    #[test]
    fn the_decoder_ends_at_a_stop_string_a_stop_token_or_max_tokens_and_refuses_more() {
        let c = codec();
        let ids = |words: &str| c.encode(words).unwrap();
        // A stop string: "stop" never reaches the client, and the answer ends there.
        let mut d = StreamDecoder::new(vec!["stop".into()], 10);
        let mut text = String::new();
        for id in ids("hello world stop") {
            text.push_str(&d.push(&c, id, false).unwrap().text);
        }
        assert_eq!(text.trim(), "hello world");
        assert_eq!(d.finished(), Some(FinishReason::Stop));
        assert!(matches!(d.push(&c, 2, false), Err(TokenizerError::PastTheEnd(2))));
        assert_eq!(d.generated().len(), 3, "the id after the end was not taken");
        // A stop token ends it too and is counted.
        let mut d = StreamDecoder::new(vec![], 10);
        d.push(&c, 2, false).unwrap();
        let last = d.push(&c, 1, false).unwrap();
        assert_eq!(last.finish, Some(FinishReason::Stop));
        assert_eq!(d.generated(), &[2, 1]);
        // max_tokens.
        let mut d = StreamDecoder::new(vec![], 2);
        assert_eq!(d.push(&c, 2, false).unwrap().finish, None);
        assert_eq!(d.push(&c, 3, false).unwrap().finish, Some(FinishReason::Length));
        assert!(d.push(&c, 3, false).is_err());
    }

    #[test]
    fn text_is_held_back_while_a_stop_string_might_be_forming() {
        let stops = vec!["\n\nUser:".to_string()];
        assert_eq!(safe_end("Hello\n\nUs", 0, &stops), 5);
        assert_eq!(safe_end("Hello", 0, &stops), 5);
        assert_eq!(safe_end("Hello\n", 5, &stops), 5);
        assert_eq!(safe_end("ab\u{FFFD}", 0, &[]), 2, "an unfinished character waits");
    }
}
