//! Named keys on disk.
//!
//! A key comes from a BIP39 mnemonic (24 words), derived along SLIP-0010 for ed25519 at [`DERIVATION_PATH`], or
//! is imported as a raw 32-byte secret. Each key is one JSON file `<name>.json` in the keystore directory
//! (mode 0700), written atomically with mode 0600. The `file` backend encrypts the secret with a key stretched
//! from the passphrase by argon2id and sealed with XChaCha20-Poly1305, the address bound as associated data;
//! the `test` backend stores it in the clear, for devnets and tests only. Addresses are stored in the clear so
//! that listing needs no passphrase.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand_core::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};
use tensorgrid_types::{Address, SecretKey};
use zeroize::Zeroizing;

/// SLIP-0010 path of account 0: purpose 44', tensorgrid's coin type 7337' (not yet registered in SLIP-44),
/// account, change and index, all hardened as ed25519 requires.
pub const DERIVATION_PATH: &str = "m/44'/7337'/0'/0'/0'";
const PATH_INDEXES: [u32; 5] = [44, 7337, 0, 0, 0];

/// Where a key's secret is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// Encrypted with a passphrase.
    File,
    /// Unencrypted: for devnets and tests.
    Test,
}

/// What anyone may see about a key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInfo {
    pub name: String,
    pub address: Address,
    pub backend: Backend,
}

/// A key opened with its passphrase.
#[derive(Clone)]
pub struct Unlocked {
    pub info: KeyInfo,
    pub key: SecretKey,
    /// The recovery phrase, when the key came from one.
    pub mnemonic: Option<Zeroizing<String>>,
}

impl std::fmt::Debug for Unlocked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Unlocked").field("info", &self.info).finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeystoreError {
    #[error("no key named `{name}`; `tgrid keys list` shows the keys there are")]
    NotFound { name: String },
    #[error("a key named `{name}` already exists; pick another name or delete it first")]
    AlreadyExists { name: String },
    #[error("`{name}` is not a valid key name: use 1 to 64 letters, digits, `.`, `_` and `-`")]
    InvalidName { name: String },
    #[error("wrong passphrase for key `{name}`")]
    WrongPassphrase { name: String },
    #[error("key `{name}` is encrypted: a passphrase is needed")]
    PassphraseRequired { name: String },
    #[error("invalid recovery phrase: {reason}")]
    InvalidMnemonic { reason: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a valid key file: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

/// argon2id cost. The default follows OWASP's recommendation (64 MiB, 3 passes); tests lower it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for KdfParams {
    fn default() -> Self {
        KdfParams { memory_kib: 64 * 1024, iterations: 3, parallelism: 1 }
    }
}

impl KdfParams {
    /// OWASP's minimum for argon2id (19 MiB, 2 passes): a key file asking for less is refused by a keystore
    /// that writes at least that much, since anyone who could swap the file could make the passphrase cheap
    /// to guess.
    pub const FLOOR: KdfParams = KdfParams { memory_kib: 19 * 1024, iterations: 2, parallelism: 1 };
    /// The most a key file may ask for (4 GiB, 64 passes, 16 lanes): a file is not allowed to make opening
    /// it take the machine's memory or minutes of time.
    pub const CEILING: KdfParams = KdfParams { memory_kib: 4 * 1024 * 1024, iterations: 64, parallelism: 16 };

    fn at_least(&self, floor: &KdfParams) -> bool {
        self.memory_kib >= floor.memory_kib && self.iterations >= floor.iterations
    }

    fn at_most(&self, ceiling: &KdfParams) -> bool {
        self.memory_kib <= ceiling.memory_kib
            && self.iterations <= ceiling.iterations
            && self.parallelism <= ceiling.parallelism
    }

