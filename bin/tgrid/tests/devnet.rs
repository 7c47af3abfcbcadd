//! The CLI against a real devnet (spawned here): status, balances by key name or address, a transfer waited
//! on until committed, exact arithmetic, and clear errors; then a client's whole journey: new keys, funding,
//! a provider registering and bidding, a lease from an SDL fixture created and closed with the refund checked
//! to the utgr, account history, jobs, config defaults and exit codes.

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
    tgrid_env(home, node, args, &[])
}

/// `tgrid` with JSON output against `node`, never reading the developer's own config file.
fn tgrid_env(home: &std::path::Path, node: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(TGRID);
    command.env("TGRID_CONFIG", home.join("no-config.toml"));
    for (k, v) in env {
        command.env(k, v);
    }
    command
        .arg("--home")
        .arg(home)
        .args(["--node", node, "--output", "json"])
        .args(args)
        .output()
        .expect("tgrid runs")
}

/// Starts `tgrid devnet` with its home in `home` on ports `base` (p2p), `base + 1` (API) and `base + 2` (the
/// built-in provider), and waits for its first block.
fn start_devnet(home: &std::path::Path, base: u16) -> (Devnet, String, Value) {
    start_devnet_with(home, base, &["--provider-port", &(base + 2).to_string()])
}

