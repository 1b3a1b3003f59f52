//! Which data directory a command means: `--dir` > `$CORVEE_DIR` >
//! `$XDG_STATE_HOME/corvee` > `$HOME/.local/state/corvee`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use corvee::dir::{resolve_with_env, DirError};

fn check(explicit: Option<&str>, env: &[(&str, &str)], expected: Option<&str>) {
    let lookup = |name: &str| env.iter().find(|(key, _)| *key == name).map(|(_, value)| OsString::from(value));
    let resolved = resolve_with_env(explicit.map(Path::new), lookup);
    match expected {
        Some(expected) => assert_eq!(resolved.expect("a directory"), PathBuf::from(expected), "{explicit:?} {env:?}"),
        None => assert!(matches!(resolved, Err(DirError::NoDefault)), "{explicit:?} {env:?}: {resolved:?}"),
    }
}

#[test]
fn the_first_source_that_names_a_directory_wins() {
    let all = [("CORVEE_DIR", "/env"), ("XDG_STATE_HOME", "/state"), ("HOME", "/home/ada")];
    check(Some("/flag"), &all, Some("/flag"));
    check(None, &all, Some("/env"));
    check(None, &all[1..], Some("/state/corvee"));
    check(None, &all[2..], Some("/home/ada/.local/state/corvee"));
    check(None, &[], None);
}

#[test]
fn empty_variables_count_as_unset_and_a_relative_xdg_state_home_is_ignored() {
    check(None, &[("CORVEE_DIR", ""), ("XDG_STATE_HOME", ""), ("HOME", "/h")], Some("/h/.local/state/corvee"));
    check(None, &[("XDG_STATE_HOME", "relative/state"), ("HOME", "/h")], Some("/h/.local/state/corvee"));
}

#[test]
fn a_relative_directory_is_made_absolute() {
    let resolved = resolve_with_env(Some(Path::new("data")), |_| None).expect("a directory");
    assert_eq!(resolved, std::env::current_dir().expect("a current directory").join("data"));
}
