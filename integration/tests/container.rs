//! The sidecar, in real containers: the image built by the project's Dockerfile (on a base
//! assembled from the host's libraries: there is no registry), run next to application
//! containers the tests assemble the same way (a C and a Rust program, each at its own path
//! in its own root filesystem and mount namespace), as a pod runs them:
//!
//! ```text
//! docker run -d --name APP APP-IMAGE
//! docker run -d --pid=container:APP --cap-drop ALL --cap-add SYS_PTRACE --cap-add PERFMON \
//!     --read-only -p 127.0.0.1::6060 rprof-agent --process NAME --listen 0.0.0.0:6060
//! ```
//!
//! with Docker's default seccomp profile, and read from the host with `go tool pprof`. Then the
//! failures users meet: no shared PID namespace, a capability dropped, tracefs not mounted, the
//! application restarting, its binary replaced under it.
//!
//! Without a Docker engine these tests fail, saying so. On engines that do not know
//! CAP_PERFMON (Debian 12's docker.io 20.10), `SYS_ADMIN` stands in for it (see
//! [`perf_capability`]); the test output says so.

use std::ffi::OsStr;
use std::fs;
use std::path::Path;
use std::sync::MutexGuard;
use std::thread;
use std::time::{Duration, Instant};

use rprof_integration::docker::{docker_ok, perf_capability, AgentImage, Container, Image};
use rprof_integration::http::{http, Response};
use rprof_integration::{
    assert_share, build_c, decode_profile, exclusive, go_tool_pprof, label, leaf_split,
    pprof_output,
    programs::{leak_sites, rust_target},
    stack_split, string, top_leaves, total_samples, Fraction, Stacks,
};
use rprof_proto::pb::Profile;

/// Optimized, with DWARF, without frame pointers, as the other tests build their programs.
const C_FLAGS: &[&str] = &["-O2", "-fomit-frame-pointer", "-g"];
/// How long a container may take to print what says it is ready.
const STARTUP: Duration = Duration::from_secs(60);
/// The host's tracefs, which the mutex (read-only) and allocs/heap (writable) kinds need.
const TRACEFS: &str = "/sys/kernel/tracing";

// ---------------------------------------------------------------------------------------------
// The pod: an application container and the agent's.

/// An application container: `program` at `path` in an image of its own, started with `args`,
/// ready once it printed `ready`.
struct App {
    container: Container,
    _image: Image,
}

impl App {
    fn start(program: &Path, path: &str, args: &[&str]) -> App {
        App::start_with(&[(program, path)], &[path], args)
    }

    /// `files` in the image; the entrypoint `entrypoint` (JSON-quoted), then `args`.
    fn start_with(files: &[(&Path, &str)], entrypoint: &[&str], args: &[&str]) -> App {
        let quoted: Vec<String> = entrypoint
            .iter()
            .map(|part| format!("\"{part}\""))
            .collect();
        let image = Image::import(
            "app",
            files,
            &[&format!("ENTRYPOINT [{}]", quoted.join(", "))],
        );
        let container = Container::run("app", &[], image.tag(), args);
        container.wait_for_output("ready", STARTUP);
        App {
            container,
            _image: image,
        }
    }
}

/// The agent's container, serving on a loopback port of the host.
struct Agent {
    container: Container,
    port: u16,
}

impl Agent {
    /// `docker run --cap-drop ALL --cap-add CAP... --read-only -p 127.0.0.1::6060 OPTIONS
    /// AGENT --process PROCESS --listen 0.0.0.0:6060`, in `app`'s PID namespace if given.
    fn start(
        image: &AgentImage,
        app: Option<&App>,
        capabilities: &[&str],
        options: &[&str],
        process: &str,
    ) -> Agent {
        let pid_namespace = app.map(|app| format!("--pid=container:{}", app.container.name()));
        let mut all: Vec<&str> = pid_namespace.iter().map(String::as_str).collect();
        all.extend(["--cap-drop", "ALL"]);
        for capability in capabilities {
            all.extend(["--cap-add", capability]);
        }
        all.extend(["--read-only", "-p", "127.0.0.1::6060"]);
        all.extend_from_slice(options);
        let args = ["--process", process, "--listen", "0.0.0.0:6060"];
        let container = Container::run("agent", &all, image.image.tag(), &args);
        container.wait_for_output("serving http://", STARTUP);
        let (ip, port) = container.published(6060);
        assert_eq!(ip, "127.0.0.1", "published beyond the loopback interface");
        let agent = Agent { container, port };
        agent.wait_until_answering();
        agent
    }

