//! Keys on disk: derivation matches the standards, secrets stay encrypted and private, mistakes are named.

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use tensorgrid_client::keystore::{key_from_mnemonic, DERIVATION_PATH};
use tensorgrid_client::{Backend, KdfParams, Keystore, KeystoreError};

fn rng() -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(42)
}

/// A fresh keystore with cheap argon2 costs, so tests stay fast.
fn store() -> (tempdir::Dir, Keystore) {
    let dir = tempdir::Dir::new();
    let ks = Keystore::open(dir.path.join("keys")).unwrap().with_kdf(KdfParams {
        memory_kib: 256,
        iterations: 1,
        parallelism: 1,
    });
    (dir, ks)
}

mod tempdir {
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A directory under the system temp dir, removed on drop.
    pub(crate) struct Dir {
        pub(crate) path: PathBuf,
    }

    impl Dir {
        pub(crate) fn new() -> Dir {
            static N: AtomicU32 = AtomicU32::new(0);
            let path = std::env::temp_dir().join(format!(
                "tg-keystore-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::SeqCst)
            ));
            std::fs::create_dir_all(&path).unwrap();
            Dir { path }
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

#[test]
fn slip10_derivation_matches_the_published_test_vector() {
    // SLIP-0010, ed25519 test vector 1: seed 000102…0f.
    let seed = hex::decode("000102030405060708090a0b0c0d0e0f").unwrap();
    let cases: [(&[u32], &str); 3] = [
        (&[0], "68e0fe46dfb67e368c75379acec591dad19df3cde26e63b93a8e704f1dade7a3"),
        (&[0, 1], "b1d0bad404bf35da785a64ca1ac54b2617211d2777696fbffaf208f746ae84f2"),
        (&[0, 1, 2, 2, 1_000_000_000], "8f94d394a8e8fd6b1bc2f3f49f5c47e385281d5c17e65324b0f62483e37e8793"),
    ];
    for (path, expected) in cases {
        assert_eq!(
            hex::encode(slip10_ed25519::derive_ed25519_private_key(&seed, path)),
            expected,
            "m/{path:?}'"
        );
    }
}

#[test]
fn a_recovery_phrase_always_gives_the_same_address() {
    let phrase = "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon \
                  abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon art";
    let a = key_from_mnemonic(phrase).unwrap().address();
    assert_eq!(a, key_from_mnemonic(&format!("  {}\n", phrase.replace(' ', "   "))).unwrap().address());
    assert!(a.to_string().starts_with("tg1"));
    assert_eq!(DERIVATION_PATH, "m/44'/7337'/0'/0'/0'");
    assert!(matches!(key_from_mnemonic("abandon abandon"), Err(KeystoreError::InvalidMnemonic { .. })));
    let typo = phrase.replace("art", "arr");
    assert!(matches!(key_from_mnemonic(&typo), Err(KeystoreError::InvalidMnemonic { .. })));
}

#[test]
fn an_encrypted_key_opens_only_with_its_passphrase() {
    let (_dir, ks) = store();
    let (info, phrase) = ks.add("alice", Backend::File, Some("correct horse"), &mut rng()).unwrap();
    assert_eq!(phrase.split_whitespace().count(), 24);
    assert_eq!(info.address, key_from_mnemonic(&phrase).unwrap().address());

    let unlocked = ks.unlock("alice", Some("correct horse")).unwrap();
    assert_eq!(unlocked.key.address(), info.address);
    assert_eq!(unlocked.mnemonic.as_deref().map(String::as_str), Some(phrase.as_str()));
    assert!(matches!(ks.unlock("alice", Some("wrong")), Err(KeystoreError::WrongPassphrase { .. })));
    assert!(matches!(ks.unlock("alice", None), Err(KeystoreError::PassphraseRequired { .. })));

    // Nothing secret is on disk in the clear.
    let text = std::fs::read_to_string(ks.dir().join("alice.json")).unwrap();
    let words: Vec<&str> = phrase.split_whitespace().collect();
    assert!(!text.contains(&words[..3].join(" ")), "the phrase is not stored in the clear");
    assert!(!text.contains(&hex::encode(unlocked.key.seed())));
    assert!(text.contains(&info.address.to_string()));
}

#[cfg(unix)]
#[test]
fn key_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let (_dir, ks) = store();
    ks.add("bob", Backend::File, Some("pw"), &mut rng()).unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&ks.dir().join("bob.json")), 0o600);
    assert_eq!(mode(ks.dir()), 0o700);
}

