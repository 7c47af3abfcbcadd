//! The tokenizer and chat template a GGUF file carries in its metadata.
//!
//! GGUF files ship the vocabulary, the BPE merges, the token types and the chat template, so a model file is
//! all a provider needs: nothing is fetched from a model hub. The tokenizer is built with Hugging Face's
//! `tokenizers` from those arrays into a [`TextCodec`], whose file gateways fetch by hash to count tokens.

use candle_core::quantized::gguf_file::{Content, Value};
use tensorgrid_tokenizer::{Parts, TextCodec, CHATML};
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::{AddedToken, PreTokenizerWrapper, Tokenizer};

use crate::error::{EngineError, Result};

/// GGUF's token type for control tokens (`<|im_start|>`, `<|im_end|>`, …).
const TOKEN_TYPE_CONTROL: i32 = 3;
/// GGUF's token type for user-defined tokens that must never be split.
const TOKEN_TYPE_USER_DEFINED: i32 = 4;

/// Builds the text side of a GGUF model from the vocabulary, merges, token types and template in its metadata.
pub(crate) struct FromGguf;

impl FromGguf {
    pub(crate) fn codec(content: &Content) -> Result<TextCodec> {
        let get = |key: &str| content.metadata.get(key);
        let model = get("tokenizer.ggml.model").and_then(|v| v.to_string().ok().cloned()).unwrap_or_default();
        if model != "gpt2" {
            return Err(EngineError::UnsupportedTokenizer(model));
        }
        let tokens: Vec<String> = strings(get("tokenizer.ggml.tokens"), "tokenizer.ggml.tokens")?;
        let merges: Vec<String> = strings(get("tokenizer.ggml.merges"), "tokenizer.ggml.merges")?;
        let types: Vec<i32> = match get("tokenizer.ggml.token_type") {
            Some(Value::Array(values)) => values.iter().map(|v| v.to_i32().unwrap_or(1)).collect(),
            _ => vec![1; tokens.len()],
        };
        let vocab: tokenizers::models::bpe::Vocab =
            tokens.iter().enumerate().map(|(i, t)| (t.clone(), i as u32)).collect();
        let merges: Vec<(String, String)> = merges
            .iter()
            .filter_map(|m| m.split_once(' '))
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(|e| EngineError::Tokenizer(e.to_string()))?;
        let mut tokenizer = Tokenizer::new(bpe);
        let byte_level = ByteLevel::new(false, true, true);
        let pre = get("tokenizer.ggml.pre").and_then(|v| v.to_string().ok().cloned());
        // Some vocabularies (SmolLM's among them) split every digit on its own before the byte-level regex.
        let pre_tokenizer: PreTokenizerWrapper = match pre.as_deref() {
            Some("smollm" | "qwen2" | "deepseek-llm") => Sequence::new(vec![
                PreTokenizerWrapper::Digits(Digits::new(true)),
                PreTokenizerWrapper::ByteLevel(byte_level),
            ])
            .into(),
            _ => byte_level.into(),
        };
        tokenizer.with_pre_tokenizer(Some(pre_tokenizer));
        tokenizer.with_decoder(Some(ByteLevelDecoder::default()));
        let id = |key: &str| get(key).and_then(|v| v.to_u32().ok());
        let (bos_id, eos_id) = (id("tokenizer.ggml.bos_token_id"), id("tokenizer.ggml.eos_token_id"));
        let mut special = Vec::new();
        let mut stop_ids = Vec::new();
        for (i, t) in types.iter().enumerate() {
            if *t == TOKEN_TYPE_CONTROL || *t == TOKEN_TYPE_USER_DEFINED {
                if let Some(text) = tokens.get(i) {
                    special.push(AddedToken::from(text.clone(), true));
                }
            }
            let i = i as u32;
            if *t == TOKEN_TYPE_CONTROL && Some(i) != bos_id && !is_turn_opener(&tokens, i) {
                stop_ids.push(i);
            }
        }
        if let Some(eos) = eos_id {
            if !stop_ids.contains(&eos) {
                stop_ids.push(eos);
            }
        }
        tokenizer.add_special_tokens(special).map_err(|e| EngineError::Tokenizer(e.to_string()))?;
        let text_of = |id: Option<u32>| id.and_then(|i| tokens.get(i as usize).cloned());
        let template = get("tokenizer.chat_template")
            .and_then(|v| v.to_string().ok().cloned())
            .unwrap_or_else(|| CHATML.to_string());
        let parts = Parts {
            chat_template: Some(template),
            bos: text_of(bos_id),
            eos: text_of(eos_id),
            stop_ids,
            add_special_tokens: false,
        };
        Ok(TextCodec::new(tokenizer, parts)?)
    }
}

/// Control tokens that open a turn (`<|im_start|>`, `<|start_header_id|>`) appear in prompts, not as the end
/// of an answer.
fn is_turn_opener(tokens: &[String], id: u32) -> bool {
    tokens.get(id as usize).is_some_and(|t| t.contains("start") || t.contains("begin"))
}

fn strings(value: Option<&Value>, key: &str) -> Result<Vec<String>> {
    match value {
        Some(Value::Array(values)) => values
            .iter()
            .map(|v| v.to_string().cloned().map_err(|_| EngineError::BadMetadata(key.into())))
            .collect(),
        _ => Err(EngineError::MissingMetadata(key.into())),
    }
}
