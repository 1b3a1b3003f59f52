//! Command jobs: a job whose payload is a [`CommandSpec`] (an argv, plus env
//! and cwd) runs as its own process, in its own process group, like pueue
//! or task-spooler. Exit status 0 completes it, anything else fails it;
//! stdout and stderr are its log; an interrupt is SIGINT, then SIGTERM after
//! the interrupt grace, then SIGKILL after the term grace, each to the whole
//! group. When the command's own process exits, its group is SIGKILLed
//! before it is reaped, so nothing it left running in the background
//! survives it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime};

use rustix::process::Signal;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::output::LineReader;
use crate::spawn::{spawn_process, ProcessHandle, SpawnRequest};
use crate::{
    CommandError, CommandRunnerConfig, EscalationStep, Event, EventSink, InterruptError, JobKey, LogLine, LogStore,
    LogStream, Outcome, ProcessExit, ProcessRef,
};

/// What a command job runs. The daemon stores it as the job's payload
/// (JSON). Never a shell string: to use a shell, say so in the argv
/// (`["sh", "-c", "..."]`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandSpec {
    /// The program and its arguments.
    pub argv: Vec<String>,
    /// Variables added to the supervisor's environment. Never logged.
    #[serde(default)]
    pub env: Vec<(String, String)>,
    /// The working directory; absent: the supervisor's.
    #[serde(default)]
    pub cwd: Option<PathBuf>,
}

/// One attempt of a command job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandJob {
    /// The job's id in the store.
    pub job_id: u64,
    /// The attempt (fencing token).
    pub attempt: u32,
    /// What to run.
    pub spec: CommandSpec,
    /// The caller's retry policy for a non-zero exit: the
    /// [`Outcome::Failed`] carries this as `retryable`.
    pub retryable_on_failure: bool,
}

#[derive(Debug, Default)]
struct Control {
    interrupt: Mutex<Option<String>>,
    /// Set by [`CommandRunner::kill`]: SIGKILL now, whatever the stage.
    kill: AtomicBool,
    wake: Notify,
}

#[derive(Debug)]
struct RunnerState {
    running: HashMap<u64, (u32, Arc<Control>)>,
    stopping: bool,
}

#[derive(Debug)]
struct RunnerShared {
    config: CommandRunnerConfig,
    events: EventSink,
    log_store: Option<LogStore>,
    state: Mutex<RunnerState>,
    changed: Notify,
}

impl RunnerShared {
    fn lock(&self) -> MutexGuard<'_, RunnerState> {
        self.state.lock().expect("command runner lock")
    }
}

/// Runs command jobs, at most `max_concurrent` at once. Cheap to clone.
#[derive(Clone, Debug)]
pub struct CommandRunner {
    shared: Arc<RunnerShared>,
}

impl CommandRunner {
    /// A runner reporting to `events` (and storing log lines in
    /// `log_store`, when given).
    pub fn new(config: CommandRunnerConfig, events: EventSink, log_store: Option<LogStore>) -> CommandRunner {
        CommandRunner {
            shared: Arc::new(RunnerShared {
                config,
                events,
                log_store,
                state: Mutex::new(RunnerState { running: HashMap::new(), stopping: false }),
                changed: Notify::new(),
            }),
        }
    }

    /// Starts a command job if the concurrency limit allows. Never blocks.
    /// Exactly one [`Event::Outcome`] follows every accepted job. Must be
    /// called within a tokio runtime.
    pub fn run(&self, job: CommandJob) -> Result<(), CommandError> {
        let control = Arc::new(Control::default());
        {
            let mut state = self.shared.lock();
            if state.stopping {
                return Err(CommandError::Stopping { job_id: job.job_id });
            }
            if let Some((running_attempt, _)) = state.running.get(&job.job_id) {
                return Err(CommandError::AlreadyRunning { job_id: job.job_id, running_attempt: *running_attempt });
            }
            if state.running.len() >= self.shared.config.max_concurrent {
                return Err(CommandError::NoCapacity { job_id: job.job_id, running: state.running.len() });
            }
            state.running.insert(job.job_id, (job.attempt, control.clone()));
        }
        tokio::spawn(run_command(self.shared.clone(), job, control));
        Ok(())
    }

