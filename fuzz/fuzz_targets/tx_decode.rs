//! Any bytes: decoding never panics, and whatever decodes is canonical (re-encodes to the same bytes), so a
//! transaction hash names exactly one transaction.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tensorgrid_types::SignedTx;

fuzz_target!(|data: &[u8]| {
    if let Ok(tx) = SignedTx::decode(data) {
        assert_eq!(tx.encode(), data, "decoding accepted a non-canonical encoding");
        let _ = tx.tx.validate();
        let _ = tx.verify();
        let json = serde_json_free_roundtrip(&tx);
        assert!(json);
    }
});

/// The JSON form is exercised by the unit tests; here only the binary form matters, so this just checks the
/// value survives a clone.
fn serde_json_free_roundtrip(tx: &SignedTx) -> bool {
    tx.clone() == *tx
}
