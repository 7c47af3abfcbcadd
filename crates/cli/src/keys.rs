//! `tgrid keys …`: the keystore from the command line.
//!
//! Secrets are typed, never passed as arguments (they would land in shell history and `ps`): a passphrase comes
//! from `TGRID_KEYRING_PASSPHRASE`, a prompt on the terminal, or the first line of standard input; a recovery
//! phrase from a prompt or standard input.

use std::io::{BufRead, IsTerminal};
use std::path::Path;

use anyhow::Context;
use clap::{Subcommand, ValueEnum};
use rand_core::OsRng;
use tensorgrid_client::{Backend, KeyInfo, Keystore};
use zeroize::Zeroizing;

use crate::{emit_line, print_json, Output};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum KeyringBackend {
    /// Encrypted with a passphrase (argon2id + XChaCha20-Poly1305).
    File,
    /// Unencrypted: for devnets and tests only.
    Test,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Keys {
    /// Create a key from a new 24-word recovery phrase (printed once: write it down), or recover one.
    Add {
        name: String,
        /// Recover the key from an existing recovery phrase, read from the terminal or standard input.
        #[arg(long)]
        recover: bool,
        #[arg(long, value_enum, default_value_t = KeyringBackend::File)]
        keyring_backend: KeyringBackend,
    },
    /// Import a raw 32-byte secret (64 hex digits) read from the terminal or standard input.
    Import {
        name: String,
        #[arg(long, value_enum, default_value_t = KeyringBackend::File)]
        keyring_backend: KeyringBackend,
    },
    /// List keys and their addresses (no passphrase needed).
    List,
    /// Show a key's address.
    Show {
        name: String,
        /// Print only the address.
        #[arg(long)]
        address: bool,
    },
    /// Print a key's recovery phrase (or raw secret). Anyone who sees it controls the key's funds.
    Export { name: String },
    /// Delete a key file. Without its recovery phrase the key is gone for good.
    Delete {
        name: String,
        /// Do not ask for confirmation.
        #[arg(long, short)]
        yes: bool,
    },
}

fn backend(b: KeyringBackend) -> Backend {
    match b {
        KeyringBackend::File => Backend::File,
        KeyringBackend::Test => Backend::Test,
    }
}

/// One line of secret input: from the terminal without echo, or from piped standard input.
fn read_secret(prompt: &str) -> anyhow::Result<Zeroizing<String>> {
    if std::io::stdin().is_terminal() {
        return Ok(Zeroizing::new(
            rpassword::prompt_password(prompt).context("cannot read from the terminal")?,
        ));
    }
    let mut line = Zeroizing::new(String::new());
    std::io::stdin().lock().read_line(&mut line).context("cannot read standard input")?;
    Ok(Zeroizing::new(line.trim_end_matches(['\r', '\n']).to_string()))
}

pub(crate) fn passphrase(confirm: bool) -> anyhow::Result<Zeroizing<String>> {
    if let Ok(p) = std::env::var("TGRID_KEYRING_PASSPHRASE") {
        return Ok(Zeroizing::new(p));
    }
    let first = read_secret("passphrase: ")?;
    if confirm && std::io::stdin().is_terminal() {
        let again = read_secret("repeat the passphrase: ")?;
        if *again != *first {
            anyhow::bail!("the passphrases differ; nothing was saved");
        }
    }
    Ok(first)
}

fn print_info(info: &KeyInfo, output: Output) -> anyhow::Result<()> {
    match output {
        Output::Json => print_json(info),
        Output::Text => {
            emit_line(&format!("{}\t{}\t{}", info.name, info.address, backend_name(info.backend)))?;
            Ok(())
        }
    }
}

fn backend_name(b: Backend) -> &'static str {
    match b {
        Backend::File => "file",
        Backend::Test => "test",
    }
}

