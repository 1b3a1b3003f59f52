//! The Python SDK's runtime unit tests (`sdk/python/tests/runtime`: a
//! `Worker` driven by an in-process fake supervisor), run from here so that
//! `cargo nextest` covers them. The wire layer's are run by corvee-proto's
//! tests.

use std::process::{Command, Stdio};

use crate::support::python_sdk_dir;

#[test]
fn the_python_runtime_unit_tests_pass() {
    let output = Command::new("python3")
        .current_dir(python_sdk_dir())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .args(["-W", "error::ResourceWarning", "-m", "unittest", "discover", "-s", "tests/runtime", "-t", "."])
        .stdin(Stdio::null())
        .output()
        .expect("python3 (3.11 or newer) is needed to test the Python SDK");
    let report = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the Python runtime tests failed:\n{report}");
    let ran: usize = report
        .lines()
        .find_map(|line| line.strip_prefix("Ran ")?.split(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no 'Ran N tests' line in:\n{report}"));
    assert!(ran >= 20, "only {ran} Python runtime tests ran:\n{report}");
}
