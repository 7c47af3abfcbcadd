//! The `tgrid` command line. The binary only calls [`main`]; everything a command does lives in the library
//! crates it calls, and this crate turns their results into text or JSON.
//!
//! Settings come from flags, then `TGRID_*` environment variables, then the config file
//! (`$XDG_CONFIG_HOME/tensorgrid/config.toml`, or `--config-file`), then built-in defaults.
//!
//! Exit codes (also in `tgrid --help`):
//! 0 success; 1 the command failed (the message says why and what to do next); 2 the command line itself was
//! wrong; 3 the node could not be reached; 4 the node refused the request, or the transaction was committed
//! but failed (it paid its fee); 5 what the command names does not exist; 6 the transaction was accepted but
//! not committed in time (it may still commit).

mod account;
mod chain;
mod channel;
mod chat;
mod ctx;
mod demo;
mod deploy;
mod gateway;
mod job;
mod keys;
mod market;
mod provider;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use serde::{Deserialize, Serialize};
use tensorgrid_client::RpcError;
use tensorgrid_types::{Amount, Msg};

use crate::ctx::{Config, Ctx, NotFound};

const EXIT_CODES: &str = "Exit codes: 0 success; 1 the command failed (the message says why); 2 bad command \
line; 3 node unreachable; 4 the node refused the request or the transaction failed (fee paid); 5 not found; \
6 accepted but not committed in time.";

