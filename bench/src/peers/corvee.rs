//! corvee through its real interfaces: the daemon (`corvee serve`, started
//! by `bench/run-peers` with a pool of no-op protocol workers) and its HTTP
//! API on the Unix socket `<dir>/corvee.sock` (docs/http-api.md), spoken by
//! a hand-written HTTP/1.1 client over keep-alive connections. A batch is
//! one `POST /v1/jobs` with `{"jobs": [...]}`. Several requests in flight
//! on one connection go as concurrent HTTP/2 streams (the daemon speaks
//! both; HTTP/1.1 answers pipelined requests one after another, each after
//! its fsync, where streams share fsyncs). Completions are counted from
//! `GET /v1/queues`, polled every 5 ms; enqueue→start latency is noted by
//! the worker process itself when the job reaches it (this binary, run by
//! the daemon as `peers corvee-worker --latency-dir DIR`), like the other
//! systems' workers do. Command jobs are `POST /v1/commands` with
//! `{"argv": ["true"]}`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use corvee_proto::{
    read_payload, worker_socket_from_env, Capabilities, Complete, FrameDecoder, Hello, Message, Payload, Peer,
    SendBuffer, DEFAULT_MAX_FRAME_BYTES, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION,
};

use crate::conn::Conn;
use crate::harness::{monotonic_ns, stamp_of, Consumers, Probe, Producer, System};

/// How often completions are read from `GET /v1/queues`: often enough
/// that a multi-second run ends within 0.2% of when its last job did, and
/// rarely enough to cost the daemon next to nothing.
const POLL_INTERVAL_MS: u64 = 5;

#[derive(Debug)]
pub struct Corvee {
    pub socket: PathBuf,
    /// Where the worker processes write the latencies they note.
    pub latency_dir: PathBuf,
}

fn push_request(conn: &mut Conn, method: &str, path: &str, body: &[u8]) {
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: corvee\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    conn.output.extend_from_slice(head.as_bytes());
    conn.output.extend_from_slice(body);
}

/// Reads one response: its status and body (`Content-Length` or chunked).
fn read_response(conn: &mut Conn) -> Result<(u16, Vec<u8>)> {
    let status_line = String::from_utf8(conn.read_line()?)?;
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|status| status.parse().ok())
        .with_context(|| format!("bad HTTP status line {status_line:?}"))?;
    let (mut length, mut chunked) = (None, false);
    loop {
        let line = String::from_utf8(conn.read_line()?)?;
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').with_context(|| format!("bad HTTP header {line:?}"))?;
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(value.trim().parse::<usize>()?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") && value.trim().eq_ignore_ascii_case("chunked") {
            chunked = true;
        }
    }
    let body = if chunked {
        let mut body = Vec::new();
        loop {
            let size_line = String::from_utf8(conn.read_line()?)?;
            let size = usize::from_str_radix(size_line.split(';').next().unwrap_or("").trim(), 16)?;
            let mut chunk = conn.read_exact(size + 2)?;
            chunk.truncate(size);
            if size == 0 {
                break body;
            }
            body.extend_from_slice(&chunk);
        }
    } else {
        conn.read_exact(length.unwrap_or(0))?
    };
    Ok((status, body))
}

