//! Docker for the container tests: the engine, images assembled from host files (there is no
//! registry: nothing can be pulled), the project's Dockerfile built on them, and containers
//! and images removed when dropped.
//!
//! Every name is unique to the test process and the call (`rprof-test-PID-N-what`), so tests
//! may run in parallel with each other and with other test processes.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use crate::agent::agent_bin;
use crate::process::{Finished, Running};
use crate::toolchain::{find_tool, strip_debug, workspace_root};

/// How long one `docker` command may take (an image build included).
const DOCKER_TIMEOUT: Duration = Duration::from_secs(300);

/// Runs `docker ARGS` to completion.
pub fn docker<S: AsRef<OsStr>>(args: &[S]) -> Finished {
    let mut cmd = Command::new(find_tool("docker", "run the container tests"));
    cmd.args(args);
    Running::spawn(cmd, "docker").finish(DOCKER_TIMEOUT)
}

/// Runs `docker ARGS`, which must succeed, and returns its standard output, trimmed.
pub fn docker_ok<S: AsRef<OsStr>>(args: &[S]) -> String {
    require_engine();
    let finished = docker(args);
    assert!(
        finished.status.success(),
        "docker {:?} failed ({}):\n{}",
        args.iter().map(AsRef::as_ref).collect::<Vec<_>>(),
        finished.status,
        finished.stderr
    );
    finished.stdout.trim().to_owned()
}

/// Panics, saying so, unless a Docker engine answers `docker info`: the container tests never
/// pass without one.
pub fn require_engine() {
    static ENGINE: OnceLock<Result<(), String>> = OnceLock::new();
    let answer = ENGINE.get_or_init(|| {
        let finished = docker(&["info", "--format", "{{.ServerVersion}}"]);
        if finished.status.success() {
            Ok(())
        } else {
            Err(finished.stderr)
        }
    });
    if let Err(stderr) = answer {
        panic!(
            "no Docker engine answers (`docker info` failed): the container tests need one \
             (apt-get install docker.io, then start dockerd):\n{stderr}"
        );
    }
}

/// A name no other container or image of any test has: `rprof-test-PID-N-what`.
pub fn unique_name(what: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("rprof-test-{}-{n}-{what}", std::process::id())
}

/// An image this test made, removed when dropped.
pub struct Image {
    tag: String,
}

