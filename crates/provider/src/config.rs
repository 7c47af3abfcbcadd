//! `provider.toml`: who the provider is, where it listens, what it charges and how much it takes on.
//!
//! ```toml
//! key = "gpu-host"                       # the key in <home>/keys that signs (and receives payment)
//! node = "http://127.0.0.1:26657"
//! listen = "0.0.0.0:8443"
//! host_uri = "https://gpu-host.example.org:8443"   # what tenants are told, registered on chain
//! stake = "100tgr"                       # bonded at registration
//! work_dir = "/var/lib/tensorgrid-provider"
//! attributes = { region = "eu-west" }
//!
//! [pricing]                              # per hour, per unit; jobs per 10^9 fuel units
//! cpu_core_hour = "0.02tgr"
//! memory_gib_hour = "0.005tgr"
//! storage_gib_hour = "0.0002tgr"
//! gpu_hour = "1tgr"
//! floor = "0.01tgr"
//! job_gfuel = "0.001tgr"
//! job_floor = "0.001tgr"
//! deny = ["tg1…"]                        # tenants and job clients this provider never bids for
//! price_script = "/etc/tensorgrid/bid-price.sh"    # optional: gets the work as JSON on stdin, prints a price
//!
//! [limits]
//! max_leases = 10
//! max_jobs = 4
//! manifest_timeout = "5m"
//! content_timeout = "2m"
//! requests_per_sec = 100                # signed API requests a second per signer (bursts of twice that)
//! read_only_root = false                # lease containers with a read-only root (in-memory /tmp, /run)
//! private_peers = false                 # may fetch a job's content from providers at private addresses
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tensorgrid_types::{Address, Amount};

use crate::error::ProviderError;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// The signing key's name in the keystore.
    pub key: String,
    /// The node whose API the daemon reads the chain from and sends transactions to.
    #[serde(default = "default_node")]
    pub node: String,
    /// Where the provider API listens.
    pub listen: SocketAddr,
    /// The provider API's public URL, registered on chain.
    pub host_uri: String,
    /// Stake to bond when registering.
    pub stake: Amount,
    /// Jobs' directories, uploaded content and the daemon's own records.
    pub work_dir: PathBuf,
    /// Attributes offered to tenants' placement requirements, besides the ones the inventory finds.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    #[serde(default)]
    pub email: String,
    #[serde(default)]
    pub website: String,
    #[serde(default)]
    pub pricing: Pricing,
    #[serde(default)]
    pub limits: Limits,
    /// Models served for inference: GGUF files (chat and completions) or sentence-transformers directories
    /// (embeddings), each with its prices.
    #[serde(default)]
    pub models: Vec<ModelConfig>,
    #[serde(default)]
    pub inference: InferenceSettings,
    /// Whether to accept referee committee seats for the job runtimes this daemon runs (registered on chain).
    /// A member re-runs a disputed or audited job and is paid a fee; it locks `referee_deposit` of its stake
    /// while it sits. On unless the operator opts out.
    #[serde(default = "default_referee")]
    pub referee: bool,
}

fn default_referee() -> bool {
    true
}

/// One served model and what it costs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    pub path: PathBuf,
    /// The name offered on chain; by default the file's own (`general.name`) or the directory's.
    #[serde(default)]
    pub name: Option<String>,
    pub price_input_per_m: Amount,
    #[serde(default)]
    pub price_output_per_m: Amount,
    /// Output tokens per second one stream gets, as advertised.
    #[serde(default)]
    pub throughput_tps: u32,
}

/// How the provider is paid for inference.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InferenceSettings {
    /// How much a channel may owe beyond its vouchers before the provider stops serving it.
    pub credit: Amount,
    /// How often the best vouchers are redeemed on chain.
    #[serde(with = "duration_text")]
    pub redeem_interval: Duration,
}

impl Default for InferenceSettings {
    fn default() -> Self {
        InferenceSettings { credit: Amount(100_000), redeem_interval: Duration::from_secs(300) }
    }
}

fn default_node() -> String {
    "http://127.0.0.1:26657".into()
}

/// Prices per unit and hour (leases) or per 10⁹ fuel units (jobs), and who is never served.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Pricing {
    pub cpu_core_hour: Amount,
    pub memory_gib_hour: Amount,
    pub storage_gib_hour: Amount,
    pub gpu_hour: Amount,
    /// The least a lease bid asks, per hour.
    pub floor: Amount,
    pub job_gfuel: Amount,
    /// The least a job bid asks.
    pub job_floor: Amount,
    pub deny: Vec<Address>,
    /// A command given the work as JSON on stdin; it prints the price (`1.5tgr`, `1500000utgr`, or a bare
    /// number of utgr) or exits non-zero to decline.
    pub price_script: Option<PathBuf>,
    #[serde(with = "duration_text")]
    pub price_script_timeout: Duration,
}

impl Default for Pricing {
    fn default() -> Self {
        Pricing {
            cpu_core_hour: Amount(20_000),
            memory_gib_hour: Amount(5_000),
            storage_gib_hour: Amount(200),
            gpu_hour: Amount::tgr(1),
            floor: Amount(10_000),
            job_gfuel: Amount(1_000),
            job_floor: Amount(1_000),
            deny: Vec::new(),
            price_script: None,
            price_script_timeout: Duration::from_secs(5),
        }
    }
}