    /// How many more command jobs may start now.
    pub fn free_capacity(&self) -> usize {
        let state = self.shared.lock();
        if state.stopping {
            return 0;
        }
        self.shared.config.max_concurrent.saturating_sub(state.running.len())
    }

    /// Command jobs running (without an outcome yet).
    pub fn running(&self) -> usize {
        self.shared.lock().running.len()
    }

    /// Waits until a command job may start (or the runner is stopping).
    pub async fn wait_for_capacity(&self) {
        loop {
            let mut notified = std::pin::pin!(self.shared.changed.notified());
            notified.as_mut().enable();
            if self.free_capacity() > 0 || self.shared.lock().stopping {
                return;
            }
            notified.await;
        }
    }

    /// Interrupts a running command job: SIGINT to its process group, then
    /// SIGTERM after the interrupt grace, then SIGKILL after the term grace.
    pub fn interrupt(&self, job_id: u64, attempt: u32, reason: &str) -> Result<(), InterruptError> {
        let control = match self.shared.lock().running.get(&job_id) {
            Some((running_attempt, control)) if *running_attempt == attempt => control.clone(),
            _ => return Err(InterruptError::NotRunning { job_id, attempt }),
        };
        let mut interrupt = control.interrupt.lock().expect("control lock");
        if interrupt.is_none() {
            *interrupt = Some(reason.to_owned());
        }
        control.wake.notify_one();
        Ok(())
    }

    /// Takes no more jobs, lets running ones finish for `grace`, then
    /// interrupts what still runs (reason `shutdown`) and waits for every
    /// outcome.
    pub async fn stop(&self, grace: std::time::Duration) {
        self.shared.lock().stopping = true;
        self.shared.changed.notify_waiters();
        let _ = tokio::time::timeout(grace, self.wait_idle()).await;
        let running: Vec<(u64, u32)> =
            self.shared.lock().running.iter().map(|(job_id, (attempt, _))| (*job_id, *attempt)).collect();
        for (job_id, attempt) in running {
            let _ = self.interrupt(job_id, attempt, "shutdown");
        }
        self.wait_idle().await;
    }

    /// Kills every running command job at once (SIGKILL to its process
    /// group, whatever stage its interrupt is in), takes no more, and waits
    /// for every outcome (`Interrupted`).
    pub async fn kill(&self) {
        let controls: Vec<Arc<Control>> = {
            let mut state = self.shared.lock();
            state.stopping = true;
            state.running.values().map(|(_, control)| control.clone()).collect()
        };
        self.shared.changed.notify_waiters();
        for control in controls {
            control.kill.store(true, Ordering::SeqCst);
            control.wake.notify_one();
        }
        self.wait_idle().await;
    }

    async fn wait_idle(&self) {
        loop {
            let mut notified = std::pin::pin!(self.shared.changed.notified());
            notified.as_mut().enable();
            if self.shared.lock().running.is_empty() {
                return;
            }
            notified.await;
        }
    }
}

/// The stages of stopping a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    Running,
    /// SIGINT sent; SIGTERM at the deadline.
    Interrupted,
    /// SIGTERM sent; SIGKILL at the deadline.
    Terminated,
    Killed,
}

async fn run_command(shared: Arc<RunnerShared>, job: CommandJob, control: Arc<Control>) {
    let key = JobKey { job_id: job.job_id, attempt: job.attempt };
    let outcome = match execute(&shared, &job, key, &control).await {
        Ok(outcome) => outcome,
        Err(error) => Outcome::Failed { error: error.to_string(), retryable: job.retryable_on_failure, exit: None },
    };
    {
        let mut state = shared.lock();
        if state.running.get(&job.job_id).is_some_and(|(attempt, _)| *attempt == job.attempt) {
            state.running.remove(&job.job_id);
        }
    }
    shared.changed.notify_waiters();
    shared.events.send(Event::Outcome { job: key, outcome }).await;
}

