//! The daemon's lock and its ledger of process groups.
//!
//! One daemon per directory: `<dir>/daemon.lock` is `flock`ed for the
//! daemon's life and names its holder. Holding it, a starting daemon knows
//! no other daemon runs on the directory — so any process group recorded in
//! `<dir>/run/processes` by an earlier one is a leftover of a daemon that
//! died: a worker that never read its socket's EOF, or a command job (which
//! has no socket to notice). They are killed before anything is leased,
//! because the store has just failed their attempts as lost and the jobs
//! will run again: the old attempt must not still be running.
//!
//! The ledger is appended to (one `write`) as each process starts; a daemon
//! killed with SIGKILL loses no write the kernel accepted, and if the whole
//! machine stopped, so did the processes. A process is identified by its
//! pid *and* its start time (from `/proc/<pid>/stat`), so a reused pid is
//! never killed.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{bail, Context};

/// The exclusive lock of a daemon directory, released when dropped.
#[derive(Debug)]
pub struct DaemonLock {
    _file: File,
}

impl DaemonLock {
    /// Takes the lock, or fails naming who holds it.
    pub fn take(dir: &Path) -> anyhow::Result<DaemonLock> {
        let path = dir.join("daemon.lock");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => {
                let holder = fs::read_to_string(&path).unwrap_or_default();
                let holder = holder.trim();
                bail!(
                    "another corvee daemon is already running for {}{}; stop it first (or use another --dir)",
                    dir.display(),
                    if holder.is_empty() { String::new() } else { format!(" ({holder})") }
                );
            }
            Err(errno) => {
                return Err(io::Error::from(errno)).with_context(|| format!("cannot lock {}", path.display()))
            }
        }
        file.set_len(0)?;
        let host = rustix::system::uname().nodename().to_string_lossy().into_owned();
        write!(file, "pid {} on {host}", std::process::id())?;
        Ok(DaemonLock { _file: file })
    }
}

/// The process groups this daemon started.
#[derive(Debug)]
pub struct ProcessLedger {
    path: PathBuf,
    book: Mutex<Book>,
}

#[derive(Debug)]
struct Book {
    file: File,
    /// What the file lists: (pgid, start time).
    entries: Vec<(u32, u64)>,
    /// Compact when this many entries are listed.
    compact_at: usize,
}

/// The fewest entries worth compacting.
const MIN_COMPACT_AT: usize = 64;

/// A process group left by an earlier daemon and what became of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leftover {
    /// The process group (its leader's pid).
    pub pgid: u32,
    /// Whether it was still running and was killed.
    pub killed: bool,
}

/// The start time of a process in clock ticks since boot, if it exists.
fn start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19)?.parse().ok()
}

impl ProcessLedger {
    /// Kills what an earlier daemon left (per the ledger), then starts a new,
    /// empty ledger. Call only while holding the [`DaemonLock`].
    pub fn open(dir: &Path) -> anyhow::Result<(ProcessLedger, Vec<Leftover>)> {
        let run = dir.join("run");
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&run)
            .with_context(|| format!("cannot create {}", run.display()))?;
        let path = run.join("processes");
        let mut leftovers = Vec::new();
        match fs::read_to_string(&path) {
            Ok(text) => {
                for line in text.lines() {
                    let mut fields = line.split_whitespace();
                    let (Some(pgid), Some(started)) = (fields.next(), fields.next()) else { continue };
                    let (Ok(pgid), Ok(started)) = (pgid.parse::<u32>(), started.parse::<u64>()) else { continue };
                    if leftovers.iter().any(|leftover: &Leftover| leftover.pgid == pgid) {
                        continue;
                    }
                    let killed = kill_group_if_same(pgid, started);
                    leftovers.push(Leftover { pgid, killed });
                }
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => return Err(error).with_context(|| format!("cannot read {}", path.display())),
        }
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        let book = Book { file, entries: Vec::new(), compact_at: MIN_COMPACT_AT };
        Ok((ProcessLedger { path, book: Mutex::new(book) }, leftovers))
    }

    /// Records a process group this daemon started (its leader's pid), at
    /// once: call it right after the spawn. Now and then the ledger is
    /// rewritten with only the groups still running, so it stays as long as
    /// the number of live processes (amortised: each entry is checked a
    /// constant number of times).
    pub fn record(&self, pgid: u32) {
        // Our child cannot vanish from /proc before we reap it.
        let Some(started) = start_time(pgid) else { return };
        let line = format!("{pgid} {started}\n");
        let mut book = self.book.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // One write: whole lines reach the file even if we are killed next.
        let _ = book.file.write_all(line.as_bytes());
        book.entries.push((pgid, started));
        if book.entries.len() >= book.compact_at {
            self.compact(&mut book);
        }
    }

