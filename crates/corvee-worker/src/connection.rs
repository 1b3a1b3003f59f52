//! The worker's side of one connection once the handshake is done: the
//! settings the welcome granted, and the write half — one send buffer that
//! the reader, the job threads, the peek thread and the heartbeat thread
//! share under a lock. Every frame is written in full before the lock is
//! released, so frames never interleave and a frame's fds travel with its
//! first byte. The heartbeat thread lives here too: it writes a `heartbeat`
//! whenever nothing else was written for the welcome's interval.

use std::os::fd::OwnedFd;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use corvee_proto::{Capabilities, EncodeError, Heartbeat, SendBuffer, WireMessage, HEADER_BYTES};

/// Why a frame was not sent.
#[derive(Debug)]
pub(crate) enum SendError {
    /// The message cannot be encoded (most often: too large for the
    /// supervisor's maximum frame).
    Encode(EncodeError),
    /// The connection is over (the supervisor went away, or goodbye was
    /// sent): nothing more can be said.
    Closed,
}

struct WriteState {
    outgoing: SendBuffer,
    last_sent: Instant,
    /// Set after goodbye, EOF or a failed write: sends fail from then on.
    closed: bool,
}

/// What the welcome settled, and the way to write to the supervisor.
pub(crate) struct Connection {
    socket: Arc<OwnedFd>,
    write: Mutex<WriteState>,
    /// Wakes the heartbeat thread early when the connection closes.
    closed_signal: Condvar,
    pub(crate) capabilities: Capabilities,
    pub(crate) payload_fd_threshold_bytes: u64,
    pub(crate) max_payload_bytes: u64,
    pub(crate) peer_max_frame_bytes: u32,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("capabilities", &self.capabilities)
            .field("payload_fd_threshold_bytes", &self.payload_fd_threshold_bytes)
            .field("peer_max_frame_bytes", &self.peer_max_frame_bytes)
            .finish_non_exhaustive()
    }
}

impl Connection {
    pub(crate) fn new(
        socket: Arc<OwnedFd>,
        outgoing: SendBuffer,
        capabilities: Capabilities,
        payload_fd_threshold_bytes: u64,
        max_payload_bytes: u64,
    ) -> Connection {
        let peer_max_frame_bytes = outgoing.peer_max_frame_bytes();
        Connection {
            socket,
            write: Mutex::new(WriteState { outgoing, last_sent: Instant::now(), closed: false }),
            closed_signal: Condvar::new(),
            capabilities,
            payload_fd_threshold_bytes,
            max_payload_bytes,
            peer_max_frame_bytes,
        }
    }

    fn lock(&self) -> MutexGuard<'_, WriteState> {
        self.write.lock().expect("connection write lock")
    }

    /// Writes one frame (with its fds) in full. A failed write closes the
    /// connection for every sender: the supervisor is gone.
    pub(crate) fn send<M: WireMessage>(&self, message: &M, fds: Vec<OwnedFd>) -> Result<(), SendError> {
        let mut state = self.lock();
        self.send_locked(&mut state, message, fds)
    }

    fn send_locked<M: WireMessage>(
        &self,
        state: &mut WriteState,
        message: &M,
        fds: Vec<OwnedFd>,
    ) -> Result<(), SendError> {
        if state.closed {
            return Err(SendError::Closed);
        }
        state.outgoing.push(message, fds).map_err(SendError::Encode)?;
        if let Err(error) = state.outgoing.send_to(&*self.socket) {
            eprintln!("corvee worker: writing to the supervisor failed ({error}); stopping");
            state.closed = true;
            self.closed_signal.notify_all();
            return Err(SendError::Closed);
        }
        state.last_sent = Instant::now();
        Ok(())
    }

    /// Sends `message` as the last frame: nothing is sent after it.
    pub(crate) fn send_last<M: WireMessage>(&self, message: &M) -> Result<(), SendError> {
        let mut state = self.lock();
        let sent = self.send_locked(&mut state, message, Vec::new());
        state.closed = true;
        self.closed_signal.notify_all();
        sent
    }

    /// Stops all sending (the supervisor is gone).
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.closed_signal.notify_all();
    }

    /// The most bytes of text or bytes that fit in one frame to the
    /// supervisor next to a message's other fields.
    pub(crate) fn max_field_bytes(&self) -> usize {
        (self.peer_max_frame_bytes as usize).saturating_sub(HEADER_BYTES + 1024)
    }

    /// Starts the heartbeat thread: a `heartbeat` whenever nothing was sent
    /// for `interval`. It ends when the connection closes.
    pub(crate) fn start_heartbeats(self: &Arc<Self>, interval: Duration) -> std::io::Result<JoinHandle<()>> {
        let connection = self.clone();
        // Checking four times per interval keeps the longest silence near
        // 1.25 intervals, far from the 3 after which the worker is hung.
        let tick = (interval / 4).max(Duration::from_millis(1));
        std::thread::Builder::new().name("corvee-heartbeat".into()).spawn(move || {
            let mut state = connection.lock();
            loop {
                if state.closed {
                    return;
                }
                if state.last_sent.elapsed() >= interval
                    && connection.send_locked(&mut state, &Heartbeat {}, Vec::new()).is_err()
                {
                    return;
                }
                state = connection.closed_signal.wait_timeout(state, tick).expect("connection write lock").0;
            }
        })
    }
}
