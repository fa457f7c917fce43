//! A thread's scheduler state, the one-letter field 3 of `/proc/PID/task/TID/stat`.

use std::fmt;

use serde::{Serialize, Serializer};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ThreadState {
    /// `R`: running or runnable.
    Running,
    /// `S`: interruptible sleep (waiting for an event).
    Sleeping,
    /// `D`: uninterruptible sleep, usually disk or network file system I/O.
    DiskSleep,
    /// `T`: stopped by a job-control signal.
    Stopped,
    /// `t`: stopped by a tracer.
    TracingStop,
    /// `Z`: exited, not yet reaped.
    Zombie,
    /// `X` or `x`: being torn down.
    Dead,
    /// `I`: idle kernel thread.
    Idle,
    /// `P`: parked (Linux 3.9 to 3.13).
    Parked,
    /// Any letter this code does not know (`W`, `K`, or something newer).
    Other(char),
}

impl ThreadState {
    /// Decodes the stat letter.
    pub fn from_code(code: char) -> ThreadState {
        match code {
            'R' => ThreadState::Running,
            'S' => ThreadState::Sleeping,
            'D' => ThreadState::DiskSleep,
            'T' => ThreadState::Stopped,
            't' => ThreadState::TracingStop,
            'Z' => ThreadState::Zombie,
            'X' | 'x' => ThreadState::Dead,
            'I' => ThreadState::Idle,
            'P' => ThreadState::Parked,
            other => ThreadState::Other(other),
        }
    }

    /// The stat letter, as `ps` shows it.
    pub fn code(self) -> char {
        match self {
            ThreadState::Running => 'R',
            ThreadState::Sleeping => 'S',
            ThreadState::DiskSleep => 'D',
            ThreadState::Stopped => 'T',
            ThreadState::TracingStop => 't',
            ThreadState::Zombie => 'Z',
            ThreadState::Dead => 'X',
            ThreadState::Idle => 'I',
            ThreadState::Parked => 'P',
            ThreadState::Other(c) => c,
        }
    }
}

/// The words `ps` and Go's goroutine dump use: "running", "sleeping", "disk wait", ...
impl fmt::Display for ThreadState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let word = match self {
            ThreadState::Running => "running",
            ThreadState::Sleeping => "sleeping",
            ThreadState::DiskSleep => "disk wait",
            ThreadState::Stopped => "stopped",
            ThreadState::TracingStop => "tracing stop",
            ThreadState::Zombie => "zombie",
            ThreadState::Dead => "dead",
            ThreadState::Idle => "idle",
            ThreadState::Parked => "parked",
            ThreadState::Other(c) => return write!(f, "state {c}"),
        };
        f.write_str(word)
    }
}

/// Serialized as its Display word, so JSON output reads like the text output.
impl Serialize for ThreadState {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letters_round_trip_and_read_like_ps() {
        for code in ['R', 'S', 'D', 'T', 't', 'Z', 'X', 'I', 'P', 'W'] {
            assert_eq!(ThreadState::from_code(code).code(), code);
        }
        assert_eq!(ThreadState::from_code('x'), ThreadState::Dead);
        assert_eq!(ThreadState::from_code('D').to_string(), "disk wait");
        assert_eq!(ThreadState::from_code('t').to_string(), "tracing stop");
        assert_eq!(ThreadState::from_code('W').to_string(), "state W");
    }

    #[test]
    fn serializes_as_its_word() {
        let json = serde_json::to_string(&ThreadState::Sleeping).unwrap();
        assert_eq!(json, "\"sleeping\"");
    }
}