    /// The full sidecar: SYS_PTRACE and the perf capability.
    fn sidecar(image: &AgentImage, app: &App, options: &[&str], process: &str) -> Agent {
        let capabilities = ["SYS_PTRACE", perf_capability(&image.image)];
        Agent::start(image, Some(app), &capabilities, options, process)
    }

    /// docker-proxy accepts connections before the agent listens behind it: wait for a
    /// response, not for a connection.
    fn wait_until_answering(&self) {
        let deadline = Instant::now() + STARTUP;
        while std::net::TcpStream::connect(("127.0.0.1", self.port))
            .map(|mut stream| {
                use std::io::{Read, Write};
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let mut first = [0u8; 4];
                stream
                    .write_all(
                        b"GET /debug/pprof/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                    )
                    .and_then(|()| stream.read_exact(&mut first))
                    .is_err()
            })
            .unwrap_or(true)
        {
            assert!(
                Instant::now() < deadline,
                "the agent never answered on port {}:\n{}",
                self.port,
                self.container.logs()
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn get(&self, path: &str) -> Response {
        http(self.port, "GET", path, &[], b"")
    }

    /// `go tool pprof -proto` of `path`: the profile as pprof fetched it.
    fn fetch_with_pprof(&self, path: &str) -> Profile {
        let dir = tempfile::tempdir().expect("create a directory");
        let out = dir.path().join("fetched.pb.gz");
        let url = self.url(path);
        let args: [&OsStr; 4] = [
            OsStr::new("-proto"),
            OsStr::new("-output"),
            out.as_os_str(),
            OsStr::new(&url),
        ];
        let finished = go_tool_pprof(&args);
        assert!(
            finished.status.success(),
            "go tool pprof -proto {url} failed:\n{}\n--- agent\n{}",
            finished.stderr,
            self.container.logs()
        );
        decode_profile(&fs::read(&out).expect("read the profile pprof saved"))
    }

    /// `go tool pprof ARGS URL`'s output.
    fn pprof(&self, args: &[&str], path: &str) -> String {
        pprof_output(args, OsStr::new(&self.url(path)))
    }

    /// Asserts that `path` answers `status` with a body containing every one of `words`.
    fn expect(&self, path: &str, status: u16, words: &[&str]) -> String {
        let response = self.get(path);
        let text = response.text();
        assert_eq!(response.status, status, "{path}: {text}");
        for word in words {
            assert!(text.contains(word), "{path}: no {word:?} in:\n{text}");
        }
        text
    }
}

/// The share of `a` in `split` over 5-second CPU profiles that `go tool pprof` fetches, as
/// many as it takes (at most 6) to hold the 300 samples a ±5-point judgement needs: on a loaded
/// machine one window may hold fewer. Returns it and the first profile.
fn share_over_windows(agent: &Agent, split: impl Fn(&Profile) -> Fraction) -> (Fraction, Profile) {
    let first = agent.fetch_with_pprof("/debug/pprof/profile?seconds=5");
    let mut sum = split(&first);
    for _ in 1..6 {
        if sum.total >= 300 {
            break;
        }
        let more = split(&agent.fetch_with_pprof("/debug/pprof/profile?seconds=5"));
        sum = Fraction {
            hits: sum.hits + more.hits,
            total: sum.total + more.total,
        };
    }
    (sum, first)
}

/// The file names of the profile's mappings, main binary first.
fn mapping_files(profile: &Profile) -> Vec<&str> {
    profile
        .mapping
        .iter()
        .map(|mapping| string(profile, mapping.filename))
        .collect()
}

/// Every function name in the profile.
fn function_names(profile: &Profile) -> Vec<&str> {
    profile
        .function
        .iter()
        .map(|function| string(profile, function.name))
        .collect()
}

fn leaf_ratio() -> std::path::PathBuf {
    build_c("leaf_ratio", C_FLAGS)
}

/// Most tests' start: [`pod`] of the ratio program (75/25 between leaf_a and leaf_b) at
/// /app/ratio.
fn ratio_pod() -> (MutexGuard<'static, ()>, AgentImage, App) {
    pod(&leaf_ratio(), "/app/ratio", &[])
}

/// The CPU to the test, the agent's image, and `program` at `path` in its own container,
/// started with `args`.
fn pod(program: &Path, path: &str, args: &[&str]) -> (MutexGuard<'static, ()>, AgentImage, App) {
    let cpu = exclusive();
    let image = AgentImage::build();
    let app = App::start(program, path, args);
    (cpu, image, app)
}

/// The host's view of a process's seccomp mode (2: a filter).
fn seccomp_mode(host_pid: u32) -> String {
    let status = fs::read_to_string(format!("/proc/{host_pid}/status")).expect("read its status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("Seccomp:"))
        .unwrap_or_default()
        .trim()
        .to_owned()
}

// ---------------------------------------------------------------------------------------------
// The image.

#[test]
fn the_dockerfile_builds_the_sidecar_image_on_a_local_base() {
    let image = AgentImage::build();
    assert_eq!(
        image.image.inspect("{{json .Config.Entrypoint}}"),
        r#"["rprof-agent","serve"]"#
    );
    assert_eq!(image.image.inspect("{{.Config.User}}"), "0:0");
    assert!(image
        .image
        .inspect("{{json .Config.ExposedPorts}}")
        .contains("6060/tcp"));
    let (size, base) = (image.image.size(), image.base.size());
    println!(
        "agent image: {:.1} MB ({:.1} MB of base: glibc and libgcc, {:.1} MB of rprof-agent)",
        size as f64 / 1e6,
        base as f64 / 1e6,
        (size - base) as f64 / 1e6
    );
    assert!(size - base < 20_000_000, "the agent adds {size} bytes");
}

// ---------------------------------------------------------------------------------------------
// Profiles of applications in their own containers, read from the host.

#[test]
fn go_tool_pprof_profiles_a_c_app_in_another_container() {
    let (_cpu, image, app) = ratio_pod();
    let agent = Agent::sidecar(&image, &app, &[], "ratio");
    assert_eq!(
        agent.container.inspect("{{.HostConfig.ReadonlyRootfs}}"),
        "true"
    );
    assert_eq!(
        seccomp_mode(agent.container.host_pid()),
        "2",
        "Docker's default seccomp profile is not on the agent"
    );

    let (share, profile) =
        share_over_windows(&agent, |profile| leaf_split(profile, "leaf_a", "leaf_b"));
    assert_share(share, "leaf_a / (leaf_a + leaf_b)", 0.75, 0.05, &profile);
    // Named from the application's own file, at its path in its container.
    assert_eq!(mapping_files(&profile).first(), Some(&"/app/ratio"));
    assert!(!Path::new("/app/ratio").exists(), "the host has /app/ratio");

    let dump = agent.expect("/debug/pprof/goroutine?debug=2", 200, &["main"]);
    assert!(
        dump.contains("leaf_a") || dump.contains("leaf_b"),
        "no leaf in the thread dump:\n{dump}"
    );
    let goroutine = agent.pprof(&["-traces"], "/debug/pprof/goroutine");
    assert!(goroutine.contains("Type: goroutine"), "{goroutine}");
}

#[test]
fn go_tool_pprof_profiles_a_rust_app_in_another_container() {
    let (_cpu, image, app) = pod(&rust_target(), "/srv/bin/spinner", &[]);
    let agent = Agent::sidecar(&image, &app, &[], "spinner");

    let (share, profile) = share_over_windows(&agent, |profile| {
        stack_split(profile, "rust_target::hot_a", "rust_target::hot_b")
    });
    assert_share(share, "hot_a / (hot_a + hot_b)", 0.75, 0.05, &profile);
    assert_eq!(mapping_files(&profile).first(), Some(&"/srv/bin/spinner"));
    let dump = agent.expect(
        "/debug/pprof/goroutine?debug=2",
        200,
        &["worker-0", "worker-1", "rust_target::"],
    );
    println!("{dump}");
}

#[test]
fn threadcreate_from_another_container() {
    let (_cpu, image, app) = pod(
        &build_c("thread_churn", C_FLAGS),
        "/app/churn",
        &["/tmp/created"],
    );
    let agent = Agent::sidecar(&image, &app, &[], "churn");
    let traces = agent.pprof(&["-traces"], "/debug/pprof/threadcreate?seconds=2");
    assert!(traces.contains("Type: threadcreate"), "{traces}");
    for creator in ["spawn_from_a", "spawn_from_b"] {
        assert!(traces.contains(creator), "no {creator} in:\n{traces}");
    }
}

#[test]
fn block_wall_and_growth_from_another_container() {
    let (_cpu, image, app) = pod(
        &build_c("lock_waits", C_FLAGS),
        "/app/locks",
        &["/tmp/totals"],
    );
    let agent = Agent::sidecar(&image, &app, &[], "locks");

    let block = agent.pprof(
        &["-sample_index=delay", "-traces"],
        "/debug/pprof/block?seconds=2",
    );
    for word in ["Type: delay", "wait_at_a", "wait_at_b", "wait:  lock"] {
        assert!(block.contains(word), "no {word} in:\n{block}");
    }
    let off_cpu = agent.pprof(
        &["-tagfocus=state=off-cpu", "-traces"],
        "/debug/pprof/wall?seconds=2",
    );
    assert!(off_cpu.contains("Type: wall"), "{off_cpu}");
    assert!(off_cpu.contains("wait_at_a"), "{off_cpu}");
    let growth = agent.pprof(&["-raw"], "/debug/pprof/growth?seconds=1");
    assert!(growth.contains("PeriodType: faults count"), "{growth}");
}

/// sched_waking names the woken thread as the host's PID namespace numbers it, the agent
/// knows the target's threads by the pod's numbers: the wakeups must be translated (see
/// agent/src/kinds/waits/pid_map.rs), or no wakeup is paired with a wait.
#[test]
fn mutex_from_another_container() {
    let (_cpu, image, app) = pod(
        &build_c("lock_waits", C_FLAGS),
        "/app/locks",
        &["/tmp/totals"],
    );
    // mutex reads the sched_waking tracepoint's id: the host's tracefs, read-only.
    let tracefs = format!("{TRACEFS}:{TRACEFS}:ro");
    let agent = Agent::sidecar(&image, &app, &["-v", &tracefs], "locks");
    let mutex = agent.pprof(
        &["-sample_index=delay", "-traces"],
        "/debug/pprof/mutex?seconds=3",
    );
    // The releases, on the holders' stacks (libc's internals stay unnamed: the application's
    // image has no debug files for its libc).
    for word in [
        "Type: delay",
        "thread:  holder_a",
        "thread:  holder_b",
        "holder\n",
    ] {
        assert!(mutex.contains(word), "no {word:?} in:\n{mutex}");
    }
    // waiter_b wakes no one: its id in the host's numbering is learned from its own switches
    // (agent/src/kinds/waits/host_ids.rs). waiter_a waits behind holder_a nearly all the time,
    // waiter_b behind holder_b about a third of it: holder_b's share is about a quarter (28 %
    // measured on a quiet machine, 9 % once with both cores busy compiling; without the
    // learning window it was 0).
    let profile = agent.fetch_with_pprof("/debug/pprof/mutex?seconds=3");
    let delay_of = |thread: &str| -> f64 {
        profile
            .sample
            .iter()
            .filter(|sample| label(&profile, sample, "thread") == Some(thread))
            .map(|sample| sample.value[1] as f64)
            .sum()
    };
    let (a, b) = (delay_of("holder_a"), delay_of("holder_b"));
    let share_b = b / (a + b);
    println!("holder_b: {:.1} % of the delay", 100.0 * share_b);
    assert!(
        (0.05..=0.45).contains(&share_b),
        "holder_b caused {:.1} % of the delay, expected about a quarter\n{mutex}",
        100.0 * share_b
    );
}

#[test]
fn memory_kinds_from_another_container() {
    let (_cpu, image, app) = pod(&leak_sites(), "/app/leaks", &["/tmp/totals"]);
    // The allocator's uprobes are defined in the host's tracefs: writable.
    let tracefs = format!("{TRACEFS}:{TRACEFS}");
    let agent = Agent::sidecar(&image, &app, &["-v", &tracefs], "leaks");

    let heap = agent.fetch_with_pprof("/debug/pprof/heap?seconds=4");
    let stacks = Stacks::new(&heap);
    let inuse_at = |site: &str| -> i64 {
        heap.sample
            .iter()
            .filter(|sample| stacks.frames(sample).contains(&site))
            .map(|sample| sample.value[3])
            .sum()
    };
    let (a, b) = (inuse_at("leak_a") as f64, inuse_at("leak_b") as f64);
    assert!(a + b > 0.0, "nothing live at leak_a or leak_b");
    assert!(
        (a / (a + b) - 0.75).abs() <= 0.05,
        "leak_a holds {:.1} % of the live bytes of the leak sites, expected 75 ± 5 %",
        100.0 * a / (a + b)
    );
    let allocs = agent.pprof(
        &["-sample_index=alloc_space", "-top"],
        "/debug/pprof/allocs?seconds=2",
    );
    assert!(allocs.contains("churn"), "{allocs}");
}

// ---------------------------------------------------------------------------------------------
// What users meet when something is missing, and the application's life.

#[test]
fn without_a_shared_pid_namespace_the_agent_names_the_remedy() {
    let image = AgentImage::build();
    let capabilities = ["SYS_PTRACE", perf_capability(&image.image)];
    let agent = Agent::start(&image, None, &capabilities, &[], "ratio");
    agent.expect(
        "/debug/pprof/profile?seconds=1",
        503,
        &[
            "no process named \"ratio\" is running",
            "shareProcessNamespace: true",
            "--pid=container:",
        ],
    );
}

#[test]
fn without_perfmon_or_tracefs_the_kinds_say_what_to_add() {
    let (_cpu, image, app) = ratio_pod();

    let no_perf = Agent::start(&image, Some(&app), &["SYS_PTRACE"], &[], "ratio");
    let add_perfmon = "in a container add --cap-add PERFMON";
    for (kind, go_name) in [
        ("profile", "CPU"),
        ("threadcreate", "threadcreate"),
        ("block", "block"),
        ("wall", "wall"),
        ("growth", "growth"),
    ] {
        no_perf.expect(
            &format!("/debug/pprof/{kind}?seconds=1"),
            500,
            &[
                &format!("Could not enable {go_name} profiling"),
                add_perfmon,
            ],
        );
    }
    // The thread snapshot needs ptrace alone.
    no_perf.expect("/debug/pprof/goroutine?debug=2", 200, &["leaf_"]);
    drop(no_perf);

    let no_tracefs = Agent::sidecar(&image, &app, &[], "ratio");
    no_tracefs.expect(
        "/debug/pprof/mutex?seconds=1",
        500,
        &[
            "sched_waking",
            "in a container, mount the host's /sys/kernel/tracing read-only",
        ],
    );
    for kind in ["allocs", "heap"] {
        no_tracefs.expect(
            &format!("/debug/pprof/{kind}?seconds=1"),
            500,
            &["in a container, mount the host's /sys/kernel/tracing"],
        );
    }
    // The read-only mount is not enough for the allocator's probes.
    drop(no_tracefs);
    let read_only = format!("{TRACEFS}:{TRACEFS}:ro");
    let ro_tracefs = Agent::sidecar(&image, &app, &["-v", &read_only], "ratio");
    ro_tracefs.expect(
        "/debug/pprof/allocs?seconds=1",
        500,
        &[
            "cannot define the uprobe",
            "mounted read-only",
            "without :ro",
        ],
    );
}

#[test]
fn without_sys_ptrace_stacks_are_missing_and_the_agent_says_why() {
    let (_cpu, image, app) = ratio_pod();
    let agent = Agent::start(
        &image,
        Some(&app),
        &[perf_capability(&image.image)],
        &[],
        "ratio",
    );
    agent.expect(
        "/debug/pprof/goroutine?debug=2",
        200,
        &[
            "stacks unavailable: no ptrace access to PID",
            "--cap-add SYS_PTRACE",
        ],
    );
    let logs = agent.container.logs();
    assert!(
        logs.contains("no ptrace access to PID") && logs.contains("CAP_SYS_PTRACE"),
        "no startup warning about ptrace in:\n{logs}"
    );
    let response = agent.get("/debug/pprof/profile?seconds=1");
    let profile = decode_profile(&response.expect_status(200).body);
    assert!(total_samples(&profile) > 0, "an empty profile");
    let names = function_names(&profile);
    assert!(
        !names.contains(&"leaf_a") && !names.contains(&"leaf_b"),
        "named without ptrace access: {names:?}"
    );
}

/// The PID the agent's index page says it profiles.
fn profiled_pid(agent: &Agent) -> Option<String> {
    let index = agent.get("/debug/pprof/").text();
    let (_, after) = index.split_once("PID ")?;
    Some(after.chars().take_while(char::is_ascii_digit).collect())
}

#[test]
fn the_agent_follows_the_app_restarting_under_a_new_pid() {
    let _cpu = exclusive();
    let image = AgentImage::build();
    let supervisor = build_c("supervisor", C_FLAGS);
    let ratio = leaf_ratio();
    let app = App::start_with(
        &[(&supervisor, "/app/supervisor"), (&ratio, "/app/ratio")],
        &["/app/supervisor", "/app/ratio"],
        &[],
    );
    let agent = Agent::sidecar(&image, &app, &[], "ratio");
    let first = poll(|| profiled_pid(&agent).filter(|pid| !pid.is_empty()));

    // The application dies (SIGKILL from the host) and its supervisor starts it again.
    let supervisor_pid = app.container.host_pid();
    let children = fs::read_to_string(format!(
        "/proc/{supervisor_pid}/task/{supervisor_pid}/children"
    ))
    .expect("read the supervisor's children");
    let child: i32 = children
        .split_whitespace()
        .next()
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("the supervisor has no child: {children:?}"));
    // SAFETY: kill(2) with a PID read a moment ago from its parent, which has not reaped it.
    assert_eq!(unsafe { libc::kill(child, libc::SIGKILL) }, 0);

    let second = poll(|| profiled_pid(&agent).filter(|pid| !pid.is_empty() && *pid != first));
    println!("followed from PID {first} to PID {second}");
    let profile = agent.fetch_with_pprof("/debug/pprof/profile?seconds=2");
    assert!(
        function_names(&profile).contains(&"leaf_a"),
        "{}",
        top_leaves(&profile, 10)
    );
}

/// Polls `until` every 100 ms for up to 20 s (the agent looks for its target every 500 ms).
fn poll<T>(until: impl Fn() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(value) = until() {
            return value;
        }
        assert!(Instant::now() < deadline, "never happened within 20 s");
        thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_binary_replaced_under_the_running_app_is_not_misnamed() {
    let (_cpu, image, app) = ratio_pod();
    // A deploy writes another program over /app/ratio: a new file in the container's upper
    // layer, while the running process keeps the old one mapped (deleted).
    let other = build_c("deep_stack", C_FLAGS);
    docker_ok(&[
        OsStr::new("cp"),
        other.as_os_str(),
        OsStr::new(&format!("{}:/app/ratio", app.container.name())),
    ]);
    let agent = Agent::sidecar(&image, &app, &[], "ratio");
    let (share, profile) =
        share_over_windows(&agent, |profile| leaf_split(profile, "leaf_a", "leaf_b"));
    let names = function_names(&profile);
    // The new file's functions must never name the old program's code.
    assert!(
        !names
            .iter()
            .any(|name| name.starts_with("deep_") || *name == "descend"),
        "frames named from the replacement: {names:?}"
    );
    if perf_capability(&image.image) == "SYS_ADMIN" {
        // SYS_ADMIN (like CHECKPOINT_RESTORE) opens /proc/PID/map_files: the mapped file itself.
        assert_share(share, "leaf_a / (leaf_a + leaf_b)", 0.75, 0.05, &profile);
    } else {
        assert!(
            !names.contains(&"leaf_a"),
            "named without map_files: {names:?}"
        );
    }
}
