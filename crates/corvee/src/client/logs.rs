//! A job's log: read once from an offset, or followed as it grows.

use std::io::{self, Read};

use super::http::ResponseHead;
use super::Response;

/// The header carrying the log offset after the bytes returned.
const LOG_OFFSET_HEADER: &str = "corvee-log-offset";

/// Part of a job's log (`GET /v1/jobs/{id}/logs?offset=N`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogChunk {
    /// Log lines, `<RFC 3339 time> <stream> <text>` each. Bytes, because a
    /// command's output need not be UTF-8.
    pub text: Vec<u8>,
    /// The offset after `text` (the `Corvee-Log-Offset` header), to pass
    /// back to read what comes next; `None` if the daemon did not send it.
    pub next_offset: Option<u64>,
}

pub(crate) fn offset_header(head: &ResponseHead) -> Option<u64> {
    head.header(LOG_OFFSET_HEADER).and_then(|value| value.trim().parse().ok())
}

/// A followed log (`...&follow=true`): reads give lines as the job writes
/// them, and 0 once the job has finished and the daemon ended the stream.
pub struct LogFollow {
    response: Response,
}

impl std::fmt::Debug for LogFollow {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("LogFollow").field("request", &self.response.request).finish()
    }
}

impl LogFollow {
    pub(crate) fn new(response: Response) -> LogFollow {
        LogFollow { response }
    }

    /// The `Corvee-Log-Offset` header of the answer, if the daemon sent one
    /// (for a followed log it can only say where the stream started or, as
    /// headers come first, nothing about where it will end).
    pub fn offset_header(&self) -> Option<u64> {
        offset_header(&self.response.head)
    }
}

impl Read for LogFollow {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        self.response.body.read(buffer)
    }
}
