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
    /// Job runtimes it can run (`wasi-p1`, ...): what makes it eligible for a job's referee committee.
    #[serde(default)]
    pub runtimes: Vec<String>,
    /// Whether it accepts committee seats. A provider that opted out is never drawn.
    #[serde(default)]
    pub referee: bool,
    /// Slashed below `min_provider_stake`: no new bids and no committee seats until it bonds enough again.
    /// Its open work continues.
    #[serde(default)]
    pub jailed: bool,
    #[serde(default)]
    pub record: ProviderRecord,
}

impl Provider {
    /// Whether the provider accepts committee seats for work needing `runtime`.
    pub fn referees(&self, runtime: &str) -> bool {
        self.referee && self.runtimes.iter().any(|r| r == runtime)
    }
}

/// What the chain knows of a provider's conduct, for clients choosing whom to trust
/// (`JobRequirements`) and for anyone reading its page.
#[derive(Clone, Debug, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct ProviderRecord {
    /// Random audits its results passed.
    pub audits_passed: u64,
    /// Disputes and disagreements the verdict decided for it.
    pub disputes_won: u64,
    /// Verdicts against its result.
    pub disputes_lost: u64,
    /// Times it was slashed, and what it lost in all (stake and bid deposits).
    pub slashes: u64,
    pub slashed_total: Amount,
    /// Committee seats it was drawn for, and those whose deposit it forfeited (silent or outvoted).
    pub referee_seats: u64,
    pub referee_forfeits: u64,
}

/// Runtime names are short identifiers such as `wasi-p1`.
pub(crate) fn validate_runtimes(field: &str, runtimes: &[String]) -> Result<(), Malformed> {
    limits::check_len(field, runtimes.len(), limits::MAX_RUNTIMES)?;
    for (i, runtime) in runtimes.iter().enumerate() {
        let name = format!("{field}[{i}]");
        limits::check_str(&name, runtime, limits::MAX_NAME_LEN)?;
        if runtime.is_empty() {
            return Err(Malformed::new(name, "is empty"));
        }
        if runtimes[..i].contains(runtime) {
            return Err(Malformed::new(name, format!("repeats `{runtime}`")));
        }
    }
    Ok(())
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
