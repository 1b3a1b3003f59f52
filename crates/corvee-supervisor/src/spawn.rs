//! Starting a worker or a command: always from an argv (never a shell
//! string), as the leader of its own process group, stdin from /dev/null,
//! stdout and stderr to pipes the supervisor reads, and — for protocol
//! workers — its end of the socket on fd 3 via
//! [`corvee_proto::install_worker_fd`]. Every other fd the supervisor holds is
//! close-on-exec (Rust opens everything that way), so nothing else leaks in.
//!
//! The child is watched through a pidfd: it becomes readable when the child
//! exits, *without* reaping it. That lets the supervisor SIGKILL the process
//! group while the zombie leader still holds the group id (so the id cannot
//! have been reused), and only then reap. A std `Child` does the reaping, so
//! no SIGCHLD handler is installed and nothing else in the process reaps our
//! children behind our back.
//!
//! PR_SET_PDEATHSIG is deliberately not used: it fires when the *thread*
//! that forked exits, which under a thread pool is any time. Workers learn
//! that the supervisor is gone from EOF on their socket instead.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Instant;

use rustix::fs::OFlags;
use rustix::process::{Pid, PidfdFlags};
use tokio::io::unix::AsyncFd;

use crate::kill::kill_process_group;
use crate::path_lookup::{find_in_path, find_in_path_again};
use crate::{ProcessExit, SpawnError};

/// What to start.
pub(crate) struct SpawnRequest<'a> {
    pub(crate) argv: &'a [String],
    pub(crate) env: &'a [(String, String)],
    pub(crate) cwd: Option<&'a Path>,
    /// The worker's end of the protocol socket, placed on fd 3.
    pub(crate) worker_socket: Option<OwnedFd>,
}

/// A started process with its output pipes.
pub(crate) struct Spawned {
    pub(crate) process: ProcessHandle,
    pub(crate) stdout: OwnedFd,
    pub(crate) stderr: OwnedFd,
}

/// Sets `O_NONBLOCK` on an fd the supervisor alone reads or writes, and has
/// just created: a fresh pipe or socket has no other status flag set, so
/// one `F_SETFL` does it (no `F_GETFL` first: two system calls fewer per
/// command job).
pub(crate) fn set_nonblocking(fd: impl AsFd) -> io::Result<()> {
    rustix::fs::fcntl_setfl(&fd, OFlags::NONBLOCK)?;
    Ok(())
}

/// Registers an owned fd with the tokio reactor. Must run inside a runtime.
pub(crate) fn register_fd(fd: OwnedFd, interest: tokio::io::Interest) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: an `OwnedFd` is a valid open fd that stays open, and names the
    // same file description, until it is dropped — which only the `AsyncFd`
    // can do now.
    unsafe { AsyncFd::register_with_interest(fd, interest) }.map_err(|error| error.into_parts().1)
}

/// Starts the process described by `request`. Must run inside a tokio
/// runtime (the pidfd is registered with its reactor).
pub(crate) fn spawn_process(request: SpawnRequest<'_>) -> Result<Spawned, SpawnError> {
    let program = request.argv.first().ok_or(SpawnError::EmptyArgv)?;
    let found = find_in_path(program, request.env);
    let mut child = match command_for(&request, found.as_deref()).spawn() {
        // Found a moment ago, gone now: look again, once.
        Err(error) if error.kind() == io::ErrorKind::NotFound && found.is_some() => {
            let found = find_in_path_again(program, request.env);
            command_for(&request, found.as_deref()).spawn()
        }
        spawned => spawned,
    }
    .map_err(|source| SpawnError::Exec { program: program.clone(), source })?;
    // The parent's copy of the worker's end must close now, or the
    // supervisor would never see EOF from a dead worker.
    drop(request.worker_socket);
    let plumbing = |what: &'static str| {
        let program = program.clone();
        move |source: io::Error| SpawnError::Plumbing { what, program, source }
    };
    let stdout: OwnedFd = child.stdout.take().expect("stdout was piped").into();
    let stderr: OwnedFd = child.stderr.take().expect("stderr was piped").into();
    let process = ProcessHandle::watch(child).map_err(plumbing("pidfd"))?;
    set_nonblocking(&stdout).map_err(plumbing("stdout pipe"))?;
    set_nonblocking(&stderr).map_err(plumbing("stderr pipe"))?;
    Ok(Spawned { process, stdout, stderr })
}

