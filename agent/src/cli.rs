//! Command-line interface: one subcommand per verb, parsed with clap.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::kinds::Kind;

#[derive(Debug, Parser)]
#[command(
    name = "rprof-agent",
    version,
    about = "pprof profiles of any native Linux process, taken from the outside",
    long_about = "Samples, unwinds and symbolizes a running process (C, C++, Rust, Go: anything \
                  ELF) without restarting or instrumenting it, and writes profiles that \
                  `go tool pprof`, `pprof -http` and Speedscope open like a Go profile."
)]
pub struct Cli {
    /// More log output (-v: debug, -vv: trace). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Record profiles (CPU by default; see --profile) of running processes (--pid, --process)
    /// or of a command and its children (after --).
    Record(RecordArgs),
    /// Snapshot every thread: name, state, wait channel, syscall and symbolized stack.
    Threads(ThreadsArgs),
    /// Print the top functions of any pprof file.
    Top(TopArgs),
    /// Serve the process's profiles over HTTP the way Go's net/http/pprof does, for
    /// `go tool pprof`, Parca and Grafana Alloy.
    Serve(ServeArgs),
}

/// How `threads` prints the snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ThreadsFormat {
    /// One block per thread, like Go's goroutine?debug=2 dump.
    Text,
    /// {"pid", "pause_us", "threads": [...]} for scripts.
    Json,
    /// Gzipped pprof, threads/count aggregated by stack, labels state and thread.
    Pprof,
}

#[derive(Debug, Args)]
pub struct ThreadsArgs {
    /// Process to snapshot.
    #[arg(short, long, allow_negative_numbers = true)]
    pub pid: u32,

    /// Output format.
    #[arg(long, value_enum, default_value_t = ThreadsFormat::Text)]
    pub format: ThreadsFormat,

    /// Output file [default: stdout; for pprof rprof-threads-<pid>-<time>.pb.gz].
    #[arg(short, long)]
    pub output: Option<PathBuf>,

    /// Never stop any thread, not even one that neither blocks nor runs while the snapshot is
    /// taken (by default such a thread is stopped with ptrace for its stack, briefly).
    #[arg(long)]
    pub nonblocking: bool,
}

/// Which file `record` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RecordFormat {
    /// Gzipped pprof protobuf, as Go's CPU profile.
    Pprof,
    /// SVG flamegraph.
    Flamegraph,
}

