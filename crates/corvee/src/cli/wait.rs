//! `corvee wait ID...`: waits for jobs to finish, drawing one progress bar
//! per job while it reports progress. The first Ctrl-C cancels (interrupts)
//! the waited jobs and keeps waiting until they have stopped, then prints
//! how far each got and whether it saved a checkpoint; a second Ctrl-C
//! detaches. `run --wait` uses the same loop.
//!
//! Job changes arrive on the daemon's event stream (`GET /v1/events`, read
//! on its own thread); the stream is opened before the jobs are first read,
//! so a job that ends in between is seen either way. A `lagged` event, an
//! unreadable event or a stream that ends makes the loop read the jobs
//! again.

use std::collections::BTreeMap;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use super::duration::parse_duration;
use super::exit_code::{self, WaitOutcome};
use super::job_display::render_job_summary;
use super::{interrupt, is_api_error, print_json, print_message, print_stdout, Context};
use crate::client::{CancelOutcome, Cancelled, Client, ClientError, Event, Job};

/// How many times in a row the event stream may end before the wait gives
/// up (each time it is opened again and the jobs re-read).
const MAX_STREAM_RESTARTS: u32 = 3;

/// Arguments of `corvee wait`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    corvee wait 42\n  \
    corvee wait 42 43 44 --timeout 10m\n  \
    corvee wait 42 --json | jq .jobs[0].state\n\n\
    Exit code: 0 all completed, 4 one was discarded, 5 one was cancelled, 6 --timeout passed, \
    130 detached by a second Ctrl-C.")]
pub struct WaitArgs {
    /// The jobs to wait for
    #[arg(required = true, value_name = "ID")]
    pub ids: Vec<u64>,

    /// Stop waiting after this long (exit code 6); the jobs go on
    #[arg(long, value_parser = parse_duration)]
    pub timeout: Option<Duration>,

    /// Print the jobs as JSON ({"jobs": [...]}) when done, instead of a line each
    #[arg(long)]
    pub json: bool,
}

/// How to wait.
#[derive(Debug, Clone, Copy, Default)]
pub struct WaitOptions {
    /// Give up after this long.
    pub timeout: Option<Duration>,
    /// Print JSON at the end instead of a summary line per job.
    pub json: bool,
}

/// Runs `corvee wait`.
pub fn run(args: WaitArgs, context: &Context) -> anyhow::Result<u8> {
    wait_for_jobs(&context.client, &args.ids, WaitOptions { timeout: args.timeout, json: args.json })
}

/// What the waiting loop hears about.
enum Message {
    Event(Box<Event>),
    /// An event the client could not read: something changed, re-read.
    UnreadableEvent,
    /// The stream ended, cleanly (`None`) or not.
    StreamEnded(Option<ClientError>),
    /// The n-th Ctrl-C.
    Interrupt(u32),
}

/// One waited job.
struct Watched {
    job: Job,
    /// Set once the wait is over for this job.
    outcome: Option<WaitOutcome>,
    bar: Option<ProgressBar>,
}

/// Waits for `ids` to finish; the exit code says how they ended.
pub fn wait_for_jobs(client: &Client, ids: &[u64], options: WaitOptions) -> anyhow::Result<u8> {
    let mut unique_ids = Vec::with_capacity(ids.len());
    for id in ids {
        if !unique_ids.contains(id) {
            unique_ids.push(*id);
        }
    }
    let (sender, receiver) = mpsc::channel();
    interrupt::forward_interrupts(sender.clone(), Message::Interrupt)?;
    // One job: the daemon filters. Several: one stream for all, filtered
    // here, rather than a connection per job.
    let stream_filter = if unique_ids.len() == 1 { Some(unique_ids[0]) } else { None };
    start_event_thread(client, stream_filter, sender.clone())?;

    let mut waiter = Waiter { client, multi: MultiProgress::new(), jobs: BTreeMap::new(), order: Vec::new(), options };
    for id in &unique_ids {
        let job = client.job(*id).with_context(|| format!("cannot read job {id}"))?;
        waiter.watch(job)?;
    }

    let deadline = options.timeout.map(|timeout| Instant::now() + timeout);
    let mut stream_restarts = 0;
    while !waiter.all_done() {
        let message = match deadline {
            Some(deadline) => match receiver.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(message) => message,
                Err(RecvTimeoutError::Timeout) => {
                    waiter.time_out(options.timeout.unwrap_or_default())?;
                    break;
                }
                Err(RecvTimeoutError::Disconnected) => unreachable!("this function holds a sender"),
            },
            None => receiver.recv().expect("this function holds a sender"),
        };
        match message {
            Message::Event(event) => {
                stream_restarts = 0;
                waiter.on_event(*event)?;
            }
            Message::UnreadableEvent => waiter.refresh_unfinished()?,
            Message::StreamEnded(error) => {
                stream_restarts += 1;
                if stream_restarts > MAX_STREAM_RESTARTS {
                    let reason = error.map_or_else(|| "it closed the stream".to_string(), |error| error.to_string());
                    anyhow::bail!("lost the daemon's event stream {MAX_STREAM_RESTARTS} times in a row ({reason})");
                }
                start_event_thread(client, stream_filter, sender.clone())
                    .context("the daemon's event stream ended and could not be opened again")?;
                waiter.refresh_unfinished()?;
            }
            Message::Interrupt(1) => waiter.interrupt(),
            Message::Interrupt(_) => return waiter.detach(),
        }
    }
    waiter.finish()
}

