//! Supervisor benchmarks: no-op jobs per second through one worker process
//! at window 1 and 64 — through the codec alone and through a `WorkerPool` —
//! next to the raw socket round-trip limit; payloads inline vs as fds; and
//! command jobs (`true`) per second vs a plain spawn-and-wait loop. Prints
//! `name: value unit` lines; `--commands` prints only the command figures.
//!
//! The worker is this same binary started as `supervisor --worker`: a no-op
//! worker on corvee-proto that batches its replies.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use corvee_proto::{
    read_payload, worker_socket_from_env, Capabilities, Complete, FrameDecoder, Hello, Job, Message, Payload, Peer,
    SendBuffer, Welcome, DEFAULT_MAX_FRAME_BYTES, MIN_PROTOCOL_VERSION, PROTOCOL_MAX_FRAME_BYTES, PROTOCOL_VERSION,
};
use corvee_supervisor::{
    CommandJob, CommandRunner, CommandRunnerConfig, CommandSpec, Event, EventSink, JobToRun, Outcome, PoolConfig,
    SubmitError, WorkerPool, WorkerTimeouts,
};

fn main() -> Result<()> {
    match std::env::args().nth(1).as_deref() {
        Some("--worker") => return worker(),
        Some("--commands") => return command_figures(),
        Some(other) => bail!("usage: supervisor [--commands]; unknown argument {other:?}"),
        None => {}
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    for in_flight in [1, 64] {
        let count = if in_flight == 1 { 100_000 } else { 2_000_000 };
        report(&format!("raw_socket_round_trips_in_flight_{in_flight}"), raw_round_trips(in_flight, count)?, "ops/s");
    }
    for window in [1, 64] {
        let count = if window == 1 { 100_000 } else { 2_000_000 };
        report(&format!("protocol_noop_jobs_window_{window}"), protocol_alone(window, count)?, "jobs/s");
    }
    for window in [1, 64] {
        let count = if window == 1 { 50_000 } else { 1_000_000 };
        let rate = runtime.block_on(pool_noop(window, count))?;
        report(&format!("pool_noop_jobs_window_{window}"), rate, "jobs/s");
    }
    for (label, bytes, count) in [("64kib", 64 << 10, 4000), ("16mib", 16 << 20, 60)] {
        for mode in [PayloadMode::Inline, PayloadMode::Memfd, PayloadMode::DataFile] {
            let rate = runtime.block_on(pool_payloads(mode, bytes, count))?;
            report(&format!("pool_payload_{label}_{}", mode.name()), rate, "MB/s");
        }
    }
    command_figures()
}

/// Command jobs next to the plain spawn loop (`supervisor --commands` runs
/// only these).
fn command_figures() -> Result<()> {
    // Process creation is noisy on a shared machine, so the plain loop and
    // the runner are measured in short alternating rounds: each round's
    // ratio compares two runs a fraction of a second apart, under the same
    // background load, and the median of those ratios is the comparison
    // (the rates are the best round of each). The runner gets a two-thread
    // runtime so two spawns can overlap on the two cores.
    //
    // The loop that submits jobs and reads their outcomes runs as a task on
    // that runtime, as the daemon's dispatcher will: then the task watching
    // a command and the one consuming its outcome share a thread. Driven
    // from a thread outside the runtime instead (`block_on` on main), every
    // job crosses threads twice; that figure is printed too.
    let command_runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let from_a_task = |concurrency: usize, count: u64| {
        command_runtime.block_on(async move { tokio::spawn(command_jobs(concurrency, count)).await? })
    };
    let (rounds, count) = (20, 250);
    let (mut plain, mut runner_1, mut runner_2, mut outside_1) = (0f64, 0f64, 0f64, 0f64);
    let mut ratios = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let plain_round = plain_spawn_loop(count)?;
        let runner_round = from_a_task(1, count)?;
        ratios.push(runner_round / plain_round);
        plain = plain.max(plain_round);
        runner_1 = runner_1.max(runner_round);
        runner_2 = runner_2.max(from_a_task(2, count)?);
        outside_1 = outside_1.max(command_runtime.block_on(command_jobs(1, count))?);
    }
    ratios.sort_by(f64::total_cmp);
    report("plain_spawn_wait_true", plain, "processes/s");
    report("command_jobs_true_concurrency_1", runner_1, "jobs/s");
    report("command_jobs_true_concurrency_2", runner_2, "jobs/s");
    report("command_jobs_true_concurrency_1_driven_from_outside_the_runtime", outside_1, "jobs/s");
    report("command_jobs_true_concurrency_1_vs_plain_median_of_rounds", 100.0 * ratios[rounds / 2], "%");
    Ok(())
}