    /// The weaker of two parameter sets, field by field.
    fn weaker(&self, other: &KdfParams) -> KdfParams {
        KdfParams {
            memory_kib: self.memory_kib.min(other.memory_kib),
            iterations: self.iterations.min(other.iterations),
            parallelism: self.parallelism.min(other.parallelism),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct KeyFile {
    version: u32,
    name: String,
    address: Address,
    backend: Backend,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    encrypted: Option<Encrypted>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    plaintext: Option<Secret>,
}

#[derive(Serialize, Deserialize)]
struct Encrypted {
    kdf: String,
    kdf_params: KdfParams,
    salt: String,
    cipher: String,
    nonce: String,
    ciphertext: String,
}

/// The secret part of a key file.
#[derive(Serialize, Deserialize)]
struct Secret {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mnemonic: Option<String>,
    /// Hex of the 32-byte ed25519 seed.
    secret: String,
}

/// A new 24-word recovery phrase from `rng`.
pub fn generate_mnemonic<R: RngCore + CryptoRng>(rng: &mut R) -> Zeroizing<String> {
    let mut entropy = Zeroizing::new([0u8; 32]);
    rng.fill_bytes(entropy.as_mut());
    // 32 bytes is a valid BIP39 entropy length, so this cannot fail; the fallback keeps it total.
    let phrase = bip39::Mnemonic::from_entropy(entropy.as_ref()).map(|m| m.to_string()).unwrap_or_default();
    Zeroizing::new(phrase)
}

/// The key a recovery phrase stands for: BIP39 seed (empty BIP39 passphrase), then SLIP-0010 along
/// [`DERIVATION_PATH`].
pub fn key_from_mnemonic(phrase: &str) -> Result<SecretKey, KeystoreError> {
    let normalized = phrase.split_whitespace().collect::<Vec<_>>().join(" ");
    let mnemonic = bip39::Mnemonic::parse_normalized(&normalized)
        .map_err(|e| KeystoreError::InvalidMnemonic { reason: e.to_string() })?;
    let seed = Zeroizing::new(mnemonic.to_seed(""));
    let secret = Zeroizing::new(slip10_ed25519::derive_ed25519_private_key(seed.as_ref(), &PATH_INDEXES));
    Ok(SecretKey::from_seed(*secret))
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && !name.starts_with('.')
}

/// A directory of named keys.
#[derive(Debug, Clone)]
pub struct Keystore {
    dir: PathBuf,
    kdf: KdfParams,
}

impl Keystore {
    /// Opens (creating if needed, mode 0700) the keystore in `dir`.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Keystore, KeystoreError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(|source| KeystoreError::Io { path: dir.clone(), source })?;
        set_mode(&dir, 0o700)?;
        Ok(Keystore { dir, kdf: KdfParams::default() })
    }

    /// Uses other argon2id costs for keys written from now on. Reading uses what each file says, as long as
    /// it is at least [`KdfParams::FLOOR`] (or these costs, if lower) and at most [`KdfParams::CEILING`].
    pub fn with_kdf(mut self, kdf: KdfParams) -> Keystore {
        self.kdf = kdf;
        self
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, name: &str) -> Result<PathBuf, KeystoreError> {
        if !valid_name(name) {
            return Err(KeystoreError::InvalidName { name: name.into() });
        }
        Ok(self.dir.join(format!("{name}.json")))
    }

    /// Creates a key from a fresh recovery phrase; returns it with the phrase, which is shown once.
    pub fn add<R: RngCore + CryptoRng>(
        &self,
        name: &str,
        backend: Backend,
        passphrase: Option<&str>,
        rng: &mut R,
    ) -> Result<(KeyInfo, Zeroizing<String>), KeystoreError> {
        let phrase = generate_mnemonic(rng);
        let info = self.import_mnemonic(name, &phrase, backend, passphrase, rng)?;
        Ok((info, phrase))
    }

    /// Stores the key a recovery phrase stands for.
    pub fn import_mnemonic<R: RngCore + CryptoRng>(
        &self,
        name: &str,
        phrase: &str,
        backend: Backend,
        passphrase: Option<&str>,
        rng: &mut R,
    ) -> Result<KeyInfo, KeystoreError> {
        let key = key_from_mnemonic(phrase)?;
        let normalized = phrase.split_whitespace().collect::<Vec<_>>().join(" ");
        self.store(name, &key, Some(normalized), backend, passphrase, rng)
    }

    /// Stores a raw 32-byte secret (no recovery phrase).
    pub fn import_secret<R: RngCore + CryptoRng>(
        &self,
        name: &str,
        secret: [u8; 32],
        backend: Backend,
        passphrase: Option<&str>,
        rng: &mut R,
    ) -> Result<KeyInfo, KeystoreError> {
        self.store(name, &SecretKey::from_seed(secret), None, backend, passphrase, rng)
    }

    fn store<R: RngCore + CryptoRng>(
        &self,
        name: &str,
        key: &SecretKey,
        mnemonic: Option<String>,
        backend: Backend,
        passphrase: Option<&str>,
        rng: &mut R,
    ) -> Result<KeyInfo, KeystoreError> {
        let path = self.path(name)?;
        if path.exists() {
            return Err(KeystoreError::AlreadyExists { name: name.into() });
        }
        let address = key.address();
        let secret = Secret { mnemonic, secret: hex::encode(key.seed()) };
        let (encrypted, plaintext) = match backend {
            Backend::Test => (None, Some(secret)),
            Backend::File => {
                let passphrase = passphrase
                    .filter(|p| !p.is_empty())
                    .ok_or_else(|| KeystoreError::PassphraseRequired { name: name.into() })?;
                (Some(self.seal(&path, &secret, &address, passphrase, rng)?), None)
            }
        };
        let file = KeyFile { version: 1, name: name.into(), address, backend, encrypted, plaintext };
        let json = serde_json::to_vec_pretty(&file)
            .map_err(|e| KeystoreError::Corrupt { path: path.clone(), reason: e.to_string() })?;
        write_private(&path, &json)?;
        Ok(KeyInfo { name: name.into(), address, backend })
    }

    fn seal<R: RngCore + CryptoRng>(
        &self,
        path: &Path,
        secret: &Secret,
        address: &Address,
        passphrase: &str,
        rng: &mut R,
    ) -> Result<Encrypted, KeystoreError> {
        let corrupt = |reason: String| KeystoreError::Corrupt { path: path.to_path_buf(), reason };
        let mut salt = [0u8; 16];
        rng.fill_bytes(&mut salt);
        let mut nonce = [0u8; 24];
        rng.fill_bytes(&mut nonce);
        let key = stretch(passphrase, &salt, self.kdf).map_err(corrupt)?;
        let cipher = XChaCha20Poly1305::new(key.as_ref().into());
        let plaintext = Zeroizing::new(serde_json::to_vec(secret).map_err(|e| corrupt(e.to_string()))?);
        let ciphertext = cipher
            .encrypt(XNonce::from_slice(&nonce), Payload { msg: &plaintext, aad: address.as_bytes() })
            .map_err(|e| corrupt(e.to_string()))?;
        Ok(Encrypted {
            kdf: "argon2id".into(),
            kdf_params: self.kdf,
            salt: hex::encode(salt),
            cipher: "xchacha20poly1305".into(),
            nonce: hex::encode(nonce),
            ciphertext: hex::encode(ciphertext),
        })
    }

    fn read(&self, name: &str) -> Result<(PathBuf, KeyFile), KeystoreError> {
        let path = self.path(name)?;
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(KeystoreError::NotFound { name: name.into() })
            }
            Err(source) => return Err(KeystoreError::Io { path, source }),
        };
        let file: KeyFile = serde_json::from_slice(&bytes)
            .map_err(|e| KeystoreError::Corrupt { path: path.clone(), reason: e.to_string() })?;
        if file.version != 1 {
            return Err(KeystoreError::Corrupt { path, reason: format!("unknown version {}", file.version) });
        }
        Ok((path, file))
    }