/// The `Command` for `request`, running `found` (the program looked up in
/// `PATH`) if given, with argv[0] as the request has it either way.
fn command_for(request: &SpawnRequest<'_>, found: Option<&Path>) -> Command {
    let (program, arguments) = request.argv.split_first().expect("checked non-empty");
    let mut command = match found {
        Some(path) => {
            let mut command = Command::new(path);
            // The program still sees the name it was started by.
            command.arg0(program);
            command
        }
        None => Command::new(program),
    };
    command
        .args(arguments)
        .envs(request.env.iter().map(|(name, value)| (name, value)))
        .stdin(dev_null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    if let Some(cwd) = request.cwd {
        command.current_dir(cwd);
    }
    if let Some(socket) = &request.worker_socket {
        command.env(corvee_proto::WORKER_FD_ENV, corvee_proto::WORKER_FD.to_string());
        let raw = socket.as_raw_fd();
        // SAFETY: runs in the child between fork and exec, where nothing
        // else uses fd 3; `install_worker_fd` makes at most two system calls
        // and does not allocate. The socket stays open in the parent until
        // spawn returns.
        unsafe {
            command.pre_exec(move || corvee_proto::install_worker_fd(BorrowedFd::borrow_raw(raw)));
        }
    }
    command
}

/// Stdin for a child: `/dev/null`, opened once and duplicated for each
/// child (a `dup` instead of an `open` with its path walk on every spawn).
fn dev_null() -> Stdio {
    static DEV_NULL: OnceLock<Option<File>> = OnceLock::new();
    let shared = DEV_NULL.get_or_init(|| File::open("/dev/null").ok());
    match shared.as_ref().map(File::try_clone) {
        Some(Ok(copy)) => Stdio::from(copy),
        _ => Stdio::null(),
    }
}

/// A child process the supervisor owns: it knows when the child exited
/// (pidfd) and reaps it exactly once. Dropping an unreaped handle SIGKILLs
/// the group and reaps synchronously, so no zombie is ever left behind.
pub(crate) struct ProcessHandle {
    child: Option<Child>,
    pid: Pid,
    pidfd: AsyncFd<OwnedFd>,
    started_at: Instant,
    exited: bool,
}

impl std::fmt::Debug for ProcessHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessHandle").field("pid", &self.pid).field("exited", &self.exited).finish()
    }
}

impl ProcessHandle {
    fn watch(mut child: Child) -> io::Result<ProcessHandle> {
        let pid = Pid::from_raw(child.id() as i32).expect("a child's pid is positive");
        let pidfd = match rustix::process::pidfd_open(pid, PidfdFlags::empty()) {
            Ok(pidfd) => pidfd,
            Err(errno) => {
                // Cannot watch it, so do not keep it.
                kill_process_group(pid);
                let _ = child.wait();
                return Err(errno.into());
            }
        };
        let pidfd = match register_fd(pidfd, tokio::io::Interest::READABLE) {
            Ok(pidfd) => pidfd,
            Err(error) => {
                kill_process_group(pid);
                let _ = child.wait();
                return Err(error);
            }
        };
        Ok(ProcessHandle { child: Some(child), pid, pidfd, started_at: Instant::now(), exited: false })
    }

    /// The process id, which is also its process group id.
    pub(crate) fn pid(&self) -> Pid {
        self.pid
    }

    /// When it was started.
    pub(crate) fn started_at(&self) -> Instant {
        self.started_at
    }

    /// Resolves once the process has exited (it is then a zombie, not yet
    /// reaped). Cancel-safe.
    pub(crate) async fn exited(&self) {
        if self.exited {
            return;
        }
        // A pidfd stays readable once the process has exited.
        let _ = self.pidfd.readable().await;
    }

    /// Marks the exit seen by [`exited`](ProcessHandle::exited).
    pub(crate) fn note_exited(&mut self) {
        self.exited = true;
    }

    /// Signals the whole group (no-op once reaped).
    pub(crate) fn signal_group(&self, signal: rustix::process::Signal) {
        if self.child.is_some() {
            crate::kill::signal_process_group(self.pid, signal);
        }
    }

    /// SIGKILLs the process group (grandchildren included) while the leader's
    /// pid is still held, waits for the leader to exit, and reaps it.
    /// Returns how the leader ended. Call once.
    pub(crate) async fn kill_group_and_reap(&mut self) -> ProcessExit {
        kill_process_group(self.pid);
        self.exited().await;
        self.exited = true;
        let mut child = self.child.take().expect("reaped once");
        // The pidfd said the child exited, so this does not block.
        let status = child.wait().expect("waitpid on our own exited child");
        ProcessExit::from_status(status)
    }
}

impl Drop for ProcessHandle {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_process_group(self.pid);
            // SIGKILL cannot be caught; the wait is short.
            let _ = child.wait();
        }
    }
}
