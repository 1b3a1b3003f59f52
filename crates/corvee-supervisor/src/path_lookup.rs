//! Finding a bare program name in `PATH` in the supervisor, as `execvp`
//! would, instead of in the child: `posix_spawnp` searches inside the
//! vforked child — one failed `execve` per directory before the right one,
//! with the spawning thread suspended meanwhile — and std falls back from
//! `posix_spawn` to fork+exec (whose cost grows with the daemon's memory)
//! when a command's env sets `PATH` and the program is a bare name.
//!
//! A name found is remembered for a second, like a shell's command hash, so
//! a queue of short commands does not stat every `PATH` directory for each:
//! a program installed meanwhile in an earlier directory is picked up at
//! most a second later, and one that disappears is looked up again at once
//! (the spawn that fails with `ENOENT` retries with a fresh lookup).

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a lookup is trusted.
const REMEMBER_FOR: Duration = Duration::from_secs(1);

/// The most names remembered; beyond, the memo starts over (bounded memory
/// whatever programs the jobs name).
const MAX_REMEMBERED: usize = 256;

/// (program, the PATH searched) → (where it was found, when).
type Memo = HashMap<(String, OsString), (PathBuf, Instant)>;

static REMEMBERED: Mutex<Option<Memo>> = Mutex::new(None);

/// Where `program` is, if it is a bare name (no `/`) found in `PATH` — the
/// command's own `PATH` if its env sets one, else the supervisor's — in
/// the first directory holding an executable regular file of that name.
/// `None` leaves the search to `execvp`: a name with a `/`, a `PATH` with
/// relative entries (relative to the child's working directory, which the
/// parent does not share), or no match.
pub(crate) fn find_in_path(program: &str, env: &[(String, String)]) -> Option<PathBuf> {
    let search = search_path(program, env)?;
    let key = (program.to_owned(), search);
    if let Some((path, found_at)) = memo().as_ref().and_then(|memo| memo.get(&key).cloned()) {
        if found_at.elapsed() < REMEMBER_FOR {
            return Some(path);
        }
    }
    let path = look_up(program, &key.1)?;
    let mut memo = memo();
    let memo = memo.get_or_insert_with(HashMap::new);
    if memo.len() >= MAX_REMEMBERED {
        memo.clear();
    }
    memo.insert(key, (path.clone(), Instant::now()));
    Some(path)
}

/// Forgets where `program` was found (its spawn failed with `ENOENT`: it
/// was moved or removed) and looks it up again.
pub(crate) fn find_in_path_again(program: &str, env: &[(String, String)]) -> Option<PathBuf> {
    let search = search_path(program, env)?;
    if let Some(memo) = memo().as_mut() {
        memo.remove(&(program.to_owned(), search));
    }
    find_in_path(program, env)
}

fn memo() -> std::sync::MutexGuard<'static, Option<Memo>> {
    REMEMBERED.lock().expect("path lookup memo lock")
}

/// The `PATH` to search for `program`, if it is a bare name and the `PATH`
/// has only absolute entries.
fn search_path(program: &str, env: &[(String, String)]) -> Option<OsString> {
    if program.is_empty() || program.contains('/') {
        return None;
    }
    let search = match env.iter().rev().find(|(name, _)| name == "PATH") {
        Some((_, value)) => OsString::from(value),
        None => std::env::var_os("PATH")?,
    };
    std::env::split_paths(&search).all(|directory| directory.is_absolute()).then_some(search)
}

fn look_up(program: &str, search: &OsStr) -> Option<PathBuf> {
    std::env::split_paths(search)
        .map(|directory| directory.join(program))
        .find(|candidate| is_executable_file(candidate))
}

fn is_executable_file(path: &Path) -> bool {
    let is_file = std::fs::metadata(path).is_ok_and(|metadata| metadata.is_file());
    is_file && rustix::fs::access(path, rustix::fs::Access::EXEC_OK).is_ok()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn program_in(directory: &Path, name: &str) -> PathBuf {
        let path = directory.join(name);
        std::fs::write(&path, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    fn env_with_path(directories: &[&Path]) -> Vec<(String, String)> {
        let search = std::env::join_paths(directories).unwrap().into_string().unwrap();
        vec![("PATH".to_owned(), search)]
    }

    #[test]
    fn the_first_directory_with_an_executable_file_wins() {
        let (first, second) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        // Not executable, and a directory: both skipped, as execvp skips them.
        std::fs::write(first.path().join("corvee-lookup-a"), "").unwrap();
        std::fs::create_dir(first.path().join("corvee-lookup-b")).unwrap();
        let a = program_in(second.path(), "corvee-lookup-a");
        let b = program_in(second.path(), "corvee-lookup-b");
        let env = env_with_path(&[first.path(), second.path()]);
        assert_eq!(find_in_path("corvee-lookup-a", &env), Some(a));
        assert_eq!(find_in_path("corvee-lookup-b", &env), Some(b));
        assert_eq!(find_in_path("corvee-lookup-none", &env), None);
    }

    #[test]
    fn names_with_a_slash_and_relative_path_entries_are_left_to_execvp() {
        let directory = tempfile::tempdir().unwrap();
        program_in(directory.path(), "corvee-lookup-c");
        let env = env_with_path(&[directory.path()]);
        assert_eq!(find_in_path("./corvee-lookup-c", &env), None);
        let relative = vec![("PATH".to_owned(), format!("bin:{}", directory.path().display()))];
        assert_eq!(find_in_path("corvee-lookup-c", &relative), None);
    }

    #[test]
    fn a_moved_program_is_found_again_at_once() {
        let (first, second) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let env = env_with_path(&[first.path(), second.path()]);
        let old = program_in(second.path(), "corvee-lookup-d");
        assert_eq!(find_in_path("corvee-lookup-d", &env), Some(old.clone()));
        std::fs::remove_file(&old).unwrap();
        let new = program_in(first.path(), "corvee-lookup-d");
        assert_eq!(find_in_path("corvee-lookup-d", &env), Some(old), "remembered");
        assert_eq!(find_in_path_again("corvee-lookup-d", &env), Some(new));
    }
}
