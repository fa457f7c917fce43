//! The processes one `record` profiles, each with its own recording of every kind asked for:
//! the launched command and the processes it starts, or the processes named on the command line.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{anyhow, bail, Result};
use rprof_symbolizer::Symbolizer;

use super::descendants::process_name;
use crate::cli::RecordArgs;
use crate::kinds::Kind;
use crate::process_identity::{find_by_name, Incarnation};
use crate::recording::{Recording, Request};
use crate::target::Target;

/// One profile being recorded, and its kind.
pub type Recorded = (&'static Kind, Box<dyn Recording>);
pub type Recordings = Vec<Recorded>;

/// One process under recording.
pub struct Followed {
    pub target: Target,
    /// Its name (comm) as last seen while it ran: its samples' `process` label.
    pub name: String,
    /// Seen gone during the window.
    pub exited: bool,
    /// The same, for the threads that drain its recordings: they stop them then.
    pub gone: Arc<AtomicBool>,
    pub recordings: Recordings,
}

impl Followed {
    /// Starts recording `target`.
    fn open(target: Target, opener: &Opener<'_>) -> Result<Self> {
        let recordings = opener.open(&target)?;
        if recordings.is_empty() {
            bail!(
                "none of the profiles asked for can be recorded of PID {}",
                target.pid()
            );
        }
        // A launched command has not exec()ed yet: it bears the agent's name until it does.
        let launched = target
            .is_launched()
            .then(|| opener.program_name())
            .flatten();
        Ok(Followed {
            name: launched
                .or_else(|| process_name(target.pid()))
                .unwrap_or_default(),
            target,
            exited: false,
            gone: Arc::new(AtomicBool::new(false)),
            recordings,
        })
    }

    pub fn pid(&self) -> u32 {
        self.target.pid()
    }

    /// Whether it still runs, noting its name while it does (a child found between its fork and
    /// its exec is named after the program it runs next time).
    pub fn refresh(&mut self) -> bool {
        if !self.exited && !self.target.alive() {
            self.exited = true;
            self.gone.store(true, Ordering::Release);
        }
        if !self.exited {
            if let Some(name) = process_name(self.pid()) {
                self.name = name;
            }
        }
        !self.exited
    }
}

/// What every process's recordings are opened with.
pub struct Opener<'a> {
    pub args: &'a RecordArgs,
    /// The profiles asked for, each once.
    pub kinds: Vec<&'static Kind>,
    /// One cache of parsed binaries, shared by every profile of every process.
    pub symbolizer: Arc<Symbolizer>,
}

impl Opener<'_> {
    /// Starts every profile asked for of `target`. A profile that cannot be taken is an error
    /// when it is the only one; next to others, it is reported and left out.
    fn open(&self, target: &Target) -> Result<Recordings> {
        let args = self.args;
        let program = target
            .is_launched()
            .then(|| args.command.first().map(String::as_str))
            .flatten();
        let request = Request {
            pid: target.pid(),
            program,
            frequency: args.frequency,
            stack_bytes: args
                .stack_size
                .unwrap_or(crate::sampler::DEFAULT_STACK_BYTES),
            kernel: args.kernel,
            exact: args.exact,
            max_overhead: args.max_overhead.map(|percent| percent / 100.0),
            symbolizer: &self.symbolizer,
        };
        let mut recordings: Recordings = Vec::new();
        for &kind in &self.kinds {
            match kind.open(&request) {
                Ok(recording) => recordings.push((kind, recording)),
                Err(err) if self.kinds.len() > 1 => {
                    eprintln!(
                        "rprof-agent: the {} profile is unavailable, recording the others: {err:#}",
                        kind.name
                    );
                }
                Err(err) => return Err(err),
            }
        }
        Ok(recordings)
    }

    /// The launched command, or the processes named (`--pid`, `--process`), each recording.
    /// One process that cannot be recorded is an error; among several, it is reported in one
    /// line and the others are recorded.
    pub fn roots(&self) -> Result<Vec<Followed>> {
        let args = self.args;
        if !args.command.is_empty() {
            return Ok(vec![Followed::open(Target::launch(&args.command)?, self)?]);
        }
        let named = named_pids(args);
        if let [only] = &named[..] {
            let pid = *only.as_ref().map_err(|err| anyhow!("{err:#}"))?;
            return Ok(vec![Followed::open(Target::attach(pid)?, self)?]);
        }
        let mut roots: Vec<Followed> = Vec::new();
        for pid in named {
            let opened = pid.and_then(|pid| Followed::open(Target::attach(pid)?, self));
            match opened {
                Ok(followed) if roots.iter().any(|r| r.pid() == followed.pid()) => {}
                Ok(followed) => roots.push(followed),
                Err(err) => eprintln!("rprof-agent: {err:#} (recording the others)"),
            }
        }
        if roots.is_empty() {
            bail!("none of the processes named can be recorded");
        }
        Ok(roots)
    }

    /// The file name of the command's program.
    fn program_name(&self) -> Option<String> {
        let program = std::path::Path::new(self.args.command.first()?);
        Some(program.file_name()?.to_string_lossy().into_owned())
    }

    /// Starts recording `pid`, a process started by one followed already. One that cannot be
    /// recorded is said so in one line; one gone already (a short-lived command) is not. What a
    /// launched command started is ended with it; what a named process started is left alone.
    ///
    /// `is_parent(ppid)` says whether `ppid` is a followed process that still holds its PID:
    /// the child is checked to be that process's, once held by its pidfd. A PID read from a
    /// `children` file may have been reused since, and a stranger must be neither recorded nor
    /// sent the command's SIGTERM.
    pub fn child(&self, pid: u32, is_parent: impl Fn(u32) -> bool) -> Option<Followed> {
        let launched = !self.args.command.is_empty();
        let target = if launched {
            Target::attach_started(pid)
        } else {
            Target::attach(pid)
        };
        if let Ok(target) = &target {
            if !target.parent_pid().is_some_and(&is_parent) {
                tracing::debug!("PID {pid} is no longer a child of a followed process");
                return None;
            }
        }
        let opened = target.and_then(|target| Followed::open(target, self));
        match opened {
            Ok(followed) => Some(followed),
            Err(err) if Incarnation::of(pid).is_none() => {
                tracing::debug!("PID {pid} ended before it could be recorded: {err:#}");
                None
            }
            Err(err) => {
                eprintln!("rprof-agent: PID {pid}, a child, is not recorded: {err:#}");
                None
            }
        }
    }
}

/// The PIDs of `--pid` and `--process`, in that order; a name that no process has is an error
/// in its place.
fn named_pids(args: &RecordArgs) -> Vec<Result<u32>> {
    let pids = args.pid.iter().map(|&pid| Ok(pid));
    let names = args.process.iter().map(|name| {
        find_by_name(name).map(|found| found.pid).ok_or_else(|| {
            anyhow!("no process named {name:?} (neither its comm nor its executable's name)")
        })
    });
    pids.chain(names).collect()
}
