//! What every command that talks to a node shares: the effective settings (flags, then `TGRID_*`
//! environment variables, then the config file, then built-in defaults), the SDK client, the signing key and
//! the way results are printed.

use std::future::Future;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use tensorgrid_client::{Backend, Keystore, RpcClient};
use tensorgrid_types::{Address, Amount, Msg, SecretKey, TxRecord};

use crate::{emit_line, print_json, Output};

/// The node commands talk to when nothing else names one.
pub(crate) const DEFAULT_NODE: &str = "http://127.0.0.1:26657";

/// The fee limit of a transaction when nothing else sets one.
pub(crate) const DEFAULT_MAX_FEE: Amount = Amount(1_000_000);

/// `config.toml`: defaults for the global flags. Every key is optional; an unknown key is an error, so a
/// typo never silently does nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Config {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The key that signs when `--from` is not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Output>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_fee: Option<Amount>,
    /// Where keys live (`<home>/keys`) when neither `--home` nor `TGRID_HOME` says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home: Option<PathBuf>,
}

/// The keys `tgrid config set` accepts, in the file's order.
pub(crate) const CONFIG_KEYS: [&str; 6] = ["node", "from", "chain_id", "output", "max_fee", "home"];

impl Config {
    /// `$XDG_CONFIG_HOME/tensorgrid/config.toml` (or the platform's config directory).
    pub(crate) fn default_path() -> Option<PathBuf> {
        dirs::config_dir().map(|d| d.join("tensorgrid").join("config.toml"))
    }

    /// The file at `path`, or the defaults if there is none.
    pub(crate) fn load(path: &Path) -> anyhow::Result<Config> {
        match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str(&text).with_context(|| format!("config file {}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
            Err(e) => Err(anyhow::anyhow!("cannot read config file {}: {e}", path.display())),
        }
    }

    pub(crate) fn save(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let text = format!(
            "# tgrid defaults. Flags and TGRID_* environment variables override them.\n{}",
            toml::to_string(self)?
        );
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
    }

    /// Sets `key` from its text form, checking the value as the flag would.
    pub(crate) fn set(&mut self, key: &str, value: &str) -> anyhow::Result<()> {
        match key {
            "node" => self.node = Some(value.to_string()),
            "from" => self.from = Some(value.to_string()),
            "chain_id" => self.chain_id = Some(value.to_string()),
            "output" => {
                self.output = Some(match value {
                    "text" => Output::Text,
                    "json" => Output::Json,
                    other => anyhow::bail!("`{other}` is not an output format; use `text` or `json`"),
                })
            }
            "max_fee" => {
                self.max_fee = Some(value.parse().with_context(|| format!("max_fee `{value}`"))?);
            }
            "home" => self.home = Some(PathBuf::from(value)),
            other => anyhow::bail!("no config key `{other}`; the keys are {}", CONFIG_KEYS.join(", ")),
        }
        Ok(())
    }

    pub(crate) fn unset(&mut self, key: &str) -> anyhow::Result<()> {
        match key {
            "node" => self.node = None,
            "from" => self.from = None,
            "chain_id" => self.chain_id = None,
            "output" => self.output = None,
            "max_fee" => self.max_fee = None,
            "home" => self.home = None,
            other => anyhow::bail!("no config key `{other}`; the keys are {}", CONFIG_KEYS.join(", ")),
        }
        Ok(())
    }
}

/// A command's settings and the means to act on them.
#[derive(Debug)]
pub(crate) struct Ctx {
    pub home: PathBuf,
    pub output: Output,
    pub node: String,
    pub from: Option<String>,
    pub chain_id: Option<String>,
    pub max_fee: Amount,
    pub tip: Amount,
    rt: tokio::runtime::Runtime,
}

impl Ctx {
    pub(crate) fn new(
        home: PathBuf,
        output: Output,
        node: String,
        from: Option<String>,
        chain_id: Option<String>,
        max_fee: Amount,
    ) -> anyhow::Result<Ctx> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        Ok(Ctx { home, output, node, from, chain_id, max_fee, tip: Amount::ZERO, rt })
    }

    pub(crate) fn with_tip(mut self, tip: Amount) -> Ctx {
        self.tip = tip;
        self
    }

