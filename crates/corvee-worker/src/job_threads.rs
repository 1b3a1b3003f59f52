//! The threads that run handlers: at most `window` of them, started when a
//! job finds no idle one and kept for the next job. The supervisor never
//! has more than `window` jobs outstanding, so neither the queue nor the
//! number of threads grows beyond that.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};

type Task = Box<dyn FnOnce() + Send + 'static>;

#[derive(Default)]
struct State {
    queue: VecDeque<Task>,
    idle: usize,
    threads: usize,
}

pub(crate) struct JobThreads {
    state: Mutex<State>,
    task_ready: Condvar,
    max_threads: usize,
}

impl std::fmt::Debug for JobThreads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobThreads").field("max_threads", &self.max_threads).finish_non_exhaustive()
    }
}

impl JobThreads {
    pub(crate) fn new(max_threads: usize) -> Arc<JobThreads> {
        assert!(max_threads > 0, "a worker needs at least one job thread");
        Arc::new(JobThreads { state: Mutex::new(State::default()), task_ready: Condvar::new(), max_threads })
    }

    /// Runs `task` on an idle thread, or a new one while there are fewer
    /// than the maximum; otherwise it waits in the queue for a thread.
    pub(crate) fn execute(self: &Arc<Self>, task: impl FnOnce() + Send + 'static) -> std::io::Result<()> {
        let mut state = self.state.lock().expect("job threads lock");
        state.queue.push_back(Box::new(task));
        // Every queued task needs its own thread: an idle thread that was
        // woken but has not taken its task yet is still counted idle, so
        // compare the whole queue with the idle threads.
        if state.queue.len() <= state.idle {
            self.task_ready.notify_one();
            return Ok(());
        }
        if state.threads < self.max_threads {
            let number = state.threads;
            let threads = self.clone();
            std::thread::Builder::new().name(format!("corvee-job-{number}")).spawn(move || threads.serve())?;
            state.threads += 1;
        }
        Ok(())
    }

    fn serve(&self) {
        let mut state = self.state.lock().expect("job threads lock");
        loop {
            match state.queue.pop_front() {
                Some(task) => {
                    drop(state);
                    task();
                    state = self.state.lock().expect("job threads lock");
                }
                None => {
                    state.idle += 1;
                    state = self.task_ready.wait(state).expect("job threads lock");
                    state.idle -= 1;
                }
            }
        }
    }
}