fn report(name: &str, value: f64, unit: &str) {
    println!("{name}: {value:.0} {unit}");
}

fn rate(count: u64, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64()
}

/// 16-byte messages echoed by a thread over a socketpair, `in_flight` at a
/// time: the ceiling any protocol on this transport can reach.
fn raw_round_trips(in_flight: usize, count: u64) -> Result<f64> {
    let (mut client, mut server) = UnixStream::pair()?;
    let echo = std::thread::spawn(move || {
        let mut buffer = [0u8; 64 << 10];
        loop {
            let read = match server.read(&mut buffer) {
                Ok(0) | Err(_) => return,
                Ok(read) => read,
            };
            if server.write_all(&buffer[..read]).is_err() {
                return;
            }
        }
    });
    let message = [7u8; 16];
    let mut reply = vec![0u8; 16 * in_flight];
    let started = Instant::now();
    let mut sent = 0u64;
    let mut received = 0u64;
    let batch: Vec<u8> = message.iter().copied().cycle().take(16 * in_flight).collect();
    client.write_all(&batch)?;
    sent += in_flight as u64;
    while received < count {
        let read = client.read(&mut reply)?;
        if read == 0 {
            bail!("the echo thread closed its socket");
        }
        let whole = (read / 16) as u64;
        let rest = read % 16;
        if rest != 0 {
            client.read_exact(&mut reply[..16 - rest])?;
        }
        let done = whole + u64::from(rest != 0);
        received += done;
        let more = done.min(count.saturating_sub(sent));
        if more > 0 {
            client.write_all(&batch[..16 * more as usize])?;
            sent += more;
        }
    }
    let elapsed = started.elapsed();
    drop(client);
    echo.join().ok();
    Ok(rate(count, elapsed))
}

/// Starts this binary as a worker with its socket on fd 3.
fn spawn_worker(extra: &[&str]) -> Result<(std::process::Child, OwnedFd)> {
    let (supervisor_end, worker_end) = corvee_proto::socket_pair()?;
    let mut command = Command::new(std::env::current_exe()?);
    command.arg("--worker").args(extra).env(corvee_proto::WORKER_FD_ENV, "3").stdin(Stdio::null());
    let raw = worker_end.as_raw_fd();
    // SAFETY: between fork and exec; only places the socket on fd 3.
    unsafe {
        command.pre_exec(move || corvee_proto::install_worker_fd(BorrowedFd::borrow_raw(raw)));
    }
    let child = command.spawn().context("starting the bench worker")?;
    drop(worker_end);
    Ok((child, supervisor_end))
}

fn next_message(decoder: &mut FrameDecoder, socket: &OwnedFd) -> Result<corvee_proto::Received> {
    loop {
        if let Some(received) = decoder.next_message()? {
            return Ok(received);
        }
        if decoder.recv_from(socket)? == 0 {
            bail!("the worker closed its socket");
        }
    }
}

fn noop_job(job_id: u64) -> Job {
    Job {
        job_id,
        attempt: 1,
        queue: "bench".into(),
        kind: "noop".into(),
        deadline_unix_ms: None,
        payload: Payload::Inline(Vec::new()),
        checkpoint: None,
        progress: None,
    }
}

/// The codec and the socket without the pool: a blocking loop that keeps
/// `window` no-op jobs in flight.
fn protocol_alone(window: u32, count: u64) -> Result<f64> {
    let (mut child, socket) = spawn_worker(&[])?;
    let mut decoder = FrameDecoder::new(DEFAULT_MAX_FRAME_BYTES).receiving_as(Peer::Supervisor);
    let mut outgoing = SendBuffer::new();
    let Message::Hello(hello) = next_message(&mut decoder, &socket)?.message else { bail!("expected hello") };
    outgoing.set_peer_max_frame_bytes(hello.max_frame_bytes);
    let welcome = Welcome {
        protocol_version: PROTOCOL_VERSION,
        worker_id: 1,
        window,
        max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
        heartbeat_interval_ms: 0,
        payload_fd_threshold_bytes: 64 << 10,
        interrupt_grace_ms: 1000,
        capabilities: Capabilities::default(),
    };
    outgoing.push(&welcome, Vec::new())?;
    let started = Instant::now();
    let mut sent = 0u64;
    let mut done = 0u64;
    let mut in_flight = 0u32;
    while done < count {
        while in_flight < window && sent < count {
            sent += 1;
            in_flight += 1;
            outgoing.push(&noop_job(sent), Vec::new())?;
        }
        outgoing.send_to(&socket)?;
        if decoder.recv_from(&socket)? == 0 {
            bail!("the worker closed its socket");
        }
        while let Some(received) = decoder.next_message()? {
            if let Message::Complete(_) = received.message {
                done += 1;
                in_flight -= 1;
            }
        }
    }
    let elapsed = started.elapsed();
    drop(socket);
    child.wait()?;
    Ok(rate(count, elapsed))
}