/// Jobs of the queue `enqueue` (the enqueue-rate figures, which run no
/// workers) are of a kind no worker takes, so they stay queued.
fn job_json(queue: &str, payload: &[u8]) -> Result<String> {
    let kind = if queue == "enqueue" { "idle" } else { "noop" };
    let text = std::str::from_utf8(payload).context("bench payloads are text")?;
    assert!(!text.contains(['"', '\\']), "bench payloads need no JSON escaping");
    Ok(format!(r#"{{"queue":"{queue}","kind":"{kind}","payload":"{text}"}}"#))
}

struct CorveeProducer {
    conn: Conn,
    queue: String,
    outstanding: usize,
}

/// One job's request, or a batch's.
fn enqueue_body(queue: &str, jobs: &[Vec<u8>]) -> Result<String> {
    Ok(if let [job] = jobs {
        job_json(queue, job)?
    } else {
        let jobs: Vec<String> = jobs.iter().map(|job| job_json(queue, job)).collect::<Result<_>>()?;
        format!(r#"{{"jobs":[{}]}}"#, jobs.join(","))
    })
}

impl Producer for CorveeProducer {
    fn send(&mut self, jobs: &[Vec<u8>]) -> Result<()> {
        let body = enqueue_body(&self.queue, jobs)?;
        push_request(&mut self.conn, "POST", "/v1/jobs", body.as_bytes());
        self.outstanding += 1;
        Ok(())
    }

    fn receive(&mut self) -> Result<()> {
        assert!(self.outstanding > 0, "receive without an outstanding request");
        let (status, body) = read_response(&mut self.conn)?;
        self.outstanding -= 1;
        if status != 201 {
            bail!("corvee answered {status} to an enqueue: {}", String::from_utf8_lossy(&body));
        }
        Ok(())
    }
}

/// Requests in flight on one HTTP/2 connection: each is a stream, sent by a
/// task of a current-thread runtime that runs while `receive` waits.
struct Http2Producer {
    runtime: tokio::runtime::Runtime,
    sender: h2::client::SendRequest<bytes::Bytes>,
    queue: String,
    responses: std::collections::VecDeque<tokio::task::JoinHandle<Result<()>>>,
}

impl Http2Producer {
    fn connect(socket: &Path, queue: &str) -> Result<Http2Producer> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let sender = runtime.block_on(async {
            let stream = tokio::net::UnixStream::connect(socket).await?;
            let (sender, connection) = h2::client::handshake(stream).await?;
            tokio::spawn(connection);
            anyhow::Ok(sender)
        })?;
        Ok(Http2Producer { runtime, sender, queue: queue.into(), responses: Default::default() })
    }
}

impl Producer for Http2Producer {
    fn send(&mut self, jobs: &[Vec<u8>]) -> Result<()> {
        let body = enqueue_body(&self.queue, jobs)?;
        let sender = self.sender.clone();
        self.responses.push_back(self.runtime.spawn(async move {
            let mut sender = sender.ready().await?;
            let request = http::Request::post("http://corvee/v1/jobs").header("content-type", "application/json");
            let (response, mut stream) = sender.send_request(request.body(())?, false)?;
            stream.send_data(bytes::Bytes::from(body), true)?;
            let response = response.await?;
            let status = response.status();
            let mut body = response.into_body();
            let mut answer = Vec::new();
            while let Some(chunk) = body.data().await {
                let chunk = chunk?;
                body.flow_control().release_capacity(chunk.len())?;
                answer.extend_from_slice(&chunk);
            }
            if status != 201 {
                bail!("corvee answered {status} to an enqueue: {}", String::from_utf8_lossy(&answer));
            }
            Ok(())
        }));
        Ok(())
    }

    fn receive(&mut self) -> Result<()> {
        let oldest = self.responses.pop_front().context("receive without an outstanding request")?;
        self.runtime.block_on(oldest)?
    }
}

impl Corvee {
    /// A queue's job counts by state, from `GET /v1/queues`.
    fn queue_counts(conn: &mut Conn, queue: &str) -> Result<serde_json::Value> {
        push_request(conn, "GET", "/v1/queues", b"");
        let (status, body) = read_response(conn)?;
        if status != 200 {
            bail!("corvee answered {status} to GET /v1/queues: {}", String::from_utf8_lossy(&body));
        }
        let answer: serde_json::Value = serde_json::from_slice(&body)?;
        let queues = answer["queues"].as_array().context("GET /v1/queues without a queues list")?;
        let found = queues.iter().find(|entry| entry["queue"] == queue).cloned();
        Ok(found.unwrap_or(serde_json::Value::Null))
    }

    /// Jobs of `queue` that ended other than completed.
    fn failures(counts: &serde_json::Value) -> u64 {
        ["cancelled", "discarded", "retryable"].iter().map(|state| counts[*state].as_u64().unwrap_or(0)).sum()
    }

    /// `true` command jobs per second: `count` `POST /v1/commands` on one
    /// connection, 16 in flight, timed from the first request until the
    /// queue reports them all completed.
    pub fn command_jobs(&self, count: u64) -> Result<f64> {
        let queue = "commands";
        let mut conn = Conn::connect(&self.socket)?;
        let baseline = Self::queue_counts(&mut conn, queue)?["completed"].as_u64().unwrap_or(0);
        let body = br#"{"argv":["true"]}"#;
        let started = Instant::now();
        let (mut sent, mut outstanding) = (0u64, 0u64);
        while sent < count || outstanding > 0 {
            while sent < count && outstanding < 16 {
                push_request(&mut conn, "POST", "/v1/commands", body);
                sent += 1;
                outstanding += 1;
            }
            let (status, body) = read_response(&mut conn)?;
            if status != 201 {
                bail!("corvee answered {status} to a command job: {}", String::from_utf8_lossy(&body));
            }
            outstanding -= 1;
        }
        let give_up = Instant::now() + Duration::from_secs(120);
        loop {
            let counts = Self::queue_counts(&mut conn, queue)?;
            if Self::failures(&counts) > 0 {
                bail!("command jobs failed: {counts}");
            }
            if counts["completed"].as_u64().unwrap_or(0) - baseline >= count {
                return Ok(count as f64 / started.elapsed().as_secs_f64());
            }
            if Instant::now() > give_up {
                bail!("command jobs not done within 120 s: {counts}");
            }
            std::thread::sleep(Duration::from_millis(POLL_INTERVAL_MS));
        }
    }
}

/// Every latency the worker processes wrote to `latency_dir`.
fn read_latencies(latency_dir: &Path) -> Result<Vec<u64>> {
    let mut latencies = Vec::new();
    for entry in std::fs::read_dir(latency_dir)? {
        let path = entry?.path();
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        latencies.extend(bytes.chunks_exact(8).map(|chunk| u64::from_le_bytes(chunk.try_into().expect("8 bytes"))));
    }
    Ok(latencies)
}

impl System for Corvee {
    fn producer(&self, queue: &str) -> Result<Box<dyn Producer>> {
        Ok(Box::new(CorveeProducer { conn: Conn::connect(&self.socket)?, queue: queue.into(), outstanding: 0 }))
    }

    fn pipelined_producer(&self, queue: &str) -> Result<Box<dyn Producer>> {
        Ok(Box::new(Http2Producer::connect(&self.socket, queue)?))
    }

    /// The daemon's worker pool is always running; this only watches the
    /// queue's completed count. `workers` and `window` are the pool's, set
    /// in the daemon's configuration by `bench/run-peers`.
    fn consume(&self, queue: &str, _workers: usize, _window: usize, probe: Arc<Probe>) -> Result<Consumers> {
        let mut conn = Conn::connect(&self.socket)?;
        let baseline = Self::queue_counts(&mut conn, queue)?["completed"].as_u64().unwrap_or(0);
        let polled_queue = queue.to_owned();
        let poller = std::thread::spawn(move || -> Result<()> {
            let queue = polled_queue;
            while !probe.stop.load(Ordering::Relaxed) {
                let counts = Self::queue_counts(&mut conn, &queue)?;
                if Self::failures(&counts) > 0 {
                    bail!("jobs of queue {queue} failed: {counts}");
                }
                let completed = counts["completed"].as_u64().unwrap_or(0);
                probe.completed.store(completed - baseline, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(POLL_INTERVAL_MS));
            }
            Ok(())
        });
        // The worker processes keep their latency files open for their
        // whole life, and only the one latency run writes to them.
        let latency_dir = (queue == "latency").then(|| self.latency_dir.clone());
        Ok(Consumers {
            finish: Box::new(move || {
                poller.join().expect("poller thread panicked")?;
                latency_dir.map_or(Ok(Vec::new()), |latency_dir| read_latencies(&latency_dir))
            }),
        })
    }
}

/// The worker process: hello, then complete every job at once, batching
/// replies per read; for jobs of the queue `latency`, first append the
/// enqueue→start latency (8 bytes, little-endian nanoseconds) to
/// `<latency_dir>/<pid>.latency`.
pub fn worker(latency_dir: &Path) -> Result<()> {
    // SAFETY: first thing in the worker; the daemon put the socket on the
    // fd named in the environment.
    let socket = unsafe { worker_socket_from_env() }?;
    let mut latency_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(latency_dir.join(format!("{}.latency", std::process::id())))
        .context("opening the latency file")?;
    let mut decoder = FrameDecoder::new(DEFAULT_MAX_FRAME_BYTES).receiving_as(Peer::Worker);
    let mut outgoing = SendBuffer::new();
    let hello = Hello {
        protocol_version: PROTOCOL_VERSION,
        min_protocol_version: MIN_PROTOCOL_VERSION,
        worker_name: "bench-peers-noop".into(),
        job_kinds: vec!["noop".into()],
        capabilities: Capabilities { fd_payloads: true, ..Capabilities::default() },
        window: 4096,
        max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
        sdk: None,
    };
    outgoing.push(&hello, Vec::new())?;
    outgoing.send_to(&socket)?;
    let mut latencies = Vec::new();
    loop {
        while let Some(mut received) = decoder.next_message()? {
            match received.message.clone() {
                Message::Welcome(welcome) => outgoing.set_peer_max_frame_bytes(welcome.max_frame_bytes),
                Message::Job(job) => {
                    let payload = match job.payload {
                        Payload::Inline(bytes) => bytes,
                        Payload::Fd { index, length } => {
                            let fd = received.take_fd(index).context("payload fd")?;
                            read_payload(&fd, length, u64::MAX)?
                        }
                    };
                    if job.queue == "latency" {
                        let stamp = stamp_of(&payload).context("latency job without a stamp")?;
                        latencies.extend_from_slice(&(monotonic_ns() - stamp).to_le_bytes());
                    }
                    std::hint::black_box(&payload);
                    outgoing.push(&Complete { job_id: job.job_id, attempt: job.attempt, result: None }, Vec::new())?;
                }
                Message::Shutdown(_) => {
                    outgoing.push(&corvee_proto::Goodbye { reason: None }, Vec::new())?;
                    outgoing.send_to(&socket)?;
                    return Ok(());
                }
                _ => {}
            }
        }
        if !latencies.is_empty() {
            latency_file.write_all(&latencies)?;
            latencies.clear();
        }
        outgoing.send_to(&socket)?;
        if decoder.recv_from(&socket)? == 0 {
            return Ok(());
        }
    }
}
