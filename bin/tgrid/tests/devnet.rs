//! The CLI against a real devnet (spawned here): status, balances by key name or address, a transfer waited
//! on until committed, exact arithmetic, and clear errors.

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const TGRID: &str = env!("CARGO_BIN_EXE_tgrid");

struct Devnet(Child);

impl Drop for Devnet {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn tgrid(home: &std::path::Path, node: &str, args: &[&str]) -> Output {
    Command::new(TGRID)
        .arg("--home")
        .arg(home)
        .args(["--node", node, "--output", "json"])
        .args(args)
        .output()
        .expect("tgrid runs")
}

fn json(out: &Output) -> Value {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

fn utgr(value: &Value) -> u128 {
    value.as_str().expect("amounts are strings").parse().expect("an integer")
}

#[test]
fn status_balances_and_a_transfer_against_a_devnet() {
    let dir = tempfile::tempdir().expect("temp dir");
    let home = dir.path().join("devnet");
    let base = 33_000 + (std::process::id() % 1_000) as u16 * 2;
    let node = format!("http://127.0.0.1:{}", base + 1);
    let child = Command::new(TGRID)
        .arg("--home")
        .arg(&home)
        .args(["devnet", "--p2p-port", &base.to_string(), "--rpc-port", &(base + 1).to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("devnet starts");
    let _devnet = Devnet(child);
    let started = Instant::now();
    let status = loop {
        let out = tgrid(&home, &node, &["status"]);
        if out.status.success() {
            let status = json(&out);
            if status["chain"]["height"].as_u64().unwrap_or(0) >= 1 {
                break status;
            }
        }
        assert!(started.elapsed() < Duration::from_secs(60), "the devnet did not start");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(status["chain"]["chain_id"], "tg-devnet");
    assert_eq!(status["validators"], serde_json::json!(["validator-0"]));

    let alice = json(&tgrid(&home, &node, &["account", "balance", "alice"]));
    let bob_address =
        json(&tgrid(&home, &node, &["keys", "show", "bob"]))["address"].as_str().unwrap().to_string();
    let bob = json(&tgrid(&home, &node, &["account", "balance", &bob_address]));
    assert_eq!(utgr(&alice["balance"]), 1_000_000_000_000);
    assert_eq!(utgr(&bob["balance"]), 1_000_000_000_000);

    let sent = json(&tgrid(&home, &node, &["account", "send", "--from", "alice", "bob", "1.5tgr"]));
    let committed = &sent["committed"];
    assert_eq!(committed["receipt"]["outcome"]["status"], "succeeded", "{sent}");
    let fee = utgr(&committed["receipt"]["fee_paid"]);
    let alice_after = json(&tgrid(&home, &node, &["account", "balance", "alice"]));
    let bob_after = json(&tgrid(&home, &node, &["account", "balance", "bob"]));
    assert_eq!(utgr(&bob_after["balance"]), 1_000_000_000_000 + 1_500_000);
    assert_eq!(utgr(&alice_after["balance"]), 1_000_000_000_000 - 1_500_000 - fee);
    assert_eq!(alice_after["nonce"], 1);

    // A deployment from a community SDL file: orders open, a top-up, then closing refunds the escrow exactly.
    let sdl = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/fixtures/akash-sdl/AI-Image-App.yaml");
    let before = utgr(&json(&tgrid(&home, &node, &["account", "balance", "alice"]))["balance"]);
    let created =
        json(&tgrid(&home, &node, &["deploy", "create", sdl, "--from", "alice", "--deposit", "5tgr"]));
    let dseq = created["dseq"].as_u64().expect("dseq");
    let mut fees = utgr(&created["fee"]);
    let orders = json(&tgrid(&home, &node, &["market", "orders"]));
    assert!(orders["items"].as_array().unwrap().iter().any(|o| o["id"]["dseq"] == dseq), "{orders}");
    let shown = json(&tgrid(&home, &node, &["deploy", "show", &dseq.to_string()]));
    assert_eq!(shown["deployment"]["owner"], alice["address"]);
    let listed = json(&tgrid(&home, &node, &["deploy", "list", "alice"]));
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
    let deposited =
        json(&tgrid(&home, &node, &["deploy", "deposit", &dseq.to_string(), "2.5tgr", "--from", "alice"]));
    fees += utgr(&deposited["receipt"]["fee_paid"]);
    let mid = utgr(&json(&tgrid(&home, &node, &["account", "balance", "alice"]))["balance"]);
    assert_eq!(mid, before - 7_500_000 - fees);
    let closed = json(&tgrid(&home, &node, &["deploy", "close", &dseq.to_string(), "--from", "alice"]));
    fees += utgr(&closed["receipt"]["fee_paid"]);
    let after = utgr(&json(&tgrid(&home, &node, &["account", "balance", "alice"]))["balance"]);
    assert_eq!(after, before - fees, "no lease ran, so all 7.5 TGR of escrow comes back");
    let orders = json(&tgrid(&home, &node, &["market", "orders"]));
    assert!(!orders["items"].as_array().unwrap().iter().any(|o| o["id"]["dseq"] == dseq), "{orders}");

    // Clear errors, exit code 1: an unknown key, more than the account holds, a node that is not there.
    let unknown = tgrid(&home, &node, &["account", "send", "--from", "nobody", "bob", "1tgr"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no key `nobody`"));
    let too_much = tgrid(&home, &node, &["account", "send", "--from", "bob", "alice", "2000000tgr"]);
    assert_eq!(too_much.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&too_much.stderr).contains("failed"),
        "{}",
        String::from_utf8_lossy(&too_much.stderr)
    );
    let nowhere = tgrid(&home, "http://127.0.0.1:9", &["status"]);
    assert_eq!(nowhere.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&nowhere.stderr).contains("tgrid devnet"));
}