fn pool_config(window: u32, extra: &[&str]) -> Result<PoolConfig> {
    let mut argv = vec![std::env::current_exe()?.to_string_lossy().into_owned(), "--worker".into()];
    argv.extend(extra.iter().map(|argument| argument.to_string()));
    let mut config = PoolConfig::new("bench", argv);
    config.window = window;
    config.timeouts = WorkerTimeouts { heartbeat_interval: Duration::ZERO, ..WorkerTimeouts::default() };
    Ok(config)
}

async fn ready_pool(config: PoolConfig) -> Result<(WorkerPool, tokio::sync::mpsc::Receiver<Event>)> {
    let (sink, mut events) = EventSink::channel(4096);
    let pool = WorkerPool::start(config, sink, None)?;
    while let Some(event) = events.recv().await {
        if let Event::WorkerReady { .. } = event {
            return Ok((pool, events));
        }
    }
    bail!("the pool's worker never became ready")
}

/// Keeps the pool full of jobs made by `make_job` until `count` outcomes
/// arrived; returns the elapsed time.
async fn run_through_pool(
    pool: &WorkerPool,
    events: &mut tokio::sync::mpsc::Receiver<Event>,
    count: u64,
    mut make_job: impl FnMut(u64) -> JobToRun,
) -> Result<Duration> {
    let started = Instant::now();
    let mut submitted = 0u64;
    let mut done = 0u64;
    let handle = |event: Event, done: &mut u64| -> Result<()> {
        if let Event::Outcome { job, outcome } = event {
            if !matches!(outcome, Outcome::Completed { .. }) {
                bail!("{job}: {outcome:?}");
            }
            *done += 1;
        }
        Ok(())
    };
    while done < count {
        while submitted < count {
            match pool.submit(make_job(submitted + 1)) {
                Ok(()) => submitted += 1,
                Err(SubmitError::NoCapacity { .. }) => break,
                Err(error) => bail!(error),
            }
        }
        let Some(event) = events.recv().await else { bail!("the event channel closed") };
        handle(event, &mut done)?;
        while let Ok(event) = events.try_recv() {
            handle(event, &mut done)?;
        }
    }
    Ok(started.elapsed())
}

fn job_to_run(job_id: u64, kind: &str, payload: corvee_supervisor::Payload) -> JobToRun {
    JobToRun {
        job_id,
        attempt: 1,
        queue: "bench".into(),
        kind: kind.into(),
        payload,
        checkpoint: None,
        progress: None,
        deadline: None,
    }
}

async fn pool_noop(window: u32, count: u64) -> Result<f64> {
    let (pool, mut events) = ready_pool(pool_config(window, &[])?).await?;
    let elapsed = run_through_pool(&pool, &mut events, count, |job_id| {
        job_to_run(job_id, "noop", corvee_supervisor::Payload::Inline(Vec::new()))
    })
    .await?;
    stop(&pool, &mut events).await;
    Ok(rate(count, elapsed))
}

