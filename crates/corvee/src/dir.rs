//! The data directory: which one a command means, when none is named.
//!
//! The order is `--dir DIR`, then `$CORVEE_DIR`, then
//! `$XDG_STATE_HOME/corvee`, then `$HOME/.local/state/corvee`. Empty
//! variables count as unset, and a relative `$XDG_STATE_HOME` is ignored as
//! the XDG base-directory specification asks. The result is made absolute
//! (against the current directory) so that messages naming it, and a daemon
//! started from elsewhere, mean the same directory.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The environment variable naming the data directory.
pub const DIR_ENV: &str = "CORVEE_DIR";

/// The name of the daemon's Unix socket inside the data directory.
pub const SOCKET_FILE_NAME: &str = "corvee.sock";

/// No data directory could be chosen.
#[derive(Debug, thiserror::Error)]
pub enum DirError {
    /// Nothing names a directory: no `--dir`, no `$CORVEE_DIR`, no
    /// `$XDG_STATE_HOME` and no `$HOME`.
    #[error(
        "no data directory: pass --dir DIR or set CORVEE_DIR (neither XDG_STATE_HOME nor HOME is set to derive a default)"
    )]
    NoDefault,
    /// The current directory, needed to make a relative path absolute, could
    /// not be read.
    #[error("cannot make the data directory {path} absolute: {source}")]
    Absolute {
        /// The relative path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The data directory: `explicit` if given, else from the process's
/// environment (see the module documentation).
pub fn resolve(explicit: Option<&Path>) -> Result<PathBuf, DirError> {
    resolve_with_env(explicit, |name| std::env::var_os(name))
}

/// [`resolve`] with the environment given as a function, for tests and for
/// programs that keep their own environment.
pub fn resolve_with_env(explicit: Option<&Path>, env: impl Fn(&str) -> Option<OsString>) -> Result<PathBuf, DirError> {
    let non_empty = |name: &str| env(name).filter(|value| !value.is_empty()).map(PathBuf::from);
    let chosen = if let Some(path) = explicit.filter(|path| !path.as_os_str().is_empty()) {
        path.to_path_buf()
    } else if let Some(path) = non_empty(DIR_ENV) {
        path
    } else if let Some(state_home) = non_empty("XDG_STATE_HOME").filter(|path| path.is_absolute()) {
        state_home.join("corvee")
    } else if let Some(home) = non_empty("HOME") {
        home.join(".local").join("state").join("corvee")
    } else {
        return Err(DirError::NoDefault);
    };
    std::path::absolute(&chosen).map_err(|source| DirError::Absolute { path: chosen, source })
}

/// The daemon's socket in `dir`.
pub fn socket_path(dir: &Path) -> PathBuf {
    dir.join(SOCKET_FILE_NAME)
}