pub(crate) fn run(command: Keys, home: &Path, output: Output) -> anyhow::Result<()> {
    let store = Keystore::open(home.join("keys"))?;
    match command {
        Keys::Add { name, recover, keyring_backend } => {
            let backend = backend(keyring_backend);
            let pass = match backend {
                Backend::File => Some(passphrase(true)?),
                Backend::Test => None,
            };
            if recover {
                let phrase = read_secret("recovery phrase: ")?;
                let info = store.import_mnemonic(
                    &name,
                    &phrase,
                    backend,
                    pass.as_deref().map(String::as_str),
                    &mut OsRng,
                )?;
                print_info(&info, output)
            } else {
                let (info, phrase) =
                    store.add(&name, backend, pass.as_deref().map(String::as_str), &mut OsRng)?;
                match output {
                    Output::Json => {
                        print_json(&serde_json::json!({ "key": info, "mnemonic": phrase.as_str() }))
                    }
                    Output::Text => {
                        emit_line(&format!("created key `{}`: {}", info.name, info.address))?;
                        emit_line("\nrecovery phrase (write it down and keep it safe; it is the only way to restore this key):\n")?;
                        emit_line(&format!("{}\n", phrase.as_str()))?;
                        Ok(())
                    }
                }
            }
        }
        Keys::Import { name, keyring_backend } => {
            let backend = backend(keyring_backend);
            let pass = match backend {
                Backend::File => Some(passphrase(true)?),
                Backend::Test => None,
            };
            let text = read_secret("secret (64 hex digits): ")?;
            let mut secret = Zeroizing::new([0u8; 32]);
            hex::decode_to_slice(text.trim(), secret.as_mut())
                .map_err(|_| anyhow::anyhow!("the secret must be exactly 64 hex digits"))?;
            let info = store.import_secret(
                &name,
                *secret,
                backend,
                pass.as_deref().map(String::as_str),
                &mut OsRng,
            )?;
            print_info(&info, output)
        }
        Keys::List => {
            let keys = store.list()?;
            match output {
                Output::Json => print_json(&keys),
                Output::Text => {
                    if keys.is_empty() {
                        emit_line(&format!(
                            "no keys in {}; create one with `tgrid keys add NAME`",
                            store.dir().display()
                        ))?;
                    }
                    for info in &keys {
                        emit_line(&format!(
                            "{}\t{}\t{}",
                            info.name,
                            info.address,
                            backend_name(info.backend)
                        ))?;
                    }
                    Ok(())
                }
            }
        }
        Keys::Show { name, address } => {
            let info = store.show(&name)?;
            if address && output == Output::Text {
                emit_line(&info.address.to_string())?;
                Ok(())
            } else {
                print_info(&info, output)
            }
        }
        Keys::Export { name } => {
            let info = store.show(&name)?;
            let pass = match info.backend {
                Backend::File => Some(passphrase(false)?),
                Backend::Test => None,
            };
            let unlocked = store.unlock(&name, pass.as_deref().map(String::as_str))?;
            let secret = Zeroizing::new(hex::encode(unlocked.key.seed()));
            match output {
                Output::Json => print_json(&serde_json::json!({
                    "key": unlocked.info,
                    "mnemonic": unlocked.mnemonic.as_deref().map(String::as_str),
                    "secret": secret.as_str(),
                })),
                Output::Text => {
                    match &unlocked.mnemonic {
                        Some(phrase) => emit_line(phrase.as_str())?,
                        None => emit_line(secret.as_str())?,
                    }
                    Ok(())
                }
            }
        }
        Keys::Delete { name, yes } => {
            let info = store.show(&name)?;
            if !yes {
                if !std::io::stdin().is_terminal() {
                    anyhow::bail!("deleting `{name}` needs confirmation: pass --yes");
                }
                let answer = read_secret(&format!(
                    "delete key `{name}` ({})? type its name to confirm: ",
                    info.address
                ))?;
                if answer.trim() != name {
                    anyhow::bail!("not confirmed; nothing was deleted");
                }
            }
            store.delete(&name)?;
            if output == Output::Text {
                emit_line(&format!("deleted key `{name}` ({})", info.address))?;
            } else {
                print_json(&info)?;
            }
            Ok(())
        }
    }
}