#[derive(Debug, Parser)]
#[command(
    name = "tgrid",
    version,
    about = "tensorgrid: a decentralized compute market for AI",
    after_help = EXIT_CODES
)]
pub struct Cli {
    /// Where tgrid keeps its state (keys); defaults to $TGRID_HOME, `home` in the config, or the user's data
    /// directory.
    #[arg(long, global = true, env = "TGRID_HOME")]
    home: Option<PathBuf>,
    /// tgrid's own config file of defaults; $XDG_CONFIG_HOME/tensorgrid/config.toml when not given.
    #[arg(long, global = true, env = "TGRID_CONFIG")]
    config_file: Option<PathBuf>,
    /// text for people, json for programs [default: text]
    #[arg(long, global = true, value_enum, env = "TGRID_OUTPUT")]
    output: Option<Output>,
    /// The node whose API commands talk to [default: http://127.0.0.1:26657]
    #[arg(long, global = true, env = "TGRID_NODE")]
    node: Option<String>,
    /// The key that signs transactions (a name in the keystore).
    #[arg(long, global = true, env = "TGRID_FROM")]
    from: Option<String>,
    /// Refuse to sign unless the node serves this chain.
    #[arg(long, global = true, env = "TGRID_CHAIN_ID")]
    chain_id: Option<String>,
    /// The most fee a transaction may pay (`0.01tgr`, `10000utgr`) [default: 1tgr]
    #[arg(long, global = true, env = "TGRID_MAX_FEE")]
    max_fee: Option<Amount>,
    /// Offered above the minimum fee for an earlier place in blocks, which take transactions by tip per
    /// byte (part of --max-fee) [default: 0]
    #[arg(long, global = true, env = "TGRID_TIP")]
    tip: Option<Amount>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Output {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// See tensorgrid work in under a minute: a one-validator chain in this process takes transfers through
    /// its API, two provider daemons run a paid WASM job, one of them answers a chat request through the
    /// OpenAI-compatible gateway paid by a payment-channel voucher, then the seeded market simulation runs
    /// (providers, tenants, jobs, a cheater caught).
    Demo {
        /// Seed of the market simulation.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// The GGUF model for the inference step [default: SmolLM2-135M-Instruct.Q4_1.gguf in the models
        /// directory that `scripts/fetch-models` fills]; the step is skipped, saying so, when it is missing.
        #[arg(long)]
        model: Option<PathBuf>,
    },
    /// Run a seeded simulation of the market on the in-process ledger: providers register and bid, tenants
    /// lease and pay by block time, jobs run with commit–reveal, and misbehaving providers are caught.
    Sim {
        /// Seed for block timing, randomness and salts; the same seed prints the same story.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Print the detection table instead: for each way of cheating, at job prices of 1 %, 10 % and
        /// 100 % of the minimum stake, how soon it is caught, what it earns against an honest actor, what
        /// checking costs, and that every job settles and the supply is conserved.
        #[arg(long)]
        detection: bool,
        /// With --detection: jobs per row.
        #[arg(long, default_value_t = 1_000)]
        jobs: usize,
    },
    /// Deployments from Akash SDL manifests.
    #[command(subcommand)]
    Deploy(Deploy),
    /// The market: open orders, bids on them, bidding as a provider.
    #[command(subcommand)]
    Market(market::Market),
    /// Leases: accept a bid, see, close and withdraw from leases.
    #[command(subcommand)]
    Lease(market::Lease),
    /// One-shot jobs (WASM modules, containers, inference batches) run by k providers and verified.
    #[command(subcommand)]
    Job(job::Job),
    /// Providers: register, update, stake, withdraw earnings, leave.
    #[command(subcommand)]
    Provider(provider::Provider),
    /// Payment channels for inference: open, sign vouchers, redeem, top up, close.
    #[command(subcommand)]
    Channel(channel::Channel),
    /// Model offers: what providers serve for inference and at what token prices.
    #[command(subcommand)]
    Model(channel::Model),
    /// Run the OpenAI-compatible gateway: API keys spending from accounts' payment channels, requests routed
    /// to the providers serving each model.
    Gateway {
        /// The gateway's config file: listen address, node, and `[[keys]]` (token, account, channels).
        #[arg(long)]
        config: PathBuf,
    },
    /// Ask a model through an OpenAI-compatible gateway (a devnet's, by default) and stream the answer.
    Chat(chat::ChatArgs),
    /// The config file of defaults: where it is, what it says, change it.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Print a shell completion script: `tgrid completions bash > ~/.local/share/bash-completion/completions/tgrid`.
    Completions { shell: clap_complete::Shell },
    /// Keys: create, recover, list, show, export and delete.
    #[command(subcommand)]
    Keys(keys::Keys),
    /// The chain as the node sees it: chain id, height, latest block time, validators, the node's version.
    Status,
    /// Accounts: balances, transfers and history.
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
        /// Where the built-in provider's API listens.
        #[arg(long, default_value_t = 26658)]
        provider_port: u16,
        /// Run no built-in provider.
        #[arg(long)]
        no_provider: bool,
        /// How often providers must send a heartbeat (a new devnet's genesis parameter).
        #[arg(long, default_value = "60s")]
        heartbeat_interval: humantime::Duration,
        /// How long past its last heartbeat a provider's leases keep accruing before they close (genesis).
        #[arg(long, default_value = "3m")]
        heartbeat_grace: humantime::Duration,
        /// How long a job's winners have to confirm they received the module and inputs (genesis).
        #[arg(long, default_value = "2m")]
        job_content_window: humantime::Duration,
        /// The chance, in basis points, that a job's revealed results are audited by a referee (genesis).
        #[arg(long, default_value_t = 500)]
        audit_rate_bps: u32,
        /// Serve this GGUF model from the built-in provider and start the OpenAI-compatible gateway in front
        /// of it, with a funded API key (printed).
        #[arg(long)]
        model: Option<PathBuf>,
        /// Also serve this sentence-embeddings model (a sentence-transformers directory), with --model.
        #[arg(long, requires = "model")]
        embeddings: Option<PathBuf>,
        /// Where the gateway listens, with --model.
        #[arg(long, default_value_t = 26680)]
        gateway_port: u16,
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
        /// Escrow to start with (`5tgr`, `5000000utgr`); paid by --from, who owns the deployment.
        #[arg(long)]
        deposit: Amount,
    },
    /// A deployment with its orders and leases.
    Show { dseq: u64 },
    /// An owner's deployments (an address or a key name; --from's by default).
    List { owner: Option<String> },
    /// Add to a deployment's escrow (paid by --from).
    Deposit { dseq: u64, amount: Amount },
    /// Close a deployment: its leases end and what is left in escrow goes back to the owner.
    Close { dseq: u64 },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Print the config file's path.
    Path,
    /// Print the config file's settings and the effective ones.
    Show,
    /// Set a default: node, from, chain_id, output, max_fee or home.
    Set { key: String, value: String },
    /// Remove a default.
    Unset { key: String },
}

