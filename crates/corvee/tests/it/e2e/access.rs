//! Who may talk to the daemon: the Unix socket is private to its user
//! (socket 0600 in a 0700 directory) and needs no token; with a token
//! configured, TCP (on a free loopback port here) answers `401
//! unauthorized` unless the request carries it.

use std::os::unix::fs::PermissionsExt;

use corvee::client::{Client, CommandRequest, JobState};

use super::daemon::{poll_until, TestDaemon};

const TOKEN: &str = "e2e-token-0123456789abcdef";

#[test]
fn tcp_needs_the_token_and_the_unix_socket_is_private() {
    let config = format!("[http]\nlisten = \"127.0.0.1:0\"\ntoken = \"{TOKEN}\"\n");
    let daemon = TestDaemon::start(&config);
    let mode = |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(daemon.dir()), 0o700);
    assert_eq!(mode(&corvee::dir::socket_path(daemon.dir())), 0o600);

    // The daemon logs the port it bound.
    let mut address = None;
    poll_until("the daemon to log its TCP address", || {
        address = daemon.log_text().split("tcp=Some(").nth(1).and_then(|rest| rest.split(')').next()).map(String::from);
        address.is_some()
    });
    let address = address.expect("found");
    assert!(address.starts_with("127.0.0.1:"), "{address}");

    for token in [None, Some("the-wrong-token-0123456789".to_string())] {
        let error = Client::tcp(&address, token.clone()).health().expect_err("refused without the token");
        assert_eq!(error.code(), Some("unauthorized"), "{token:?}: {error:?}");
    }
    let client = Client::tcp(&address, Some(TOKEN.into()));
    assert_eq!(client.health().unwrap().status, "ok");
    let id = client.enqueue_command(&CommandRequest::new(vec!["true".into()])).unwrap().id;
    assert_eq!(client.wait(id, super::daemon::STEP_TIMEOUT).unwrap().state, JobState::Completed);
    // The same job through the socket, without a token.
    assert_eq!(daemon.client.job(id).unwrap().state, JobState::Completed);
}
