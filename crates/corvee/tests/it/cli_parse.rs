//! The command line as parsed: what each command's flags turn into, and
//! the mistakes clap must refuse.

use clap::error::ErrorKind;
use clap::Parser;
use corvee::cli::{Cli, Command};

fn parse(args: &[&str]) -> Cli {
    Cli::try_parse_from(std::iter::once("corvee").chain(args.iter().copied()))
        .unwrap_or_else(|error| panic!("{args:?} should parse: {error}"))
}

fn refuse(args: &[&str]) -> ErrorKind {
    match Cli::try_parse_from(std::iter::once("corvee").chain(args.iter().copied())) {
        Ok(cli) => panic!("{args:?} should be refused, parsed as {cli:?}"),
        Err(error) => error.kind(),
    }
}

/// The JSON `corvee add ARGS` would send (stdin given as `stdin`).
fn add_request(args: &[&str], stdin: &[u8]) -> serde_json::Value {
    let mut full = vec!["add"];
    full.extend_from_slice(args);
    let Command::Add(add) = parse(&full).command else { panic!("not an add") };
    let request = add.to_request(&mut &stdin[..]).expect("a request");
    serde_json::to_value(&request).expect("serializable")
}

#[test]
fn add_turns_every_flag_into_the_documented_field() {
    let json = add_request(
        &[
            "--kind",
            "resize",
            "--queue",
            "images",
            "-p",
            "5",
            "--delay",
            "1m30s",
            "--unique",
            "invoice:7",
            "--unique-window",
            "1h",
            "--max-attempts",
            "3",
            "--timeout",
            "10s",
            "--tag",
            "a",
            "--tag",
            "b",
            "a.png",
        ],
        b"",
    );
    assert_eq!(
        json,
        serde_json::json!({"queue": "images", "kind": "resize", "payload": "a.png", "priority": 5, "delay_ms": 90_000,
            "max_attempts": 3, "timeout_ms": 10_000, "unique": {"key": "invoice:7", "window_ms": 3_600_000},
            "tags": ["a", "b"]})
    );
}

#[test]
fn add_reads_the_payload_from_an_argument_stdin_or_a_file() {
    assert_eq!(add_request(&["-k", "k"], b"ignored"), serde_json::json!({"kind": "k"}));
    assert_eq!(
        add_request(&["-k", "k", "-"], b"{\"to\":\"ada\"}"),
        serde_json::json!({"kind": "k", "payload": "{\"to\":\"ada\"}"})
    );
    assert_eq!(
        add_request(&["-k", "k", "-"], &[0xff, 0xfe]),
        serde_json::json!({"kind": "k", "payload_base64": "//4="})
    );
    let file = tempfile::NamedTempFile::new().expect("a file");
    std::fs::write(file.path(), "from a file").expect("written");
    let path = file.path().to_str().expect("a UTF-8 path");
    assert_eq!(
        add_request(&["-k", "k", "--file", path], b""),
        serde_json::json!({"kind": "k", "payload": "from a file"})
    );
    assert_eq!(
        add_request(&["-k", "k", "--daemon-file", path], b""),
        serde_json::json!({"kind": "k", "payload_file": path})
    );
}

#[test]
fn add_refuses_contradictions() {
    assert_eq!(refuse(&["add", "a.png"]), ErrorKind::MissingRequiredArgument);
    assert_eq!(
        refuse(&["add", "-k", "k", "--delay", "5s", "--run-at", "2026-11-22T11:00:00Z"]),
        ErrorKind::ArgumentConflict
    );
    assert_eq!(refuse(&["add", "-k", "k", "--file", "f", "text"]), ErrorKind::ArgumentConflict);
    assert_eq!(refuse(&["add", "-k", "k", "--unique-window", "1h"]), ErrorKind::MissingRequiredArgument);
    assert_eq!(refuse(&["add", "-k", "k", "--delay", "5 parsecs"]), ErrorKind::ValueValidation);
}

