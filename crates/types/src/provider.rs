//! Providers: who sells compute, where their API lives, what they offer, and the stake that backs them.

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

use crate::amount::Amount;
use crate::crypto::Address;
use crate::limits::{self, Malformed};
use crate::resources::{self, Attribute};
use crate::time::Timestamp;

/// Contact details shown to tenants.
#[derive(Clone, Debug, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct ProviderInfo {
    #[serde(default)]
    pub email: String,
    #[serde(default)]
    pub website: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderStatus {
    /// Registered and bonded: may bid.
    Active,
    /// Left the market; its stake is unbonding or already returned.
    Deregistered,
}

/// Stake on its way back to the provider; it stays slashable until `matures_at`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Unbonding {
    pub amount: Amount,
    pub matures_at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Provider {
    pub address: Address,
    /// The provider API's base URL, e.g. `https://gpu1.example.org:8443`.
    pub host_uri: String,
    pub attributes: Vec<Attribute>,
    pub info: ProviderInfo,
    pub status: ProviderStatus,
    /// Bonded stake.
    pub stake: Amount,
    pub unbonding: Vec<Unbonding>,
    pub registered_at: Timestamp,
    /// Leases accrue only up to `last_heartbeat + heartbeat_grace`.
    pub last_heartbeat: Timestamp,
    pub active_leases: u32,
    pub active_job_slots: u32,
    pub jobs_completed: u64,
    pub jobs_missed: u64,
}

pub(crate) fn validate_host_uri(field: &str, uri: &str) -> Result<(), Malformed> {
    limits::check_str(field, uri, limits::MAX_URI_LEN)?;
    let rest = uri
        .strip_prefix("https://")
        .or_else(|| uri.strip_prefix("http://"))
        .ok_or_else(|| Malformed::new(field, format!("`{uri}` must start with https:// or http://")))?;
    if rest.is_empty() || rest.starts_with('/') || rest.contains(char::is_whitespace) {
        return Err(Malformed::new(field, format!("`{uri}` has no host")));
    }
    Ok(())
}

pub(crate) fn validate_info(field: &str, info: &ProviderInfo) -> Result<(), Malformed> {
    limits::check_str(&format!("{field}.email"), &info.email, limits::MAX_INFO_LEN)?;
    limits::check_str(&format!("{field}.website"), &info.website, limits::MAX_INFO_LEN)
}

pub(crate) fn validate_attributes(field: &str, attributes: &[Attribute]) -> Result<(), Malformed> {
    resources::validate_attributes(field, attributes)
}
