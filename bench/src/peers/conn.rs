//! A blocking, buffered Unix-socket connection for the hand-written text
//! protocols (beanstalkd, Redis, HTTP/1.1): requests are collected in an
//! output buffer and written with one `write` per flush, so a caller can
//! pipeline; replies are parsed straight out of the input buffer.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};

/// How often a reader blocked on a quiet socket looks at its stop flag.
const STOP_CHECK_INTERVAL: Duration = Duration::from_millis(100);

#[derive(Debug)]
pub struct Conn {
    stream: UnixStream,
    /// Received bytes live in `input[input_start..input_end]`; the rest of
    /// the vector is room for the next read (kept allocated and
    /// initialised, so a read costs no zeroing).
    input: Vec<u8>,
    input_start: usize,
    input_end: usize,
    pub output: Vec<u8>,
    /// Set: reads time out every `STOP_CHECK_INTERVAL` and give up once the
    /// flag is raised (a worker told to stop while waiting for a job).
    stop: Option<Arc<AtomicBool>>,
}

impl Conn {
    pub fn connect(path: &Path) -> Result<Conn> {
        let stream = UnixStream::connect(path).with_context(|| format!("connecting to {}", path.display()))?;
        Ok(Conn { stream, input: vec![0; 64 << 10], input_start: 0, input_end: 0, output: Vec::new(), stop: None })
    }

    /// Makes blocking reads return an error once `stop` is raised.
    pub fn stop_on(&mut self, stop: Arc<AtomicBool>) -> Result<()> {
        self.stream.set_read_timeout(Some(STOP_CHECK_INTERVAL))?;
        self.stop = Some(stop);
        Ok(())
    }

    pub fn flush(&mut self) -> Result<()> {
        if !self.output.is_empty() {
            self.stream.write_all(&self.output).context("writing to the server")?;
            self.output.clear();
        }
        Ok(())
    }

    /// The received bytes not consumed yet.
    pub fn buffered(&self) -> &[u8] {
        &self.input[self.input_start..self.input_end]
    }

    pub fn consume(&mut self, bytes: usize) {
        self.input_start += bytes;
        assert!(self.input_start <= self.input_end);
        if self.input_start == self.input_end {
            self.input_start = 0;
            self.input_end = 0;
        }
    }

    /// Flushes what is pending, then reads at least one more byte.
    pub fn fill(&mut self) -> Result<()> {
        self.flush()?;
        if self.input_start > 0 {
            self.input.copy_within(self.input_start..self.input_end, 0);
            self.input_end -= self.input_start;
            self.input_start = 0;
        }
        if self.input.len() - self.input_end < 16 << 10 {
            self.input.resize(self.input.len() * 2, 0);
        }
        loop {
            match self.stream.read(&mut self.input[self.input_end..]) {
                Ok(0) => bail!("the server closed the connection"),
                Ok(read) => {
                    self.input_end += read;
                    return Ok(());
                }
                Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    if self.stop.as_ref().is_some_and(|stop| stop.load(Ordering::Relaxed)) {
                        bail!("stopped");
                    }
                }
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(error) => return Err(error).context("reading from the server"),
            }
        }
    }

    /// The next line without its `\r\n`, consumed.
    pub fn read_line(&mut self) -> Result<Vec<u8>> {
        let mut searched = 0;
        loop {
            let buffered = self.buffered();
            if let Some(position) = buffered[searched..].windows(2).position(|pair| pair == b"\r\n") {
                let line = buffered[..searched + position].to_vec();
                self.consume(searched + position + 2);
                return Ok(line);
            }
            searched = buffered.len().saturating_sub(1);
            self.fill()?;
        }
    }

    /// The next `bytes` bytes, consumed.
    pub fn read_exact(&mut self, bytes: usize) -> Result<Vec<u8>> {
        while self.buffered().len() < bytes {
            self.fill()?;
        }
        let data = self.buffered()[..bytes].to_vec();
        self.consume(bytes);
        Ok(data)
    }
}