    /// The SDK client of the node, bound to `--chain-id` when one was given.
    pub(crate) fn client(&self) -> RpcClient {
        RpcClient::new(&self.node).with_chain_id(self.chain_id.clone()).with_tip(self.tip)
    }

    pub(crate) fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.rt.block_on(future)
    }

    pub(crate) fn keystore(&self) -> anyhow::Result<Keystore> {
        Ok(Keystore::open(self.home.join("keys"))?)
    }

    /// An address, or the address of a key in the keystore.
    pub(crate) fn resolve(&self, who: &str) -> anyhow::Result<Address> {
        if let Ok(address) = who.parse::<Address>() {
            return Ok(address);
        }
        let store = self.keystore()?;
        let info = store.show(who).with_context(|| {
            format!("`{who}` is neither an address (tg1…) nor a key in {}", store.dir().display())
        })?;
        Ok(info.address)
    }

    /// The name of the signing key: `--from`, `TGRID_FROM` or `from` in the config.
    pub(crate) fn signer_name(&self) -> anyhow::Result<&str> {
        self.from.as_deref().ok_or_else(|| {
            anyhow::anyhow!(
                "this command signs a transaction: name the key with --from KEY (or set a default with \
                 `tgrid config set from KEY`); `tgrid keys list` shows your keys"
            )
        })
    }

    /// The address of the signing key, without unlocking it.
    pub(crate) fn signer_address(&self) -> anyhow::Result<Address> {
        self.resolve(self.signer_name()?)
    }

    /// The signing key, unlocked (asking for the passphrase of an encrypted key).
    pub(crate) fn signer(&self) -> anyhow::Result<SecretKey> {
        self.unlock(self.signer_name()?)
    }

    /// A key of the keystore, unlocked (asking for the passphrase of an encrypted key).
    pub(crate) fn unlock(&self, name: &str) -> anyhow::Result<SecretKey> {
        let store = self.keystore()?;
        let info = store.show(name).with_context(|| format!("no key `{name}`; see `tgrid keys list`"))?;
        let pass = match info.backend {
            Backend::File => Some(crate::keys::passphrase(false)?),
            Backend::Test => None,
        };
        Ok(store.unlock(name, pass.as_deref().map(String::as_str))?.key)
    }

    /// Signs `msg` with the `--from` key, sends it and waits for the commit. A transaction that committed
    /// but failed is an error (exit code 4) naming the ledger's reason.
    pub(crate) fn execute(&self, msg: Msg) -> anyhow::Result<TxRecord> {
        let key = self.signer()?;
        Ok(self.block_on(self.client().execute(&key, msg, self.max_fee))?)
    }

    /// Prints `value` as JSON, or the text `text` makes.
    pub(crate) fn show<T: Serialize>(
        &self,
        value: &T,
        text: impl FnOnce(&T) -> String,
    ) -> anyhow::Result<()> {
        match self.output {
            Output::Json => print_json(value),
            Output::Text => {
                let text = text(value);
                if text.is_empty() {
                    Ok(())
                } else {
                    emit_line(text.trim_end_matches('\n'))
                }
            }
        }
    }

    /// Prints a committed transaction: its record as JSON, or one line with `what` happened and its events.
    pub(crate) fn show_tx(&self, what: &str, record: &TxRecord) -> anyhow::Result<()> {
        self.show(record, |r| {
            let mut text = format!(
                "{what}: committed in block {} (fee {}), tx {}\n",
                r.height,
                tgr(r.receipt.fee_paid),
                r.hash
            );
            for event in &r.receipt.events {
                text.push_str(&format!("  {}\n", event_text(event)));
            }
            text
        })
    }
}

/// An amount as people read it and as the CLI accepts it: `1.5tgr`.
pub(crate) fn tgr(amount: Amount) -> String {
    amount.to_tgr_string().replace(" TGR", "tgr")
}

/// A chain time as people read it (UTC, RFC 3339).
pub(crate) fn when(time: tensorgrid_types::Timestamp) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(time.millis());
    humantime::format_rfc3339_millis(at).to_string()
}

