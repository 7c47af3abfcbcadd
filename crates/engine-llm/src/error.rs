//! The engine's errors.

/// What went wrong loading a model or serving a request.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot read model file {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("model file: {0}")]
    Candle(#[from] candle_core::Error),
    #[error("model architecture `{0}` is not supported (llama-family GGUF files are)")]
    UnsupportedArchitecture(String),
    #[error("tokenizer model `{0}` is not supported (GPT-2 style BPE is)")]
    UnsupportedTokenizer(String),
    #[error("model file lacks metadata `{0}`")]
    MissingMetadata(String),
    #[error("model file has unusable metadata `{0}`")]
    BadMetadata(String),
    #[error("model file lacks tensor `{0}`")]
    MissingTensor(String),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("chat template: {0}")]
    ChatTemplate(String),
    #[error(transparent)]
    Text(#[from] tensorgrid_tokenizer::TokenizerError),
    #[error("{tokens} tokens exceed the model's context of {limit}")]
    ContextExceeded { tokens: usize, limit: usize },
    #[error("invalid sampling parameter: {0}")]
    BadParameter(String),
    #[error("the prompt is empty")]
    EmptyPrompt,
    #[error("the engine has stopped")]
    Stopped,
    #[error("engine: {0}")]
    Internal(String),
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;