#[test]
fn listing_importing_and_deleting() {
    let (_dir, ks) = store();
    let mut r = rng();
    ks.add("zed", Backend::Test, None, &mut r).unwrap();
    let (alice, phrase) = ks.add("alice", Backend::File, Some("pw"), &mut r).unwrap();
    let names: Vec<String> = ks.list().unwrap().into_iter().map(|k| k.name).collect();
    assert_eq!(names, ["alice", "zed"]);
    // The test backend needs no passphrase.
    assert!(ks.unlock("zed", None).is_ok());

    assert!(matches!(ks.add("alice", Backend::Test, None, &mut r), Err(KeystoreError::AlreadyExists { .. })));
    let restored = ks.import_mnemonic("alice-again", &phrase, Backend::Test, None, &mut r).unwrap();
    assert_eq!(restored.address, alice.address);
    let raw = ks.import_secret("raw", [7; 32], Backend::File, Some("pw"), &mut r).unwrap();
    assert!(ks.unlock("raw", Some("pw")).unwrap().mnemonic.is_none());
    assert_eq!(raw.address, tensorgrid_types::SecretKey::from_seed([7; 32]).address());

    for bad in ["", "../etc", "a/b", ".hidden", &"x".repeat(65)] {
        assert!(matches!(ks.show(bad), Err(KeystoreError::InvalidName { .. })), "{bad:?}");
    }
    assert!(matches!(
        ks.add("new", Backend::File, None, &mut r),
        Err(KeystoreError::PassphraseRequired { .. })
    ));
    assert!(matches!(
        ks.add("new", Backend::File, Some(""), &mut r),
        Err(KeystoreError::PassphraseRequired { .. })
    ));
    ks.delete("zed").unwrap();
    assert!(matches!(ks.show("zed"), Err(KeystoreError::NotFound { .. })));
    assert!(matches!(ks.delete("zed"), Err(KeystoreError::NotFound { .. })));
}

#[test]
fn a_tampered_file_is_refused() {
    let (_dir, ks) = store();
    ks.add("carol", Backend::File, Some("pw"), &mut rng()).unwrap();
    let path = ks.dir().join("carol.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let other = tensorgrid_types::SecretKey::from_label("mallory").address().to_string();
    let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json["address"] = serde_json::Value::String(other);
    std::fs::write(&path, serde_json::to_string(&json).unwrap()).unwrap();
    // The address is bound into the ciphertext, so swapping it makes decryption fail.
    assert!(ks.unlock("carol", Some("pw")).is_err());
    std::fs::write(&path, "not json").unwrap();
    assert!(matches!(ks.unlock("carol", Some("pw")), Err(KeystoreError::Corrupt { .. })));
}

#[test]
fn a_key_file_with_cheap_or_absurd_argon2_costs_is_refused_before_any_work() {
    // The attack: a key file swapped for one sealed with trivial argon2 costs makes the passphrase cheap to
    // guess; one asking for terabytes makes opening it take the machine down.
    let (dir, cheap) = store();
    cheap.add("dave", Backend::File, Some("pw"), &mut rng()).unwrap();
    assert!(cheap.unlock("dave", Some("pw")).is_ok(), "a keystore reads what it writes itself");
    let strict = Keystore::open(dir.path.join("keys")).unwrap();
    match strict.unlock("dave", Some("pw")) {
        Err(KeystoreError::Corrupt { reason, .. }) => assert!(reason.contains("below the floor"), "{reason}"),
        Err(e) => panic!("expected a refusal by the floor, got {e}"),
        Ok(_) => panic!("a default keystore opened a key sealed with 256 KiB and 1 pass"),
    }
    let path = cheap.dir().join("dave.json");
    let mut json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let encrypted =
        json.as_object_mut().unwrap().values_mut().find(|v| v.get("kdf_params").is_some()).unwrap();
    encrypted["kdf_params"]["memory_kib"] = serde_json::json!(u32::MAX);
    std::fs::write(&path, serde_json::to_string(&json).unwrap()).unwrap();
    match cheap.unlock("dave", Some("pw")) {
        Err(KeystoreError::Corrupt { reason, .. }) => assert!(reason.contains("above"), "{reason}"),
        other => panic!("expected a refusal by the ceiling, got {:?}", other.map(|_| ())),
    }
}