/// A state as the wire model tags it (`{"state": "closed", "reason": "tenant_closed", "at": 17…}`) in words:
/// `closed (tenant_closed) at 2026-…`.
pub(crate) fn state_text(state: &impl Serialize) -> String {
    let Ok(serde_json::Value::Object(fields)) = serde_json::to_value(state) else {
        return String::new();
    };
    let mut text = fields.get("state").and_then(|s| s.as_str()).unwrap_or("?").to_string();
    if let Some(reason) = fields.get("reason") {
        match reason.as_str() {
            Some(reason) => text.push_str(&format!(" ({reason})")),
            None => text.push_str(&format!(" ({reason})")),
        }
    }
    if let Some(at) = fields.get("at").and_then(|a| a.as_u64()) {
        text.push_str(&format!(" at {}", when(tensorgrid_types::Timestamp::from_millis(at))));
    }
    text
}

/// Event fields that hold times, shown as dates in text output.
const TIME_FIELDS: [&str; 5] = ["settled_to", "matures_at", "deadline", "commit_deadline", "at"];

/// Event fields that hold amounts, shown in TGR in text output.
const AMOUNT_FIELDS: [&str; 11] = [
    "amount",
    "stake",
    "price",
    "deposit",
    "refunded",
    "balance",
    "paid",
    "budget",
    "forfeited",
    "max_price",
    "fee",
];

/// One event as a line of text: its kind, then its fields, with amounts in TGR and bid or order ids in
/// their `dseq/gseq/provider` form.
pub(crate) fn event_text(event: &tensorgrid_types::Event) -> String {
    use serde_json::Value;
    let Ok(Value::Object(mut fields)) = serde_json::to_value(event) else {
        return format!("{event:?}");
    };
    let kind = fields.remove("kind").and_then(|k| k.as_str().map(str::to_string)).unwrap_or_default();
    let rest: Vec<String> = fields
        .into_iter()
        .map(|(key, value)| {
            let shown = match &value {
                Value::String(s) if AMOUNT_FIELDS.contains(&key.as_str()) => {
                    s.parse::<u128>().map(|u| tgr(Amount(u))).unwrap_or_else(|_| s.clone())
                }
                Value::String(s) => s.clone(),
                Value::Number(n) if TIME_FIELDS.contains(&key.as_str()) => n
                    .as_u64()
                    .map(|ms| when(tensorgrid_types::Timestamp::from_millis(ms)))
                    .unwrap_or_else(|| n.to_string()),
                Value::Object(id) if id.contains_key("dseq") => ["dseq", "gseq", "provider"]
                    .iter()
                    .filter_map(|k| id.get(*k))
                    .map(|v| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string()))
                    .collect::<Vec<_>>()
                    .join("/"),
                other => other.to_string(),
            };
            format!("{key}={shown}")
        })
        .collect();
    format!("{kind} {}", rest.join(" "))
}

/// A thing the user named does not exist (exit code 5).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct NotFound(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_file_round_trips_and_refuses_what_it_does_not_know() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tensorgrid").join("config.toml");
        assert_eq!(Config::load(&path).unwrap(), Config::default(), "no file means defaults");
        let mut config = Config::default();
        config.set("from", "alice").unwrap();
        config.set("max_fee", "0.5tgr").unwrap();
        config.set("output", "json").unwrap();
        config.save(&path).unwrap();
        let loaded = Config::load(&path).unwrap();
        assert_eq!(loaded.from.as_deref(), Some("alice"));
        assert_eq!(loaded.max_fee, Some(Amount(500_000)));
        assert_eq!(loaded.output, Some(Output::Json));
        let mut loaded = loaded;
        loaded.unset("from").unwrap();
        assert_eq!(loaded.from, None);

        let err = config.set("max_fee", "lots").unwrap_err();
        assert!(format!("{err:#}").contains("max_fee `lots`"), "{err:#}");
        assert!(config.set("output", "yaml").is_err());
        assert!(config.set("colour", "red").unwrap_err().to_string().contains("no config key `colour`"));
        std::fs::write(&path, "from = \"bob\"\nnode = 7\n").unwrap();
        let err = Config::load(&path).unwrap_err();
        assert!(format!("{err:#}").contains("config.toml"), "{err:#}");
    }
}
