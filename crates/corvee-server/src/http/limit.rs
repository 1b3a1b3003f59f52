//! At most `http.max_connections` client connections at once per listener.
//! At the limit a listener holds the one connection it accepted last until
//! another closes, and accepts nothing more (new clients wait in the
//! kernel's backlog), so a flood of idle connections cannot take the file
//! descriptors the journal, the data files and the worker pools need. Each
//! listener has its own slots: clients of the TCP port cannot crowd out the
//! CLI on the Unix socket. A connection must send its first bytes within
//! the idle timeout (hyper's own timer takes over from there, see
//! `serve.rs`), so one that says nothing gives its slot back.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::serve::Listener;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;

/// A listener's connection slots.
#[derive(Clone, Debug)]
pub struct ConnectionLimit {
    slots: Arc<Semaphore>,
    max: usize,
}

impl ConnectionLimit {
    pub fn new(max: usize) -> ConnectionLimit {
        ConnectionLimit { slots: Arc::new(Semaphore::new(max)), max }
    }

    /// Client connections open now.
    pub fn open(&self) -> usize {
        self.max - self.slots.available_permits()
    }

    /// `listener`, serving a connection only once a slot is free, and only
    /// if it sends something within `first_read` of getting its slot.
    pub fn wrap<L: Listener>(&self, listener: L, first_read: Duration) -> Limited<L> {
        Limited { inner: listener, slots: Arc::clone(&self.slots), first_read }
    }
}

/// A listener whose connections each hold a slot.
#[derive(Debug)]
pub struct Limited<L> {
    inner: L,
    slots: Arc<Semaphore>,
    first_read: Duration,
}

impl<L: Listener> Listener for Limited<L> {
    type Io = Counted<L::Io>;
    type Addr = L::Addr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        // Accept first, then wait for a slot: a slot taken before accepting
        // would sit idle while no client comes.
        let (io, address) = self.inner.accept().await;
        // The semaphore is never closed.
        let slot = Arc::clone(&self.slots).acquire_owned().await.expect("the connection semaphore stays open");
        let silence = Some(Box::pin(tokio::time::sleep(self.first_read)));
        (Counted { io, _slot: slot, silence }, address)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// A connection holding its slot until it is dropped.
#[derive(Debug)]
pub struct Counted<T> {
    io: T,
    _slot: OwnedSemaphorePermit,
    /// Until the first bytes arrive: when the client's time to send them
    /// is up.
    silence: Option<Pin<Box<Sleep>>>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Counted<T> {
    fn poll_read(mut self: Pin<&mut Self>, context: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let filled = buf.filled().len();
        let read = Pin::new(&mut self.io).poll_read(context, buf);
        let Some(silence) = self.silence.as_mut() else { return read };
        match read {
            Poll::Ready(Ok(())) if buf.filled().len() > filled => self.silence = None,
            Poll::Pending if silence.as_mut().poll(context).is_ready() => {
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "the client sent nothing")));
            }
            _ => {}
        }
        read
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Counted<T> {
    fn poll_write(mut self: Pin<&mut Self>, context: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(context, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(context, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(context)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(context)
    }
}
