//! What can go wrong in the provider daemon, with the values that explain it.

use tensorgrid_client::RpcError;

#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("config file {path}: {reason}")]
    Config { path: String, reason: String },
    #[error("the chain: {0}")]
    Chain(#[from] RpcError),
    #[error("{path}: {reason}")]
    Io { path: String, reason: String },
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: String, reason: String },
    #[error("model {path}: {reason}")]
    Model { path: String, reason: String },
    #[error("the provider registration: {0}")]
    Registration(String),
}

impl ProviderError {
    pub fn io(path: &std::path::Path, e: impl std::fmt::Display) -> ProviderError {
        ProviderError::Io { path: path.display().to_string(), reason: e.to_string() }
    }
}