impl Image {
    /// `docker import` of a root filesystem holding exactly `files` (host path, path in the
    /// image) and the shared libraries each of them loads, at the host's paths; `changes` are
    /// Dockerfile instructions for the image's config (`ENTRYPOINT [...]`).
    pub fn import(what: &str, files: &[(&Path, &str)], changes: &[&str]) -> Image {
        let root = tempfile::tempdir().expect("create a directory for the root filesystem");
        // Programs write their figures to /tmp, world-writable and sticky as everywhere.
        let tmp = root.path().join("tmp");
        fs::create_dir(&tmp).expect("create /tmp in the root filesystem");
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o1777)).expect("chmod /tmp");
        let mut libraries = BTreeSet::new();
        for (host, inside) in files {
            place(host, &root.path().join(inside.trim_start_matches('/')));
            libraries.extend(shared_libraries(host));
        }
        for library in libraries {
            let inside = library.strip_prefix("/").unwrap_or(&library);
            place(&library, &root.path().join(inside));
        }
        let archive = root.path().with_extension("tar");
        let tar = find_tool("tar", "pack a root filesystem for `docker import`");
        let status = Command::new(tar)
            .arg("-C")
            .arg(root.path())
            .args(["-cf"])
            .arg(&archive)
            .arg(".")
            .status()
            .expect("run tar");
        assert!(status.success(), "tar of {} failed", root.path().display());
        let tag = format!("{}:latest", unique_name(what));
        let mut args = vec!["import".to_owned()];
        for change in changes {
            args.extend(["--change".to_owned(), (*change).to_owned()]);
        }
        args.extend([archive.display().to_string(), tag.clone()]);
        let image = Image { tag };
        docker_ok(&args);
        let _ = fs::remove_file(&archive);
        image
    }

    /// `docker build` of the project's own Dockerfile, stage `target`, with `build_args`, from
    /// an empty context (the prebuilt stage takes its binary from an image).
    pub fn build_dockerfile(what: &str, target: &str, build_args: &[(&str, &str)]) -> Image {
        let context = tempfile::tempdir().expect("create an empty build context");
        let dockerfile = workspace_root().join("Dockerfile");
        let image = Image {
            tag: format!("{}:latest", unique_name(what)),
        };
        let mut args = vec![
            "build".to_owned(),
            "--quiet".to_owned(),
            "--file".to_owned(),
            dockerfile.display().to_string(),
            "--target".to_owned(),
            target.to_owned(),
            "--tag".to_owned(),
            image.tag.clone(),
        ];
        for (name, value) in build_args {
            args.extend(["--build-arg".to_owned(), format!("{name}={value}")]);
        }
        args.push(context.path().display().to_string());
        docker_ok(&args);
        image
    }

    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// The image's size as `docker image inspect` reports it (all its layers), in bytes.
    pub fn size(&self) -> u64 {
        let size = docker_ok(&["image", "inspect", "--format", "{{.Size}}", &self.tag]);
        size.parse()
            .unwrap_or_else(|_| panic!("image size {size:?}"))
    }

    /// One field of the image's config, as `docker image inspect --format` prints it.
    pub fn inspect(&self, format: &str) -> String {
        docker_ok(&["image", "inspect", "--format", format, &self.tag])
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        // Best effort: a failure here must not hide the test's own.
        let _ = docker(&["image", "rm", "--force", &self.tag]);
    }
}

/// Copies `from` to `to`, creating its directory, keeping its permissions.
fn place(from: &Path, to: &Path) {
    let dir = to
        .parent()
        .expect("a file in the root filesystem has a directory");
    fs::create_dir_all(dir).unwrap_or_else(|err| panic!("create {}: {err}", dir.display()));
    fs::copy(from, to)
        .unwrap_or_else(|err| panic!("copy {} to {}: {err}", from.display(), to.display()));
}

