//! The binary as a user runs it: exit codes, text and JSON output.

use std::path::PathBuf;
use std::process::Command;

fn tgrid(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tgrid")).args(args).output().expect("tgrid runs")
}

fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/fixtures/akash-sdl")
        .join(name)
        .display()
        .to_string()
}

#[test]
fn deploy_check_maps_a_manifest_and_prints_json() {
    let out = tgrid(&["deploy", "check", "--output", "json", &fixture("AUTOMATIC1111.yaml")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    let group = &json["deployment"]["groups"][0];
    assert_eq!(group["name"], "akash");
    assert_eq!(group["max_price"], "5901639");
    assert_eq!(json["deployment"]["manifest"][0]["services"][0]["image"], "declab/automatic1111:0.1");
    assert_eq!(json["manifest_hash"].as_str().map(str::len), Some(64));
}

#[test]
fn deploy_check_rejects_with_file_line_field_and_exit_code_1() {
    let out = tgrid(&["deploy", "check", &fixture("centrifuge.yaml")]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("centrifuge.yaml:50:17: profiles.compute.centrifuge.resources.memory.size"),
        "{stderr}"
    );
    assert!(stderr.contains("did you mean `16Gi`?"), "{stderr}");

    let out = tgrid(&["deploy", "check", "--output", "json", &fixture("minio.yaml")]);
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    assert_eq!(json["error"]["field"], "services.minio.expose[0].to");
    assert_eq!(json["error"]["line"], 12);

    let out = tgrid(&["deploy", "check", "no-such-file.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read no-such-file.yaml"));
}

#[test]
fn sim_tells_the_story_and_keeps_the_supply() {
    let out = tgrid(&["sim", "--seed", "3"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("job 1 completes"), "{text}");
    assert!(text.contains("escrow overdrawn"), "{text}");
    assert!(text.contains("total supply 10000 TGR (unchanged since genesis)"), "{text}");
    let out = tgrid(&["sim", "--seed", "3", "--output", "json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    assert_eq!(json["total_supply"], "10000000000");
}

fn tgrid_in(
    home: &std::path::Path,
    args: &[&str],
    stdin: &str,
    passphrase: Option<&str>,
) -> std::process::Output {
    use std::io::Write;
    let mut command = Command::new(env!("CARGO_BIN_EXE_tgrid"));
    command.arg("--home").arg(home).args(args).env_remove("TGRID_KEYRING_PASSPHRASE");
    if let Some(p) = passphrase {
        command.env("TGRID_KEYRING_PASSPHRASE", p);
    }
    let mut child = command
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("tgrid runs");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn keys_from_creation_to_recovery() {
    let home = std::env::temp_dir().join(format!("tg-cli-keys-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&home);

    let out = tgrid_in(&home, &["keys", "add", "alice", "--output", "json"], "", Some("hunter2"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let created: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let address = created["key"]["address"].as_str().unwrap().to_string();
    let phrase = created["mnemonic"].as_str().unwrap().to_string();
    assert_eq!(phrase.split_whitespace().count(), 24);
    assert_eq!(created["key"]["backend"], "file");

    // The same phrase recovers the same address (phrase on stdin, passphrase from the environment).
    let out = tgrid_in(
        &home,
        &["keys", "add", "restored", "--recover", "--keyring-backend", "test"],
        &format!("{phrase}\n"),
        None,
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&address));

    let out = tgrid_in(&home, &["keys", "list", "--output", "json"], "", None);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 2);

    let out = tgrid_in(&home, &["keys", "show", "alice", "--address"], "", None);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), address);

    let out = tgrid_in(&home, &["keys", "export", "alice"], "wrong\n", None);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("wrong passphrase for key `alice`"));
    let out = tgrid_in(&home, &["keys", "export", "alice"], "hunter2\n", None);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), phrase);

    let out = tgrid_in(&home, &["keys", "add", "alice", "--keyring-backend", "test"], "", None);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
    let out = tgrid_in(&home, &["keys", "delete", "alice"], "", None);
    assert_eq!(out.status.code(), Some(1), "no confirmation, no deletion");
    let out = tgrid_in(&home, &["keys", "delete", "alice", "--yes"], "", None);
    assert!(out.status.success());
    let out = tgrid_in(&home, &["keys", "show", "alice"], "", None);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no key named `alice`"));
    let _ = std::fs::remove_dir_all(&home);
}

#[test]
fn demo_runs_a_real_chain_a_real_job_a_paid_chat_then_the_market() {
    let out = tgrid(&["--output", "json", "demo"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let chain = &report["chain"];
    assert!(chain["first_transfer"]["height"].as_u64().unwrap() >= 1, "{chain}");
    assert_eq!(chain["burst"]["transfers"], 50);
    assert_eq!(chain["status"]["chain"]["chain_id"], "tg-devnet");
    // A real job on two provider daemons: paid, and its output checked against the revealed result hash.
    let job = &chain["job"];
    assert_eq!(job["output"], "hello from alice's input file", "{job}");
    assert_eq!(job["providers"].as_array().map(Vec::len), Some(2));
    let paid: u128 = job["paid"].as_str().unwrap().parse().unwrap();
    let spent: u128 = job["alice_spent"].as_str().unwrap().parse().unwrap();
    assert!(paid > 0 && spent > paid, "alice paid the providers and a fee: {job}");
    // A chat request through the gateway, answered by the real model and paid from the channel exactly at the
    // devnet's prices (0.1 TGR per million input tokens, 0.4 TGR per million output tokens, rounded up).
    let inference = &chain["inference"];
    assert!(inference["skipped"].is_null(), "the models are missing (scripts/fetch-models): {inference}");
    assert!(inference["answer"].as_str().unwrap().contains("Paris"), "{inference}");
    let (prompt, completion) = (
        inference["usage"]["prompt_tokens"].as_u64().unwrap() as u128,
        inference["usage"]["completion_tokens"].as_u64().unwrap() as u128,
    );
    assert!(prompt > 10 && completion > 0, "{inference}");
    let cost = (100_000 * prompt + 400_000 * completion).div_ceil(1_000_000);
    assert_eq!(inference["cost"].as_str().unwrap().parse::<u128>().unwrap(), cost, "{inference}");
    assert_eq!(inference["redeemed"], inference["cost"], "{inference}");
    assert!(report["market"]["events"].as_array().is_some_and(|e| !e.is_empty()), "{}", report["market"]);
}
