//! corvee-test-worker: a protocol worker for the supervisor's tests and
//! benchmarks. It behaves — runs `noop`, `echo`, `hash`, `sleep`, `steps`,
//! `fail`, `snooze`, `log` jobs, heartbeats, stops at safe points on
//! interrupt, answers peeks with `--peek` — and misbehaves on command: a
//! `misbehave` job's payload, or `--startup=MODE` at start, picks what goes
//! wrong (see `usage`).

use std::collections::HashMap;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use corvee_proto::{
    encode_frame, read_payload, sealed_memfd, worker_socket_from_env, Capabilities, Checkpoint, Complete, Fail,
    FrameDecoder, Goodbye, Heartbeat, Hello, Interrupted, Job, Log, LogLevel, Message, Payload, Peek, PeekReply,
    PeekResult, Peer, Progress, ProgressState, SendBuffer, Snooze, WireMessage, DEFAULT_MAX_FRAME_BYTES,
    HANDSHAKE_MAX_FRAME_BYTES, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION,
};

fn usage() -> ! {
    eprintln!(
        "usage: corvee-test-worker [--name=NAME] [--window=N] [--no-interrupt] [--no-fd] [--ignore-sigterm]\n\
         \x20      [--startup=normal|never-hello|drip-hello|exit:CODE] [--once=MARKER_PATH] [--max-frame=BYTES]\n\
         \x20      [--peek]\n\
         jobs: noop, consume, echo, hash, sleep (payload: ms), steps (payload: count), stubborn, fail (payload: \
         retryable?), snooze, log, stale, release (answers a held peek), misbehave (payload: garbage|huge-frame|\
         truncate-exit|drip|stop|crash|exit|double-fork:PIDFILE)\n\
         peeks (with --peek): echo:TEXT, error, hold (answered when a release job runs)"
    );
    std::process::exit(2)
}

struct Options {
    name: String,
    window: u32,
    interrupt: bool,
    fd_payloads: bool,
    ignore_sigterm: bool,
    startup: String,
    once: Option<String>,
    max_frame_bytes: u32,
    peek: bool,
}

fn parse_options() -> Options {
    let mut options = Options {
        name: "rust-test-worker".into(),
        window: 8,
        interrupt: true,
        fd_payloads: true,
        ignore_sigterm: false,
        startup: "normal".into(),
        once: None,
        max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
        peek: false,
    };
    for argument in std::env::args().skip(1) {
        let (key, value) = argument.split_once('=').unwrap_or((&argument, ""));
        match key {
            "--name" => options.name = value.into(),
            "--window" => options.window = value.parse().unwrap_or_else(|_| usage()),
            "--no-interrupt" => options.interrupt = false,
            "--no-fd" => options.fd_payloads = false,
            "--ignore-sigterm" => options.ignore_sigterm = true,
            "--startup" => options.startup = value.into(),
            "--once" => options.once = Some(value.into()),
            "--max-frame" => options.max_frame_bytes = value.parse().unwrap_or_else(|_| usage()),
            "--peek" => options.peek = true,
            _ => usage(),
        }
    }
    options
}

/// The write side: one send buffer, written out in full under a lock.
struct Writer {
    socket: OwnedFd,
    outgoing: SendBuffer,
}

impl Writer {
    fn push<M: WireMessage>(&mut self, message: &M, fds: Vec<OwnedFd>) {
        self.outgoing.push(message, fds).expect("encoding a reply");
    }

    fn flush(&mut self) {
        if let Err(error) = self.outgoing.send_to(&self.socket) {
            eprintln!("test worker: writing to the supervisor failed: {error}");
            std::process::exit(1);
        }
    }

    fn send<M: WireMessage>(&mut self, message: &M, fds: Vec<OwnedFd>) {
        self.push(message, fds);
        self.flush();
    }
}

type SharedWriter = Arc<Mutex<Writer>>;

struct State {
    writer: SharedWriter,
    running: AtomicU32,
    max_running: AtomicU32,
    interrupts: Mutex<HashMap<(u64, u32), Arc<AtomicBool>>>,
    fd_payloads: bool,
    fd_threshold: u64,
    /// A `hold` peek's request id, answered by the next `release` job.
    held_peek: Mutex<Option<u64>>,
}