/// The shared libraries `binary` loads, the dynamic loader included, as `ldd` resolves them
/// on this host (none for a static binary).
pub fn shared_libraries(binary: &Path) -> Vec<PathBuf> {
    let output = Command::new(find_tool("ldd", "list a test program's libraries"))
        .arg(binary)
        .output()
        .unwrap_or_else(|err| panic!("run ldd {}: {err}", binary.display()));
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-linux... (0x...)"
            let path = line.split("=>").last()?.split_whitespace().next()?;
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

/// The agent's image, built by the project's Dockerfile on a base assembled from the host.
pub struct AgentImage {
    /// The runtime stage: [`AgentImage::base`] configured, with the agent in it.
    pub image: Image,
    /// The base: only the libraries the agent links (glibc, libgcc), as distroless/cc has.
    pub base: Image,
    _binary: Image,
}

impl AgentImage {
    /// Builds the Dockerfile's `prebuilt` stage: BASE_IMAGE a root filesystem holding the
    /// libraries the release binary links, PREBUILT_FROM an image holding that binary without
    /// its debug info (as the Dockerfile's build stage makes it) in /out/.
    pub fn build() -> AgentImage {
        let binary = strip_debug(&agent_bin());
        let base = Image::libraries_of("agent-base", &binary);
        let binary_image = Image::import("agent-binary", &[(&binary, "/out/rprof-agent")], &[]);
        let image = Image::build_dockerfile(
            "agent",
            "prebuilt",
            &[
                ("BASE_IMAGE", base.tag()),
                ("PREBUILT_FROM", binary_image.tag()),
            ],
        );
        AgentImage {
            image,
            base,
            _binary: binary_image,
        }
    }
}

impl Image {
    /// An image of the libraries `binary` loads and nothing else.
    fn libraries_of(what: &str, binary: &Path) -> Image {
        let libraries = shared_libraries(binary);
        let files: Vec<(&Path, &str)> = libraries
            .iter()
            .map(|library| {
                let path = library.to_str().expect("a UTF-8 library path");
                (library.as_path(), path)
            })
            .collect();
        Image::import(what, &files, &[])
    }
}

/// A container this test started, removed (with its anonymous volumes) when dropped.
pub struct Container {
    name: String,
}

impl Container {
    /// `docker run --detach --name NAME OPTIONS IMAGE ARGS`.
    pub fn run(what: &str, options: &[&str], image: &str, args: &[&str]) -> Container {
        let container = Container {
            name: unique_name(what),
        };
        let mut all = vec!["run", "--detach", "--name", &container.name];
        all.extend_from_slice(options);
        all.push(image);
        all.extend_from_slice(args);
        docker_ok(&all);
        container
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Everything the container printed, standard output and error.
    pub fn logs(&self) -> String {
        let finished = docker(&["logs", &self.name]);
        format!("{}{}", finished.stdout, finished.stderr)
    }

    /// Waits until the container's output contains `text`, or panics with its output.
    pub fn wait_for_output(&self, text: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let logs = self.logs();
            if logs.contains(text) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not print {text:?} within {timeout:?}; it printed:\n{logs}\n{}",
                self.name,
                self.inspect("{{.State.Status}} {{.State.Error}}")
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// One field of `docker container inspect --format`.
    pub fn inspect(&self, format: &str) -> String {
        docker(&["container", "inspect", "--format", format, &self.name])
            .stdout
            .trim()
            .to_owned()
    }

    /// The container's first process, as the host numbers it.
    pub fn host_pid(&self) -> u32 {
        let pid = self.inspect("{{.State.Pid}}");
        pid.parse()
            .unwrap_or_else(|_| panic!("{}: no PID ({pid:?})", self.name))
    }

    /// The host address (IP, port) `port/tcp` of the container is published on.
    pub fn published(&self, port: u16) -> (String, u16) {
        let mapping = docker_ok(&["port", &self.name, &format!("{port}/tcp")]);
        let first = mapping.lines().next().unwrap_or_default();
        let (ip, host_port) = first
            .rsplit_once(':')
            .unwrap_or_else(|| panic!("{}: port {port} is not published: {mapping:?}", self.name));
        let host_port = host_port
            .parse()
            .unwrap_or_else(|_| panic!("a port number in {mapping:?}"));
        assert_eq!(
            mapping.lines().count(),
            1,
            "published more than once: {mapping}"
        );
        (ip.to_owned(), host_port)
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = docker(&["rm", "--force", "--volumes", &self.name]);
    }
}

/// The capability that lets the agent open perf events under Docker's default seccomp
/// profile: `PERFMON`, or, on engines that do not know it (Debian 12's docker.io 20.10 refuses
/// `--cap-add PERFMON` with `unknown capability: "CAP_PERFMON"`), `SYS_ADMIN`, which the
/// kernel and the default seccomp profile accept in its stead.
pub fn perf_capability(image: &Image) -> &'static str {
    static CAPABILITY: OnceLock<&'static str> = OnceLock::new();
    CAPABILITY.get_or_init(|| {
        let name = unique_name("perfmon-probe");
        let created = docker(&[
            "create",
            "--name",
            &name,
            "--cap-drop",
            "ALL",
            "--cap-add",
            "PERFMON",
            image.tag(),
        ]);
        let _ = docker(&["rm", "--force", &name]);
        if created.status.success() {
            return "PERFMON";
        }
        assert!(
            created
                .stderr
                .contains("unknown capability: \"CAP_PERFMON\""),
            "docker create --cap-add PERFMON failed:\n{}",
            created.stderr
        );
        eprintln!(
            "this Docker engine does not know CAP_PERFMON ({}): the container tests grant \
             SYS_ADMIN in its stead",
            created.stderr.trim()
        );
        "SYS_ADMIN"
    })
}
