//! About the most a server can give a few closed-loop producers on this
//! machine: an in-process server that does nothing but what every durable
//! enqueue needs — read each request from its socket, write them to a file
//! in one write, `fdatasync`, and reply — with no protocol, parsing or state.
//! Its clients are threads of another process sending 100-byte requests one
//! at a time, like the "4 producers" figure. A real server does all this and
//! more; the comparison says how much of a figure is the machine (fsync
//! latency, thread wake-ups, two cores shared by clients and server) and how
//! much is the server.
//!
//! Three ways to group the requests, each the best-known shape of its kind:
//! - `serial`: one thread; each round takes every request that is ready,
//!   one write and one fdatasync, then the replies (Redis's event loop);
//! - `regroup`: as `serial`, but a round waits up to 100 µs (spinning) for
//!   every client to be back before it syncs, so all share each fdatasync;
//! - `overlapped`: two threads take turns at the sockets, so a second group
//!   is written and synced while the first one's fdatasync is in flight.
//!
//! The file is opened with `O_DIRECT` where the file system allows it
//! (overlapping syncs of buffered writes wait on each other's pages).

use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rustix::event::epoll;
use rustix::fs::{Mode, OFlags};

/// How the ideal server groups requests into fdatasyncs.
#[derive(Clone, Copy, Debug)]
pub enum Grouping {
    Serial,
    Regroup,
    Overlapped,
}

impl Grouping {
    pub const ALL: [Grouping; 3] = [Grouping::Serial, Grouping::Regroup, Grouping::Overlapped];

    pub fn name(self) -> &'static str {
        match self {
            Grouping::Serial => "serial",
            Grouping::Regroup => "regroup",
            Grouping::Overlapped => "overlapped",
        }
    }
}

const REQUEST_BYTES: usize = 100;
/// One page per write: `O_DIRECT` needs the device's logical block size,
/// 4 KiB on some disks; the disk probe writes 4 KiB too.
const RECORD_BYTES: usize = 4096;
/// How long the clients may take to connect before the probe gives up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
const FILE_SLOTS: u64 = 1024;
const REGROUP_WAIT: Duration = Duration::from_micros(100);