fn main() {
    let options = parse_options();
    // SAFETY: first thing in main; nothing else took fd 3.
    let socket = match unsafe { worker_socket_from_env() } {
        Ok(socket) => socket,
        Err(error) => {
            eprintln!("corvee-test-worker: {error}");
            std::process::exit(2);
        }
    };
    if options.ignore_sigterm {
        // SAFETY: installs SIG_IGN, no handler code runs.
        unsafe { libc::signal(libc::SIGTERM, libc::SIG_IGN) };
    }
    let misbehave_now = match &options.once {
        None => true,
        Some(marker) => std::fs::OpenOptions::new().write(true).create_new(true).open(marker).is_ok(),
    };
    let hello = Hello {
        protocol_version: PROTOCOL_VERSION,
        min_protocol_version: MIN_PROTOCOL_VERSION,
        worker_name: options.name.clone(),
        job_kinds: [
            "noop",
            "echo",
            "hash",
            "sleep",
            "steps",
            "stubborn",
            "fail",
            "snooze",
            "log",
            "stale",
            "release",
            "misbehave",
        ]
        .map(String::from)
        .to_vec(),
        capabilities: Capabilities {
            fd_payloads: options.fd_payloads,
            checkpoints: true,
            peek: options.peek,
            interrupt: options.interrupt,
        },
        window: options.window,
        max_frame_bytes: options.max_frame_bytes,
        sdk: Some("corvee-test-worker".into()),
    };
    let mut hello_bytes = Vec::new();
    encode_frame(&mut hello_bytes, &hello, HANDSHAKE_MAX_FRAME_BYTES).expect("hello encodes");
    if misbehave_now {
        match options.startup.as_str() {
            "normal" => {}
            "never-hello" => {
                // Wait for EOF or a signal without ever saying hello.
                let mut byte = [0u8; 1];
                while rustix::io::read(&socket, &mut byte).is_ok_and(|n| n > 0) {}
                std::process::exit(0);
            }
            "drip-hello" => {
                for byte in &hello_bytes {
                    let _ = rustix::io::write(&socket, std::slice::from_ref(byte));
                    thread::sleep(Duration::from_secs(1));
                }
                std::process::exit(0);
            }
            other => match other.strip_prefix("exit:").and_then(|code| code.parse::<i32>().ok()) {
                Some(code) => {
                    eprintln!("test worker: exiting with {code} at start, as asked");
                    std::process::exit(code);
                }
                None => usage(),
            },
        }
    }
    let mut writer = Writer { socket: socket.try_clone().expect("dup socket"), outgoing: SendBuffer::new() };
    writer.outgoing.push(&hello, Vec::new()).expect("hello");
    writer.flush();

    let mut decoder = FrameDecoder::new(options.max_frame_bytes).receiving_as(Peer::Worker);
    let welcome = loop {
        match decoder.next_message() {
            Ok(Some(received)) => match received.message {
                Message::Welcome(welcome) => break welcome,
                Message::Refusal(refusal) => {
                    eprintln!("test worker: refused: {}", refusal.message);
                    std::process::exit(3);
                }
                other => panic!("expected welcome, got {other:?}"),
            },
            Ok(None) => match decoder.recv_from(&socket) {
                Ok(0) => std::process::exit(0),
                Ok(_) => {}
                Err(error) => panic!("reading the welcome: {error}"),
            },
            Err(error) => panic!("decoding the welcome: {error}"),
        }
    };
    writer.outgoing.set_peer_max_frame_bytes(welcome.max_frame_bytes);
    let state = Arc::new(State {
        writer: Arc::new(Mutex::new(writer)),
        running: AtomicU32::new(0),
        max_running: AtomicU32::new(0),
        interrupts: Mutex::new(HashMap::new()),
        fd_payloads: welcome.capabilities.fd_payloads,
        fd_threshold: u64::from(welcome.payload_fd_threshold_bytes),
        held_peek: Mutex::new(None),
    });
    if welcome.heartbeat_interval_ms > 0 {
        let writer = state.writer.clone();
        let interval = Duration::from_millis(u64::from(welcome.heartbeat_interval_ms) / 2);
        thread::spawn(move || loop {
            thread::sleep(interval);
            writer.lock().unwrap().send(&Heartbeat {}, Vec::new());
        });
    }
    loop {
        let mut replied_inline = false;
        loop {
            match decoder.next_message() {
                Ok(Some(mut received)) => match received.message.clone() {
                    Message::Job(job) => {
                        let fd = match job.payload {
                            Payload::Fd { index, .. } => received.take_fd(index),
                            Payload::Inline(_) => None,
                        };
                        replied_inline |= dispatch(&state, &socket, job, fd);
                    }
                    Message::Interrupt(interrupt) => {
                        let flags = state.interrupts.lock().unwrap();
                        if let Some(flag) = flags.get(&(interrupt.job_id, interrupt.attempt)) {
                            flag.store(true, Ordering::SeqCst);
                        }
                    }
                    Message::Peek(peek) => replied_inline |= answer_peek(&state, peek),
                    Message::Shutdown(shutdown) => {
                        // Finish what runs (still reading, so interrupts
                        // arrive), then say goodbye.
                        let state = state.clone();
                        thread::spawn(move || {
                            while state.running.load(Ordering::SeqCst) > 0 {
                                thread::sleep(Duration::from_millis(2));
                            }
                            let mut writer = state.writer.lock().unwrap();
                            let reason = Some(format!("shutdown: {}", shutdown.reason));
                            writer.send(&Goodbye { reason }, Vec::new());
                            std::process::exit(0);
                        });
                    }
                    other => panic!("unexpected {other:?}"),
                },
                Ok(None) => break,
                Err(error) => {
                    eprintln!("test worker: decoding failed: {error}");
                    std::process::exit(1);
                }
            }
        }
        if replied_inline {
            state.writer.lock().unwrap().flush();
        }
        match decoder.recv_from(&socket) {
            Ok(0) => {
                // The supervisor went away: exit, as the protocol requires.
                std::process::exit(0);
            }
            Ok(_) => {}
            Err(error) => {
                eprintln!("test worker: reading failed: {error}");
                std::process::exit(1);
            }
        }
    }
}