fn start_devnet_with(home: &std::path::Path, base: u16, extra: &[&str]) -> (Devnet, String, Value) {
    let node = format!("http://127.0.0.1:{}", base + 1);
    let child = Command::new(TGRID)
        .env("TGRID_CONFIG", home.join("no-config.toml"))
        .arg("--home")
        .arg(home)
        .args(["devnet", "--p2p-port", &base.to_string(), "--rpc-port", &(base + 1).to_string()])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("devnet starts");
    let devnet = Devnet(child);
    let started = Instant::now();
    loop {
        let out = tgrid(home, &node, &["status"]);
        if out.status.success() {
            let status = json(&out);
            if status["chain"]["height"].as_u64().unwrap_or(0) >= 1 {
                return (devnet, node, status);
            }
        }
        assert!(started.elapsed() < Duration::from_secs(60), "the devnet did not start");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A port range for this test process (tests in one binary share a pid, so each passes its own `slot`),
/// below the kernel's ephemeral range (32768 and up), where outgoing connections could already hold it.
fn ports(slot: u16) -> u16 {
    12_000 + (std::process::id() % 250) as u16 * 32 + slot * 4
}

fn json(out: &Output) -> Value {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

/// The audit fee on an amount (5 % by default, rounded up), in utgr: a job locks it on its budget and pays it
/// on its results' prices.
fn audit_fee(budget: u128) -> u128 {
    (budget * 500).div_ceil(10_000)
}

/// What each deployment, job and channel locks until its record is removed, a retention period (days) after
/// it closes: the devnet runs the default params, so every test here sees it held.
fn storage_deposit() -> u128 {
    tensorgrid_types::Params::default().storage_deposit.0
}

fn utgr(value: &Value) -> u128 {
    value.as_str().expect("amounts are strings").parse().expect("an integer")
}

#[test]
fn status_balances_and_a_transfer_against_a_devnet() {
    let dir = tempfile::tempdir().expect("temp dir");
    let home = dir.path().join("devnet");
    let (_devnet, node, status) = start_devnet(&home, ports(0));
    assert_eq!(status["chain"]["chain_id"], "tg-devnet");
    assert_eq!(status["validators"], serde_json::json!(["validator-0"]));

    let alice = json(&tgrid(&home, &node, &["account", "balance", "alice"]));
    let bob_address =
        json(&tgrid(&home, &node, &["keys", "show", "bob"]))["address"].as_str().unwrap().to_string();
    let bob = json(&tgrid(&home, &node, &["account", "balance", &bob_address]));
    assert_eq!(utgr(&alice["balance"]), 1_000_000_000_000);
    assert_eq!(utgr(&bob["balance"]), 1_000_000_000_000);

    let sent = json(&tgrid(&home, &node, &["account", "send", "--from", "alice", "bob", "1.5tgr"]));
    let committed = &sent;
    assert_eq!(committed["receipt"]["outcome"]["status"], "succeeded", "{sent}");
    let transfer_fee = utgr(&committed["receipt"]["fee_paid"]);
    let alice_after = json(&tgrid(&home, &node, &["account", "balance", "alice"]));
    let bob_after = json(&tgrid(&home, &node, &["account", "balance", "bob"]));
    assert_eq!(utgr(&bob_after["balance"]), 1_000_000_000_000 + 1_500_000);
    assert_eq!(utgr(&alice_after["balance"]), 1_000_000_000_000 - 1_500_000 - transfer_fee);
    assert_eq!(alice_after["nonce"], 1);
    // A tip buys an earlier place in blocks and is charged on top of the same transfer's fee, exactly.
    let tipped = json(&tgrid(
        &home,
        &node,
        &["account", "send", "--from", "alice", "bob", "1.5tgr", "--tip", "700utgr"],
    ));
    assert_eq!(utgr(&tipped["receipt"]["fee_paid"]), transfer_fee + 700, "{tipped}");

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
    assert_eq!(mid, before - 7_500_000 - fees - storage_deposit());
    let closed = json(&tgrid(&home, &node, &["deploy", "close", &dseq.to_string(), "--from", "alice"]));
    fees += utgr(&closed["receipt"]["fee_paid"]);
    let after = utgr(&json(&tgrid(&home, &node, &["account", "balance", "alice"]))["balance"]);
    assert_eq!(
        after,
        before - fees - storage_deposit(),
        "no lease ran, so all 7.5 TGR of escrow comes back (the storage deposit stays for the retention period)"
    );
    let orders = json(&tgrid(&home, &node, &["market", "orders"]));
    assert!(!orders["items"].as_array().unwrap().iter().any(|o| o["id"]["dseq"] == dseq), "{orders}");

    // Clear errors with documented exit codes: an unknown key (1), more than the account holds (4: the node
    // refuses it before it reaches a block, so it costs nothing), a node that is not there (3).
    let unknown = tgrid(&home, &node, &["account", "send", "--from", "nobody", "bob", "1tgr"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no key `nobody`"));
    let bob_before = utgr(&json(&tgrid(&home, &node, &["account", "balance", "bob"]))["balance"]);
    let too_much = tgrid(&home, &node, &["account", "send", "--from", "bob", "alice", "2000000tgr"]);
    assert_eq!(too_much.status.code(), Some(4));
    assert!(
        String::from_utf8_lossy(&too_much.stderr).contains("does not cover"),
        "{}",
        String::from_utf8_lossy(&too_much.stderr)
    );
    assert_eq!(utgr(&json(&tgrid(&home, &node, &["account", "balance", "bob"]))["balance"]), bob_before);
    let nowhere = tgrid(&home, "http://127.0.0.1:9", &["status"]);
    assert_eq!(nowhere.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&nowhere.stderr).contains("tgrid devnet"));

    // A payment channel from alice to carol (registered as a provider here): vouchers are cumulative, the
    // provider takes exactly what the latest allows, an old one is worth nothing, and closing refunds the rest.
    let n = node.as_str();
    json(&tgrid(
        &home,
        n,
        &["provider", "register", "--from", "carol", "--host-uri", "http://127.0.0.1:1", "--stake", "100tgr"],
    ));
    let offer = dir.path().join("offer.json");
    std::fs::write(
        &offer,
        serde_json::json!({
            "model_hash": blake3::hash(b"model file").to_hex().as_str(), "name": "SmolLM2-135M-Instruct",
            "source_hash": blake3::hash(b"source file").to_hex().as_str(), "quantization": "Q8_0",
            "tokenizer_hash": blake3::hash(b"tokenizer file").to_hex().as_str(),
            "context_length": 8192, "price_input_per_m": "100000", "price_output_per_m": "400000", "throughput_tps": 100,
        })
        .to_string(),
    )
    .unwrap();
    json(&tgrid(&home, n, &["model", "announce", offer.to_str().unwrap(), "--from", "carol"]));
    let models = json(&tgrid(&home, n, &["model", "list"]));
    assert_eq!(models["items"][0]["offer"]["name"], "SmolLM2-135M-Instruct", "{models}");
    let opened =
        json(&tgrid(&home, n, &["channel", "open", "carol", "--deposit", "2tgr", "--from", "alice"]));
    let channel = opened["receipt"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "channel_opened")
        .expect("channel_opened")["channel"]
        .as_u64()
        .unwrap()
        .to_string();
    let carol_before = balance(&home, n, "carol");
    let mut carol_fees = 0;
    for (cumulative, taken) in [("0.3tgr", 300_000u128), ("1tgr", 700_000)] {
        let voucher =
            json(&tgrid(&home, n, &["channel", "voucher", &channel, cumulative, "--from", "alice"]));
        let file = dir.path().join(format!("voucher-{cumulative}.json"));
        std::fs::write(&file, voucher.to_string()).unwrap();
        let redeemed =
            json(&tgrid(&home, n, &["channel", "redeem", file.to_str().unwrap(), "--from", "carol"]));
        carol_fees += fee(&redeemed);
        assert_eq!(event_amount(&redeemed, "voucher_redeemed", "amount"), taken);
    }
    let old = dir.path().join("voucher-0.3tgr.json");
    let stale = tgrid(&home, n, &["channel", "redeem", old.to_str().unwrap(), "--from", "carol"]);
    assert_eq!(stale.status.code(), Some(4), "an old voucher pays nothing new");
    carol_fees += fee_of_latest(&home, n, "carol", "fee_paid", &[]);
    assert_eq!(balance(&home, n, "carol"), carol_before + 1_000_000 - carol_fees);
    let forged = tgrid(&home, n, &["channel", "voucher", &channel, "5tgr", "--from", "bob"]);
    assert_eq!(forged.status.code(), Some(1), "only the client signs vouchers");
    let alice_before = balance(&home, n, "alice");
    let closed = json(&tgrid(&home, n, &["channel", "close", &channel, "--from", "carol"]));
    assert_eq!(event_amount(&closed, "channel_closed", "refunded"), 1_000_000);
    assert_eq!(balance(&home, n, "alice"), alice_before + 1_000_000);
    let shown = json(&tgrid(&home, n, &["channel", "show", &channel]));
    assert_eq!(shown["state"]["state"], "closed");
}

/// The fee a committed transaction's JSON record says it paid.
fn fee(record: &Value) -> u128 {
    utgr(&record["receipt"]["fee_paid"])
}

fn balance(home: &std::path::Path, node: &str, who: &str) -> u128 {
    utgr(&json(&tgrid(home, node, &["account", "balance", who]))["balance"])
}

/// The amount of the first event of `kind` in a transaction record.
fn event_amount(record: &Value, kind: &str, field: &str) -> u128 {
    let events = record["receipt"]["events"].as_array().expect("events");
    let event = events.iter().find(|e| e["kind"] == kind).unwrap_or_else(|| panic!("no {kind} in {record}"));
    utgr(&event[field])
}

/// The fee of the newest transaction in `who`'s history that `who` signed and that emitted an event of `kind`.
fn fee_of_latest(home: &std::path::Path, node: &str, who: &str, kind: &str, env: &[(&str, &str)]) -> u128 {
    let history = json(&tgrid_env(home, node, &["account", "history", who, "--limit", "50"], env));
    let address = json(&tgrid(home, node, &["keys", "show", who]))["address"].clone();
    let record = history["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| {
            r["receipt"]["signer"] == address
                && r["receipt"]["events"].as_array().unwrap().iter().any(|e| e["kind"] == kind)
        })
        .unwrap_or_else(|| panic!("no {kind} signed by {who} in {history}"));
    fee(record)
}

fn fails_with(out: &Output, code: i32, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{stderr}");
    assert!(stderr.contains(needle), "expected `{needle}` in: {stderr}");
}

#[test]
fn a_clients_whole_journey_keys_provider_bid_lease_refund_history_jobs() {
    let dir = tempfile::tempdir().expect("temp dir");
    let home = dir.path().join("devnet");
    let provider_port = (ports(1) + 2).to_string();
    let (_devnet, node, _) = start_devnet_with(
        &home,
        ports(1),
        &["--provider-port", &provider_port, "--job-content-window", "10s"],
    );
    let n = node.as_str();
    // The tenant's key is encrypted at rest; the passphrase comes from the environment, as in scripts.
    let pass = [("TGRID_KEYRING_PASSPHRASE", "correct horse battery staple")];
    let tenant_key = json(&tgrid_env(&home, n, &["keys", "add", "tenant"], &pass));
    assert_eq!(tenant_key["key"]["backend"], "file");
    assert_eq!(tenant_key["mnemonic"].as_str().unwrap().split(' ').count(), 24);
    let tenant = tenant_key["key"]["address"].as_str().unwrap().to_string();
    let provider_key = json(&tgrid(&home, n, &["keys", "add", "gpu-host", "--keyring-backend", "test"]));
    let provider = provider_key["key"]["address"].as_str().unwrap().to_string();
    let t = |args: &[&str]| tgrid_env(&home, n, args, &pass);

    // Funding from a demo account.
    json(&tgrid(&home, n, &["account", "send", "--from", "alice", "tenant", "1000tgr"]));
    json(&tgrid(&home, n, &["account", "send", "--from", "alice", "gpu-host", "1000tgr"]));
    assert_eq!(balance(&home, n, &tenant), 1_000_000_000);

    // The provider registers with stake and attributes.
    let registered = json(&tgrid(
        &home,
        n,
        &[
            "provider",
            "register",
            "--from",
            "gpu-host",
            "--host-uri",
            "https://gpu-host.example.org:8443",
            "--stake",
            "100tgr",
            "--attribute",
            "region=us-west",
            "--email",
            "ops@example.org",
        ],
    ));
    let mut provider_fees = fee(&registered);
    let status = json(&tgrid(&home, n, &["provider", "status", "gpu-host"]));
    assert_eq!(status["provider"]["status"], "active");
    assert_eq!(utgr(&status["provider"]["stake"]), 100_000_000);
    assert_eq!(status["live"], true);
    assert_eq!(status["provider"]["attributes"][0]["key"], "region");

    // The tenant deploys a community SDL file; its order opens with the mapped price ceiling.
    let sdl = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/fixtures/akash-sdl/AI-Image-App.yaml");
    let created = json(&t(&["deploy", "create", sdl, "--from", "tenant", "--deposit", "50tgr"]));
    let dseq = created["dseq"].as_u64().expect("dseq");
    let mut tenant_fees = utgr(&created["fee"]);
    let order = format!("{dseq}/1");
    let orders = json(&tgrid(&home, n, &["market", "orders"]));
    let open = orders["items"].as_array().unwrap().iter().find(|o| o["id"]["dseq"] == dseq).expect("order");
    let max_price = utgr(&open["spec"]["max_price"]);
    assert_eq!(max_price, 59_016_393, "AI-Image-App's pricing mapped to utgr per hour");

    // The provider bids just under the ceiling; the tenant sees the bid and accepts it.
    let price = max_price - 16_393;
    let bid = json(&tgrid(
        &home,
        n,
        &["market", "bid", &order, "--price", &format!("{price}utgr"), "--from", "gpu-host"],
    ));
    provider_fees += fee(&bid);
    let bids = json(&tgrid(&home, n, &["market", "bids", &order]));
    assert_eq!(bids[0]["id"]["provider"], provider.as_str());
    assert_eq!(bids[0]["state"]["state"], "open");
    let bid_id = format!("{order}/{provider}");
    let leased = json(&t(&["lease", "create", "--bid", &bid_id, "--from", "tenant"]));
    tenant_fees += fee(&leased);
    std::thread::sleep(Duration::from_millis(1500));
    let running = json(&t(&["lease", "status", &order]));
    assert_eq!(running["lease"]["state"]["state"], "active");
    assert!(utgr(&running["unsettled"]) > 0, "a running lease accrues: {running}");
    let listed = json(&t(&["lease", "list", "--from", "tenant"]));
    assert_eq!(listed.as_array().unwrap().len(), 1);

    // Closing the lease pays the provider exactly ⌊price × duration / 1 h⌋; with its only group done the
    // deployment closes too and refunds the rest of the escrow; nobody gains or loses a utgr beyond that and
    // the fees.
    let closed = json(&t(&["lease", "close", &order, "--from", "tenant"]));
    tenant_fees += fee(&closed);
    let lease = json(&t(&["lease", "status", &bid_id]))["lease"].clone();
    assert_eq!(lease["state"]["state"], "closed");
    let started = lease["started_at"].as_u64().unwrap();
    let ended = lease["state"]["at"].as_u64().unwrap();
    let paid = utgr(&lease["paid"]);
    assert_eq!(paid, price * u128::from(ended - started) / 3_600_000);
    assert!(paid > 0);
    assert_eq!(event_amount(&closed, "lease_paid", "amount"), paid);
    assert_eq!(event_amount(&closed, "deployment_closed", "refunded"), 50_000_000 - paid);
    // Closing it again is a transaction that commits and fails (exit 4): it pays its fee and changes nothing
    // else. Its record is the newest in the tenant's history.
    fails_with(&t(&["deploy", "close", &dseq.to_string(), "--from", "tenant"]), 4, "is closed");
    let history = json(&t(&["account", "history", "tenant"]));
    let items = history["items"].as_array().unwrap();
    assert_eq!(items[0]["receipt"]["outcome"]["status"], "failed", "{history}");
    tenant_fees += fee(&items[0]);
    assert_eq!(balance(&home, n, &tenant), 1_000_000_000 - tenant_fees - paid - storage_deposit());
    // The provider got the lease's pay and its bid deposit back; its stake stays bonded.
    assert_eq!(balance(&home, n, &provider), 1_000_000_000 - 100_000_000 - provider_fees + paid);
    let withdrawn = json(&tgrid(&home, n, &["provider", "withdraw", "--from", "gpu-host"]));
    assert_eq!(utgr(&withdrawn["paid"]), 0, "nothing left to collect once the lease closed");

    // History: newest first, paged, naming the transfer in as well as what the tenant signed.
    assert_eq!(items.len(), 5, "{history}");
    assert_eq!(items[1]["hash"], closed["hash"]);
    assert_eq!(items[4]["receipt"]["signer"], json(&tgrid(&home, n, &["keys", "show", "alice"]))["address"]);
    let first = json(&t(&["account", "history", "tenant", "--limit", "2"]));
    let cursor = first["next"].as_str().expect("a next cursor").to_string();
    let second = json(&t(&["account", "history", "tenant", "--limit", "2", "--after", &cursor]));
    assert_eq!(second["items"][0]["hash"], items[2]["hash"]);
    let provider_history = json(&tgrid(&home, n, &["account", "history", "gpu-host"]));
    let kinds: Vec<&str> = provider_history["items"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["receipt"]["events"].as_array().unwrap())
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert!(kinds.contains(&"lease_paid"), "the tenant's close names the provider: {kinds:?}");

    // A second provider daemon, as an operator runs it: `tgrid provider run --config provider.toml` with the
    // gpu-host key. It updates its registration to its real API address.
    let provider_port = ports(1) + 3;
    let provider_config = dir.path().join("provider.toml");
    std::fs::write(
        &provider_config,
        format!(
            "key = \"gpu-host\"\nnode = \"{n}\"\nlisten = \"127.0.0.1:{provider_port}\"\n\
             host_uri = \"http://127.0.0.1:{provider_port}\"\nstake = \"100tgr\"\nwork_dir = \"{}\"\n\
             [limits]\nmax_jobs = 2\n",
            dir.path().join("gpu-host-work").display()
        ),
    )
    .unwrap();
    let _daemon = provider_daemon(&home, &provider_config, &dir.path().join("gpu-host.log"));
    let started = Instant::now();
    while json(&tgrid(&home, n, &["provider", "status", "gpu-host"]))["provider"]["host_uri"]
        != format!("http://127.0.0.1:{provider_port}").as_str()
    {
        assert!(started.elapsed() < Duration::from_secs(60), "the daemon did not update its registration");
        std::thread::sleep(Duration::from_millis(200));
    }

    // A real job on two providers (the devnet's built-in one and gpu-host): both bid, both are assigned, the
    // client uploads the module and input to each, each runs it in its WASM sandbox, commits and reveals the
    // same result hash, and both are paid their bids; the rest of the budget comes back.
    let module = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/wasm/copy.wat");
    let input = dir.path().join("input.txt");
    std::fs::write(&input, b"hello from the tenant").unwrap();
    let before = balance(&home, n, &tenant);
    let done = json(&t(&[
        "job",
        "submit",
        module,
        "--input",
        input.to_str().unwrap(),
        "--budget",
        "2tgr",
        "-k",
        "2",
        "--bid-window",
        "3s",
        "--reveal-window",
        "4s",
        "--wait",
        "--timeout",
        "120s",
        "--from",
        "tenant",
    ]));
    assert_eq!(done["state"]["state"], "completed", "{done}");
    let job_id = done["id"].as_u64().unwrap().to_string();
    let slots = done["slots"].as_array().unwrap();
    assert_eq!(slots.len(), 2);
    assert_eq!(slots[0]["result"], slots[1]["result"], "two providers, one result");
    let prices: u128 = slots.iter().map(|s| utgr(&s["price"])).sum();
    assert_eq!(utgr(&done["paid"]), prices);
    let submit_fee = fee_of_latest(&home, n, "tenant", "job_submitted", &pass);
    assert_eq!(
        balance(&home, n, &tenant),
        before - submit_fee - prices - storage_deposit() - audit_fee(prices),
        "paid the bids and the audit fee on them, got the rest back"
    );
    let outputs = dir.path().join("outputs");
    let result =
        json(&t(&["job", "result", &job_id, "--download", outputs.to_str().unwrap(), "--from", "tenant"]));
    assert_eq!(result["agreed"], true);
    assert_eq!(std::fs::read(outputs.join("out/result.txt")).unwrap(), b"hello from the tenant");
    assert_eq!(std::fs::read(outputs.join("stdout")).unwrap(), b"hello\n");

    // A job that runs out of fuel: a result like any other, the same on both providers, and paid.
    let spin = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/wasm/spin.wat");
    let out_of_fuel = json(&t(&[
        "job",
        "submit",
        spin,
        "--budget",
        "1tgr",
        "-k",
        "2",
        "--fuel",
        "5000000",
        "--bid-window",
        "3s",
        "--reveal-window",
        "4s",
        "--wait",
        "--timeout",
        "120s",
        "--from",
        "tenant",
    ]));
    assert_eq!(out_of_fuel["state"]["state"], "completed", "{out_of_fuel}");
    let spin_id = out_of_fuel["id"].as_u64().unwrap().to_string();
    let fuel_dir = dir.path().join("fuel");
    let fuel_result =
        json(&t(&["job", "result", &spin_id, "--download", fuel_dir.to_str().unwrap(), "--from", "tenant"]));
    assert_eq!(fuel_result["outputs"]["exit"]["exit"], "out_of_fuel");
    assert!(utgr(&out_of_fuel["paid"]) > 0, "running out of fuel is paid");

    // A job with more redundancy than there are providers fails when its window closes and the whole budget
    // comes back; a job cancelled while bidding is refunded too.
    let before = balance(&home, n, &tenant);
    let failed = json(&t(&[
        "job",
        "submit",
        module,
        "--input",
        input.to_str().unwrap(),
        "--budget",
        "3tgr",
        "-k",
        "3",
        "--bid-window",
        "2s",
        "--wait",
        "--timeout",
        "60s",
        "--from",
        "tenant",
    ]));
    assert_eq!(failed["state"]["state"], "failed", "{failed}");
    assert_eq!(failed["state"]["reason"]["not_enough_bids"]["needed"], 3);
    assert_eq!(failed["state"]["reason"]["not_enough_bids"]["got"], 2);
    assert_eq!(failed["spec"]["inputs"][0], blake3::hash(b"hello from the tenant").to_hex().as_str());
    let failed_id = failed["id"].as_u64().unwrap().to_string();
    let submit_fee = fee_of_latest(&home, n, "tenant", "job_submitted", &pass);
    assert_eq!(
        balance(&home, n, &tenant),
        before - submit_fee - storage_deposit(),
        "the budget came back whole"
    );
    fails_with(&t(&["job", "result", &failed_id]), 1, "no revealed result");

    // A client that wins two providers and never uploads the module and input, hoping their deposits are
    // forfeited to it: neither provider confirms the content, both slots lapse at the content deadline, the
    // job fails as "content unavailable", and the client gets its budget back and not a utgr more.
    // (The input is new: providers that already hold a job's content from earlier may confirm at once.)
    let never_sent = dir.path().join("never-sent.txt");
    std::fs::write(&never_sent, b"the providers never see this").unwrap();
    let before = balance(&home, n, &tenant);
    let withheld = json(&t(&[
        "job",
        "submit",
        module,
        "--input",
        never_sent.to_str().unwrap(),
        "--budget",
        "2tgr",
        "-k",
        "2",
        "--bid-window",
        "2s",
        "--from",
        "tenant",
    ]));
    let withheld_id = withheld["job"].as_u64().unwrap().to_string();
    let started = std::time::Instant::now();
    let lapsed = loop {
        let job = json(&t(&["job", "status", &withheld_id]));
        if job["state"]["state"] == "failed" {
            break job;
        }
        assert!(started.elapsed() < Duration::from_secs(90), "the job did not lapse: {job}");
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(lapsed["state"]["reason"], "content_unavailable", "{lapsed}");
    let slots = lapsed["slots"].as_array().unwrap();
    assert_eq!(slots.len(), 2, "{lapsed}");
    assert!(slots.iter().all(|s| s["state"] == "content_unavailable"), "{lapsed}");
    assert_eq!(
        balance(&home, n, &tenant),
        before - utgr(&withheld["fee"]) - storage_deposit(),
        "no deposit went to the client"
    );

    // A runtime no provider has: both decline, say why, and `tgrid provider status` shows it.
    let before = balance(&home, n, &tenant);
    let submitted = json(&t(&[
        "job",
        "submit",
        module,
        "--runtime",
        "wasi-p9",
        "--budget",
        "1tgr",
        "--bid-window",
        "60s",
        "--from",
        "tenant",
    ]));
    let second_job = submitted["job"].as_u64().unwrap().to_string();
    assert_eq!(json(&t(&["job", "status", &second_job]))["state"]["state"], "bidding");
    let cancelled = json(&t(&["job", "cancel", &second_job, "--from", "tenant"]));
    assert_eq!(event_amount(&cancelled, "job_cancelled", "refunded"), 1_000_000 + audit_fee(1_000_000));
    assert_eq!(
        balance(&home, n, &tenant),
        before - utgr(&submitted["fee"]) - fee(&cancelled) - storage_deposit()
    );

    let status = json(&tgrid(&home, n, &["provider", "status", "gpu-host"]));
    let reasons = status["no_bid_reasons"].to_string();
    assert!(reasons.contains("wasi-p9"), "{status}");

    // Exit codes: 5 not found, 4 refused by the node or the provider, or failed on chain, 1 a bad invocation.
    fails_with(&t(&["deploy", "show", "424242"]), 5, "no deployment 424242");
    fails_with(&t(&["job", "status", "424242"]), 5, "no job 424242");
    fails_with(&t(&["lease", "close", &bid_id, "--from", "tenant"]), 4, "failed");
    // The provider's API answers only the lease's owner: alice's signature gets 403 (exit 4).
    fails_with(&tgrid(&home, n, &["lease", "logs", &bid_id, "--from", "alice"]), 4, "not yours");
    fails_with(
        &t(&["account", "send", "--from", "tenant", "--chain-id", "tg-mainnet", "alice", "1tgr"]),
        4,
        "serves chain `tg-devnet`",
    );
    fails_with(&t(&["account", "send", "alice", "1tgr"]), 1, "--from KEY");

    // Defaults from a config file: the signing key and node come from it when no flag says otherwise.
    let config = dir.path().join("config.toml");
    let config = config.to_str().unwrap();
    let run = |args: &[&str]| {
        Command::new(TGRID)
            .args(["--config-file", config, "--home"])
            .arg(&home)
            .args(args)
            .output()
            .expect("tgrid runs")
    };
    assert!(run(&["config", "set", "from", "tenant"]).status.success());
    assert!(run(&["config", "set", "node", n]).status.success());
    assert!(run(&["config", "set", "output", "json"]).status.success());
    let effective = json(&run(&["config", "show"]));
    assert_eq!(effective["effective"]["from"], "tenant");
    assert_eq!(json(&run(&["account", "balance"]))["address"], tenant.as_str());
    fails_with(&run(&["config", "set", "nod", "x"]), 1, "no config key `nod`");
    std::fs::write(config, "nodes = 1\n").unwrap();
    fails_with(&run(&["status"]), 1, "unknown field `nodes`");

    let completions = Command::new(TGRID).args(["completions", "bash"]).output().unwrap();
    assert!(completions.status.success());
    assert!(String::from_utf8_lossy(&completions.stdout).contains("tgrid__subcmd__lease__subcmd__create"));
}

/// `tgrid provider run` for `key`, logging to `log`.
fn provider_daemon(home: &std::path::Path, config: &std::path::Path, log: &std::path::Path) -> Devnet {
    let child = Command::new(TGRID)
        .env("TGRID_CONFIG", home.join("no-config.toml"))
        .arg("--home")
        .arg(home)
        .args(["provider", "run", "--config"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("the provider daemon starts");
    Devnet(child)
}

fn http_get(addr: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    stream.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut body = String::new();
    stream.read_to_string(&mut body).ok()?;
    Some(body)
}

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().expect("docker runs");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Polls `check` every 200 ms until it holds, failing with `what` after `limit`.
fn eventually(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < limit, "{what} did not happen within {limit:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_container_lease_from_sdl_runs_survives_a_provider_restart_and_is_removed_on_close() {
    if std::env::var_os("TGRID_SKIP_DOCKER").is_some() {
        return;
    }
    let image = Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/images/build-busybox.sh"))
        .output()
        .expect("bash runs");
    assert!(image.status.success(), "building the test image: {}", String::from_utf8_lossy(&image.stderr));
    let dir = tempfile::tempdir().expect("temp dir");
    let home = dir.path().join("devnet");
    let base = ports(2);
    // Short heartbeats, so that a dead provider's lease closes within the test.
    let (_devnet, node, _) = start_devnet_with(
        &home,
        base,
        &["--no-provider", "--heartbeat-interval", "1s", "--heartbeat-grace", "8s"],
    );
    let n = node.as_str();

    // A provider operator's daemon with Docker, publishing ports on loopback.
    json(&tgrid(&home, n, &["keys", "add", "docker-host", "--keyring-backend", "test"]));
    json(&tgrid(&home, n, &["account", "send", "--from", "alice", "docker-host", "1000tgr"]));
    let port = base + 3;
    let config = dir.path().join("provider.toml");
    std::fs::write(
        &config,
        format!(
            "key = \"docker-host\"\nnode = \"{n}\"\nlisten = \"127.0.0.1:{port}\"\nhost_uri = \"http://127.0.0.1:{port}\"\n\
             stake = \"100tgr\"\nwork_dir = \"{}\"\nattributes = {{ region = \"devnet\" }}\n[limits]\npublish_ip = \"127.0.0.1\"\nmanifest_timeout = \"4s\"\n",
            dir.path().join("work").display()
        ),
    )
    .unwrap();
    let log = dir.path().join("provider.log");
    let mut daemon = provider_daemon(&home, &config, &log);
    eventually("the provider's registration", Duration::from_secs(60), || {
        tgrid(&home, n, &["provider", "status", "docker-host"]).status.success()
    });

    // The tenant deploys; the daemon's bid engine bids on the order by itself.
    let sdl = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/sdl/busybox-web.yaml");
    let alice_before = balance(&home, n, "alice");
    let created = json(&tgrid(&home, n, &["deploy", "create", sdl, "--from", "alice", "--deposit", "20tgr"]));
    let dseq = created["dseq"].as_u64().unwrap();
    let mut fees = utgr(&created["fee"]);
    let order = format!("{dseq}/1");
    let mut bids = Value::Null;
    eventually("a bid from the daemon", Duration::from_secs(30), || {
        bids = json(&tgrid(&home, n, &["market", "bids", &order]));
        bids.as_array().is_some_and(|b| !b.is_empty())
    });
    let provider = bids[0]["id"]["provider"].as_str().unwrap().to_string();
    let price = utgr(&bids[0]["price"]);
    let bid = format!("{order}/{provider}");

    // A network of this lease's name left behind (as a provider that crashed mid-start leaves it) does not
    // stop the lease from starting.
    docker(&["network", "create", &format!("tg-{dseq}-1")]);

    // The tenant accepts the bid, then sends a manifest: another deployment's is refused (its hash is not
    // the one the deployment was created with), the right one starts both services.
    let accepted = json(&tgrid(&home, n, &["lease", "create", "--bid", &bid, "--from", "alice"]));
    fees += fee(&accepted);
    let other = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/fixtures/akash-sdl/AI-Image-App.yaml");
    fails_with(
        &tgrid(&home, n, &["lease", "send-manifest", &order, other, "--from", "alice"]),
        4,
        "manifest's hash",
    );
    let leased = json(&tgrid(&home, n, &["lease", "send-manifest", &order, sdl, "--from", "alice"]));
    assert_eq!(leased["state"]["state"], "running", "{leased}");
    let web = leased["services"].as_array().unwrap().iter().find(|s| s["name"] == "web").unwrap().clone();
    assert_eq!(web["endpoints"][0][0], 8080);
    let endpoint = web["endpoints"][0][1].as_str().unwrap().to_string();
    let mut page = String::new();
    eventually("the web service answering", Duration::from_secs(20), || {
        page = http_get(&endpoint).unwrap_or_default();
        page.contains("200")
    });
    assert!(page.contains("hello from a tensorgrid lease"), "{page}");
    let container = format!("tg-{dseq}-1-web-0");
    assert_eq!(
        docker(&["inspect", "-f", "{{.HostConfig.NanoCpus}} {{.HostConfig.Memory}}", &container]),
        "500000000 67108864"
    );
    // What a tenant's process may do from inside: it can never gain privileges (no-new-privileges), and of
    // Docker's default capabilities it keeps only CHOWN, DAC_OVERRIDE, FOWNER, FSETID, KILL, SETGID, SETUID and
    // NET_BIND_SERVICE (bits 0, 1, 3-7 and 10): no raw sockets, device nodes or chroot.
    let status = docker(&["exec", &container, "/bin/busybox", "cat", "/proc/1/status"]);
    assert!(status.lines().any(|l| l.split_whitespace().eq(["NoNewPrivs:", "1"])), "{status}");
    let effective = status.lines().find_map(|l| l.strip_prefix("CapEff:")).map(str::trim);
    assert_eq!(effective, Some("00000000000004fb"), "{status}");
    eventually("worker output in the lease's logs", Duration::from_secs(10), || {
        json(&tgrid(&home, n, &["lease", "logs", &order, "--from", "alice"]))["logs"]
            .as_str()
            .is_some_and(|l| l.contains(&format!("[tg-{dseq}-1-worker-0] worker tick")))
    });
    // Someone else's key gets nothing from the provider.
    json(&tgrid(&home, n, &["keys", "show", "bob"]));
    let stranger = tgrid(&home, n, &["lease", "logs", &bid, "--from", "bob"]);
    assert_eq!(stranger.status.code(), Some(4), "{}", String::from_utf8_lossy(&stranger.stderr));
    assert!(String::from_utf8_lossy(&stranger.stderr).contains("not yours"));

    // The attack: bob creates a deployment priced for one web instance whose manifest (hashed into the
    // deployment, so it is bob's own) runs a thousand. The provider refuses it before starting anything.
    let mut greedy: tensorgrid_types::manifest::MappedDeployment = serde_json::from_value(
        json(&tgrid(&home, n, &["deploy", "check", "--output", "json", sdl]))["deployment"].clone(),
    )
    .unwrap();
    greedy.manifest[0].services.retain(|s| s.name == "web");
    greedy.manifest[0].services[0].count = 1_000;
    let web_profile = greedy.manifest[0].services[0].resources.clone();
    greedy.groups[0].resources.retain(|u| u.resources == web_profile);
    greedy.groups[0].resources[0].count = 1;
    let keys = tensorgrid_client::Keystore::open(home.join("keys")).unwrap();
    let bob = keys.unlock("bob", None).unwrap().key;
    let rpc = tensorgrid_client::RpcClient::new(n);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let msg = tensorgrid_types::Msg::CreateDeployment {
        groups: greedy.groups.clone(),
        deposit: tensorgrid_types::Amount::tgr(10),
        manifest_hash: greedy.manifest_hash(),
    };
    let created = runtime.block_on(rpc.execute(&bob, msg, tensorgrid_types::Amount::tgr(1))).unwrap();
    let greedy_dseq = created
        .receipt
        .events
        .iter()
        .find_map(|e| match e {
            tensorgrid_types::Event::DeploymentCreated { dseq, .. } => Some(*dseq),
            _ => None,
        })
        .unwrap();
    let greedy_order = format!("{greedy_dseq}/1");
    eventually("a bid on the greedy order", Duration::from_secs(30), || {
        json(&tgrid(&home, n, &["market", "bids", &greedy_order])).as_array().is_some_and(|b| !b.is_empty())
    });
    json(&tgrid(
        &home,
        n,
        &["lease", "create", "--bid", &format!("{greedy_order}/{provider}"), "--from", "bob"],
    ));
    let lease =
        tensorgrid_types::market::OrderId { dseq: greedy_dseq, gseq: 1 }.bid(provider.parse().unwrap());
    let to_provider = tensorgrid_client::ProviderClient::new(format!("http://127.0.0.1:{port}"), bob);
    let refused = runtime.block_on(to_provider.send_manifest(&lease, &greedy)).unwrap_err();
    assert_eq!(refused.code(), Some("exceeds_group"), "{refused}");
    assert!(refused.to_string().contains("1000"), "{refused}");
    assert!(
        docker(&["ps", "-aq", "--filter", &format!("name=tg-{greedy_dseq}-")]).is_empty(),
        "nothing started"
    );
    json(&tgrid(&home, n, &["deploy", "close", &greedy_dseq.to_string(), "--from", "bob"]));

    // The daemon dies hard; the containers keep running; a new daemon adopts the lease.
    let _ = daemon.0.kill();
    let _ = daemon.0.wait();
    assert_eq!(docker(&["inspect", "-f", "{{.State.Running}}", &container]), "true");
    assert!(http_get(&endpoint).is_some_and(|p| p.contains("hello from a tensorgrid lease")));
    daemon = provider_daemon(&home, &config, &log);
    eventually("the restarted daemon reporting the lease running", Duration::from_secs(60), || {
        let status = tgrid(&home, n, &["lease", "status", &order, "--from", "alice"]);
        status.status.success() && json(&status)["workload"]["state"]["state"] == "running"
    });
    assert_eq!(
        docker(&["inspect", "-f", "{{.State.Running}}", &container]),
        "true",
        "adopted, not restarted"
    );

    // Closing the lease pays for exactly the time it ran, removes the containers and the network, and refunds
    // the rest of the escrow.
    let closed = json(&tgrid(&home, n, &["lease", "close", &order, "--from", "alice"]));
    fees += fee(&closed);
    let lease = json(&tgrid(&home, n, &["lease", "status", &bid]))["lease"].clone();
    let paid = utgr(&lease["paid"]);
    let ran = lease["state"]["at"].as_u64().unwrap() - lease["started_at"].as_u64().unwrap();
    assert_eq!(paid, price * u128::from(ran) / 3_600_000);
    assert_eq!(event_amount(&closed, "deployment_closed", "refunded"), 20_000_000 - paid);
    assert_eq!(balance(&home, n, "alice"), alice_before - fees - paid - storage_deposit());
    eventually("the lease's containers removed", Duration::from_secs(20), || {
        docker(&["ps", "-aq", "-f", &format!("label=tensorgrid.lease={dseq}-1")]).is_empty()
    });
    assert!(docker(&["network", "ls", "-q", "-f", &format!("name=tg-{dseq}-1")]).is_empty());

    // A provider that dies for good: its lease stops accruing at its last heartbeat plus the grace, the chain
    // closes it, and the tenant gets back everything the provider did not serve. When the daemon comes back,
    // it removes the workloads of the lease the chain closed.
    let created = json(&tgrid(&home, n, &["deploy", "create", sdl, "--from", "alice", "--deposit", "20tgr"]));
    let dseq = created["dseq"].as_u64().unwrap();
    let order = format!("{dseq}/1");
    eventually("a bid on the second order", Duration::from_secs(30), || {
        json(&tgrid(&home, n, &["market", "bids", &order])).as_array().is_some_and(|b| !b.is_empty())
    });
    let bid = format!("{order}/{provider}");
    let leased =
        json(&tgrid(&home, n, &["lease", "create", "--bid", &bid, "--manifest", sdl, "--from", "alice"]));
    assert_eq!(leased["workload"]["state"]["state"], "running", "{leased}");
    let _ = daemon.0.kill();
    let _ = daemon.0.wait();
    let mut lease = Value::Null;
    eventually("the chain closing the dead provider's lease", Duration::from_secs(60), || {
        lease = json(&tgrid(&home, n, &["lease", "status", &bid]))["lease"].clone();
        lease["state"]["state"] == "closed"
    });
    assert_eq!(lease["state"]["reason"], "provider_unresponsive", "{lease}");
    let status = json(&tgrid(&home, n, &["provider", "status", &provider]));
    let last_heartbeat = status["provider"]["last_heartbeat"].as_u64().unwrap();
    let settled_to = lease["settled_to"].as_u64().unwrap();
    assert_eq!(settled_to, last_heartbeat + 8_000, "accrual stops at the last heartbeat plus the grace");
    let served = settled_to - lease["started_at"].as_u64().unwrap();
    let paid = utgr(&lease["paid"]);
    assert_eq!(paid, price * u128::from(served) / 3_600_000);
    let shown = json(&tgrid(&home, n, &["deploy", "show", &dseq.to_string()]));
    assert_eq!(utgr(&shown["deployment"]["escrow"]["refunded"]), 20_000_000 - paid, "{shown}");
    let container = format!("tg-{dseq}-1-web-0");
    assert_eq!(docker(&["inspect", "-f", "{{.State.Running}}", &container]), "true", "nobody removed it yet");
    let daemon = provider_daemon(&home, &config, &log);
    eventually(
        "the restarted daemon removing the closed lease's containers",
        Duration::from_secs(60),
        || docker(&["ps", "-aq", "-f", &format!("label=tensorgrid.lease={dseq}-1")]).is_empty(),
    );
    drop(daemon);
}

/// The open models `scripts/fetch-models` puts in place.
fn models_dir() -> std::path::PathBuf {
    let dir = std::env::var_os("TGRID_MODELS_DIR").map(std::path::PathBuf::from).unwrap_or_else(|| {
        let cache = std::env::var_os("XDG_CACHE_HOME").map(std::path::PathBuf::from).unwrap_or_else(|| {
            std::path::PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache")
        });
        cache.join("tensorgrid/models")
    });
    assert!(
        dir.join("SmolLM2-135M-Instruct.Q4_1.gguf").exists(),
        "{} lacks the models: run scripts/fetch-models",
        dir.display()
    );
    dir
}

/// A Python with the official `openai` package (scripts/test makes one).
fn python() -> std::path::PathBuf {
    let python = std::env::var_os("TGRID_PYTHON").map(std::path::PathBuf::from).unwrap_or_else(|| {
        std::path::PathBuf::from(std::env::var_os("HOME").expect("HOME"))
            .join(".cache/tensorgrid/venv/bin/python")
    });
    assert!(
        python.exists(),
        "{} is missing: run scripts/test, which creates it with the openai package",
        python.display()
    );
    python
}

/// What a response costs at an offer's prices: the ledger's own rule (per million tokens, rounded up).
fn cost(offer: &Value, prompt: u64, completion: u64) -> u128 {
    let input = utgr(&offer["price_input_per_m"]);
    let output = utgr(&offer["price_output_per_m"]);
    (input * u128::from(prompt) + output * u128::from(completion)).div_ceil(1_000_000).max(1)
}

#[test]
fn the_official_openai_client_chats_streams_embeds_and_pays_exactly_its_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("devnet");
    let models = models_dir();
    let base = ports(3);
    let (_devnet, node, _) = start_devnet_with(
        &home,
        base,
        &[
            "--provider-port",
            &(base + 2).to_string(),
            "--gateway-port",
            &(base + 3).to_string(),
            "--model",
            models.join("SmolLM2-135M-Instruct.Q4_1.gguf").to_str().unwrap(),
            "--embeddings",
            models.join("all-MiniLM-L6-v2").to_str().unwrap(),
        ],
    );
    // The devnet writes where its gateway is and the API key once the models are loaded and offered.
    let access_path = home.join("gateway.json");
    eventually("the gateway starting", Duration::from_secs(180), || access_path.exists());
    let access: Value = serde_json::from_slice(&std::fs::read(&access_path).unwrap()).unwrap();
    let (url, key) = (access["url"].as_str().unwrap(), access["api_key"].as_str().unwrap());
    assert_eq!(access["model"], "SmolLM2-135M-Instruct");
    let channel = access["channel"].as_u64().unwrap().to_string();
    let before = json(&tgrid(&home, &node, &["channel", "show", &channel]));
    assert_eq!(utgr(&before["redeemed"]), 0);

    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/openai_client.py");
    let out = Command::new(python())
        .arg(&script)
        .args([url, key, "SmolLM2-135M-Instruct", "all-MiniLM-L6-v2"])
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "the OpenAI client's checks failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();

    // Every response is paid at the offer's prices for exactly the tokens the client was told it used.
    let offers = json(&tgrid(&home, &node, &["model", "list"]));
    let offer_of = |name: &str| {
        offers["items"].as_array().unwrap().iter().find(|o| o["offer"]["name"] == name).unwrap()["offer"]
            .clone()
    };
    let (chat, embed) = (offer_of("SmolLM2-135M-Instruct"), offer_of("all-MiniLM-L6-v2"));
    assert_eq!(chat["quantization"], "q8_0");
    let expected: u128 = report["billed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            let (prompt, completion) = (b[1].as_u64().unwrap(), b[2].as_u64().unwrap());
            cost(if b[0] == "embed" { &embed } else { &chat }, prompt, completion)
        })
        .sum();
    assert!(expected > 0);
    // The provider redeems the gateway's latest voucher on chain every 2 s on a devnet.
    let mut redeemed = 0;
    eventually("the vouchers' redemption", Duration::from_secs(30), || {
        let channel = json(&tgrid(&home, &node, &["channel", "show", &channel]));
        redeemed = utgr(&channel["redeemed"]);
        redeemed >= expected
    });
    assert_eq!(redeemed, expected, "the channel paid exactly the price of the tokens");

    // `tgrid chat` through the same gateway, seeded: the same answer twice.
    let ask = |seed: &str| {
        json(&tgrid(&home, &node, &["chat", "Name a fruit.", "--seed", seed, "--max-tokens", "12"]))
    };
    let (first, second) = (ask("9"), ask("9"));
    assert_eq!(first["content"], second["content"]);
    assert!(!first["content"].as_str().unwrap().trim().is_empty());
    assert_eq!(first["model"], "SmolLM2-135M-Instruct");
    assert!(first["usage"]["completion_tokens"].as_u64().unwrap() >= 1);
}

/// Streams a long answer with the official client, prints `GO` after five chunks (the test then kills the
/// provider), and reports the chunks received, the usage the gateway sent, and the error the client raised.
const KILLED_MID_ANSWER: &str = r#"
import json, sys
import openai
from openai import OpenAI
client = OpenAI(base_url=sys.argv[1], api_key=sys.argv[2], max_retries=0, timeout=120)
stream = client.chat.completions.create(
    model="SmolLM2-135M-Instruct",
    messages=[{"role": "user", "content": "Write a very long story about a dragon and a knight."}],
    max_tokens=3000, temperature=0.9, seed=3, stream=True, stream_options={"include_usage": True},
)
chunks, usage, error = 0, None, None
try:
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage.model_dump()
        if chunk.choices and chunk.choices[0].delta.content:
            chunks += 1
            if chunks == 5:
                print("GO", flush=True)
except openai.APIError as e:
    error = str(e)
print(json.dumps({"chunks": chunks, "usage": usage, "error": error}), flush=True)
"#;

#[test]
fn a_provider_killed_mid_answer_is_paid_only_for_what_arrived_and_the_next_request_fails_over() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("devnet");
    let models = models_dir();
    let gguf = models.join("SmolLM2-135M-Instruct.Q4_1.gguf");
    let base = ports(4);
    let (_devnet, node, _) = start_devnet_with(
        &home,
        base,
        &[
            "--provider-port",
            &(base + 2).to_string(),
            "--gateway-port",
            &(base + 3).to_string(),
            "--model",
            gguf.to_str().unwrap(),
        ],
    );
    let access_path = home.join("gateway.json");
    eventually("the devnet's gateway starting", Duration::from_secs(180), || access_path.exists());

    // A second provider, bob, serves the same file for half the price, so the gateway sends it work first.
    let bob_port = base + 4;
    let config = dir.path().join("bob.toml");
    std::fs::write(
        &config,
        format!(
            "key = \"bob\"\nnode = \"{node}\"\nlisten = \"127.0.0.1:{bob_port}\"\nhost_uri = \"http://127.0.0.1:{bob_port}\"\n\
             stake = \"100tgr\"\nwork_dir = \"{}\"\n[inference]\nredeem_interval = \"2s\"\n\
             [[models]]\npath = \"{}\"\nname = \"SmolLM2-135M-Instruct\"\nprice_input_per_m = \"0.05tgr\"\nprice_output_per_m = \"0.2tgr\"\n",
            dir.path().join("bob-work").display(),
            gguf.display()
        ),
    )
    .unwrap();
    let mut bob = provider_daemon(&home, &config, &dir.path().join("bob.log"));
    let offers = || json(&tgrid(&home, &node, &["model", "list"]))["items"].as_array().unwrap().len();
    eventually("bob's offer", Duration::from_secs(120), || offers() == 2);
    let bob_address =
        json(&tgrid(&home, &node, &["keys", "show", "bob"]))["address"].as_str().unwrap().to_string();
    let opened = json(&tgrid(
        &home,
        &node,
        &["channel", "open", &bob_address, "--deposit", "10tgr", "--from", "carol"],
    ));
    let bob_channel = opened["receipt"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "channel_opened")
        .expect("channel_opened")["channel"]
        .as_u64()
        .unwrap();
    let access: Value = serde_json::from_slice(&std::fs::read(&access_path).unwrap()).unwrap();
    let first_channel = access["channel"].as_u64().unwrap();

    // A gateway of its own (`tgrid gateway`) with carol's key and both her channels.
    let gateway_port = base + 5;
    let token = "tg-0123456789abcdef0123456789abcdef0123";
    let gateway_config = dir.path().join("gateway.toml");
    std::fs::write(
        &gateway_config,
        format!(
            "node = \"{node}\"\nlisten = \"127.0.0.1:{gateway_port}\"\nrefresh = \"1s\"\nallow_private_providers = true\n[[keys]]\ntoken = \"{token}\"\n\
             account = \"carol\"\nchannels = [{first_channel}, {bob_channel}]\n"
        ),
    )
    .unwrap();
    let gateway_log = std::fs::File::create(dir.path().join("gateway.log")).unwrap();
    let _gateway = Devnet(
        Command::new(TGRID)
            .env("TGRID_CONFIG", home.join("no-config.toml"))
            .arg("--home")
            .arg(&home)
            .args(["gateway", "--config"])
            .arg(&gateway_config)
            .stdout(Stdio::null())
            .stderr(gateway_log)
            .spawn()
            .unwrap(),
    );
    let url = format!("http://127.0.0.1:{gateway_port}/v1");
    let gateway_channels = || -> Value {
        let out = Command::new("curl")
            .args(["-sf", "-H", &format!("Authorization: Bearer {token}"), &format!("{url}/channels")])
            .output()
            .expect("curl runs");
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    };
    eventually("the gateway answering", Duration::from_secs(30), || gateway_channels().is_object());
    let signed = |channel: u64| -> u128 {
        let all = gateway_channels();
        utgr(&all["data"].as_array().unwrap().iter().find(|c| c["id"] == channel).unwrap()["signed"])
    };

    // The stream goes to bob; bob dies after the fifth chunk.
    let mut python = Command::new(python())
        .args(["-c", KILLED_MID_ANSWER, &url, token])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(python.stdout.take().unwrap()).lines();
    let first = lines.next().expect("a line").unwrap();
    assert_eq!(first, "GO", "the client got five chunks");
    bob.0.kill().unwrap();
    bob.0.wait().unwrap();
    let report: Value = serde_json::from_str(&lines.next().expect("the report").unwrap()).unwrap();
    assert!(python.wait().unwrap().success());
    let error = report["error"].as_str().expect("the client saw an error, not a silent end");
    assert!(error.contains("provider failed mid-answer"), "{error}");
    let usage = &report["usage"];
    let delivered = usage["completion_tokens"].as_u64().expect("usage of what was delivered");
    assert!(delivered >= report["chunks"].as_u64().unwrap() && delivered < 3000, "{report}");
    // Paid: the prompt and exactly the tokens that arrived, at bob's price; nothing to the other provider.
    let list = json(&tgrid(&home, &node, &["model", "list"]));
    let offer_of = |provider: &str| {
        list["items"].as_array().unwrap().iter().find(|o| o["provider"] == provider).unwrap()["offer"].clone()
    };
    let bob_offer = offer_of(&bob_address);
    assert_eq!(signed(bob_channel), cost(&bob_offer, usage["prompt_tokens"].as_u64().unwrap(), delivered));
    assert_eq!(signed(first_channel), 0);

    // The next request tries bob first (still cheapest on chain), finds it gone before any token, and is
    // answered by the devnet's provider.
    let chat = Command::new("curl")
        .args(["-sf", "-H", &format!("Authorization: Bearer {token}"), "-H", "content-type: application/json"])
        .args(["-d", r#"{"model":"SmolLM2-135M-Instruct","messages":[{"role":"user","content":"What is 2 + 2?"}],"temperature":0,"max_tokens":16}"#])
        .arg(format!("{url}/chat/completions"))
        .output()
        .unwrap();
    assert!(chat.status.success(), "{}", String::from_utf8_lossy(&chat.stdout));
    let chat: Value = serde_json::from_slice(&chat.stdout).unwrap();
    assert!(chat["choices"][0]["message"]["content"].as_str().unwrap().contains('4'), "{chat}");
    let provider_address =
        json(&tgrid(&home, &node, &["keys", "show", "provider"]))["address"].as_str().unwrap().to_string();
    let usage = &chat["usage"];
    let one_answer = cost(
        &offer_of(&provider_address),
        usage["prompt_tokens"].as_u64().unwrap(),
        usage["completion_tokens"].as_u64().unwrap(),
    );
    assert_eq!(signed(first_channel), one_answer);

    // A client that hangs up on a whole (non-streaming) answer: the gateway still reads the provider's answer
    // to its end and pays for it, so the channel is not left owing the provider (whose credit would run out).
    // The same greedy request gives the same tokens, so the channel must come to exactly two answers' cost.
    let abandoned = Command::new("curl")
        .args(["-s", "--max-time", "0.2", "-H", &format!("Authorization: Bearer {token}")])
        .args(["-H", "content-type: application/json"])
        .args(["-d", r#"{"model":"SmolLM2-135M-Instruct","messages":[{"role":"user","content":"What is 2 + 2?"}],"temperature":0,"max_tokens":16}"#])
        .arg(format!("{url}/chat/completions"))
        .output()
        .unwrap();
    assert!(!abandoned.status.success() || !abandoned.stdout.is_empty());
    eventually("the abandoned answer paid", Duration::from_secs(30), || {
        signed(first_channel) == 2 * one_answer
    });
}

/// A provider that runs every job and then reveals a made-up result instead of the real one: the test double
/// of a cheater, wrapping the real WASM runner. It exists only in this test.
struct CheatingRunner(tensorgrid_runner_wasm::WasmRunner);

impl tensorgrid_runner::JobRunner for CheatingRunner {
    fn kind(&self) -> tensorgrid_types::job::WorkloadKind {
        self.0.kind()
    }

    fn runtimes(&self) -> &[&str] {
        self.0.runtimes()
    }

    fn check(&self, module: &std::path::Path) -> Result<(), tensorgrid_runner::RunnerError> {
        self.0.check(module)
    }

    fn run(
        &self,
        run: &tensorgrid_runner::JobRun,
    ) -> Result<tensorgrid_runner::RunOutput, tensorgrid_runner::RunnerError> {
        let mut output = self.0.run(run)?;
        output.result_hash = tensorgrid_types::Hash::of(b"a result made up instead of the real one");
        Ok(output)
    }
}

/// One devnet, five provider daemons (the built-in one, three `tgrid provider run` processes and an
/// in-process cheater), every job audited: a k = 2 job the cheater disagrees on goes to a committee of the
/// other three, which slashes it exactly and pays the honest worker, and the client downloads the verified
/// output; a k = 1 job is audited and passed; the client's dispute of that honest result costs it its deposit.
#[test]
fn referee_committees_slash_a_cheater_pass_an_audit_and_make_a_griefing_client_pay() {
    let dir = tempfile::tempdir().expect("temp dir");
    let home = dir.path().join("devnet");
    let base = ports(5);
    let (_devnet, node, _) = start_devnet_with(
        &home,
        base,
        &[
            "--provider-port",
            &(base + 2).to_string(),
            "--audit-rate-bps",
            "10000",
            "--job-content-window",
            "30s",
            // No heartbeat falls due during the test, so balances move only by what the jobs move.
            "--heartbeat-interval",
            "10m",
            "--heartbeat-grace",
            "30m",
        ],
    );
    let n = node.as_str();
    let t = |args: &[&str]| tgrid(&home, n, args);

    // Three operators' daemons, each bonding 110 TGR (room above the minimum for referee deposits).
    let mut daemons = Vec::new();
    for (i, name) in ["op-a", "op-b", "op-c"].iter().enumerate() {
        json(&t(&["keys", "add", name, "--keyring-backend", "test"]));
        json(&t(&["account", "send", "--from", "alice", name, "1000tgr"]));
        let port = ports(6) + i as u16;
        let config = dir.path().join(format!("{name}.toml"));
        std::fs::write(
            &config,
            format!(
                "key = \"{name}\"\nnode = \"{n}\"\nlisten = \"127.0.0.1:{port}\"\nhost_uri = \"http://127.0.0.1:{port}\"\n\
                 stake = \"110tgr\"\nwork_dir = \"{}\"\n[limits]\nprivate_peers = true\n",
                dir.path().join(format!("{name}-work")).display()
            ),
        )
        .unwrap();
        daemons.push(provider_daemon(&home, &config, &dir.path().join(format!("{name}.log"))));
    }
    // The cheater: the same daemon code with the cheating runner, bidding far below everyone else.
    let cheater = tensorgrid_types::SecretKey::from_label("devnet-cheater");
    let cheater_address = cheater.address().to_string();
    json(&t(&["account", "send", "--from", "alice", &cheater_address, "1000tgr"]));
    let cheater_port = ports(6) + 3;
    let mut config: tensorgrid_provider::ProviderConfig = toml_config(&format!(
        "key = \"unused\"\nnode = \"{n}\"\nlisten = \"127.0.0.1:{cheater_port}\"\n\
         host_uri = \"http://127.0.0.1:{cheater_port}\"\nstake = \"110tgr\"\nwork_dir = \"{}\"\n\
         [pricing]\njob_floor = \"1utgr\"\njob_gfuel = \"1utgr\"\n[limits]\nprivate_peers = true\n",
        dir.path().join("cheater-work").display()
    ));
    config.referee = false;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let runner = CheatingRunner(tensorgrid_runner_wasm::WasmRunner::new().unwrap());
    let _cheating = runtime
        .block_on(tensorgrid_provider::start_with_runners(config, cheater, vec![std::sync::Arc::new(runner)]))
        .expect("the cheating daemon starts");
    for name in ["op-a", "op-b", "op-c", cheater_address.as_str()] {
        eventually("a provider's registration", Duration::from_secs(60), || {
            json(&t(&["provider", "status", name]))["provider"]["stake"] == "110000000"
        });
    }

    // Stage 1: k = 2, the cheater and an honest provider win, their results differ, the other three
    // providers referee: the honest result stands, the cheater loses 10 % of its stake and its deposit.
    let module = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/wasm/copy.wat");
    let input = dir.path().join("input.txt");
    std::fs::write(&input, b"refereed input").unwrap();
    let job_args = |k: &str, budget: &str| -> Vec<String> {
        [
            "job",
            "submit",
            module,
            "--input",
            input.to_str().unwrap(),
            "--budget",
            budget,
            "-k",
            k,
            "--fuel",
            "100000000",
            "--bid-window",
            "3s",
            "--run-timeout",
            "30s",
            "--reveal-window",
            "4s",
            "--wait",
            "--timeout",
            "240s",
            "--from",
            "alice",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let args = job_args("2", "2tgr");
    let done = json(&t(&args.iter().map(String::as_str).collect::<Vec<_>>()));
    assert_eq!(done["state"]["state"], "completed", "{done}");
    let slots = done["slots"].as_array().unwrap();
    let cheat_slot =
        slots.iter().find(|s| s["provider"] == cheater_address.as_str()).expect("the cheater won a slot");
    let honest_slot = slots.iter().find(|s| s["provider"] != cheater_address.as_str()).unwrap();
    assert_eq!(cheat_slot["state"], "slashed", "{done}");
    assert_eq!(honest_slot["state"], "paid", "{done}");
    assert_eq!(done["verdict"], honest_slot["result"], "{done}");
    let committee = &done["checks_detail"][0];
    assert_eq!(committee["kind"], "disagreement", "{done}");
    let members: Vec<&str> =
        committee["seats"].as_array().unwrap().iter().map(|s| s["provider"].as_str().unwrap()).collect();
    assert_eq!(members.len(), 3, "{committee}");
    assert!(
        !members.contains(&cheater_address.as_str())
            && !members.contains(&honest_slot["provider"].as_str().unwrap())
    );
    let status = json(&t(&["provider", "status", &cheater_address]));
    // 10 % of 110 TGR; the 1 TGR bid deposit went with it.
    assert_eq!(status["provider"]["stake"], "99000000", "{status}");
    assert_eq!(status["provider"]["jailed"], true);
    assert_eq!(status["provider"]["record"]["slashed_total"], "12000000");
    // The client downloads the output the verdict names, from the honest worker.
    let out = dir.path().join("verified");
    let job_id = done["id"].as_u64().unwrap().to_string();
    let result =
        json(&t(&["job", "result", &job_id, "--download", out.to_str().unwrap(), "--from", "alice"]));
    assert_eq!(result["verdict"], done["verdict"]);
    assert_eq!(std::fs::read(out.join("out/result.txt")).unwrap(), b"refereed input");

    // Stage 2: k = 1, audited (every job is, here) by one referee and passed; the jailed cheater no longer
    // bids. The result then waits out its challenge period.
    let args = job_args("1", "1tgr");
    let single = json(&t(&args.iter().map(String::as_str).collect::<Vec<_>>()));
    assert_eq!(single["state"]["state"], "challenge", "{single}");
    let audit = &single["checks_detail"][0];
    assert_eq!(audit["kind"], "audit", "{single}");
    assert_eq!(audit["phase"]["verdict"], single["slots"][0]["result"], "{single}");
    let worker = single["slots"][0]["provider"].as_str().unwrap().to_string();
    assert_ne!(worker, cheater_address);
    assert_eq!(json(&t(&["provider", "status", &worker]))["provider"]["record"]["audits_passed"], 1);

    // Stage 3: alice disputes that honest result anyway. The committee re-runs it, the result stands, and
    // alice's deposit pays the three referees and then goes to the worker she accused.
    let single_id = single["id"].as_u64().unwrap().to_string();
    let price = utgr(&single["slots"][0]["price"]);
    let alice_before = balance(&home, n, "alice");
    let worker_before = balance(&home, n, &worker);
    let disputed = json(&t(&["job", "dispute", &single_id, "--from", "alice"]));
    let deposit = 6 * price;
    let settled = json(&t(&["job", "status", &single_id, "--wait", "--timeout", "240s", "--from", "alice"]));
    assert_eq!(settled["state"]["state"], "completed", "{settled}");
    let dispute = &settled["checks_detail"][1];
    assert_eq!(dispute["kind"], "dispute", "{settled}");
    assert_eq!(settled["verdict"], settled["slots"][0]["result"]);
    let fees = utgr(&dispute["fees_paid"]);
    assert_eq!(fees, 3 * price, "three members, each paid the job's price");
    assert_eq!(
        balance(&home, n, "alice"),
        alice_before - fee(&disputed) - deposit + (1_000_000 - price),
        "alice lost her deposit and got back the unspent budget"
    );
    assert_eq!(
        balance(&home, n, &worker),
        worker_before + price + (deposit - fees) + 1_000_000,
        "the accused worker is paid, gets what is left of the deposit and its own 1 TGR bid deposit back"
    );
    drop(daemons);
    drop(runtime);
}

fn toml_config(text: &str) -> tensorgrid_provider::ProviderConfig {
    let path = std::env::temp_dir().join(format!("tgrid-cheater-{}.toml", std::process::id()));
    std::fs::write(&path, text).unwrap();
    let config = tensorgrid_provider::ProviderConfig::load(&path).expect("a valid provider config");
    let _ = std::fs::remove_file(path);
    config
}
