//! `tgrid`: hands the command line to the CLI crate and turns its result into an exit code.

fn main() -> std::process::ExitCode {
    tensorgrid_cli::main()
}
