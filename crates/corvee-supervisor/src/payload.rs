//! Turning a job's [`Payload`] into what travels in its `job` frame: inline
//! bytes when small (or when the worker takes no fds), otherwise an fd — a
//! sealed memfd made from inline bytes, or the data file opened read-only —
//! so large payloads never pass through the socket.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileExt;

use crate::Payload;

/// What goes into the frame.
pub(crate) enum WirePayload {
    /// Inline bytes.
    Inline(Vec<u8>),
    /// An fd whose first `length` bytes are the payload.
    Fd { fd: OwnedFd, length: u64 },
}

/// Why a payload cannot be sent; the attempt fails with this message.
pub(crate) struct PayloadProblem {
    pub(crate) message: String,
    /// Whether another attempt could do better (a file that may reappear)
    /// or not (a payload this worker can never take).
    pub(crate) retryable: bool,
}

/// Decides how `payload` travels to a worker that does (`fd_capable`) or
/// does not take fds, with the welcome's threshold and the worker's frame
/// limit. `inline_room` is the largest inline payload that still fits a frame.
pub(crate) fn prepare_payload(
    payload: Payload,
    fd_capable: bool,
    fd_threshold_bytes: u64,
    inline_room: u64,
    job_id: u64,
) -> Result<WirePayload, PayloadProblem> {
    let as_fd = fd_capable && payload.len() > fd_threshold_bytes;
    match payload {
        Payload::Inline(bytes) if as_fd => {
            let fd = corvee_proto::sealed_memfd(&format!("corvee-job-{job_id}"), &bytes).map_err(|error| {
                PayloadProblem { message: format!("creating a memfd for the payload failed: {error}"), retryable: true }
            })?;
            Ok(WirePayload::Fd { fd, length: bytes.len() as u64 })
        }
        Payload::Inline(bytes) => {
            check_inline_room(bytes.len() as u64, inline_room)?;
            Ok(WirePayload::Inline(bytes))
        }
        Payload::File { path, length } => {
            let file = File::open(&path).map_err(|error| PayloadProblem {
                message: format!("opening the payload file {} failed: {error}", path.display()),
                retryable: true,
            })?;
            let file_bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
            if file_bytes < length {
                return Err(PayloadProblem {
                    message: format!(
                        "the payload file {} holds {file_bytes} bytes, fewer than the job's {length}",
                        path.display()
                    ),
                    retryable: false,
                });
            }
            if as_fd {
                return Ok(WirePayload::Fd { fd: file.into(), length });
            }
            check_inline_room(length, inline_room)?;
            let mut bytes = vec![0u8; length as usize];
            file.read_exact_at(&mut bytes, 0).map_err(|error| PayloadProblem {
                message: format!("reading the payload file {} failed: {error}", path.display()),
                retryable: true,
            })?;
            Ok(WirePayload::Inline(bytes))
        }
    }
}

fn check_inline_room(length: u64, inline_room: u64) -> Result<(), PayloadProblem> {
    if length > inline_room {
        return Err(PayloadProblem {
            message: format!(
                "the payload of {length} bytes does not fit in a frame this worker accepts ({inline_room} bytes of \
                 room) and the worker does not take payloads as file descriptors; use an SDK with fd_payloads"
            ),
            retryable: false,
        });
    }
    Ok(())
}
