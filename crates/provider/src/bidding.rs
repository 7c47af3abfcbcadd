//! Bidding, as the daemon does it: the core's bid engine decides (`tensorgrid_provider_core::bidding`), and
//! when the operator configured a price script (as Akash's bid-price script) the core asks for it and the
//! daemon runs it as a child process on the async runtime, with its timeout, and hands the answer back.
//! Nothing here blocks a runtime thread, so a slow script never stalls the API or the heartbeats.

use std::process::Stdio;
use std::time::Duration;

pub use tensorgrid_provider_core::bidding::{
    BidEngine, Decision, NoBid, Outcome, Situation, Work, COMMIT_MARGIN,
};
use tensorgrid_provider_core::{Policy, QuotedWork};
use tensorgrid_types::Amount;
use tokio::io::AsyncWriteExt as _;

use crate::config::{Limits, Pricing};

/// The core's policy from the operator's configuration.
pub fn policy(pricing: &Pricing, limits: &Limits) -> Policy {
    Policy {
        cpu_core_hour: pricing.cpu_core_hour,
        memory_gib_hour: pricing.memory_gib_hour,
        storage_gib_hour: pricing.storage_gib_hour,
        gpu_hour: pricing.gpu_hour,
        floor: pricing.floor,
        job_gfuel: pricing.job_gfuel,
        job_floor: pricing.job_floor,
        deny: pricing.deny.clone(),
        price_script: pricing.price_script.is_some(),
        max_leases: limits.max_leases,
        max_jobs: limits.max_jobs,
        job_fuel_per_sec: limits.job_fuel_per_sec,
        job_wall_timeout_ms: limits.job_wall_timeout.as_millis() as u64,
        content_timeout_ms: limits.content_timeout.as_millis() as u64,
        manifest_timeout_ms: limits.manifest_timeout.as_millis() as u64,
        withdraw_interval_ms: limits.withdraw_interval.as_millis() as u64,
    }
}

/// Runs the operator's script: the work, the price so far and the chain's ceiling as JSON on stdin, the price
/// on stdout, or a non-zero exit to decline.
pub async fn run_script(
    path: &std::path::Path,
    timeout: Duration,
    work: &QuotedWork,
    price: Amount,
) -> Result<Amount, String> {
    let input = serde_json::json!({ "work": work, "price": price, "ceiling": work.ceiling() }).to_string();
    let mut child = tokio::process::Command::new(path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", path.display()))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A script that does not read its input closes the pipe early; its answer still counts.
        let _ = stdin.write_all(input.as_bytes()).await;
    }
    let output = match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(output) => output.map_err(|e| format!("reading {}: {e}", path.display()))?,
        // Dropping the child on the timeout kills it.
        Err(_) => return Err(format!("{} took longer than {timeout:?}", path.display())),
    };
    let stdout = String::from_utf8_lossy(&output.stdout).trim().to_string();
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
        return Err(format!("{} declined ({}): {stderr}", path.display(), output.status));
    }
    let parsed = stdout.parse::<u128>().map(Amount).or_else(|_| stdout.parse::<Amount>());
    parsed.map_err(|_| format!("{} printed `{stdout}`, not a price", path.display()))
}

#[cfg(test)]
mod tests {
    use tensorgrid_provider_core::capacity::Capacity;
    use tensorgrid_types::market::{GroupSpec, Order, OrderId, OrderState};
    use tensorgrid_types::resources::{PlacementRequirements, ResourceUnit, ResourceUnits};
    use tensorgrid_types::SecretKey;

    use tensorgrid_provider_core::bidding::Quote;
    use tensorgrid_types::Timestamp;

    use super::*;

    fn order() -> Order {
        Order {
            id: OrderId { dseq: 7, gseq: 1 },
            owner: SecretKey::from_label("tenant").address(),
            group: 1,
            spec: GroupSpec {
                name: "g".into(),
                requirements: PlacementRequirements::default(),
                resources: vec![ResourceUnit {
                    resources: ResourceUnits { cpu_millis: 100, memory_bytes: 1 << 20, ..Default::default() },
                    count: 1,
                }],
                max_price: Amount::tgr(1),
            },
            state: OrderState::Open,
            created_at: Timestamp::from_millis(0),
            window_ends: None,
            live_bids: vec![],
        }
    }

    /// The whole path a bid takes with a script: the engine's components, the script as a child process,
    /// then the engine's ceiling.
    async fn decide_with(script: &std::path::Path) -> Result<Amount, NoBid> {
        let mut engine = BidEngine::from_policy(&Policy { price_script: true, ..Policy::default() });
        let situation = Situation {
            free: Capacity { cpu_millis: 4000, memory_bytes: 8 << 30, storage_bytes: 1 << 30, gpus: vec![] },
            runs_leases: true,
            ..Situation::default()
        };
        let o = order();
        let now = Timestamp::from_millis(1);
        let Quote::AskScript(price) = engine.decide(&Work::Order { order: &o }, &situation, now) else {
            panic!("a configured script has the last word")
        };
        let work = QuotedWork::Order { order: o.clone() };
        let answer = run_script(script, Duration::from_secs(2), &work, price).await;
        engine.after_script(&Work::Order { order: &o }, answer, now)
    }

    #[tokio::test]
    async fn the_operators_script_sets_the_price_or_declines() {
        let dir = tempfile::tempdir().unwrap();
        let script = |name: &str, body: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
            std::process::Command::new("chmod").arg("+x").arg(&path).status().unwrap();
            path
        };
        // The script sees the work and the price so far on stdin.
        let doubling = script("double.sh", "grep -q '\"kind\":\"order\"' && echo 0.5tgr");
        assert_eq!(decide_with(&doubling).await, Ok(Amount(500_000)));
        assert_eq!(decide_with(&script("bare.sh", "cat >/dev/null; echo 1234")).await, Ok(Amount(1_234)));
        let no = decide_with(&script("no.sh", "echo not for this tenant >&2; exit 3")).await.unwrap_err();
        assert_eq!(no.component, "price_script");
        assert!(no.reason.contains("not for this tenant"), "{no:?}");
        let slow = decide_with(&script("slow.sh", "sleep 10")).await.unwrap_err();
        assert!(slow.reason.contains("longer than"), "{slow:?}");
        let expensive = decide_with(&script("rich.sh", "echo 2tgr")).await.unwrap_err();
        assert_eq!(expensive.component, "ceiling");
    }
}
