//! The `tgrid` command line. The binary only calls [`main`]; everything a command does lives in the library
//! crates it calls, and this crate turns their results into text or JSON.
//!
//! Exit codes: 0 success; 1 the command failed (the message says why and what to do next); 2 the command line
//! itself was wrong (clap's usage errors).

mod account;
mod chain;
mod demo;
mod deploy;
mod keys;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use tensorgrid_types::{Amount, Msg};

#[derive(Debug, Parser)]
#[command(name = "tgrid", version, about = "tensorgrid: a decentralized compute market for AI")]
pub struct Cli {
    /// Where tgrid keeps its state (keys, config); defaults to $TGRID_HOME or the user's data directory.
    #[arg(long, global = true, env = "TGRID_HOME")]
    home: Option<PathBuf>,
    #[arg(long, global = true, value_enum, default_value_t = Output::Text)]
    output: Output,
    /// The node whose API commands talk to.
    #[arg(long, global = true, env = "TGRID_NODE", default_value = "http://127.0.0.1:26657")]
    node: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// See tensorgrid work in under a minute: a one-validator chain in this process takes transfers through
    /// its API, then the seeded market simulation runs (providers, tenants, jobs, a cheater caught).
    Demo {
        /// Seed of the market simulation.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Run a seeded simulation of the market on the in-process ledger: providers register and bid, tenants
    /// lease and pay by block time, jobs run with commit–reveal, and misbehaving providers are caught.
    Sim {
        /// Seed for block timing, randomness and salts; the same seed prints the same story.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Deployments from Akash SDL manifests.
    #[command(subcommand)]
    Deploy(Deploy),
    /// The market: open orders.
    #[command(subcommand)]
    Market(Market),
    /// Keys: create, recover, list, show, export and delete.
    #[command(subcommand)]
    Keys(keys::Keys),
    /// The chain as the node sees it: chain id, height, latest block time, validators, the node's version.
    Status,
    /// Accounts: balances and transfers.
    #[command(subcommand)]
    Account(account::Account),
    /// Run the validator whose home is --home (genesis.json, node.toml, validator.key, data/).
    Node,
    /// Run a one-validator network in this process, with funded demo accounts whose keys it prints. State
    /// goes to a fresh temporary directory unless --home names one (which a later run resumes).
    Devnet {
        #[arg(long, default_value_t = tensorgrid_consensus::launch::DEVNET_P2P_PORT)]
        p2p_port: u16,
        #[arg(long, default_value_t = tensorgrid_consensus::launch::DEVNET_RPC_PORT)]
        rpc_port: u16,
    },
    /// Write N validator homes sharing a new genesis and run each as its own process on 127.0.0.1.
    Testnet {
        #[arg(long, default_value_t = 4)]
        validators: usize,
        /// Where the homes go (validator-0 …); a fresh temporary directory by default.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Validator i listens for p2p on BASE+2i and serves its API on BASE+2i+1.
        #[arg(long, default_value_t = 27000)]
        base_port: u16,
        /// Write the homes and print the commands that would start them, without starting anything.
        #[arg(long)]
        dry_run: bool,
        /// Blocks per consensus epoch (validator-set changes take effect at epoch boundaries).
        #[arg(long, default_value_t = tensorgrid_consensus::node::DEFAULT_BLOCKS_PER_EPOCH)]
        blocks_per_epoch: u64,
    },
}

#[derive(Debug, Subcommand)]
enum Deploy {
    /// Check an Akash SDL v2.0 file and print the deployment it maps to, sending nothing. Exits 0 if it maps,
    /// 1 if it does not (the error names the file, line and field).
    Check { file: PathBuf },
    /// Create a deployment from an Akash SDL v2.0 file: its groups open as orders for providers to bid on,
    /// paid from `--deposit` in escrow. Prints the new dseq.
    Create {
        file: PathBuf,
        /// The key that owns the deployment and pays.
        #[arg(long)]
        from: String,
        /// Escrow to start with (`5tgr`, `5000000utgr`).
        #[arg(long)]
        deposit: Amount,
        #[arg(long, default_value = "1tgr")]
        max_fee: Amount,
    },
    /// A deployment with its orders and leases.
    Show { dseq: u64 },
    /// An owner's deployments (an address or a key name).
    List { owner: String },
    /// Add to a deployment's escrow.
    Deposit {
        dseq: u64,
        amount: Amount,
        #[arg(long)]
        from: String,
        #[arg(long, default_value = "1tgr")]
        max_fee: Amount,
    },
    /// Close a deployment: its leases end and what is left in escrow goes back to the owner.
    Close {
        dseq: u64,
        #[arg(long)]
        from: String,
        #[arg(long, default_value = "1tgr")]
        max_fee: Amount,
    },
}

#[derive(Debug, Subcommand)]
enum Market {
    /// Orders open for bids.
    Orders,
}

/// Parses the command line, runs the command and reports errors on stderr.
// The CLI is where errors meet the user, so it prints to stderr.
#[allow(clippy::print_stderr)]
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Devnet { p2p_port, rpc_port } => {
            init_logging();
            return chain::devnet(cli.home, p2p_port, rpc_port, cli.output);
        }
        Command::Testnet { validators, dir, base_port, dry_run, blocks_per_epoch } => {
            return chain::testnet(dir, validators, base_port, blocks_per_epoch, dry_run, cli.output);
        }
        Command::Demo { seed } => return demo::demo(seed, cli.output),
        Command::Node => {
            init_logging();
            let home = cli
                .home
                .ok_or_else(|| anyhow::anyhow!("`tgrid node` needs --home DIR (a validator home)"))?;
            return chain::node(&home);
        }
        _ => {}
    }
    let home = match cli.home {
        Some(home) => home,
        None => dirs::data_dir()
            .map(|d| d.join("tensorgrid"))
            .ok_or_else(|| anyhow::anyhow!("no data directory on this system: pass --home DIR"))?,
    };
    match cli.command {
        Command::Sim { seed } => sim(seed, cli.output),
        Command::Deploy(Deploy::Check { file }) => deploy_check(&file, cli.output),
        Command::Deploy(Deploy::Create { file, from, deposit, max_fee }) => {
            deploy::create(&file, &from, deposit, max_fee, &cli.node, &home, cli.output)
        }
        Command::Deploy(Deploy::Show { dseq }) => deploy::show(dseq, &cli.node, cli.output),
        Command::Deploy(Deploy::List { owner }) => deploy::list(&owner, &cli.node, &home, cli.output),
        Command::Deploy(Deploy::Deposit { dseq, amount, from, max_fee }) => {
            deploy::tx(&from, Msg::DepositDeployment { dseq, amount }, max_fee, &cli.node, &home, cli.output)
        }
        Command::Deploy(Deploy::Close { dseq, from, max_fee }) => {
            deploy::tx(&from, Msg::CloseDeployment { dseq }, max_fee, &cli.node, &home, cli.output)
        }
        Command::Market(Market::Orders) => deploy::orders(&cli.node, cli.output),
        Command::Keys(command) => keys::run(command, &home, cli.output),
        Command::Status => account::status(&cli.node, cli.output),
        Command::Account(command) => account::run(command, &cli.node, &home, cli.output),
        Command::Demo { .. } | Command::Node | Command::Devnet { .. } | Command::Testnet { .. } => Ok(()),
    }
}

