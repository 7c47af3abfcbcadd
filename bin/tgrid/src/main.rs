//! `tgrid`: parses arguments and calls the library crates. Nothing else lives here.

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(name = "tgrid", version, about = "tensorgrid: a decentralized compute market for AI")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum Output {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Deployments from Akash SDL manifests.
    #[command(subcommand)]
    Deploy(Deploy),
    /// Run a seeded simulation of the market on the in-process ledger: providers register and bid, tenants
    /// lease and pay by block time, jobs run with commit–reveal, and misbehaving providers are caught.
    Sim {
        /// Seed for block timing, randomness and salts; the same seed prints the same story.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
}

#[derive(Subcommand)]
enum Deploy {
    /// Check an Akash SDL v2.0 file and print the deployment it maps to, sending nothing. Exits 0 if it maps,
    /// 1 if it does not (the error names the file, line and field).
    Check {
        file: std::path::PathBuf,
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
}

// The binary is where errors meet the user, so it alone prints to stderr.
#[allow(clippy::print_stderr)]
fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Deploy(Deploy::Check { file, output }) => deploy_check(&file, output)?,
        Command::Sim { seed, output } => {
            let world = tensorgrid_sim::scenario::run_market_tour(seed)?;
            let report = tensorgrid_sim::report::Report::from_world(&world, seed);
            match output {
                Output::Text => print!("{}", report.to_text()),
                Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
            }
        }
    }
    Ok(())
}

fn deploy_check(file: &std::path::Path, output: Output) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(file).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
    let name = file.display().to_string();
    let mapped = tensorgrid_sdl::parse(&name, &text, &tensorgrid_sdl::SdlOptions::default());
    match (mapped, output) {
        (Ok(m), Output::Text) => print!("{}", m.to_text(&name)),
        (Ok(m), Output::Json) => println!("{}", serde_json::to_string_pretty(&m)?),
        (Err(e), Output::Json) => {
            println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "error": e }))?);
            anyhow::bail!("{e}");
        }
        (Err(e), Output::Text) => anyhow::bail!("{e}"),
    }
    Ok(())
}
