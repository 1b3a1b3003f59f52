//! task-spooler (`tsp`), the peer for command jobs. Its only interface is
//! its client program: `tsp CMD` connects to the server's socket
//! (`TS_SOCKET`), queues the command and returns. The server, started by
//! `bench/run-peers` with 4 slots, runs each job as a process and keeps its
//! output in a file. It keeps its queue in memory and never fsyncs, so it
//! is no durable queue; it is here because it is what people use to run
//! commands in the background.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

fn tsp(socket: &Path) -> Command {
    let mut command = Command::new("tsp");
    command.env("TS_SOCKET", socket).stdin(Stdio::null());
    command
}

/// `true` command jobs per second: `count` `tsp true` from one producer,
/// one after the other, timed from the first until the server lists every
/// job finished.
pub fn command_jobs(socket: &Path, count: u64) -> Result<f64> {
    let status = tsp(socket).arg("-C").status().context("running tsp -C")?;
    if !status.success() {
        bail!("tsp -C failed: {status}");
    }
    let started = Instant::now();
    let mut last_id = String::new();
    for _ in 0..count {
        let output = tsp(socket).arg("true").stderr(Stdio::inherit()).output().context("running tsp true")?;
        if !output.status.success() {
            bail!("tsp true failed: {}", output.status);
        }
        last_id = String::from_utf8(output.stdout)?.trim().to_owned();
    }
    let status = tsp(socket).args(["-w", &last_id]).stdout(Stdio::null()).status()?;
    if !status.success() {
        bail!("job {last_id} did not end well: {status}");
    }
    let give_up = Instant::now() + Duration::from_secs(120);
    loop {
        let listing = String::from_utf8(tsp(socket).arg("-l").output()?.stdout)?;
        let states: Vec<&str> = listing.lines().skip(1).filter_map(|line| line.split_whitespace().nth(1)).collect();
        let finished = states.iter().filter(|state| **state == "finished").count() as u64;
        if finished >= count {
            return Ok(count as f64 / started.elapsed().as_secs_f64());
        }
        if Instant::now() > give_up {
            bail!("only {finished} of {count} tsp jobs finished within 120 s");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}