/// Logs to stderr, filtered by `TGRID_LOG` (default: info, with consensus internals at warn).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TGRID_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,commonware_consensus=warn,commonware_p2p=warn")
    });
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

/// Writes to standard output. A reader that went away (`tgrid sim | head`) ends the output quietly.
pub(crate) fn emit(text: &str) -> anyhow::Result<()> {
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

/// [`emit`] with a newline.
pub(crate) fn emit_line(text: &str) -> anyhow::Result<()> {
    emit(&format!("{text}\n"))
}

pub(crate) fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    emit_line(&serde_json::to_string_pretty(value)?)
}

fn sim(seed: u64, output: Output) -> anyhow::Result<()> {
    let world = tensorgrid_sim::scenario::run_market_tour(seed)?;
    let report = tensorgrid_sim::report::Report::from_world(&world, seed);
    match output {
        Output::Text => emit(&report.to_text())?,
        Output::Json => print_json(&report)?,
    }
    Ok(())
}

fn deploy_check(file: &Path, output: Output) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(file).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
    let name = file.display().to_string();
    match (tensorgrid_sdl::parse(&name, &text, &tensorgrid_sdl::SdlOptions::default()), output) {
        (Ok(m), Output::Text) => emit(&m.to_text(&name))?,
        (Ok(m), Output::Json) => print_json(&m)?,
        (Err(e), Output::Json) => {
            print_json(&serde_json::json!({ "error": e }))?;
            anyhow::bail!("{e}");
        }
        (Err(e), Output::Text) => anyhow::bail!("{e}"),
    }
    Ok(())
}
