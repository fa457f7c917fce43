//! The `rprof-agent` binary: parse the command line, run one verb, turn errors into one line.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use rprof_agent::cli::{Cli, Command};
use rprof_agent::stop::StopFlag;

fn main() -> ExitCode {
    // The agent's own child that holds tracefs probes registered runs nothing else.
    rprof_agent::probes::keeper::serve_if_asked();
    let cli = Cli::parse();
    init_logging(&cli);
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One line a person can act on: the chain of causes, outermost first.
            let causes: Vec<String> = err.chain().map(ToString::to_string).collect();
            eprintln!("rprof-agent: error: {}", causes.join(": "));
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Record(args) => rprof_agent::record::run(args, &StopFlag::install()?),
        Command::Threads(args) => rprof_agent::threads::run(args),
        Command::Top(args) => rprof_agent::top::run(args),
        Command::Serve(args) => rprof_agent::server::run(args),
    }
}

/// Logs go to stderr: warnings only for the batch verbs, one line per request for `serve` (a
/// sidecar's log is its audit trail); -v for debug, RUST_LOG overrides.
fn init_logging(cli: &Cli) {
    let quiet = match cli.command {
        Command::Serve(_) => "info",
        _ => "warn",
    };
    let default = match cli.verbose {
        0 => quiet,
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        // A sidecar's stderr is a log collector, not a terminal: no color codes there.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
