//! One daemon per data directory: a second `corvee serve` on the same
//! directory exits 1, saying which directory is taken and by which pid, and
//! the first one goes on serving.

use corvee::client::JobState;

use super::daemon::TestDaemon;

#[test]
fn a_second_daemon_on_the_same_directory_exits_1_naming_the_holder() {
    let daemon = TestDaemon::start("");
    let second = daemon.spawn_serve().finish();
    assert_eq!(second.code, Some(1), "{second:?}");
    let expected = format!("another corvee daemon is already running for {}", daemon.dir().display());
    assert!(second.stderr.contains(&expected), "{}", second.stderr);
    let holder = format!("(pid {} on ", daemon.pid().as_raw_nonzero());
    assert!(second.stderr.contains(&holder), "names the holder {holder:?}: {}", second.stderr);
    assert!(second.stderr.contains("stop it first"), "says what to do: {}", second.stderr);

    // The first daemon lost nothing: it still serves, and its socket is
    // still its own.
    let health = daemon.client.health().expect("the first daemon still answers");
    assert_eq!(health.dir, daemon.dir().display().to_string());
    let stdout = daemon.corvee_ok(&["run", "--wait", "--", "true"]);
    let id: u64 = stdout.lines().next().and_then(|line| line.parse().ok()).expect("the id");
    assert_eq!(daemon.client.job(id).unwrap().state, JobState::Completed);
}