/// Starts a job; true if its reply was queued inline and needs a flush.
fn dispatch(state: &Arc<State>, socket: &OwnedFd, job: Job, fd: Option<OwnedFd>) -> bool {
    let (job_id, attempt) = (job.job_id, job.attempt);
    match job.kind.as_str() {
        "noop" => {
            state.writer.lock().unwrap().push(&Complete { job_id, attempt, result: None }, Vec::new());
            return true;
        }
        "consume" => {
            // Reads the whole payload (from its fd if it came as one), for
            // the payload benchmarks.
            let bytes = payload_bytes(&job, fd);
            std::hint::black_box(&bytes);
            state.writer.lock().unwrap().push(&Complete { job_id, attempt, result: None }, Vec::new());
            return true;
        }
        "fail" => {
            let retryable = matches!(&job.payload, Payload::Inline(bytes) if bytes == b"retryable");
            let fail = Fail { job_id, attempt, error: "asked to fail".into(), retryable };
            state.writer.lock().unwrap().push(&fail, Vec::new());
            return true;
        }
        "snooze" => {
            state.writer.lock().unwrap().push(&Snooze { job_id, attempt, delay_ms: 1500 }, Vec::new());
            return true;
        }
        "release" => {
            // The held peek's answer goes first, then the job's: the
            // supervisor reads them in this order.
            let mut writer = state.writer.lock().unwrap();
            if let Some(request_id) = state.held_peek.lock().unwrap().take() {
                writer.push(&PeekReply { request_id, result: PeekResult::Ok(b"released".to_vec()) }, Vec::new());
            }
            writer.push(&Complete { job_id, attempt, result: None }, Vec::new());
            return true;
        }
        "stale" => {
            let mut writer = state.writer.lock().unwrap();
            writer.push(&Complete { job_id, attempt: attempt + 1, result: None }, Vec::new());
            writer.push(&Complete { job_id, attempt, result: None }, Vec::new());
            return true;
        }
        "misbehave" => {
            let Payload::Inline(mode) = &job.payload else { panic!("misbehave takes an inline mode") };
            misbehave(state, socket, &job, &String::from_utf8_lossy(mode));
            return false;
        }
        _ => {}
    }
    let flag = Arc::new(AtomicBool::new(false));
    state.interrupts.lock().unwrap().insert((job_id, attempt), flag.clone());
    let now = state.running.fetch_add(1, Ordering::SeqCst) + 1;
    state.max_running.fetch_max(now, Ordering::SeqCst);
    let state = state.clone();
    thread::spawn(move || {
        let reply = run_job(&state, &job, fd, &flag);
        state.interrupts.lock().unwrap().remove(&(job_id, attempt));
        let mut writer = state.writer.lock().unwrap();
        // Count the job as finished before its reply can bring the next one,
        // and under the writer lock, so a goodbye cannot overtake the reply.
        state.running.fetch_sub(1, Ordering::SeqCst);
        match reply {
            Reply::Complete(result) => {
                let (result, fds) = match result {
                    Some(bytes) if state.fd_payloads && bytes.len() as u64 > state.fd_threshold => {
                        let length = bytes.len() as u64;
                        (Some(Payload::Fd { index: 0, length }), vec![sealed_memfd("result", &bytes).unwrap()])
                    }
                    Some(bytes) => (Some(Payload::Inline(bytes)), Vec::new()),
                    None => (None, Vec::new()),
                };
                writer.send(&Complete { job_id, attempt, result }, fds);
            }
            Reply::Interrupted { steps_done } => {
                let checkpoint = Some(steps_done.to_string().into_bytes());
                let progress = Some(ProgressState { done: u64::from(steps_done), total: None, message: None });
                writer.send(&Interrupted { job_id, attempt, checkpoint, progress }, Vec::new());
            }
        }
    });
    false
}

