//! Signals to whole process groups. Every worker and command runs as the
//! leader of its own group (pgid = its pid), so a signal to the group also
//! reaches whatever it started and did not move elsewhere — grandchildren
//! included, even double-forked ones, which stay in the group.
//!
//! *Kill* here means SIGKILL and nothing else; SIGINT and SIGTERM are the
//! polite steps of an interrupt (see `EscalationStep`).

use rustix::io::Errno;
use rustix::process::{Pid, Signal};

/// Sends `signal` to the process group `pgid`. A group that no longer has
/// members (ESRCH) is not an error: everything in it is gone already.
///
/// Callers send this only while the group leader is not yet reaped: a zombie
/// leader keeps its pid, so the pgid cannot have been reused by another
/// group.
pub(crate) fn signal_process_group(pgid: Pid, signal: Signal) {
    match rustix::process::kill_process_group(pgid, signal) {
        Ok(()) | Err(Errno::SRCH) => {}
        // EPERM would mean a group member changed its credentials (setuid);
        // nothing more can be done from here.
        Err(errno) => debug_assert!(false, "kill(-{}, {signal:?}) failed: {errno}", pgid.as_raw_nonzero()),
    }
}

/// SIGKILL to the whole group.
pub(crate) fn kill_process_group(pgid: Pid) {
    signal_process_group(pgid, Signal::KILL);
}