/// Parses the command line, runs the command and reports errors on stderr, with an exit code that says
/// what kind of failure it was.
// The CLI is where errors meet the user, so it prints to stderr.
#[allow(clippy::print_stderr)]
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            let (code, hint) = classify(&e);
            if let Some(hint) = hint {
                eprintln!("hint: {hint}");
            }
            ExitCode::from(code)
        }
    }
}

/// The exit code of a failure and, where there is one, the next thing to try.
fn classify(e: &anyhow::Error) -> (u8, Option<String>) {
    for cause in e.chain() {
        if let Some(rpc) = cause.downcast_ref::<RpcError>() {
            return match rpc {
                RpcError::Transport { url, .. } => (
                    3,
                    Some(format!(
                        "is a node running at {url}? Start one with `tgrid devnet`, or pass --node URL \
                         (or `tgrid config set node URL`)"
                    )),
                ),
                RpcError::WrongChain { .. } => {
                    (4, Some("check --chain-id (or `chain_id` in `tgrid config show`) and --node".into()))
                }
                RpcError::Node { code, .. } if code == "insufficient_funds" || code == "fee_not_payable" => {
                    (4, Some("see the balance with `tgrid account balance KEY`".into()))
                }
                RpcError::Node { status: 404, .. } => (5, None),
                RpcError::Node { .. } | RpcError::Failed { .. } => (4, None),
                RpcError::NotCommitted { hash } => {
                    (6, Some(format!("look it up later: `tgrid account history` or GET /v1/tx/{hash}")))
                }
                RpcError::Decode { .. } => (1, None),
            };
        }
        if cause.downcast_ref::<NotFound>().is_some() {
            return (5, None);
        }
    }
    (1, None)
}

