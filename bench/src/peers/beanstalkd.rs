//! beanstalkd through a minimal client of its text protocol (`put`,
//! `reserve-with-timeout`, `delete`), started by `bench/run-peers` with a
//! binlog and `-f0`: every binlog write is fsync'd before the reply.
//!
//! beanstalkd has no batch command, so a "batch" is that many `put`s
//! written at once (pipelined) and acknowledged one by one. A worker
//! pipelines the `delete`s of the jobs it finished with up to `window`
//! non-blocking reserves (`reserve-with-timeout 0`), and blocks in
//! `reserve-with-timeout 1` only when none returned a job. A reserved job
//! that is not deleted goes back to the queue when its TTR runs out or its
//! connection closes, so this is at-least-once like the others.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use anyhow::{bail, Context, Result};

use crate::conn::Conn;
use crate::harness::{monotonic_ns, spawn_worker, stamp_of, Consumers, Probe, Producer, System};

#[derive(Debug)]
pub struct Beanstalkd {
    pub socket: PathBuf,
}

/// Priority, delay and time-to-run (seconds) of every job.
const PUT_ARGUMENTS: &str = "1024 0 60";

fn command(conn: &mut Conn, line: &str) -> Result<String> {
    conn.output.extend_from_slice(line.as_bytes());
    conn.output.extend_from_slice(b"\r\n");
    let reply = String::from_utf8(conn.read_line()?)?;
    Ok(reply)
}

impl Beanstalkd {
    fn connect(&self, tube: &str) -> Result<Conn> {
        let mut conn = Conn::connect(&self.socket)?;
        let reply = command(&mut conn, &format!("use {tube}"))?;
        if reply != format!("USING {tube}") {
            bail!("beanstalkd answered {reply:?} to use");
        }
        Ok(conn)
    }
}

struct BeanstalkdProducer {
    conn: Conn,
    /// How many `INSERTED` replies each outstanding request waits for.
    outstanding: std::collections::VecDeque<usize>,
}

impl Producer for BeanstalkdProducer {
    fn send(&mut self, jobs: &[Vec<u8>]) -> Result<()> {
        for job in jobs {
            let header = format!("put {PUT_ARGUMENTS} {}\r\n", job.len());
            self.conn.output.extend_from_slice(header.as_bytes());
            self.conn.output.extend_from_slice(job);
            self.conn.output.extend_from_slice(b"\r\n");
        }
        self.outstanding.push_back(jobs.len());
        Ok(())
    }

    fn receive(&mut self) -> Result<()> {
        let replies = self.outstanding.pop_front().context("receive without an outstanding request")?;
        for _ in 0..replies {
            let reply = self.conn.read_line()?;
            if !reply.starts_with(b"INSERTED ") {
                bail!("beanstalkd answered {:?} to put", String::from_utf8_lossy(&reply));
            }
        }
        Ok(())
    }
}

impl System for Beanstalkd {
    fn producer(&self, queue: &str) -> Result<Box<dyn Producer>> {
        Ok(Box::new(BeanstalkdProducer { conn: self.connect(queue)?, outstanding: Default::default() }))
    }

    fn consume(&self, queue: &str, workers: usize, window: usize, probe: Arc<Probe>) -> Result<Consumers> {
        let mut threads = Vec::new();
        for _ in 0..workers {
            let mut conn = Conn::connect(&self.socket)?;
            for (line, expected) in [(format!("watch {queue}"), "WATCHING 2"), ("ignore default".into(), "WATCHING 1")]
            {
                let reply = command(&mut conn, &line)?;
                if reply != expected {
                    bail!("beanstalkd answered {reply:?} to {line}");
                }
            }
            conn.stop_on(probe.stop.clone())?;
            let (worker_probe, record_latency) = (probe.clone(), queue == "latency");
            threads.push(spawn_worker(&probe, move |latencies| {
                work(&mut conn, window, &worker_probe, record_latency.then_some(latencies))
            }));
        }
        Ok(Consumers::joining(threads))
    }
}

/// One reply to a reserve: a job, or nothing yet.
fn reserved(conn: &mut Conn) -> Result<Option<(u64, Vec<u8>)>> {
    let line = String::from_utf8(conn.read_line()?)?;
    if line == "TIMED_OUT" {
        return Ok(None);
    }
    let mut fields =
        line.strip_prefix("RESERVED ").with_context(|| format!("beanstalkd answered {line:?} to reserve"))?.split(' ');
    let id: u64 = fields.next().context("RESERVED without an id")?.parse()?;
    let bytes: usize = fields.next().context("RESERVED without a length")?.parse()?;
    let mut body = conn.read_exact(bytes + 2)?;
    body.truncate(bytes);
    Ok(Some((id, body)))
}

fn work(conn: &mut Conn, window: usize, probe: &Probe, mut latencies: Option<&mut Vec<u64>>) -> Result<()> {
    let mut finished: Vec<u64> = Vec::new();
    loop {
        for id in &finished {
            conn.output.extend_from_slice(format!("delete {id}\r\n").as_bytes());
        }
        for _ in 0..window {
            conn.output.extend_from_slice(b"reserve-with-timeout 0\r\n");
        }
        for _ in 0..finished.len() {
            let reply = conn.read_line()?;
            if reply != b"DELETED" {
                bail!("beanstalkd answered {:?} to delete", String::from_utf8_lossy(&reply));
            }
        }
        probe.completed.fetch_add(finished.len() as u64, Ordering::Relaxed);
        finished.clear();
        let mut jobs = Vec::new();
        for _ in 0..window {
            jobs.extend(reserved(conn)?);
        }
        while jobs.is_empty() {
            conn.output.extend_from_slice(b"reserve-with-timeout 1\r\n");
            jobs.extend(reserved(conn)?);
        }
        for (id, body) in jobs {
            if let Some(latencies) = latencies.as_deref_mut() {
                latencies.push(monotonic_ns() - stamp_of(&body).context("payload without a stamp")?);
            }
            finished.push(id);
        }
    }
}