#[test]
fn durations_take_units_and_combinations() {
    let delay = |text: &str| add_request(&["-k", "k", "--delay", text], b"")["delay_ms"].as_u64();
    assert_eq!(delay("500ms"), Some(500));
    assert_eq!(delay("30"), Some(30_000));
    assert_eq!(delay("30s"), Some(30_000));
    assert_eq!(delay("5m"), Some(300_000));
    assert_eq!(delay("1h30m"), Some(5_400_000));
    assert_eq!(delay("2d"), Some(172_800_000));
    for bad in ["", "m", "5x", "1h30", "5 s"] {
        assert_eq!(refuse(&["add", "-k", "k", "--delay", bad]), ErrorKind::ValueValidation, "{bad:?}");
    }
}

#[test]
fn run_takes_the_command_after_the_double_dash_and_only_the_given_environment() {
    let cli =
        parse(&["run", "--env", "LANG=C", "--env", "HOME", "-q", "nightly", "--wait", "--", "ls", "-l", "--color"]);
    let Command::Run(run) = cli.command else { panic!("not a run") };
    assert!(run.wait);
    let request = run.to_request(|name| (name == "HOME").then(|| "/home/ada".to_string())).expect("a request");
    let json = serde_json::to_value(&request).expect("serializable");
    let cwd = std::env::current_dir().expect("a current directory");
    assert_eq!(
        json,
        serde_json::json!({"argv": ["ls", "-l", "--color"], "env": {"HOME": "/home/ada", "LANG": "C"},
            "cwd": cwd.to_str().expect("UTF-8"), "queue": "nightly"})
    );
    let Command::Run(run) = parse(&["run", "--env", "MISSING", "--", "true"]).command else { panic!("not a run") };
    assert!(run.to_request(|_| None).is_err());
}

#[test]
fn run_refuses_a_command_without_the_double_dash_or_without_a_command() {
    assert_eq!(refuse(&["run", "ls"]), ErrorKind::UnknownArgument);
    assert_eq!(refuse(&["run", "--"]), ErrorKind::MissingRequiredArgument);
    assert_eq!(refuse(&["run", "--json", "--", "true"]), ErrorKind::MissingRequiredArgument);
}

#[test]
fn cancel_reads_job_ids_and_execution_ids() {
    let Command::Cancel(cancel) = parse(&["cancel", "42", "42.1"]).command else { panic!("not a cancel") };
    assert_eq!(format!("{:?}", cancel.targets), r#"[Job(42), Execution("42.1")]"#);
    for bad in ["x", "42.", ".1", "42.1.2", "4a"] {
        assert_eq!(refuse(&["cancel", bad]), ErrorKind::ValueValidation, "{bad:?}");
    }
}

#[test]
fn ls_filters_by_state_names_and_the_dir_flag_goes_anywhere() {
    let cli = parse(&["ls", "--state", "retryable", "--queue", "q", "--dir", "/data", "--json"]);
    assert_eq!(cli.dir.as_deref(), Some(std::path::Path::new("/data")));
    let Command::Ls(ls) = cli.command else { panic!("not an ls") };
    assert_eq!(ls.state, Some(corvee::client::JobState::Retryable));
    assert!(ls.json);
    assert_eq!(refuse(&["ls", "--state", "failed"]), ErrorKind::ValueValidation);
    assert_eq!(parse(&["--dir", "/first", "stats"]).dir.as_deref(), Some(std::path::Path::new("/first")));
}

#[test]
fn wait_needs_ids_and_takes_a_timeout() {
    let Command::Wait(wait) = parse(&["wait", "1", "2", "--timeout", "5m"]).command else { panic!("not a wait") };
    assert_eq!(wait.ids, [1, 2]);
    assert_eq!(wait.timeout, Some(std::time::Duration::from_secs(300)));
    assert_eq!(refuse(&["wait"]), ErrorKind::MissingRequiredArgument);
    assert_eq!(refuse(&["wait", "abc"]), ErrorKind::ValueValidation);
}

#[test]
fn every_read_command_takes_json() {
    for command in [
        &["ls", "--json"][..],
        &["show", "1", "--json"],
        &["stats", "--json"],
        &["monitor", "--json"],
        &["wait", "1", "--json"],
    ] {
        parse(command);
    }
}
