//! The messages that open, keep alive and close a connection: hello,
//! welcome or refusal, heartbeat, shutdown and goodbye.

use serde::{Deserialize, Serialize};

use super::{Capabilities, WireMessage};
use crate::{MessageType, HANDSHAKE_MAX_FRAME_BYTES, PROTOCOL_MAX_FRAME_BYTES};

fn check_max_frame_bytes(max_frame_bytes: u32) -> Result<(), String> {
    if !(HANDSHAKE_MAX_FRAME_BYTES..=PROTOCOL_MAX_FRAME_BYTES).contains(&max_frame_bytes) {
        return Err(format!(
            "max_frame_bytes {max_frame_bytes} is outside {HANDSHAKE_MAX_FRAME_BYTES}..={PROTOCOL_MAX_FRAME_BYTES}"
        ));
    }
    Ok(())
}

/// Worker → supervisor: the first frame a worker sends. It must fit in
/// [`HANDSHAKE_MAX_FRAME_BYTES`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The newest protocol version the worker speaks.
    pub protocol_version: u16,
    /// The oldest protocol version the worker speaks (at most
    /// `protocol_version`).
    pub min_protocol_version: u16,
    /// A name for logs and the dashboard, such as `thumbnailer`.
    pub worker_name: String,
    /// The job kinds this worker runs.
    pub job_kinds: Vec<String>,
    /// What the worker supports.
    pub capabilities: Capabilities,
    /// How many jobs the worker wants in flight at once (at least 1).
    pub window: u32,
    /// The largest frame the worker accepts, header included.
    pub max_frame_bytes: u32,
    /// The SDK and its version, for diagnostics (`corvee-worker-python 0.1.0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sdk: Option<String>,
}

impl WireMessage for Hello {
    const MESSAGE_TYPE: MessageType = MessageType::Hello;

    fn validate(&self) -> Result<(), String> {
        if self.min_protocol_version > self.protocol_version {
            return Err(format!(
                "min_protocol_version {} is above protocol_version {}",
                self.min_protocol_version, self.protocol_version
            ));
        }
        if self.worker_name.is_empty() {
            return Err("worker_name is empty".to_owned());
        }
        if self.window == 0 {
            return Err("window is 0; a worker wants at least one job in flight".to_owned());
        }
        check_max_frame_bytes(self.max_frame_bytes)
    }

    fn bulk_bytes(&self) -> usize {
        self.worker_name.len() + self.job_kinds.iter().map(String::len).sum::<usize>()
    }
}

/// Supervisor → worker: the handshake succeeded. Settings in force from now
/// on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    /// The protocol version of this connection, within the worker's range.
    pub protocol_version: u16,
    /// The supervisor's id for this worker process, for its logs.
    pub worker_id: u64,
    /// The most jobs the supervisor will have in flight at this worker (at
    /// least 1, at most what the worker asked for).
    pub window: u32,
    /// The largest frame the supervisor accepts, header included.
    pub max_frame_bytes: u32,
    /// The worker sends a heartbeat when it has sent nothing else for this
    /// long. 0: no heartbeats expected.
    pub heartbeat_interval_ms: u32,
    /// Payloads and results larger than this travel as fds when
    /// `capabilities.fd_payloads` is on.
    pub payload_fd_threshold_bytes: u32,
    /// How long after an interrupt the supervisor waits for `interrupted`
    /// before it sends SIGTERM to the worker's process group.
    pub interrupt_grace_ms: u32,
    /// The capabilities in use on this connection: those of the hello that
    /// the supervisor also supports.
    pub capabilities: Capabilities,
}

impl WireMessage for Welcome {
    const MESSAGE_TYPE: MessageType = MessageType::Welcome;

    fn validate(&self) -> Result<(), String> {
        if self.window == 0 {
            return Err("window is 0; at least one job must be allowed in flight".to_owned());
        }
        check_max_frame_bytes(self.max_frame_bytes)
    }
}

/// Supervisor → worker: the handshake failed. The supervisor closes the
/// connection after it; the worker exits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    /// A code to branch on: `version_mismatch`, `invalid_hello`,
    /// `unknown_kinds`, `shutting_down` (others may be added).
    pub reason: String,
    /// What happened and what to do, for a human.
    pub message: String,
    /// The oldest protocol version the supervisor speaks.
    pub min_protocol_version: u16,
    /// The newest protocol version the supervisor speaks.
    pub protocol_version: u16,
}

impl WireMessage for Refusal {
    const MESSAGE_TYPE: MessageType = MessageType::Refusal;

    fn bulk_bytes(&self) -> usize {
        self.reason.len() + self.message.len()
    }
}

/// Worker → supervisor: the worker is alive. Sent only when the worker has
/// sent no other frame for the welcome's heartbeat interval; any frame
/// counts as a sign of life.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {}

impl WireMessage for Heartbeat {
    const MESSAGE_TYPE: MessageType = MessageType::Heartbeat;
}

/// Supervisor → worker: no more jobs will come. Finish (or interrupt) the
/// jobs in flight, send their terminal replies, send a goodbye and exit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shutdown {
    /// When the supervisor starts interrupting what is still running, as
    /// milliseconds since the Unix epoch.
    pub deadline_unix_ms: u64,
    /// Why, for logs: `pool_stopped`, `daemon_stopping`, `restart`.
    pub reason: String,
}

impl WireMessage for Shutdown {
    const MESSAGE_TYPE: MessageType = MessageType::Shutdown;
}

/// Worker → supervisor: the last frame before the worker exits. Jobs still
/// without a terminal reply are failed by the supervisor as lost.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Goodbye {
    /// Why the worker leaves, for logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl WireMessage for Goodbye {
    const MESSAGE_TYPE: MessageType = MessageType::Goodbye;
}
