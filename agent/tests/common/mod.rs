//! What the agent's kernel-level tests share: compiling a C test program, and running it with
//! its stdout read line by line, killed when dropped so a failing test leaves nothing behind.

#![allow(dead_code)] // each test binary uses its own subset

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::time::Duration;

/// How long a test program may take to print its next line.
const LINE_TIMEOUT: Duration = Duration::from_secs(10);

/// A running test program.
pub struct Program {
    child: Child,
    lines: Receiver<String>,
}

impl Program {
    pub fn spawn(exe: &Path) -> Program {
        let mut child = Command::new(exe)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the test program");
        let stdout = child.stdout.take().expect("piped stdout");
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        Program { child, lines }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Writes "go" to the program's stdin: the programs wait for it at the step under test.
    pub fn go(&mut self) {
        let stdin = self.child.stdin.as_mut().expect("piped stdin");
        stdin.write_all(b"go\n").expect("write to the test program");
        stdin.flush().expect("flush the test program's stdin");
    }

    /// The program's next stdout line; `what` names what was expected, for the panic.
    pub fn next_line(&self, what: &str) -> String {
        self.lines
            .recv_timeout(LINE_TIMEOUT)
            .unwrap_or_else(|_| panic!("the test program never printed {what}"))
    }

    /// Asserts that the next line starts with `prefix`.
    pub fn expect_line(&self, prefix: &str) {
        let line = self.next_line(&format!("{prefix:?}"));
        assert!(line.starts_with(prefix), "{line:?} instead of {prefix:?}");
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Compiles `source` as `<dir>/<name>` with gcc -O2 -g -pthread.
pub fn compile(dir: &TempDir, name: &str, source: &str) -> PathBuf {
    let source_path = dir.path().join(format!("{name}.c"));
    fs::write(&source_path, source).expect("write the C source");
    let exe = dir.path().join(name);
    let status = Command::new("gcc")
        .args(["-O2", "-g", "-pthread", "-o"])
        .arg(&exe)
        .arg(&source_path)
        .status()
        .unwrap_or_else(|error| {
            panic!("cannot run gcc ({error}): run scripts/setup to install the build tools")
        });
    assert!(status.success(), "gcc failed on {}", source_path.display());
    exe
}

/// A directory removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "rprof-agent-test-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&path).expect("create a temporary directory");
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}
