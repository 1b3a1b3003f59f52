//! The handshake's decision: given a worker's `hello` and the pool's
//! settings, the `welcome` to send (with the window, frame limit and
//! capabilities in use) or the `refusal` and why. Pure; the session does
//! the I/O.

use std::time::Duration;

use corvee_proto::{Capabilities, Hello, Refusal, Welcome, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION};

use crate::WorkerId;

/// What this supervisor supports; the welcome offers the part of it the
/// worker announced.
pub(crate) const SUPERVISOR_CAPABILITIES: Capabilities = Capabilities::ALL;

/// The pool's side of the negotiation.
#[derive(Clone, Debug)]
pub(crate) struct HandshakeSettings<'a> {
    pub(crate) worker_id: WorkerId,
    pub(crate) max_window: u32,
    pub(crate) kinds: &'a [String],
    pub(crate) max_frame_bytes: u32,
    pub(crate) heartbeat_interval: Duration,
    pub(crate) payload_fd_threshold_bytes: u32,
    pub(crate) interrupt_grace: Duration,
}

/// A successful handshake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Negotiated {
    pub(crate) welcome: Welcome,
    /// The kinds this worker runs for the pool.
    pub(crate) kinds: Vec<String>,
}

fn millis_u32(duration: Duration) -> u32 {
    u32::try_from(duration.as_millis()).unwrap_or(u32::MAX)
}

fn refusal(reason: &str, message: String) -> Refusal {
    Refusal {
        reason: reason.to_owned(),
        message,
        min_protocol_version: MIN_PROTOCOL_VERSION,
        protocol_version: PROTOCOL_VERSION,
    }
}

/// Picks the protocol version, window, kinds and capabilities, or says why
/// not.
pub(crate) fn negotiate(hello: &Hello, settings: &HandshakeSettings<'_>) -> Result<Negotiated, Refusal> {
    let version = hello.protocol_version.min(PROTOCOL_VERSION);
    if version < hello.min_protocol_version || version < MIN_PROTOCOL_VERSION {
        return Err(refusal(
            "version_mismatch",
            format!(
                "the worker speaks protocol versions {}..={} but this supervisor speaks {MIN_PROTOCOL_VERSION}..={PROTOCOL_VERSION}; \
                 upgrade corvee or use an older SDK",
                hello.min_protocol_version, hello.protocol_version
            ),
        ));
    }
    if hello.worker_name.is_empty() {
        return Err(refusal("invalid_hello", "the hello's worker_name is empty; give the worker a name".to_owned()));
    }
    let kinds: Vec<String> = if settings.kinds.is_empty() {
        hello.job_kinds.clone()
    } else {
        hello.job_kinds.iter().filter(|kind| settings.kinds.contains(kind)).cloned().collect()
    };
    if kinds.is_empty() {
        return Err(refusal(
            "unknown_kinds",
            format!(
                "the worker runs kinds {:?} but this pool runs {:?}; configure the pool's kinds or start another worker",
                hello.job_kinds, settings.kinds
            ),
        ));
    }
    let welcome = Welcome {
        protocol_version: version,
        worker_id: settings.worker_id.0,
        window: hello.window.min(settings.max_window).max(1),
        max_frame_bytes: settings.max_frame_bytes,
        heartbeat_interval_ms: millis_u32(settings.heartbeat_interval),
        payload_fd_threshold_bytes: settings.payload_fd_threshold_bytes,
        interrupt_grace_ms: millis_u32(settings.interrupt_grace),
        capabilities: hello.capabilities.intersection(SUPERVISOR_CAPABILITIES),
    };
    Ok(Negotiated { welcome, kinds })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello() -> Hello {
        Hello {
            protocol_version: 1,
            min_protocol_version: 1,
            worker_name: "w".into(),
            job_kinds: vec!["a".into(), "b".into()],
            capabilities: Capabilities::ALL,
            window: 64,
            max_frame_bytes: 1 << 20,
            sdk: None,
        }
    }

    fn settings(kinds: &[String]) -> HandshakeSettings<'_> {
        HandshakeSettings {
            worker_id: WorkerId(7),
            max_window: 8,
            kinds,
            max_frame_bytes: 1 << 20,
            heartbeat_interval: Duration::from_secs(5),
            payload_fd_threshold_bytes: 65536,
            interrupt_grace: Duration::from_secs(10),
        }
    }

    #[test]
    fn the_window_is_the_smaller_of_asked_and_allowed() {
        let negotiated = negotiate(&hello(), &settings(&[])).unwrap();
        assert_eq!(negotiated.welcome.window, 8);
        assert_eq!(negotiated.welcome.worker_id, 7);
        assert_eq!(negotiated.welcome.capabilities, Capabilities::ALL);
        assert_eq!(negotiated.kinds, ["a", "b"]);
    }

    #[test]
    fn only_the_capabilities_the_worker_announced_are_in_use() {
        let capabilities = Capabilities { fd_payloads: false, checkpoints: true, peek: false, interrupt: true };
        let negotiated = negotiate(&Hello { capabilities, ..hello() }, &settings(&[])).unwrap();
        assert_eq!(negotiated.welcome.capabilities, capabilities);
        let peek_only = Capabilities { peek: true, ..Capabilities::default() };
        let negotiated = negotiate(&Hello { capabilities: peek_only, ..hello() }, &settings(&[])).unwrap();
        assert_eq!(negotiated.welcome.capabilities, peek_only);
    }

    #[test]
    fn a_version_range_above_ours_is_refused_naming_both_ranges() {
        let hello = Hello { protocol_version: 3, min_protocol_version: 2, ..hello() };
        let refused = negotiate(&hello, &settings(&[])).unwrap_err();
        assert_eq!(refused.reason, "version_mismatch");
        assert!(refused.message.contains("2..=3") && refused.message.contains("1..=1"), "{}", refused.message);
    }

    #[test]
    fn kinds_are_narrowed_to_the_pool_and_none_in_common_is_refused() {
        let pool = vec!["b".to_owned(), "c".to_owned()];
        assert_eq!(negotiate(&hello(), &settings(&pool)).unwrap().kinds, ["b"]);
        let other = vec!["z".to_owned()];
        assert_eq!(negotiate(&hello(), &settings(&other)).unwrap_err().reason, "unknown_kinds");
    }
}
