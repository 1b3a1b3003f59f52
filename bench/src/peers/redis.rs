//! Redis through a minimal RESP client, started by `bench/run-peers` with
//! `appendonly yes`, `appendfsync always` and no RDB snapshots: Redis
//! writes and fdatasyncs the AOF before it sends the replies of each event
//! loop round, so an acknowledged command is on disk (and one fsync covers
//! every client served in that round).
//!
//! The queue is a list; a batch is one `LPUSH` with many values. Workers use
//! the reliable-queue pattern (what Sidekiq Pro's super_fetch does): a job
//! is moved atomically from the queue to the worker's own processing list
//! (`LMOVE queue processing RIGHT LEFT`) and removed from there when done
//! (`LREM processing -1 job`), so a worker that dies leaves its jobs where a
//! janitor can put them back. That is the durable equivalent of a lease; a
//! plain `BRPOP` would lose the job with the worker. Like the beanstalkd
//! worker, each round pipelines the `LREM`s of finished jobs with up to
//! `window` non-blocking `LMOVE`s, and blocks (`BLMOVE ... 1`) only when the
//! queue is empty.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context, Result};

use crate::conn::Conn;
use crate::harness::{monotonic_ns, spawn_worker, stamp_of, Consumers, Probe, Producer, System};

#[derive(Debug)]
pub struct Redis {
    pub socket: PathBuf,
}

/// Names each worker's processing list.
static NEXT_WORKER: AtomicU64 = AtomicU64::new(1);

fn push_command(conn: &mut Conn, arguments: &[&[u8]]) {
    let output = &mut conn.output;
    output.extend_from_slice(format!("*{}\r\n", arguments.len()).as_bytes());
    for argument in arguments {
        output.extend_from_slice(format!("${}\r\n", argument.len()).as_bytes());
        output.extend_from_slice(argument);
        output.extend_from_slice(b"\r\n");
    }
}

/// A reply this client understands: an integer, a bulk string or nil.
enum Reply {
    Integer(i64),
    Bulk(Vec<u8>),
    Nil,
}

fn read_reply(conn: &mut Conn) -> Result<Reply> {
    let line = conn.read_line()?;
    let text = std::str::from_utf8(&line)?;
    match text.as_bytes().first() {
        Some(b':') => Ok(Reply::Integer(text[1..].parse()?)),
        Some(b'$') | Some(b'*') if &text[1..] == "-1" => Ok(Reply::Nil),
        Some(b'$') => {
            let length: usize = text[1..].parse()?;
            let mut bulk = conn.read_exact(length + 2)?;
            bulk.truncate(length);
            Ok(Reply::Bulk(bulk))
        }
        _ => bail!("redis answered {text:?}"),
    }
}

struct RedisProducer {
    conn: Conn,
    key: String,
}

impl Producer for RedisProducer {
    fn send(&mut self, jobs: &[Vec<u8>]) -> Result<()> {
        let mut arguments: Vec<&[u8]> = vec![b"LPUSH", self.key.as_bytes()];
        arguments.extend(jobs.iter().map(Vec::as_slice));
        push_command(&mut self.conn, &arguments);
        Ok(())
    }

    fn receive(&mut self) -> Result<()> {
        match read_reply(&mut self.conn)? {
            Reply::Integer(_) => Ok(()),
            _ => bail!("unexpected reply to LPUSH"),
        }
    }
}

impl System for Redis {
    fn producer(&self, queue: &str) -> Result<Box<dyn Producer>> {
        Ok(Box::new(RedisProducer { conn: Conn::connect(&self.socket)?, key: format!("queue:{queue}") }))
    }

    fn consume(&self, queue: &str, workers: usize, window: usize, probe: Arc<Probe>) -> Result<Consumers> {
        let mut threads = Vec::new();
        for _ in 0..workers {
            let mut conn = Conn::connect(&self.socket)?;
            conn.stop_on(probe.stop.clone())?;
            let keys = Keys {
                queue: format!("queue:{queue}"),
                processing: format!("processing:{}", NEXT_WORKER.fetch_add(1, Ordering::Relaxed)),
            };
            let (worker_probe, record_latency) = (probe.clone(), queue == "latency");
            threads.push(spawn_worker(&probe, move |latencies| {
                work(&mut conn, &keys, window, &worker_probe, record_latency.then_some(latencies))
            }));
        }
        Ok(Consumers::joining(threads))
    }
}

struct Keys {
    queue: String,
    processing: String,
}

fn work(
    conn: &mut Conn,
    keys: &Keys,
    window: usize,
    probe: &Probe,
    mut latencies: Option<&mut Vec<u64>>,
) -> Result<()> {
    let (queue, processing) = (keys.queue.as_bytes(), keys.processing.as_bytes());
    let mut finished: Vec<Vec<u8>> = Vec::new();
    loop {
        for job in &finished {
            push_command(conn, &[b"LREM", processing, b"-1", job]);
        }
        for _ in 0..window {
            push_command(conn, &[b"LMOVE", queue, processing, b"RIGHT", b"LEFT"]);
        }
        for _ in 0..finished.len() {
            match read_reply(conn)? {
                Reply::Integer(1) => {}
                _ => bail!("LREM did not remove the finished job"),
            }
        }
        probe.completed.fetch_add(finished.len() as u64, Ordering::Relaxed);
        finished.clear();
        let mut jobs = Vec::new();
        for _ in 0..window {
            if let Reply::Bulk(job) = read_reply(conn)? {
                jobs.push(job);
            }
        }
        while jobs.is_empty() {
            push_command(conn, &[b"BLMOVE", queue, processing, b"RIGHT", b"LEFT", b"1"]);
            if let Reply::Bulk(job) = read_reply(conn)? {
                jobs.push(job);
            }
        }
        for job in jobs {
            if let Some(latencies) = latencies.as_deref_mut() {
                latencies.push(monotonic_ns() - stamp_of(&job).context("payload without a stamp")?);
            }
            finished.push(job);
        }
    }
}
