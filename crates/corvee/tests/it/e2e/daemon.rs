//! A real `corvee serve` on a temporary data directory: started, waited for
//! (socket plus `GET /v1/health`), signalled, killed and restarted as a test
//! needs; the `corvee` CLI run against it; and a guard that kills the
//! daemon, and whatever process groups it left, when the test ends — also
//! on a panic, when it prints the daemon's log.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use corvee::client::{Client, Job};
use rustix::process::{Pid, Signal};

/// How long a step that should take milliseconds may take on a loaded
/// machine before the test fails (a bound, never a measurement).
pub const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// Polls `condition` until it holds, failing after [`STEP_TIMEOUT`]. For
/// conditions nothing notifies about (a file appearing, a process gone); a
/// bounded poll, not a sleep standing in for an event.
pub fn poll_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + STEP_TIMEOUT;
    while !condition() {
        assert!(Instant::now() < deadline, "waited {STEP_TIMEOUT:?} for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A process run to its end: exit code and output.
#[derive(Debug)]
pub struct Finished {
    pub code: Option<i32>,
    pub stdout: String,
    /// Stdout as it came, for output that is not text.
    pub stdout_bytes: Vec<u8>,
    pub stderr: String,
}

/// A child process whose exit is awaited on a thread, so a test can wait for
/// it with a bound (and read its output if piped).
pub struct Process {
    pub pid: Pid,
    exit: mpsc::Receiver<(ExitStatus, Vec<u8>, Vec<u8>)>,
}

impl Process {
    /// Spawns `command`, collecting its stdout and stderr if they are piped.
    pub fn spawn(command: &mut Command) -> Process {
        let mut child = command.spawn().unwrap_or_else(|error| panic!("cannot start {command:?}: {error}"));
        let pid = Pid::from_child(&child);
        let stdout = child.stdout.take().map(read_all_on_a_thread);
        let stderr = child.stderr.take().map(read_all_on_a_thread);
        let (sender, exit) = mpsc::channel();
        std::thread::spawn(move || {
            let status = child.wait().expect("wait for a child");
            let take = |output: Option<mpsc::Receiver<Vec<u8>>>| output.and_then(|bytes| bytes.recv().ok());
            let _ = sender.send((status, take(stdout).unwrap_or_default(), take(stderr).unwrap_or_default()));
        });
        Process { pid, exit }
    }

    pub fn signal(&self, signal: Signal) {
        rustix::process::kill_process(self.pid, signal).expect("signal a child");
    }

    /// Waits for the process to end (failing after [`STEP_TIMEOUT`]).
    pub fn finish(self) -> Finished {
        let (status, stdout, stderr) =
            self.exit.recv_timeout(STEP_TIMEOUT).unwrap_or_else(|_| panic!("pid {:?} did not exit", self.pid));
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        Finished { code: status.code(), stdout: text(&stdout), stderr: text(&stderr), stdout_bytes: stdout }
    }
}

fn read_all_on_a_thread(mut reader: impl Read + Send + 'static) -> mpsc::Receiver<Vec<u8>> {
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = reader.read_to_end(&mut bytes);
        let _ = sender.send(bytes);
    });
    receiver
}

/// The fields of `/proc/<pid>/stat` after the command name (which is in
/// parentheses and may hold spaces): state first, start time 20th.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some(stat[stat.rfind(')')? + 1..].split_whitespace().map(String::from).collect())
}

/// Whether a process is alive (not gone, not a zombie).
pub fn is_alive(pid: u32) -> bool {
    stat_fields(pid).is_some_and(|fields| fields.first().map(String::as_str) != Some("Z"))
}

/// The daemon process of one incarnation.
struct DaemonProcess {
    process: Process,
    /// Set once it was reaped.
    status: Option<ExitStatus>,
}

/// A data directory with a `corvee.toml`, and the daemon serving it (or not,
/// between a stop and a restart).
pub struct TestDaemon {
    dir: tempfile::TempDir,
    daemon: Option<DaemonProcess>,
    /// Every line every incarnation wrote on stderr, for failure reports.
    log: Arc<Mutex<Vec<String>>>,
    pub client: Client,
}