/// The settings in effect: each from its flag or environment variable, else the config file, else the
/// built-in default.
#[derive(Debug, Serialize)]
struct Effective {
    node: String,
    from: Option<String>,
    chain_id: Option<String>,
    output: Output,
    max_fee: Amount,
    tip: Amount,
    home: Option<PathBuf>,
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    let config_path = cli.config_file.clone().or_else(Config::default_path);
    let config = match &config_path {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    let settings = Effective {
        node: cli.node.or(config.node.clone()).unwrap_or_else(|| ctx::DEFAULT_NODE.to_string()),
        from: cli.from.or(config.from.clone()),
        chain_id: cli.chain_id.or(config.chain_id.clone()),
        output: cli.output.or(config.output).unwrap_or(Output::Text),
        max_fee: cli.max_fee.or(config.max_fee).unwrap_or(ctx::DEFAULT_MAX_FEE),
        tip: cli.tip.unwrap_or(Amount::ZERO),
        home: cli.home.or(config.home.clone()),
    };
    let output = settings.output;
    match cli.command {
        Command::Devnet {
            p2p_port,
            rpc_port,
            provider_port,
            no_provider,
            heartbeat_interval,
            heartbeat_grace,
            job_content_window,
            audit_rate_bps,
            model,
            embeddings,
            gateway_port,
        } => {
            init_logging();
            let provider = (!no_provider).then_some(provider_port);
            let inference = model.map(|model| chain::DevnetInference { model, embeddings, gateway_port });
            let params = tensorgrid_types::Params {
                heartbeat_interval_ms: std::time::Duration::from(heartbeat_interval).as_millis() as u64,
                heartbeat_grace_ms: std::time::Duration::from(heartbeat_grace).as_millis() as u64,
                job_content_window_ms: std::time::Duration::from(job_content_window).as_millis() as u64,
                audit_rate_bps,
                ..tensorgrid_types::Params::default()
            };
            return chain::devnet(settings.home, p2p_port, rpc_port, provider, inference, params, output);
        }
        Command::Testnet { validators, dir, base_port, dry_run, blocks_per_epoch } => {
            return chain::testnet(dir, validators, base_port, blocks_per_epoch, dry_run, output);
        }
        Command::Demo { seed, model } => return demo::demo(seed, model, output),
        Command::Node => {
            init_logging();
            let home = settings
                .home
                .ok_or_else(|| anyhow::anyhow!("`tgrid node` needs --home DIR (a validator home)"))?;
            return chain::node(&home);
        }
        Command::Sim { seed, detection: true, jobs } => return detection(seed, jobs, output),
        Command::Sim { seed, .. } => return sim(seed, output),
        Command::Deploy(Deploy::Check { file }) => return deploy_check(&file, output),
        Command::Completions { shell } => {
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "tgrid", &mut out);
            return emit(&String::from_utf8_lossy(&out));
        }
        Command::Config(command) => {
            let path = config_path.ok_or_else(|| {
                anyhow::anyhow!("no config directory on this system: pass --config-file FILE")
            })?;
            return config_command(command, &path, config, &settings);
        }
        _ => {}
    }
    let home = match settings.home {
        Some(home) => home,
        None => dirs::data_dir()
            .map(|d| d.join("tensorgrid"))
            .ok_or_else(|| anyhow::anyhow!("no data directory on this system: pass --home DIR"))?,
    };
    let ctx = Ctx::new(home, output, settings.node, settings.from, settings.chain_id, settings.max_fee)?
        .with_tip(settings.tip);
    match cli.command {
        Command::Deploy(Deploy::Create { file, deposit }) => deploy::create(&ctx, &file, deposit),
        Command::Deploy(Deploy::Show { dseq }) => deploy::show(&ctx, dseq),
        Command::Deploy(Deploy::List { owner }) => deploy::list(&ctx, owner.as_deref()),
        Command::Deploy(Deploy::Deposit { dseq, amount }) => {
            let record = ctx.execute(Msg::DepositDeployment { dseq, amount })?;
            ctx.show_tx(&format!("deposited {amount} into deployment {dseq}"), &record)
        }
        Command::Deploy(Deploy::Close { dseq }) => {
            let record = ctx.execute(Msg::CloseDeployment { dseq })?;
            ctx.show_tx(&format!("closed deployment {dseq}"), &record)
        }
        Command::Market(command) => market::market(&ctx, command),
        Command::Lease(command) => market::lease(&ctx, command),
        Command::Job(command) => job::run(&ctx, command),
        Command::Provider(command) => provider::run(&ctx, command),
        Command::Channel(command) => channel::channel(&ctx, command),
        Command::Model(command) => channel::model(&ctx, command),
        Command::Chat(args) => chat::run(&ctx, args),
        Command::Gateway { config } => gateway::run(&ctx, &config),
        Command::Keys(command) => keys::run(command, &ctx.home, ctx.output),
        Command::Status => account::status(&ctx),
        Command::Account(command) => account::run(&ctx, command),
        Command::Demo { .. }
        | Command::Node
        | Command::Devnet { .. }
        | Command::Testnet { .. }
        | Command::Sim { .. }
        | Command::Deploy(Deploy::Check { .. })
        | Command::Completions { .. }
        | Command::Config(_) => Ok(()),
    }
}