async fn stop(pool: &WorkerPool, events: &mut tokio::sync::mpsc::Receiver<Event>) {
    let stopping = pool.stop(Duration::from_secs(10));
    let mut stopping = std::pin::pin!(stopping);
    loop {
        tokio::select! {
            () = &mut stopping => return,
            _ = events.recv() => {}
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum PayloadMode {
    Inline,
    Memfd,
    DataFile,
}

impl PayloadMode {
    fn name(self) -> &'static str {
        match self {
            PayloadMode::Inline => "inline",
            PayloadMode::Memfd => "memfd",
            PayloadMode::DataFile => "data_file",
        }
    }
}

/// Payloads of `bytes` each, read in full by the worker, window 4.
async fn pool_payloads(mode: PayloadMode, bytes: usize, count: u64) -> Result<f64> {
    let frame_limit = PROTOCOL_MAX_FRAME_BYTES.to_string();
    let mut config = pool_config(4, &[&format!("--max-frame={frame_limit}")])?;
    config.payload_fd_threshold_bytes = if mode == PayloadMode::Inline { u32::MAX } else { 0 };
    let (pool, mut events) = ready_pool(config).await?;
    let data: Vec<u8> = (0..bytes).map(|i| (i % 251) as u8).collect();
    let directory = tempfile::tempdir()?;
    let path = directory.path().join("payload");
    std::fs::write(&path, &data)?;
    let elapsed = run_through_pool(&pool, &mut events, count, |job_id| {
        let payload = match mode {
            PayloadMode::Inline | PayloadMode::Memfd => corvee_supervisor::Payload::Inline(data.clone()),
            PayloadMode::DataFile => corvee_supervisor::Payload::File { path: path.clone(), length: bytes as u64 },
        };
        job_to_run(job_id, "consume", payload)
    })
    .await?;
    stop(&pool, &mut events).await;
    Ok(rate(count, elapsed) * bytes as f64 / 1e6)
}

fn plain_spawn_loop(count: u64) -> Result<f64> {
    let started = Instant::now();
    for _ in 0..count {
        let status = Command::new("true").status()?;
        if !status.success() {
            bail!("true failed: {status}");
        }
    }
    Ok(rate(count, started.elapsed()))
}

async fn command_jobs(concurrency: usize, count: u64) -> Result<f64> {
    let (sink, mut events) = EventSink::channel(4096);
    let config = CommandRunnerConfig { max_concurrent: concurrency, ..CommandRunnerConfig::default() };
    let runner = CommandRunner::new(config, sink, None);
    let spec = CommandSpec { argv: vec!["true".into()], env: Vec::new(), cwd: None };
    let started = Instant::now();
    let mut submitted = 0u64;
    let mut done = 0u64;
    while done < count {
        while submitted < count && runner.free_capacity() > 0 {
            submitted += 1;
            let job = CommandJob { job_id: submitted, attempt: 1, spec: spec.clone(), retryable_on_failure: false };
            runner.run(job)?;
        }
        match events.recv().await {
            Some(Event::Outcome { outcome: Outcome::Completed { .. }, .. }) => done += 1,
            Some(Event::Outcome { job, outcome }) => bail!("{job}: {outcome:?}"),
            Some(_) => {}
            None => bail!("the event channel closed"),
        }
    }
    Ok(rate(count, started.elapsed()))
}

/// The worker side: hello, then complete every job — `noop` at once,
/// `consume` after reading its payload — batching replies per read.
fn worker() -> Result<()> {
    let mut max_frame_bytes = DEFAULT_MAX_FRAME_BYTES;
    for argument in std::env::args().skip(2) {
        if let Some(value) = argument.strip_prefix("--max-frame=") {
            max_frame_bytes = value.parse()?;
        }
    }
    // SAFETY: first thing in the worker; fd 3 is the inherited socket.
    let socket = unsafe { worker_socket_from_env() }?;
    let mut decoder = FrameDecoder::new(max_frame_bytes).receiving_as(Peer::Worker);
    let mut outgoing = SendBuffer::new();
    let hello = Hello {
        protocol_version: PROTOCOL_VERSION,
        min_protocol_version: MIN_PROTOCOL_VERSION,
        worker_name: "bench-noop".into(),
        job_kinds: vec!["noop".into(), "consume".into()],
        capabilities: Capabilities { fd_payloads: true, ..Capabilities::default() },
        window: 4096,
        max_frame_bytes,
        sdk: None,
    };
    outgoing.push(&hello, Vec::new())?;
    outgoing.send_to(&socket)?;
    loop {
        while let Some(mut received) = decoder.next_message()? {
            match received.message.clone() {
                Message::Welcome(welcome) => outgoing.set_peer_max_frame_bytes(welcome.max_frame_bytes),
                Message::Job(job) => {
                    if let Payload::Fd { index, length } = job.payload {
                        let fd = received.take_fd(index).context("payload fd")?;
                        std::hint::black_box(read_payload(&fd, length, u64::MAX)?);
                    }
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
        outgoing.send_to(&socket)?;
        if decoder.recv_from(&socket)? == 0 {
            return Ok(());
        }
    }
}