impl TestDaemon {
    /// A fresh data directory with `config` as its `corvee.toml` (plus
    /// `[http] listen = "none"` if it has no `[http]` section: tests run
    /// side by side and must not fight for the default port). No daemon
    /// runs yet.
    pub fn prepare(config: &str) -> TestDaemon {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let client = Client::for_dir(dir.path());
        let daemon = TestDaemon { dir, daemon: None, log: Arc::default(), client };
        daemon.write_config(config);
        daemon
    }

    /// A daemon started with `config` on a fresh directory, ready to serve.
    pub fn start(config: &str) -> TestDaemon {
        let mut daemon = TestDaemon::prepare(config);
        daemon.launch();
        daemon
    }

    /// Replaces `corvee.toml` (for the next start).
    pub fn write_config(&self, config: &str) {
        let mut config = config.to_string();
        if !config.contains("[http]") {
            config.push_str("\n[http]\nlisten = \"none\"\n");
        }
        std::fs::write(self.dir.path().join("corvee.toml"), config).expect("write corvee.toml");
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The daemon's pid.
    pub fn pid(&self) -> Pid {
        self.daemon.as_ref().expect("the daemon is running").process.pid
    }

    /// `corvee serve` on the directory, its log on a piped stderr.
    fn serve_command(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_corvee"));
        command
            .args(["serve", "--dir"])
            .arg(self.dir())
            .env("CORVEE_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            // Its own process group: the guard kills the group, and a Ctrl-C
            // meant for the test runner does not reach it.
            .process_group(0);
        command
    }

    /// Spawns another `corvee serve` on the directory, not waiting for it.
    pub fn spawn_serve(&self) -> Process {
        Process::spawn(&mut self.serve_command())
    }

    /// Starts the daemon and waits until it answers `GET /v1/health`.
    pub fn launch(&mut self) {
        assert!(self.daemon.is_none(), "the daemon is already running");
        let mut child: Child = self.serve_command().spawn().expect("start corvee serve");
        let pid = Pid::from_child(&child);
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::clone(&self.log);
        let incarnation = format!("[daemon pid {}]", pid.as_raw_nonzero());
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { return };
                log.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(format!("{incarnation} {line}"));
            }
        });
        let (sender, exit) = mpsc::channel();
        std::thread::spawn(move || {
            let status = child.wait().expect("wait for the daemon");
            let _ = sender.send((status, Vec::new(), Vec::new()));
        });
        self.daemon = Some(DaemonProcess { process: Process { pid, exit }, status: None });
        self.wait_ready();
    }

    /// Polls for the socket and a healthy answer, failing if the daemon
    /// exits first or takes longer than [`STEP_TIMEOUT`].
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + STEP_TIMEOUT;
        let socket = corvee::dir::socket_path(self.dir());
        loop {
            let daemon = self.daemon.as_mut().expect("started");
            if let Ok((status, _, _)) = daemon.process.exit.try_recv() {
                daemon.status = Some(status);
                panic!("corvee serve exited with {status} before it was ready:\n{}", self.log_text());
            }
            if socket.exists() && self.client.health().is_ok_and(|health| health.status == "ok") {
                return;
            }
            assert!(Instant::now() < deadline, "corvee serve not ready after {STEP_TIMEOUT:?}:\n{}", self.log_text());
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// `kill -9` of the daemon (not its workers: they are in their own
    /// process groups, as after a real crash), and waits until it is reaped.
    pub fn kill_9(&mut self) {
        let mut daemon = self.daemon.take().expect("the daemon is running");
        let _ = rustix::process::kill_process(daemon.process.pid, Signal::KILL);
        let (status, _, _) = daemon.process.exit.recv_timeout(STEP_TIMEOUT).expect("the killed daemon is reaped");
        assert_eq!(status.signal(), Some(9), "the daemon died of SIGKILL");
        daemon.status = Some(status);
    }

    /// Sends `signal` to the daemon and waits for it to exit.
    pub fn stop_with(&mut self, signal: Signal) -> ExitStatus {
        let daemon = self.daemon.take().expect("the daemon is running");
        rustix::process::kill_process(daemon.process.pid, signal).expect("signal the daemon");
        let (status, _, _) = daemon
            .process
            .exit
            .recv_timeout(STEP_TIMEOUT)
            .unwrap_or_else(|_| panic!("the daemon did not exit after {signal:?}:\n{}", self.log_text()));
        status
    }

    /// Everything the daemon logged so far.
    pub fn log_text(&self) -> String {
        self.log.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).join("\n")
    }

    /// Runs the CLI on this directory (stdin empty) to its end.
    pub fn corvee(&self, args: &[&str]) -> Finished {
        self.spawn_corvee(args).finish()
    }

    /// Starts the CLI on this directory with its output piped.
    pub fn spawn_corvee(&self, args: &[&str]) -> Process {
        let mut command = Command::new(env!("CARGO_BIN_EXE_corvee"));
        command
            .args(args)
            .env("CORVEE_DIR", self.dir())
            .env_remove("CORVEE_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        Process::spawn(&mut command)
    }

    /// Runs the CLI and expects exit code 0; returns its stdout.
    pub fn corvee_ok(&self, args: &[&str]) -> String {
        let finished = self.corvee(args);
        assert_eq!(finished.code, Some(0), "corvee {args:?} failed: {finished:?}");
        finished.stdout
    }

    /// Waits (long-polling the daemon) until job `id` has finished.
    pub fn wait_finished(&self, id: u64) -> Job {
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            let job = self.client.wait(id, Duration::from_secs(5)).expect("GET /v1/jobs/{id}/wait");
            if job.state.is_finished() {
                return job;
            }
            assert!(Instant::now() < deadline, "job {id} did not finish in {STEP_TIMEOUT:?}: {job:#?}");
        }
    }

    /// Process groups the daemon recorded in its ledger as it started them.
    pub fn ledger_groups(&self) -> Vec<u32> {
        self.ledger().into_iter().map(|(group, _)| group).collect()
    }

    /// The ledger's lines: a process group and its leader's start time.
    fn ledger(&self) -> Vec<(u32, String)> {
        let text = std::fs::read_to_string(self.dir().join("run/processes")).unwrap_or_default();
        text.lines()
            .filter_map(|line| {
                let mut fields = line.split_whitespace();
                Some((fields.next()?.parse().ok()?, fields.next()?.to_string()))
            })
            .collect()
    }
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        if let Some(daemon) = self.daemon.take() {
            let _ = rustix::process::kill_process_group(daemon.process.pid, Signal::KILL);
            let _ = daemon.process.exit.recv_timeout(STEP_TIMEOUT);
        }
        // Workers and command jobs run in process groups of their own;
        // workers leave on EOF, but a command job would outlive the test.
        // Only a group whose leader is the process recorded (same start
        // time), never one that reused its pid.
        for (group, started) in self.ledger() {
            let recorded = stat_fields(group).is_some_and(|fields| fields.get(19) == Some(&started));
            if let (true, Some(pid)) = (recorded && is_alive(group), Pid::from_raw(group as i32)) {
                let _ = rustix::process::kill_process_group(pid, Signal::KILL);
            }
        }
        if std::thread::panicking() {
            eprintln!("---- the daemon's log ({}) ----\n{}", self.dir().display(), self.log_text());
        }
    }
}