fn config_command(
    command: ConfigCommand,
    path: &Path,
    mut config: Config,
    settings: &Effective,
) -> anyhow::Result<()> {
    match command {
        ConfigCommand::Path => emit_line(&path.display().to_string()),
        ConfigCommand::Show => match settings.output {
            Output::Json => print_json(&serde_json::json!({
                "path": path, "file": config, "effective": settings,
            })),
            Output::Text => {
                emit_line(&format!("# effective settings (config file: {})", path.display()))?;
                let value = serde_json::to_value(settings)?;
                if let Some(map) = value.as_object() {
                    for (key, value) in map {
                        let value = match value {
                            serde_json::Value::Null => "(not set)".to_string(),
                            serde_json::Value::String(s) => s.clone(),
                            other => other.to_string(),
                        };
                        emit_line(&format!("{key:<9} {value}"))?;
                    }
                }
                Ok(())
            }
        },
        ConfigCommand::Set { key, value } => {
            config.set(&key, &value)?;
            config.save(path)?;
            emit_line(&format!("{key} = {value}  ({})", path.display()))
        }
        ConfigCommand::Unset { key } => {
            config.unset(&key)?;
            config.save(path)?;
            emit_line(&format!("{key} unset  ({})", path.display()))
        }
    }
}

/// Logs to stderr, filtered by `TGRID_LOG` (default: info, with consensus internals at warn).
pub(crate) fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TGRID_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(
            "info,commonware_consensus=warn,commonware_p2p=warn,cranelift_codegen=warn,wasmtime=warn",
        )
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

fn detection(seed: u64, jobs: usize, output: Output) -> anyhow::Result<()> {
    anyhow::ensure!(jobs > 0, "--jobs must be at least 1");
    let started = std::time::Instant::now();
    let rows = tensorgrid_sim::detection::table(jobs, seed)?;
    match output {
        Output::Text => {
            emit(&tensorgrid_sim::detection::render(&rows))?;
            emit(&format!(
                "seed {seed}, {jobs} jobs per row, each row beside an honest baseline on the same seed; {:.0} s\n",
                started.elapsed().as_secs_f64()
            ))?;
        }
        Output::Json => print_json(&rows)?,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn code(e: impl Into<anyhow::Error>) -> u8 {
        classify(&e.into()).0
    }

    #[test]
    fn exit_codes_follow_the_kind_of_failure_not_its_text() {
        let transport = RpcError::Transport { url: "http://127.0.0.1:9".into(), reason: "refused".into() };
        assert_eq!(
            classify(&anyhow::Error::new(transport)).1.map(|h| h.contains("tgrid devnet")),
            Some(true)
        );
        let refused = || RpcError::Node {
            status: 400,
            code: "bad_nonce".into(),
            message: "nonce 3, expected 4".into(),
            details: serde_json::Value::Null,
        };
        assert_eq!(code(refused()), 4);
        assert_eq!(
            code(anyhow::Error::new(refused()).context("sending the deployment")),
            4,
            "through context"
        );
        let wrong_chain = RpcError::WrongChain { url: "u".into(), expected: "a".into(), node: "b".into() };
        assert_eq!(code(wrong_chain), 4);
        let missing = RpcError::Node {
            status: 404,
            code: "unknown_transaction".into(),
            message: "no such transaction".into(),
            details: serde_json::Value::Null,
        };
        assert_eq!(code(missing), 5);
        assert_eq!(code(NotFound("no job 7".into())), 5);
        assert_eq!(code(RpcError::NotCommitted { hash: tensorgrid_types::Hash::ZERO }), 6);
        assert_eq!(code(anyhow::anyhow!("cannot read app.yaml")), 1);
    }

    #[test]
    fn every_command_parses_its_global_flags_anywhere() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from([
            "tgrid",
            "lease",
            "close",
            "7/1",
            "--from",
            "alice",
            "--chain-id",
            "tg-devnet",
            "--max-fee",
            "0.5tgr",
        ])
        .expect("parses");
        assert_eq!(cli.from.as_deref(), Some("alice"));
        assert_eq!(cli.max_fee, Some(Amount(500_000)));
        assert!(
            Cli::try_parse_from(["tgrid", "market", "bid", "7", "--price", "1tgr"]).is_err(),
            "order is dseq/gseq"
        );
        assert!(Cli::try_parse_from(["tgrid", "account", "send", "bob", "1.5atom"]).is_err());
    }
}