async fn execute(
    shared: &RunnerShared,
    job: &CommandJob,
    key: JobKey,
    control: &Control,
) -> Result<Outcome, crate::SpawnError> {
    let config = &shared.config;
    let spawned = spawn_process(SpawnRequest {
        argv: &job.spec.argv,
        env: &job.spec.env,
        cwd: job.spec.cwd.as_deref(),
        worker_socket: None,
    })?;
    let pid = spawned.process.pid().as_raw_nonzero().get() as u32;
    shared.events.process_started(pid);
    shared.events.offer(Event::CommandStarted { job: key, pid });
    let program = job.spec.argv[0].clone();
    let plumbing = |what: &'static str| {
        let program = program.clone();
        move |source: std::io::Error| crate::SpawnError::Plumbing { what, program, source }
    };
    let mut process: ProcessHandle = spawned.process;
    let mut stdout = LineReader::new(spawned.stdout, config.max_line_bytes).map_err(plumbing("stdout pipe"))?;
    let mut stderr = LineReader::new(spawned.stderr, config.max_line_bytes).map_err(plumbing("stderr pipe"))?;
    let source = ProcessRef::Command { job: key };
    let log = |stream: LogStream, lines: &mut Vec<String>| {
        for text in lines.drain(..) {
            let line = LogLine { job: Some(key), source: source.clone(), stream, timestamp: SystemTime::now(), text };
            if let Some(store) = &shared.log_store {
                let _ = store.append(&line);
            }
            shared.events.offer(Event::Log(line));
        }
    };
    let mut lines = Vec::new();
    let mut stage = Stage::Running;
    let mut next_step: Option<Instant> = None;
    let mut timer = std::pin::pin!(tokio::time::sleep(std::time::Duration::ZERO));
    loop {
        if let Some(at) = next_step {
            timer.as_mut().reset(at.into());
        }
        enum Wake {
            Exited,
            Stdout,
            Stderr,
            Control,
            Timer,
        }
        let wake = tokio::select! {
            biased;
            () = process.exited() => Wake::Exited,
            () = stdout.readable() => Wake::Stdout,
            () = stderr.readable() => Wake::Stderr,
            () = control.wake.notified(), if stage != Stage::Killed => Wake::Control,
            () = &mut timer, if next_step.is_some() => Wake::Timer,
        };
        let escalate = |step: EscalationStep, reason: String| {
            shared.events.send(Event::Escalation { target: ProcessRef::Command { job: key }, step, reason })
        };
        match wake {
            Wake::Exited => break,
            Wake::Stdout => {
                stdout.read_available(&mut lines);
                log(LogStream::Stdout, &mut lines);
            }
            Wake::Stderr => {
                stderr.read_available(&mut lines);
                log(LogStream::Stderr, &mut lines);
            }
            Wake::Control if control.kill.load(Ordering::SeqCst) => {
                stage = Stage::Killed;
                escalate(EscalationStep::Sigkill, "killed: the runner is stopping now".to_owned()).await;
                process.signal_group(Signal::KILL);
                next_step = None;
            }
            // Already interrupted: the escalation is under way.
            Wake::Control if stage != Stage::Running => {}
            Wake::Control => {
                let reason = control.interrupt.lock().expect("control lock").clone();
                if let Some(reason) = reason {
                    stage = Stage::Interrupted;
                    escalate(EscalationStep::Sigint, reason).await;
                    process.signal_group(Signal::INT);
                    next_step = Some(Instant::now() + config.interrupt_grace);
                }
            }
            Wake::Timer => match stage {
                Stage::Interrupted => {
                    stage = Stage::Terminated;
                    let grace = config.interrupt_grace;
                    escalate(EscalationStep::Sigterm, format!("still running {grace:?} after SIGINT")).await;
                    process.signal_group(Signal::TERM);
                    next_step = Some(Instant::now() + config.term_grace);
                }
                Stage::Terminated => {
                    stage = Stage::Killed;
                    let grace = config.term_grace;
                    escalate(EscalationStep::Sigkill, format!("still running {grace:?} after SIGTERM")).await;
                    process.signal_group(Signal::KILL);
                    next_step = None;
                }
                Stage::Running | Stage::Killed => next_step = None,
            },
        }
    }
    process.note_exited();
    let exit = process.kill_group_and_reap().await;
    for (stream, reader) in [(LogStream::Stdout, &mut stdout), (LogStream::Stderr, &mut stderr)] {
        reader.drain_after_exit(&mut lines);
        log(stream, &mut lines);
    }
    Ok(match exit {
        ProcessExit::Code(0) => Outcome::Completed { result: None },
        _ if stage != Stage::Running => Outcome::Interrupted { checkpoint: None, progress: None },
        exit => Outcome::Failed {
            error: format!("command {program:?} failed: {exit}"),
            retryable: job.retryable_on_failure,
            exit: Some(exit),
        },
    })
}