/// A raw HTTP answer.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|error| panic!("not JSON ({error}): {}", String::from_utf8_lossy(&self.body)))
    }
}

/// One HTTP/1.1 request written by hand on the daemon's Unix socket (for
/// bodies no client would send).
pub fn raw_request(dir: &Path, method: &str, path: &str, body: &[u8]) -> RawResponse {
    let socket: PathBuf = corvee::dir::socket_path(dir);
    let mut stream = UnixStream::connect(&socket).expect("connect to the daemon's socket");
    stream.set_read_timeout(Some(STEP_TIMEOUT)).expect("set a read timeout");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    )
    .expect("write the request head");
    // The daemon may answer (413) and close before reading all of a body
    // that is too large; what it answers is what counts.
    let _ = stream.write_all(body);
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let end = raw
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no complete answer: {:?}", String::from_utf8_lossy(&raw)));
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let status = head.split(' ').nth(1).and_then(|status| status.parse().ok()).expect("a status code");
    let mut body = raw[end + 4..].to_vec();
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        body = dechunk(&body);
    }
    RawResponse { status, body }
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let line_end = raw.windows(2).position(|window| window == b"\r\n").expect("a chunk size line");
        let size = usize::from_str_radix(std::str::from_utf8(&raw[..line_end]).expect("ASCII").trim(), 16)
            .expect("a chunk size");
        if size == 0 {
            return body;
        }
        body.extend_from_slice(&raw[line_end + 2..line_end + 2 + size]);
        raw = &raw[line_end + 2 + size + 2..];
    }
}