/// Answers a peek (or holds it); true if a reply was queued.
fn answer_peek(state: &State, peek: Peek) -> bool {
    let query = String::from_utf8_lossy(&peek.query).into_owned();
    let result = if let Some(text) = query.strip_prefix("echo:") {
        PeekResult::Ok(text.as_bytes().to_vec())
    } else if query == "error" {
        PeekResult::Error("asked for an error".into())
    } else if query == "hold" {
        *state.held_peek.lock().unwrap() = Some(peek.request_id);
        return false;
    } else {
        PeekResult::Error(format!("unknown query {query:?}"))
    };
    state.writer.lock().unwrap().push(&PeekReply { request_id: peek.request_id, result }, Vec::new());
    true
}

enum Reply {
    Complete(Option<Vec<u8>>),
    Interrupted { steps_done: u32 },
}

fn payload_bytes(job: &Job, fd: Option<OwnedFd>) -> Vec<u8> {
    match (&job.payload, fd) {
        (Payload::Inline(bytes), _) => bytes.clone(),
        (Payload::Fd { length, .. }, Some(fd)) => read_payload(&fd, *length, 1 << 30).expect("reading the payload fd"),
        (Payload::Fd { .. }, None) => panic!("payload fd missing"),
    }
}

fn run_job(state: &State, job: &Job, fd: Option<OwnedFd>, interrupted: &AtomicBool) -> Reply {
    let (job_id, attempt) = (job.job_id, job.attempt);
    match job.kind.as_str() {
        "echo" => Reply::Complete(Some(payload_bytes(job, fd))),
        "hash" => {
            let via_fd = fd.is_some();
            let bytes = payload_bytes(job, fd);
            let mut result = format!("crc32={:08x} length={} fd={via_fd}", crc32(&bytes), bytes.len()).into_bytes();
            result.shrink_to_fit();
            Reply::Complete(Some(result))
        }
        "sleep" => {
            let millis: u64 = String::from_utf8_lossy(&payload_bytes(job, fd)).parse().unwrap_or(10);
            thread::sleep(Duration::from_millis(millis));
            let max = state.max_running.load(Ordering::SeqCst);
            Reply::Complete(Some(format!("max_running={max}").into_bytes()))
        }
        "steps" => {
            let total: u32 = String::from_utf8_lossy(&payload_bytes(job, fd)).parse().unwrap_or(10);
            let mut done: u32 = job
                .checkpoint
                .as_ref()
                .and_then(|checkpoint| String::from_utf8_lossy(checkpoint).parse().ok())
                .unwrap_or(0);
            while done < total {
                // A safe point: everything up to `done` is finished.
                if interrupted.load(Ordering::SeqCst) {
                    return Reply::Interrupted { steps_done: done };
                }
                thread::sleep(Duration::from_millis(20));
                done += 1;
                let mut writer = state.writer.lock().unwrap();
                writer.push(&Checkpoint { job_id, attempt, checkpoint: done.to_string().into_bytes() }, Vec::new());
                let progress =
                    Progress { job_id, attempt, done: u64::from(done), total: Some(u64::from(total)), message: None };
                writer.send(&progress, Vec::new());
            }
            Reply::Complete(Some(format!("steps={total}").into_bytes()))
        }
        "stubborn" => loop {
            // Never reaches a safe point.
            thread::sleep(Duration::from_millis(50));
        },
        "log" => {
            let text = String::from_utf8_lossy(&payload_bytes(job, fd)).into_owned();
            println!("stdout: {text}");
            eprintln!("stderr: {text}");
            let _ = std::io::stdout().flush();
            let log = Log {
                job_id: Some(job_id),
                attempt: Some(attempt),
                level: LogLevel::Info,
                text: format!("frame: {text}"),
            };
            state.writer.lock().unwrap().send(&log, Vec::new());
            Reply::Complete(None)
        }
        other => {
            let fail = Fail { job_id, attempt, error: format!("unknown kind {other}"), retryable: false };
            state.writer.lock().unwrap().send(&fail, Vec::new());
            loop {
                thread::park();
            }
        }
    }
}

