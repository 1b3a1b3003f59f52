//! The `corvee` binary as a process: exit codes and where its output goes
//! when no daemon is needed or none runs.

use std::process::{Command, Output};

fn corvee(args: &[&str], dir: &std::path::Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_corvee"))
        .args(args)
        .env("CORVEE_DIR", dir)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run corvee")
}

#[test]
fn without_a_daemon_commands_exit_3_and_say_how_to_start_one() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    for args in [&["ls"][..], &["show", "1"], &["stats"], &["wait", "1"], &["add", "-k", "k"], &["run", "--", "true"]] {
        let output = corvee(args, dir.path());
        assert_eq!(output.status.code(), Some(3), "{args:?}");
        assert!(output.stdout.is_empty(), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        let expected = format!("start one with 'corvee serve --dir {}'", dir.path().display());
        assert!(stderr.contains(&expected), "{args:?}: {stderr}");
    }
}

#[test]
fn usage_mistakes_exit_2_and_help_exits_0() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    assert_eq!(corvee(&["add"], dir.path()).status.code(), Some(2));
    assert_eq!(corvee(&["frobnicate"], dir.path()).status.code(), Some(2));
    assert_eq!(corvee(&["purge", "default"], dir.path()).status.code(), Some(2));
    let help = corvee(&["--help"], dir.path());
    assert_eq!(help.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&help.stdout).contains("Usage: corvee"));
}

#[test]
fn add_offline_needs_no_daemon_and_prints_the_spool_file() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let output = corvee(&["add", "--offline", "-k", "resize", "a.png"], dir.path());
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    let path = String::from_utf8(output.stdout).expect("UTF-8");
    let path = std::path::Path::new(path.trim_end());
    assert_eq!(path.parent(), Some(corvee::spool::new_dir(dir.path()).as_path()));
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(path).expect("the spool file")).expect("JSON");
    assert_eq!(json, serde_json::json!({"kind": "resize", "payload": "a.png"}));
}

#[test]
fn completions_are_printed_for_each_shell() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    for (shell, marker) in [("bash", "_corvee()"), ("zsh", "#compdef corvee"), ("fish", "complete -c corvee")] {
        let output = corvee(&["completions", shell], dir.path());
        assert_eq!(output.status.code(), Some(0), "{shell}");
        let script = String::from_utf8(output.stdout).expect("UTF-8");
        assert!(script.contains(marker), "{shell}: {script}");
        assert!(script.contains("wait"), "{shell}: the subcommands are in the script");
    }
}