#[derive(Debug, Args)]
pub struct RecordArgs {
    /// Process to profile; repeat it for several, each profiled into the same files (samples
    /// labelled pid and process).
    #[arg(
        short,
        long,
        allow_negative_numbers = true,
        conflicts_with = "command",
        required_unless_present_any = ["command", "process"]
    )]
    pub pid: Vec<u32>,

    /// Profile the process with this name (its comm or its executable's file name; the oldest
    /// one if several match); repeat it for several. Goes with --pid.
    #[arg(
        long,
        value_name = "NAME",
        conflicts_with = "command",
        value_parser = clap::builder::NonEmptyStringValueParser::new()
    )]
    pub process: Vec<String>,

    /// Profile only the launched command's own process, not the processes it starts (by
    /// default every descendant found while it runs is profiled too, samples labelled pid and
    /// process; one that lives less than ~50 ms may be missed).
    #[arg(long, conflicts_with_all = ["pid", "process"])]
    pub no_children: bool,

    /// With --pid/--process: profile the processes they have started too (a server's workers
    /// under its master, a supervisor's services), the ones running now and any started during
    /// the window, samples labelled pid and process. They are left running at the end.
    #[arg(long, conflicts_with = "command")]
    pub children: bool,

    /// How long to record; Ctrl-C stops earlier and still writes the profile.
    #[arg(short, long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub seconds: u64,

    /// Samples per second per thread on CPU (cpu profile).
    #[arg(short = 'F', long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub frequency: u64,

    /// Profiles to record, in the same window (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "cpu", value_parser = crate::kinds::parser())]
    pub profile: Vec<&'static Kind>,

    /// Output file [default: rprof-<profile>-<pid>-<time>.pb.gz, or .svg for a flamegraph;
    /// <pid>: the launched command's, or the first process named]. With several profiles, each file gets its profile's name before the extension
    /// (prof.pb.gz: prof.cpu.pb.gz, prof.threadcreate.pb.gz).
    #[arg(short, long)]
    pub output: Option<PathBuf>,

    /// Output format.
    #[arg(long, value_enum, default_value_t = RecordFormat::Pprof)]
    pub format: RecordFormat,

    /// Also record kernel frames in the cpu profile (needs perf_event_paranoid <= 1 or
    /// CAP_PERFMON/CAP_SYS_ADMIN).
    #[arg(long)]
    pub kernel: bool,

    /// allocs/heap: trace every allocator call instead of sampled windows (exact figures, for
    /// a leak hunt in staging: every call traps, ~7 µs an allocation with its free here).
    #[arg(long)]
    pub exact: bool,

    /// allocs/heap (sampled): the share of the target's time, in percent, the probes may cost
    /// it [default: 0.5]. More opens windows more often: more allocations seen, the figures
    /// more precise. At most 50.
    #[arg(long, value_name = "PERCENT", conflicts_with = "exact", value_parser = overhead_percent)]
    pub max_overhead: Option<f64>,

    /// Bytes of user stack copied with each sample [default: the most a sample can carry, ~64 KiB].
    #[arg(long, value_name = "BYTES", value_parser = clap::value_parser!(u32).range(8..=65_440))]
    pub stack_size: Option<u32>,

    /// Number of functions in the table printed at the end (0: none).
    #[arg(long, default_value_t = 5)]
    pub top: usize,

    /// Command to launch and profile (instead of --pid), with the processes it starts.
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct TopArgs {
    /// pprof files (gzipped or not), e.g. the several a `record --profile cpu,block` writes:
    /// one table each.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,

    /// Number of rows.
    #[arg(short, long, default_value_t = 10)]
    pub n: usize,

    /// Sample value to rank by (index or type name, e.g. "cpu"); default: the profile's default.
    #[arg(long)]
    pub sample_index: Option<String>,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["pid", "process"])))]
pub struct ServeArgs {
    /// Process to profile (as this PID namespace numbers it).
    #[arg(short, long, allow_negative_numbers = true)]
    pub pid: Option<u32>,

    /// Profile the process with this name (its comm or its executable's file name): wait for it
    /// to start, and follow it when it restarts under a new PID. The oldest one wins if several
    /// match.
    #[arg(long, value_name = "NAME", value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub process: Option<String>,

    /// Address to listen on. Anything but loopback lets whoever reaches it read the target's
    /// stacks and command line: pair it with --token-file.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:6060")]
    pub listen: SocketAddr,

    /// File holding a token every request must present as `Authorization: Bearer TOKEN`
    /// (surrounding whitespace ignored).
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<PathBuf>,

    /// Longest profile a request may ask for with ?seconds=N.
    #[arg(long, value_name = "SECONDS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=3_600))]
    pub max_seconds: u64,

    /// CPU samples per second per thread on CPU (kinds that sample CPU time).
    #[arg(short = 'F', long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub frequency: u64,

    /// Thread snapshots never stop any thread, not even one that neither blocks nor runs while
    /// the snapshot is taken (by default such a thread is stopped with ptrace, briefly).
    #[arg(long)]
    pub nonblocking: bool,
}

/// `--max-overhead`: a percentage above 0 and at most 50.
fn overhead_percent(text: &str) -> Result<f64, String> {
    let percent: f64 = text
        .trim_end_matches('%')
        .parse()
        .map_err(|_| format!("{text:?} is not a percentage (e.g. 2 or 0.5)"))?;
    if percent > 0.0 && percent <= 50.0 {
        Ok(percent)
    } else {
        Err(format!(
            "{percent} is out of range: more than 0, at most 50"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_overhead_is_a_percentage_within_reason() {
        assert_eq!(overhead_percent("2"), Ok(2.0));
        assert_eq!(overhead_percent("0.5%"), Ok(0.5));
        assert!(overhead_percent("0").is_err());
        assert!(overhead_percent("80").is_err());
        assert!(overhead_percent("lots").is_err());
    }
}
