//! A smoke test of `corvee serve` with the real daemon: it starts, the CLI
//! runs a command job through it, and SIGTERM stops it with exit code 0.
//! (The thorough end-to-end tests of the daemon are their own module.)

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const STEP_TIMEOUT: Duration = Duration::from_secs(60);

fn corvee(args: &[&str], dir: &std::path::Path) -> (Option<i32>, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_corvee"))
        .args(args)
        .env("CORVEE_DIR", dir)
        .stdin(Stdio::null())
        .output()
        .expect("run corvee");
    let text = |bytes: Vec<u8>| String::from_utf8(bytes).expect("UTF-8");
    (output.status.code(), text(output.stdout), text(output.stderr))
}

#[test]
fn serve_runs_a_command_job_for_the_cli_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    // No TCP listener: tests run side by side and must not fight for a port.
    std::fs::write(dir.path().join("corvee.toml"), "[http]\nlisten = \"none\"\n").expect("write the config");
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_corvee"))
        .args(["serve", "--dir"])
        .arg(dir.path())
        .env("CORVEE_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start corvee serve");
    let (log_lines, log_receiver) = mpsc::channel();
    let stderr = daemon.stderr.take().expect("piped stderr");
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { return };
            if log_lines.send(line).is_err() {
                return;
            }
        }
    });
    // The daemon logs this once its socket is listening.
    loop {
        let line = log_receiver.recv_timeout(STEP_TIMEOUT).expect("the daemon starts");
        assert!(!line.contains("ERROR"), "{line}");
        if line.contains("corvee is running") {
            break;
        }
    }

    let (code, stdout, stderr) = corvee(&["run", "--wait", "--", "sh", "-c", "echo hello from the job"], dir.path());
    assert_eq!(code, Some(0), "{stderr}");
    let id = stdout.lines().next().expect("the id").to_string();
    assert_eq!(stdout, format!("{id}\njob {id} completed\n"));
    let (code, logs, stderr) = corvee(&["logs", &id], dir.path());
    assert_eq!(code, Some(0), "{stderr}");
    assert!(logs.contains("hello from the job"), "{logs}");

    rustix::process::kill_process(rustix::process::Pid::from_child(&daemon), rustix::process::Signal::TERM)
        .expect("send SIGTERM");
    let (status_sender, status) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = status_sender.send(daemon.wait().expect("the daemon's exit status"));
    });
    let status = status.recv_timeout(STEP_TIMEOUT).expect("the daemon stops");
    assert_eq!(status.code(), Some(0));
    let (code, _, stderr) = corvee(&["ls"], dir.path());
    assert_eq!(code, Some(3), "{stderr}");
}