/// Opens the event stream (returning once the daemon answered, so no later
/// event is missed) and reads it on a thread into `sender`.
fn start_event_thread(client: &Client, job: Option<u64>, sender: Sender<Message>) -> anyhow::Result<()> {
    let stream = client.events(job).context("cannot subscribe to the daemon's events")?;
    std::thread::Builder::new()
        .name("events".to_string())
        .spawn(move || {
            for event in stream {
                let message = match event {
                    Ok(event) => Message::Event(Box::new(event)),
                    Err(ClientError::Decode { .. }) => Message::UnreadableEvent,
                    Err(error) => {
                        let _ = sender.send(Message::StreamEnded(Some(error)));
                        return;
                    }
                };
                if sender.send(message).is_err() {
                    return;
                }
            }
            let _ = sender.send(Message::StreamEnded(None));
        })
        .context("cannot start the event-reading thread")?;
    Ok(())
}

struct Waiter<'a> {
    client: &'a Client,
    multi: MultiProgress,
    jobs: BTreeMap<u64, Watched>,
    /// The ids in the order given, for output.
    order: Vec<u64>,
    options: WaitOptions,
}

impl Waiter<'_> {
    fn all_done(&self) -> bool {
        self.jobs.values().all(|watched| watched.outcome.is_some())
    }

    fn unfinished_ids(&self) -> Vec<u64> {
        self.order.iter().copied().filter(|id| self.jobs[id].outcome.is_none()).collect()
    }

    /// Prints a message on stderr without tearing the progress bars.
    fn message(&self, text: &str) {
        self.multi.suspend(|| print_message(text));
    }

    /// Prints a job's summary line on stdout (not with `--json`, which
    /// prints everything at the end).
    fn summary(&self, job: &Job) -> anyhow::Result<()> {
        if self.options.json {
            return Ok(());
        }
        self.multi.suspend(|| print_stdout(&format!("{}\n", render_job_summary(job))))
    }

    fn watch(&mut self, job: Job) -> anyhow::Result<()> {
        let id = job.id;
        self.order.push(id);
        self.jobs.insert(id, Watched { job: job.clone(), outcome: None, bar: None });
        self.update(job)
    }

    /// Takes in a fresh view of a job: ends its wait if it finished, else
    /// redraws its bar.
    fn update(&mut self, job: Job) -> anyhow::Result<()> {
        let id = job.id;
        let Some(watched) = self.jobs.get_mut(&id) else { return Ok(()) };
        if watched.outcome.is_some() {
            return Ok(());
        }
        watched.job = job;
        if let Some(outcome) = WaitOutcome::of_state(watched.job.state) {
            watched.outcome = Some(outcome);
            if let Some(bar) = watched.bar.take() {
                bar.finish_and_clear();
                self.multi.remove(&bar);
            }
            let job = watched.job.clone();
            return self.summary(&job);
        }
        self.draw_progress(id);
        Ok(())
    }

    /// Draws (creating it on first progress) the job's bar: a bar when the
    /// total is known, a spinner with a count when not.
    fn draw_progress(&mut self, id: u64) {
        let Some(watched) = self.jobs.get_mut(&id) else { return };
        let Some(progress) = watched.job.progress.clone() else { return };
        let bar = watched.bar.get_or_insert_with(|| {
            let bar = self.multi.add(ProgressBar::new(0));
            bar.set_prefix(format!("job {id}"));
            bar
        });
        match progress.total {
            Some(total) => {
                bar.set_style(
                    ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} ({percent}%) {wide_msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .progress_chars("=> "),
                );
                bar.set_length(total);
            }
            None => {
                bar.set_style(
                    ProgressStyle::with_template("{prefix} {spinner} {pos} done {wide_msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                bar.enable_steady_tick(Duration::from_millis(200));
            }
        }
        bar.set_position(progress.done);
        bar.set_message(progress.message.unwrap_or_default());
    }

    fn on_event(&mut self, event: Event) -> anyhow::Result<()> {
        match event {
            Event::Job(event) => {
                let Some(watched) = self.jobs.get_mut(&event.id) else { return Ok(()) };
                if watched.outcome.is_some() {
                    return Ok(());
                }
                if event.state.is_finished() {
                    // The event carries the state only; the job object has
                    // the progress, checkpoint and errors to print.
                    return self.refresh(event.id);
                }
                watched.job.state = event.state;
                watched.job.execution = event.execution.or(watched.job.execution.take());
                Ok(())
            }
            Event::Progress(event) => {
                let Some(watched) = self.jobs.get_mut(&event.id) else { return Ok(()) };
                if watched.outcome.is_some() {
                    return Ok(());
                }
                watched.job.progress =
                    Some(crate::client::Progress { done: event.done, total: event.total, message: event.message });
                self.draw_progress(event.id);
                Ok(())
            }
            Event::JobDeleted { id } => {
                self.deleted(id);
                Ok(())
            }
            Event::Lagged { .. } => self.refresh_unfinished(),
            _ => Ok(()),
        }
    }

    fn deleted(&mut self, id: u64) {
        let Some(watched) = self.jobs.get_mut(&id) else { return };
        if watched.outcome.is_some() {
            return;
        }
        watched.outcome = Some(WaitOutcome::Deleted);
        if let Some(bar) = watched.bar.take() {
            bar.finish_and_clear();
            self.multi.remove(&bar);
        }
        self.message(&format!("job {id} was deleted before it finished"));
    }

    /// Reads a job again.
    fn refresh(&mut self, id: u64) -> anyhow::Result<()> {
        match self.client.job(id) {
            Ok(job) => self.update(job),
            Err(error) if is_api_error(&error, "job_not_found") => {
                self.deleted(id);
                Ok(())
            }
            Err(error) => Err(error).with_context(|| format!("cannot read job {id}")),
        }
    }

    fn refresh_unfinished(&mut self) -> anyhow::Result<()> {
        for id in self.unfinished_ids() {
            self.refresh(id)?;
        }
        Ok(())
    }

    /// The first Ctrl-C: cancel every unfinished job (interrupting the
    /// running ones) and keep waiting for them to stop.
    fn interrupt(&mut self) {
        let ids = self.unfinished_ids();
        self.message(&format!(
            "interrupting {} (Ctrl-C again to detach and leave {} running)",
            plural_jobs(&ids),
            if ids.len() == 1 { "it" } else { "them" }
        ));
        for id in ids {
            match self.client.cancel(id) {
                Ok(Cancelled { outcome: CancelOutcome::CancelRequested, execution }) => {
                    let execution = execution.map(|execution| format!(" (execution {execution})")).unwrap_or_default();
                    self.message(&format!("job {id}: asked the running attempt{execution} to stop at a safe point"));
                }
                Ok(Cancelled { outcome: CancelOutcome::Cancelled, .. }) => {
                    if let Err(error) = self.refresh(id) {
                        self.message(&format!("job {id}: cancelled, but cannot read it again: {error:#}"));
                    }
                }
                // It finished meanwhile; its event is on the way.
                Err(error) if is_api_error(&error, "wrong_state") => {}
                Err(error) => self.message(&format!("job {id}: cannot cancel it: {error}")),
            }
        }
    }

    /// The second Ctrl-C: stop waiting; the jobs go on as they are.
    fn detach(self) -> anyhow::Result<u8> {
        let ids = self.unfinished_ids();
        self.multi.clear().ok();
        for id in &ids {
            self.message(&format!("detached from {}", render_job_summary(&self.jobs[id].job)));
        }
        if self.options.json {
            self.print_jobs_json()?;
        }
        Ok(exit_code::DETACHED)
    }

    fn time_out(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let ids = self.unfinished_ids();
        self.message(&format!(
            "{} still unfinished after {}",
            plural_jobs(&ids),
            super::format_duration_ms(super::duration::as_millis(timeout),)
        ));
        for id in ids {
            let watched = self.jobs.get_mut(&id).expect("an unfinished id is watched");
            watched.outcome = Some(WaitOutcome::TimedOut);
            if let Some(bar) = watched.bar.take() {
                bar.finish_and_clear();
                self.multi.remove(&bar);
            }
            let job = watched.job.clone();
            self.summary(&job)?;
        }
        Ok(())
    }

    fn print_jobs_json(&self) -> anyhow::Result<()> {
        let jobs: Vec<&Job> = self.order.iter().map(|id| &self.jobs[id].job).collect();
        print_json(&serde_json::json!({ "jobs": jobs }))
    }

    fn finish(self) -> anyhow::Result<u8> {
        if self.options.json {
            self.print_jobs_json()?;
        }
        Ok(exit_code::for_wait(self.jobs.values().filter_map(|watched| watched.outcome)))
    }
}

fn plural_jobs(ids: &[u64]) -> String {
    let list: Vec<String> = ids.iter().map(u64::to_string).collect();
    match ids.len() {
        1 => format!("job {}", list[0]),
        _ => format!("jobs {}", list.join(", ")),
    }
}