fn misbehave(state: &State, socket: &OwnedFd, job: &Job, mode: &str) {
    let complete = Complete { job_id: job.job_id, attempt: job.attempt, result: None };
    let mut frame = Vec::new();
    encode_frame(&mut frame, &complete, DEFAULT_MAX_FRAME_BYTES).unwrap();
    // Hold the writer so no heartbeat or other reply interleaves.
    let writer = state.writer.lock().unwrap();
    let raw_write = |bytes: &[u8]| {
        let _ = rustix::io::write(socket, bytes);
    };
    match mode {
        "garbage" => raw_write(b"hello supervisor, this is not a frame\n"),
        "huge-frame" => {
            // A complete header announcing a 4-GiB body.
            let mut header = vec![b'C', b'V', 0x23, 0x00];
            header.extend_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
            header.extend_from_slice(&[0, 0, 0, 0]);
            raw_write(&header);
        }
        "truncate-exit" => {
            raw_write(&frame[..frame.len() / 2]);
            std::process::exit(0);
        }
        "drip" => {
            for byte in &frame {
                raw_write(std::slice::from_ref(byte));
                thread::sleep(Duration::from_secs(1));
            }
        }
        "stop" => {
            let _ = rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::STOP);
        }
        "crash" => std::process::abort(),
        "exit" => std::process::exit(3),
        other => match other.strip_prefix("double-fork:") {
            Some(pid_file) => {
                // A shell that backgrounds a sleeper and exits: the sleeper is
                // an orphaned grandchild in our process group. It also
                // inherits the protocol socket, so the supervisor cannot rely
                // on EOF to see this worker die.
                let socket_fd = socket.as_raw_fd();
                let mut command = std::process::Command::new("/bin/sh");
                command.args(["-c", &format!("sleep 300 & echo $! > {pid_file}")]);
                // SAFETY: between fork and exec; clears close-on-exec on
                // the child's copy of the socket only.
                unsafe {
                    command.pre_exec(move || {
                        let fd = std::os::fd::BorrowedFd::borrow_raw(socket_fd);
                        rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty())?;
                        Ok(())
                    });
                }
                command.status().expect("running the double-forking shell");
                drop(writer);
                std::process::abort();
            }
            None => panic!("unknown misbehaviour {other}"),
        },
    }
    // Stay alive (holding the writer) until the supervisor ends us.
    let _hold = writer;
    loop {
        thread::sleep(Duration::from_secs(1));
        let _ = socket.as_fd();
    }
}

/// CRC-32 (IEEE 802.3, as zlib's `crc32`), bytewise with a table.
fn crc32(bytes: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut table = [0u32; 256];
        for (index, entry) in table.iter_mut().enumerate() {
            let mut value = index as u32;
            for _ in 0..8 {
                value = if value & 1 != 0 { 0xEDB8_8320 ^ (value >> 1) } else { value >> 1 };
            }
            *entry = value;
        }
        table
    });
    !bytes.iter().fold(!0u32, |crc, &byte| table[((crc ^ u32::from(byte)) & 0xFF) as usize] ^ (crc >> 8))
}