    pub fn show(&self, name: &str) -> Result<KeyInfo, KeystoreError> {
        let (_, file) = self.read(name)?;
        Ok(KeyInfo { name: file.name, address: file.address, backend: file.backend })
    }

    /// Every key, sorted by name.
    pub fn list(&self) -> Result<Vec<KeyInfo>, KeystoreError> {
        let entries =
            fs::read_dir(&self.dir).map_err(|source| KeystoreError::Io { path: self.dir.clone(), source })?;
        let mut keys = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| KeystoreError::Io { path: self.dir.clone(), source })?;
            let file_name = entry.file_name().to_string_lossy().to_string();
            if let Some(name) = file_name.strip_suffix(".json").filter(|n| valid_name(n)) {
                keys.push(self.show(name)?);
            }
        }
        keys.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(keys)
    }

    /// Opens a key: decrypts it with the passphrase (`file` backend) or reads it (`test`).
    pub fn unlock(&self, name: &str, passphrase: Option<&str>) -> Result<Unlocked, KeystoreError> {
        let (path, file) = self.read(name)?;
        let corrupt = |reason: &str| KeystoreError::Corrupt { path: path.clone(), reason: reason.into() };
        let secret: Secret = match (&file.encrypted, file.plaintext) {
            (Some(enc), _) => {
                let passphrase =
                    passphrase.ok_or_else(|| KeystoreError::PassphraseRequired { name: name.into() })?;
                let salt = hex::decode(&enc.salt).map_err(|_| corrupt("salt is not hex"))?;
                let nonce = hex::decode(&enc.nonce).map_err(|_| corrupt("nonce is not hex"))?;
                let ciphertext =
                    hex::decode(&enc.ciphertext).map_err(|_| corrupt("ciphertext is not hex"))?;
                if enc.kdf != "argon2id" || enc.cipher != "xchacha20poly1305" || nonce.len() != 24 {
                    return Err(corrupt("unsupported kdf or cipher"));
                }
                let floor = KdfParams::FLOOR.weaker(&self.kdf);
                if !enc.kdf_params.at_least(&floor) {
                    return Err(corrupt(&format!(
                        "its argon2id costs ({} KiB, {} passes) are below the floor of {} KiB and {} passes",
                        enc.kdf_params.memory_kib,
                        enc.kdf_params.iterations,
                        floor.memory_kib,
                        floor.iterations
                    )));
                }
                if !enc.kdf_params.at_most(&KdfParams::CEILING) {
                    return Err(corrupt("its argon2id costs are above what a key file may ask for"));
                }
                let key = stretch(passphrase, &salt, enc.kdf_params).map_err(|e| corrupt(&e))?;
                let cipher = XChaCha20Poly1305::new(key.as_ref().into());
                let plaintext = Zeroizing::new(
                    cipher
                        .decrypt(
                            XNonce::from_slice(&nonce),
                            Payload { msg: &ciphertext, aad: file.address.as_bytes() },
                        )
                        .map_err(|_| KeystoreError::WrongPassphrase { name: name.into() })?,
                );
                serde_json::from_slice(&plaintext).map_err(|_| corrupt("decrypted secret is malformed"))?
            }
            (None, Some(secret)) => secret,
            (None, None) => return Err(corrupt("holds no secret")),
        };
        let mut seed = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(&secret.secret, seed.as_mut())
            .map_err(|_| corrupt("secret is not 32 bytes of hex"))?;
        let key = SecretKey::from_seed(*seed);
        if key.address() != file.address {
            return Err(corrupt("the secret does not match the stored address"));
        }
        Ok(Unlocked {
            info: KeyInfo { name: file.name, address: file.address, backend: file.backend },
            key,
            mnemonic: secret.mnemonic.map(Zeroizing::new),
        })
    }

    pub fn delete(&self, name: &str) -> Result<(), KeystoreError> {
        let (path, _) = self.read(name)?;
        fs::remove_file(&path).map_err(|source| KeystoreError::Io { path, source })
    }
}

fn stretch(passphrase: &str, salt: &[u8], kdf: KdfParams) -> Result<Zeroizing<[u8; 32]>, String> {
    let params =
        Params::new(kdf.memory_kib, kdf.iterations, kdf.parallelism, Some(32)).map_err(|e| e.to_string())?;
    let mut key = Zeroizing::new([0u8; 32]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(passphrase.as_bytes(), salt, key.as_mut())
        .map_err(|e| e.to_string())?;
    Ok(key)
}

/// Writes `bytes` to `path` with mode 0600 through a temporary file and a rename, so a crash never leaves a
/// half-written key.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), KeystoreError> {
    let tmp = path.with_extension("json.tmp");
    let io = |source| KeystoreError::Io { path: tmp.clone(), source };
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let _ = fs::remove_file(&tmp);
    let mut file = options.open(&tmp).map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)?;
    fs::rename(&tmp, path).map_err(|source| KeystoreError::Io { path: path.to_path_buf(), source })
}

fn set_mode(path: &Path, mode: u32) -> Result<(), KeystoreError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
            .map_err(|source| KeystoreError::Io { path: path.to_path_buf(), source })?;
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
    Ok(())
}