/// Requests per second `clients` closed-loop clients get from the ideal
/// server over `seconds`, syncing to a scratch file in `dir`. The clients
/// are threads of another process (this program, as `peers ceiling-clients`),
/// as producers are in the real figures.
pub fn closed_loop_rate(dir: &Path, clients: usize, grouping: Grouping, seconds: f64) -> Result<f64> {
    let path = dir.join(format!("ceiling-{}", grouping.name()));
    let socket_path = dir.join(format!("ceiling-{}.sock", grouping.name()));
    let _ = std::fs::remove_file(&socket_path);
    let file = open_sync_file(&path)?;
    let listener = UnixListener::bind(&socket_path)?;
    let mut child = Command::new(std::env::current_exe()?)
        .args(["ceiling-clients", "--socket"])
        .arg(&socket_path)
        .args(["--clients", &clients.to_string(), "--seconds", &seconds.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .context("starting the ceiling's clients")?;
    let epoll = epoll::create(epoll::CreateFlags::CLOEXEC)?;
    let mut server_ends = Vec::with_capacity(clients);
    let oneshot =
        if matches!(grouping, Grouping::Overlapped) { epoll::EventFlags::ONESHOT } else { epoll::EventFlags::empty() };
    // Accept without blocking forever if the client process dies first.
    listener.set_nonblocking(true)?;
    let connect_deadline = Instant::now() + CONNECT_TIMEOUT;
    while server_ends.len() < clients {
        match listener.accept() {
            Ok((server, _)) => {
                server.set_nonblocking(false)?;
                let index = server_ends.len() as u64;
                epoll::add(&epoll, &server, epoll::EventData::new_u64(index), epoll::EventFlags::IN | oneshot)?;
                server_ends.push(server);
            }
            Err(error) if error.kind() == ErrorKind::WouldBlock => {
                if let Some(status) = child.try_wait()? {
                    anyhow::bail!("the ceiling's clients exited before connecting: {status}");
                }
                anyhow::ensure!(Instant::now() < connect_deadline, "the ceiling's clients did not connect");
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(error) => return Err(error.into()),
        }
    }
    let server = Arc::new(Server {
        epoll,
        file,
        sockets: server_ends,
        grouping,
        next_slot: AtomicU64::new(0),
        closed: AtomicUsize::new(0),
        stop: AtomicBool::new(false),
    });
    let threads = if matches!(grouping, Grouping::Overlapped) { 2 } else { 1 };
    let servers: Vec<_> = (0..threads)
        .map(|_| {
            let server = Arc::clone(&server);
            std::thread::spawn(move || server.run())
        })
        .collect();
    let mut output = String::new();
    child.stdout.take().expect("piped").read_to_string(&mut output)?;
    let status = child.wait()?;
    server.stop.store(true, Ordering::Release);
    for handle in servers {
        handle.join().map_err(|_| anyhow::anyhow!("the ceiling server panicked"))??;
    }
    std::fs::remove_file(&path)?;
    std::fs::remove_file(&socket_path)?;
    anyhow::ensure!(status.success(), "the ceiling's clients failed: {status}");
    output.trim().parse().with_context(|| format!("the ceiling's clients printed {output:?}"))
}

/// `peers ceiling-clients`: connects `clients` threads to the ideal server
/// at `socket`, each sending a request and waiting for its reply for
/// `seconds`, and prints the requests per second all of them got.
pub fn run_clients(socket: &Path, clients: usize, seconds: f64) -> Result<()> {
    let streams = (0..clients).map(|_| UnixStream::connect(socket)).collect::<std::io::Result<Vec<_>>>()?;
    let barrier = Arc::new(Barrier::new(clients + 1));
    let run_for = Duration::from_secs_f64(seconds);
    let handles: Vec<_> = streams
        .into_iter()
        .map(|mut stream| {
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || -> std::io::Result<u64> {
                let mut request = [b'x'; REQUEST_BYTES];
                barrier.wait();
                let started = Instant::now();
                let mut done = 0u64;
                while started.elapsed() < run_for {
                    stream.write_all(&request)?;
                    stream.read_exact(&mut request)?;
                    done += 1;
                }
                Ok(done)
            })
        })
        .collect();
    barrier.wait();
    let started = Instant::now();
    let mut total = 0;
    for handle in handles {
        total += handle.join().map_err(|_| anyhow::anyhow!("a ceiling client panicked"))??;
    }
    println!("{:.0}", total as f64 / started.elapsed().as_secs_f64());
    Ok(())
}

/// A zero-filled scratch file, `O_DIRECT` if the file system takes it.
fn open_sync_file(path: &Path) -> Result<OwnedFd> {
    let create = |direct: OFlags| {
        rustix::fs::open(
            path,
            OFlags::RDWR | OFlags::CREATE | OFlags::TRUNC | OFlags::CLOEXEC | direct,
            Mode::from_raw_mode(0o600),
        )
    };
    let file = match create(OFlags::DIRECT) {
        Err(rustix::io::Errno::INVAL) => create(OFlags::empty()),
        other => other,
    }
    .with_context(|| format!("creating {}", path.display()))?;
    let zeros = AlignedBlock::new();
    for slot in 0..FILE_SLOTS {
        write_at(&file, zeros.bytes(), slot * 4096)?;
    }
    rustix::fs::fsync(&file)?;
    Ok(file)
}

fn write_at(file: &OwnedFd, mut bytes: &[u8], mut offset: u64) -> std::io::Result<()> {
    while !bytes.is_empty() {
        let written = rustix::io::pwrite(file, bytes, offset)?;
        bytes = &bytes[written..];
        offset += written as u64;
    }
    Ok(())
}

/// 4 KiB aligned to 4 KiB, as `O_DIRECT` wants.
struct AlignedBlock {
    storage: Vec<u8>,
    start: usize,
}

impl AlignedBlock {
    fn new() -> AlignedBlock {
        let storage = vec![0u8; 8192];
        let start = storage.as_ptr().align_offset(4096);
        AlignedBlock { storage, start }
    }

    fn bytes(&self) -> &[u8] {
        &self.storage[self.start..self.start + 4096]
    }
}

struct Server {
    epoll: OwnedFd,
    file: OwnedFd,
    sockets: Vec<UnixStream>,
    grouping: Grouping,
    next_slot: AtomicU64,
    closed: AtomicUsize,
    stop: AtomicBool,
}

impl Server {
    fn run(&self) -> std::io::Result<()> {
        let record = AlignedBlock::new();
        let mut events = [epoll::Event { flags: epoll::EventFlags::empty(), data: epoll::EventData::new_u64(0) }; 64];
        let mut ready: Vec<usize> = Vec::with_capacity(self.sockets.len());
        let mut buffer = [0u8; 4096];
        let poll_interval = rustix::time::Timespec { tv_sec: 0, tv_nsec: 50_000_000 };
        let no_wait = rustix::time::Timespec { tv_sec: 0, tv_nsec: 0 };
        while !self.stop.load(Ordering::Acquire) {
            ready.clear();
            let count = epoll::wait(&self.epoll, &mut events[..], Some(&poll_interval))?;
            self.take_requests(&events[..count], &mut ready, &mut buffer)?;
            if matches!(self.grouping, Grouping::Regroup) {
                let deadline = Instant::now() + REGROUP_WAIT;
                let open = self.sockets.len() - self.closed.load(Ordering::Relaxed);
                while ready.len() < open && Instant::now() < deadline {
                    let count = epoll::wait(&self.epoll, &mut events[..], Some(&no_wait))?;
                    self.take_requests(&events[..count], &mut ready, &mut buffer)?;
                }
            }
            if ready.is_empty() {
                continue;
            }
            let slot = self.next_slot.fetch_add(1, Ordering::Relaxed) % FILE_SLOTS;
            write_at(&self.file, &record.bytes()[..RECORD_BYTES], slot * 4096)?;
            rustix::fs::fdatasync(&self.file)?;
            for &index in &ready {
                let mut socket = &self.sockets[index];
                socket.write_all(&buffer[..REQUEST_BYTES])?;
                if matches!(self.grouping, Grouping::Overlapped) {
                    self.rearm(index)?;
                }
            }
        }
        Ok(())
    }

    /// Reads one request from each ready socket (a client has at most one
    /// outstanding), noting closed ones.
    fn take_requests(&self, events: &[epoll::Event], ready: &mut Vec<usize>, buffer: &mut [u8]) -> std::io::Result<()> {
        for event in events {
            let index = event.data.u64() as usize;
            if ready.contains(&index) {
                continue;
            }
            let mut socket = &self.sockets[index];
            match socket.read(buffer) {
                Ok(0) => {
                    self.closed.fetch_add(1, Ordering::Relaxed);
                    epoll::delete(&self.epoll, socket.as_fd())?;
                }
                Ok(_) => ready.push(index),
                Err(error) if error.kind() == ErrorKind::ConnectionReset => {
                    self.closed.fetch_add(1, Ordering::Relaxed);
                    epoll::delete(&self.epoll, socket.as_fd())?;
                }
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    fn rearm(&self, index: usize) -> std::io::Result<()> {
        let flags = epoll::EventFlags::IN | epoll::EventFlags::ONESHOT;
        epoll::modify(&self.epoll, &self.sockets[index], epoll::EventData::new_u64(index as u64), flags)?;
        Ok(())
    }
}
