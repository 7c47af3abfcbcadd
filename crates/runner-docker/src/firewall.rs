//! Keeps a lease's network away from the machine it runs on: connections from a lease's bridge to any of the
//! host's own addresses, and packets to link-local addresses (where clouds serve instance metadata and credentials,
//! 169.254.169.254), are dropped. Rules go first in the `INPUT` and `FORWARD` chains (ahead of Docker's own),
//! keyed by the bridge's interface name, and are checked again on every round of enforcement so a host that
//! lost them (a reboot, a firewall reload) gets them back.

use tokio::process::Command;

/// The rules for one bridge: (chain, match).
fn rules(bridge: &str) -> [(&'static str, Vec<String>); 2] {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    [
        // New connections only: replies to the host's own connections into the lease (Docker's port proxy)
        // still come back.
        ("INPUT", s(&["-i", bridge, "-m", "conntrack", "--ctstate", "NEW", "-j", "DROP"])),
        ("FORWARD", s(&["-i", bridge, "-d", "169.254.0.0/16", "-j", "DROP"])),
    ]
}

async fn iptables(args: &[String]) -> Result<bool, String> {
    let out = Command::new("iptables")
        .arg("-w")
        .args(args)
        .output()
        .await
        .map_err(|e| format!("cannot run iptables: {e}"))?;
    Ok(out.status.success())
}

/// Whether this host lets the runner manage firewall rules.
pub(crate) async fn available() -> Result<(), String> {
    match iptables(&["-S".into(), "INPUT".into()]).await? {
        true => Ok(()),
        false => Err("iptables cannot read the INPUT chain (not root, or no netfilter)".into()),
    }
}

/// Puts the bridge's rules in place (each once).
pub(crate) async fn isolate(bridge: &str) -> Result<(), String> {
    for (chain, rule) in rules(bridge) {
        let check: Vec<String> =
            ["-C".to_string(), chain.to_string()].into_iter().chain(rule.clone()).collect();
        if iptables(&check).await? {
            continue;
        }
        let insert: Vec<String> =
            ["-I".to_string(), chain.to_string(), "1".to_string()].into_iter().chain(rule).collect();
        if !iptables(&insert).await? {
            return Err(format!("iptables refused a rule for {bridge} in {chain}"));
        }
    }
    Ok(())
}

/// Removes the bridge's rules (all copies); removing what is not there is not an error.
pub(crate) async fn release(bridge: &str) -> Result<(), String> {
    for (chain, rule) in rules(bridge) {
        let delete: Vec<String> = ["-D".to_string(), chain.to_string()].into_iter().chain(rule).collect();
        while iptables(&delete).await? {}
    }
    Ok(())
}