/// How much the provider takes on, and how long it waits for tenants.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub max_leases: u32,
    pub max_jobs: u32,
    /// A lease whose manifest has not arrived by then is closed.
    #[serde(with = "duration_text")]
    pub manifest_timeout: Duration,
    /// An assigned job whose module and inputs have not all been uploaded by then is given up.
    #[serde(with = "duration_text")]
    pub content_timeout: Duration,
    /// The provider's own wall-clock limit on one job run.
    #[serde(with = "duration_text")]
    pub job_wall_timeout: Duration,
    /// How much WASM fuel this machine burns per second, the speed the bid engine assumes when it checks
    /// that a job's fuel fits its run timeout (a job that cannot finish here in time is declined, since a
    /// provider that confirms a job and then misses its commit deadline forfeits its deposit).
    pub job_fuel_per_sec: u64,
    /// The largest upload (module, input, manifest) the API accepts.
    pub max_upload_bytes: u64,
    /// How often the provider collects what its leases have accrued.
    #[serde(with = "duration_text")]
    pub withdraw_interval: Duration,
    /// The host address published container ports bind to.
    pub publish_ip: String,
    /// Signed requests a second each signer may send the provider API (bursts of twice that).
    pub requests_per_sec: u32,
    /// Run lease containers with a read-only root file system (writable in-memory `/tmp`, `/run`,
    /// `/var/tmp`). Safer, but images that write elsewhere fail; off by default.
    pub read_only_root: bool,
    /// Whether this daemon may connect to other providers at loopback or private addresses (a referee
    /// fetching a job's content from its workers). Off by default, so no registration can point the daemon
    /// inside its own network; a local devnet turns it on.
    pub private_peers: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_leases: 10,
            max_jobs: 4,
            manifest_timeout: Duration::from_secs(300),
            content_timeout: Duration::from_secs(120),
            job_wall_timeout: Duration::from_secs(600),
            job_fuel_per_sec: 150_000_000,
            max_upload_bytes: 256 * 1024 * 1024,
            withdraw_interval: Duration::from_secs(3600),
            publish_ip: "0.0.0.0".into(),
            requests_per_sec: 100,
            read_only_root: false,
            private_peers: false,
        }
    }
}

/// Durations as people write them (`90s`, `5m`).
mod duration_text {
    use super::*;

    pub(super) fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&humantime::format_duration(*value).to_string())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(deserializer)?;
        humantime::parse_duration(&text).map_err(|e| {
            serde::de::Error::custom(format!("`{text}` is not a duration like `90s` or `5m`: {e}"))
        })
    }
}

impl ProviderConfig {
    /// Reads and checks `provider.toml`; errors name the file and, from the TOML parser, the line and field.
    pub fn load(path: &Path) -> Result<ProviderConfig, ProviderError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ProviderError::Config { path: path.display().to_string(), reason: e.to_string() })?;
        let config: ProviderConfig = toml::from_str(&text)
            .map_err(|e| ProviderError::Config { path: path.display().to_string(), reason: e.to_string() })?;
        config
            .check()
            .map_err(|reason| ProviderError::Config { path: path.display().to_string(), reason })?;
        Ok(config)
    }

    /// What TOML cannot say: a usable host URI, a non-zero stake, limits that allow work.
    pub fn check(&self) -> Result<(), String> {
        if !(self.host_uri.starts_with("http://") || self.host_uri.starts_with("https://")) {
            return Err(format!("host_uri `{}` must start with https:// or http://", self.host_uri));
        }
        if self.stake.is_zero() {
            return Err("stake is zero; registration bonds at least the chain's minimum".into());
        }
        if self.limits.max_jobs == 0 && self.limits.max_leases == 0 {
            return Err(
                "limits.max_jobs and limits.max_leases are both zero: this provider would take no work"
                    .into(),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_file_reads_with_defaults_and_refuses_typos() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("provider.toml");
        std::fs::write(
            &path,
            "key = \"gpu\"\nlisten = \"127.0.0.1:8443\"\nhost_uri = \"http://127.0.0.1:8443\"\nstake = \"100tgr\"\n\
             work_dir = \"/tmp/x\"\nattributes = { region = \"eu\" }\n[pricing]\njob_gfuel = \"0.5tgr\"\n\
             [limits]\ncontent_timeout = \"90s\"\n",
        )
        .unwrap();
        let config = ProviderConfig::load(&path).unwrap();
        assert_eq!(config.stake, Amount::tgr(100));
        assert_eq!(config.pricing.job_gfuel, Amount(500_000));
        assert_eq!(config.pricing.floor, Pricing::default().floor);
        assert_eq!(config.limits.content_timeout, Duration::from_secs(90));
        assert_eq!(config.attributes["region"], "eu");
        std::fs::write(&path, "key = \"gpu\"\nlisen = \"127.0.0.1:1\"\n").unwrap();
        let err = ProviderConfig::load(&path).unwrap_err().to_string();
        assert!(err.contains("provider.toml") && err.contains("lisen"), "{err}");
        std::fs::write(
            &path,
            "key = \"gpu\"\nlisten = \"127.0.0.1:1\"\nhost_uri = \"ftp://x\"\nstake = \"1tgr\"\nwork_dir = \"/x\"\n",
        )
        .unwrap();
        assert!(ProviderConfig::load(&path).unwrap_err().to_string().contains("host_uri"));
    }
}