    /// How many process groups the ledger lists.
    pub fn len(&self) -> usize {
        self.book.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).entries.len()
    }

    /// Whether the ledger lists nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Rewrites the ledger with the groups still running (a new file renamed
    /// over the old: a daemon killed meanwhile leaves one or the other,
    /// whole).
    fn compact(&self, book: &mut Book) {
        book.entries.retain(|&(pgid, started)| start_time(pgid) == Some(started));
        book.compact_at = (book.entries.len() * 2).max(MIN_COMPACT_AT);
        let lines: String = book.entries.iter().map(|(pgid, started)| format!("{pgid} {started}\n")).collect();
        let temporary = self.path.with_extension("tmp");
        let written = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(&temporary)
            .and_then(|mut file| file.write_all(lines.as_bytes()));
        if written.is_ok() && fs::rename(&temporary, &self.path).is_ok() {
            if let Ok(reopened) = OpenOptions::new().append(true).open(&self.path) {
                book.file = reopened;
            }
        }
    }
}

/// If the process `pgid` still runs and started at `started` (so it is the
/// one recorded, not a reuse of its pid), SIGKILLs its group and waits until
/// the leader has terminated. Returns whether it did.
fn kill_group_if_same(pgid: u32, started: u64) -> bool {
    let Some(pid) = rustix::process::Pid::from_raw(pgid as i32) else { return false };
    // The pidfd pins the process: checking its start time after opening it
    // proves the pidfd (and so the wait below) is about the right process.
    let Ok(pidfd) = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()) else { return false };
    if start_time(pgid) != Some(started) {
        return false;
    }
    let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    // A pidfd becomes readable when the process terminates, whoever its
    // parent is (it is not our child: it belonged to the dead daemon).
    let mut fds = [rustix::event::PollFd::new(&pidfd, rustix::event::PollFlags::IN)];
    let timeout = rustix::event::Timespec { tv_sec: 5, tv_nsec: 0 };
    let _ = rustix::event::poll(&mut fds, Some(&timeout));
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let _lock = DaemonLock::take(dir.path()).unwrap();
        let error = DaemonLock::take(dir.path()).unwrap_err().to_string();
        assert!(error.contains("another corvee daemon is already running"), "{error}");
        assert!(error.contains(&format!("pid {}", std::process::id())), "{error}");
    }

    #[test]
    fn the_ledger_keeps_only_running_groups_once_it_grows() {
        use std::os::unix::process::CommandExt;
        let dir = tempfile::tempdir().unwrap();
        let (ledger, _) = ProcessLedger::open(dir.path()).unwrap();
        let mut alive = std::process::Command::new("sleep").arg("600").process_group(0).spawn().unwrap();
        ledger.record(alive.id());
        for _ in 0..MIN_COMPACT_AT * 3 {
            let mut done = std::process::Command::new("true").process_group(0).spawn().unwrap();
            let pgid = done.id();
            ledger.record(pgid);
            done.wait().unwrap();
        }
        // Compacted along the way: far fewer than the ~200 recorded, and the
        // running one is still listed, in memory and in the file.
        assert!(ledger.len() < MIN_COMPACT_AT, "{} entries", ledger.len());
        let text = fs::read_to_string(dir.path().join("run/processes")).unwrap();
        assert_eq!(text.lines().count(), ledger.len());
        assert!(text.lines().any(|line| line.starts_with(&format!("{} ", alive.id()))), "{text}");
        drop(ledger);
        let (_, leftovers) = ProcessLedger::open(dir.path()).unwrap();
        assert!(leftovers.contains(&Leftover { pgid: alive.id(), killed: true }), "{leftovers:?}");
        let status = alive.wait().unwrap();
        assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(9));
    }

    #[test]
    fn leftover_groups_are_killed_and_reused_pids_are_not() {
        use std::os::unix::process::CommandExt;
        let dir = tempfile::tempdir().unwrap();
        // A "leftover": a process in its own group, not our concern after
        // the (simulated) daemon died — here still our child, so reap it.
        let mut child = std::process::Command::new("sleep").arg("600").process_group(0).spawn().unwrap();
        let pgid = child.id();
        {
            let (ledger, leftovers) = ProcessLedger::open(dir.path()).unwrap();
            assert!(leftovers.is_empty());
            ledger.record(pgid);
        }
        // A line whose pid exists but with another start time: not killed.
        let mut text = fs::read_to_string(dir.path().join("run/processes")).unwrap();
        text.push_str(&format!("{} 1\n", std::process::id()));
        fs::write(dir.path().join("run/processes"), text).unwrap();
        let (_, leftovers) = ProcessLedger::open(dir.path()).unwrap();
        assert_eq!(leftovers, [Leftover { pgid, killed: true }, Leftover { pgid: std::process::id(), killed: false }]);
        let status = child.wait().unwrap();
        assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(9));
    }
}
