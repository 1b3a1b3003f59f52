//! At most `http.max_connections` client connections at once per listener.
//! At the limit a listener holds the one connection it accepted last until
//! another closes, and accepts nothing more (new clients wait in the
//! kernel's backlog), so a flood of idle connections cannot take the file
//! descriptors the journal, the data files and the worker pools need. Each
//! listener has its own slots: clients of the TCP port cannot crowd out the
//! CLI on the Unix socket.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::serve::Listener;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

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

    /// `listener`, accepting only while a slot is free.
    pub fn wrap<L: Listener>(&self, listener: L) -> Limited<L> {
        Limited { inner: listener, slots: Arc::clone(&self.slots) }
    }
}

/// A listener whose connections each hold a slot.
#[derive(Debug)]
pub struct Limited<L> {
    inner: L,
    slots: Arc<Semaphore>,
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
        (Counted { io, _slot: slot }, address)
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
}

impl<T: AsyncRead + Unpin> AsyncRead for Counted<T> {
    fn poll_read(mut self: Pin<&mut Self>, context: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(context, buf)
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
