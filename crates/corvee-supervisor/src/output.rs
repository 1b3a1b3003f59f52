//! Capturing a process's stdout or stderr as lines: a non-blocking pipe read
//! as far as it goes, split on newlines, each line bounded. A line longer
//! than the limit is cut there and marked, and the rest of it (up to its
//! newline) is dropped, so a process printing without newlines cannot grow
//! the supervisor's memory.

use std::io;
use std::os::fd::OwnedFd;

use rustix::io::Errno;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// Appended to a line that was cut at the limit.
pub const LINE_TRUNCATED_MARKER: &str = " [corvee: line truncated]";

/// How much one [`LineReader::read_available`] call reads at most, so a
/// chatty process cannot starve the rest of its supervisor task.
const READ_BUDGET_BYTES: usize = 256 << 10;

/// Reads lines from one output pipe.
pub(crate) struct LineReader {
    pipe: AsyncFd<OwnedFd>,
    pending: Vec<u8>,
    max_line_bytes: usize,
    /// The current line was already cut; skip to its newline.
    discarding: bool,
    eof: bool,
}

/// What one read pass found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ReadPass {
    /// Everything available was read.
    Drained,
    /// The budget ran out; more may be waiting.
    MoreWaiting,
    /// The pipe is closed (every writer is gone).
    Eof,
}

impl LineReader {
    /// Wraps a non-blocking pipe read end.
    pub(crate) fn new(pipe: OwnedFd, max_line_bytes: usize) -> io::Result<LineReader> {
        Ok(LineReader {
            pipe: crate::spawn::register_fd(pipe, Interest::READABLE)?,
            pending: Vec::new(),
            max_line_bytes: max_line_bytes.max(1),
            discarding: false,
            eof: false,
        })
    }

    /// Resolves when there may be something to read. Cancel-safe.
    pub(crate) async fn readable(&self) {
        if self.eof {
            return std::future::pending().await;
        }
        if let Ok(mut guard) = self.pipe.readable().await {
            // Readiness is cleared by `read_available` when a read would
            // block; keep it here.
            guard.retain_ready();
        }
    }

    /// Reads what is available (up to a budget), pushing whole lines to
    /// `lines`. At EOF a last unterminated line is pushed too.
    pub(crate) fn read_available(&mut self, lines: &mut Vec<String>) -> ReadPass {
        self.read(lines, false)
    }

    /// After the process is gone: reads everything left in the pipe, then
    /// pushes a last unterminated line even if the pipe is not closed yet
    /// (a killed grandchild may hold it a moment longer; the job is over).
    ///
    /// It reads straight from the fd, whatever tokio's readiness says: the
    /// reactor may not have seen the event for the last bytes or the EOF
    /// yet when the process's exit is noticed, and `try_io` would then not
    /// read at all — the end of a short command's output would be lost.
    pub(crate) fn drain_after_exit(&mut self, lines: &mut Vec<String>) {
        while self.read(lines, true) == ReadPass::MoreWaiting {}
        if !self.pending.is_empty() && !self.discarding {
            lines.push(String::from_utf8_lossy(&self.pending).into_owned());
        }
        self.pending.clear();
        self.eof = true;
    }

    fn read(&mut self, lines: &mut Vec<String>, ignore_readiness: bool) -> ReadPass {
        if self.eof {
            return ReadPass::Eof;
        }
        let mut chunk = [0u8; 16 << 10];
        let mut read_total = 0;
        let read_pipe = |pipe: &OwnedFd, chunk: &mut [u8]| loop {
            match rustix::io::read(pipe, &mut *chunk) {
                Err(Errno::INTR) => continue,
                result => break result.map_err(io::Error::from),
            }
        };
        loop {
            if read_total >= READ_BUDGET_BYTES {
                return ReadPass::MoreWaiting;
            }
            let result = match ignore_readiness {
                true => read_pipe(self.pipe.get_ref(), &mut chunk),
                false => self.pipe.try_io(Interest::READABLE, |pipe| read_pipe(pipe, &mut chunk)),
            };
            match result {
                Ok(0) => {
                    self.eof = true;
                    if !self.pending.is_empty() {
                        lines.push(String::from_utf8_lossy(&self.pending).into_owned());
                        self.pending.clear();
                    }
                    return ReadPass::Eof;
                }
                Ok(count) => {
                    read_total += count;
                    self.split_lines(&chunk[..count], lines);
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return ReadPass::Drained,
                Err(_) => {
                    // A read error on our own pipe: treat as closed.
                    self.eof = true;
                    return ReadPass::Eof;
                }
            }
        }
    }

    fn split_lines(&mut self, mut bytes: &[u8], lines: &mut Vec<String>) {
        while !bytes.is_empty() {
            match bytes.iter().position(|&byte| byte == b'\n') {
                Some(newline) => {
                    if self.discarding {
                        self.discarding = false;
                    } else {
                        let room = self.max_line_bytes - self.pending.len();
                        let take = newline.min(room);
                        self.pending.extend_from_slice(&bytes[..take]);
                        let mut line = String::from_utf8_lossy(&self.pending).into_owned();
                        if take < newline {
                            line.push_str(LINE_TRUNCATED_MARKER);
                        }
                        if line.ends_with('\r') {
                            line.pop();
                        }
                        lines.push(line);
                        self.pending.clear();
                    }
                    bytes = &bytes[newline + 1..];
                }
                None => {
                    if !self.discarding {
                        let room = self.max_line_bytes - self.pending.len();
                        if bytes.len() > room {
                            self.pending.extend_from_slice(&bytes[..room]);
                            let mut line = String::from_utf8_lossy(&self.pending).into_owned();
                            line.push_str(LINE_TRUNCATED_MARKER);
                            lines.push(line);
                            self.pending.clear();
                            self.discarding = true;
                        } else {
                            self.pending.extend_from_slice(bytes);
                        }
                    }
                    bytes = &[];
                }
            }
        }
    }
}
