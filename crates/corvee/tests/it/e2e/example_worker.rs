//! The example workers of `examples/` as pools of a test daemon: where the
//! Rust one's binary is (built on first use if `cargo nextest run -p corvee`
//! did not build it), how to run the Python one, and their `corvee.toml`
//! sections.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Which example worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Example {
    Rust,
    Python,
}

/// Defines `NAME::rust` and `NAME::python`, each calling `NAME(Example)`.
macro_rules! for_both_examples {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn rust() {
                super::$name($crate::e2e::example_worker::Example::Rust);
            }

            #[test]
            fn python() {
                super::$name($crate::e2e::example_worker::Example::Python);
            }
        }
    )*};
}
pub(crate) use for_both_examples;

/// The repository's root.
pub fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("the repository's root")
}

/// `corvee-example-worker`, next to the `corvee` binary under test (same
/// target directory and profile). `cargo nextest run --workspace` builds it;
/// `-p corvee` does not, so the first test to need it builds it with
/// `$CARGO build -p corvee-example-worker`. Tests run as parallel processes:
/// a file lock in the target directory lets one of them build while the
/// others wait, and then they find the binary.
pub fn rust_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let corvee = Path::new(env!("CARGO_BIN_EXE_corvee"));
        let profile_dir = corvee.parent().expect("the corvee binary is in a directory");
        let binary = profile_dir.join("corvee-example-worker");
        if binary.exists() {
            return binary;
        }
        let lock_path = profile_dir.join(".corvee-e2e-example-worker.lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .unwrap_or_else(|error| panic!("cannot open {}: {error}", lock_path.display()));
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).expect("lock the build of the example");
        if !binary.exists() {
            build_rust_example(profile_dir);
        }
        assert!(binary.exists(), "cargo built corvee-example-worker, yet {} does not exist", binary.display());
        binary
    })
}

/// `$CARGO build -p corvee-example-worker` into `profile_dir`'s target
/// directory, with its profile.
fn build_rust_example(profile_dir: &Path) {
    let profile = match profile_dir.file_name().and_then(|name| name.to_str()) {
        Some("debug") => "dev",
        Some(other) => other,
        None => panic!("cannot tell the cargo profile from {}", profile_dir.display()),
    };
    let target_dir = profile_dir.parent().expect("the profile directory is in the target directory");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!("building corvee-example-worker (profile {profile}) for the end-to-end tests");
    let status = Command::new(cargo)
        .args(["build", "--quiet", "-p", "corvee-example-worker", "--profile", profile])
        .arg("--manifest-path")
        .arg(repository().join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", target_dir)
        .status()
        .expect("run cargo build");
    assert!(status.success(), "cargo build -p corvee-example-worker failed: {status}");
}

/// A TOML string.
pub fn toml_string(text: &str) -> String {
    serde_json::to_string(text).expect("a string serializes")
}

/// The `[pools.NAME]` section of an example worker pool serving `queues`,
/// with `env` added to the workers' environment.
pub fn pool(example: Example, name: &str, queues: &[&str], processes: usize, env: &[(&str, &str)]) -> String {
    let repository = repository();
    let path = |relative: &str| toml_string(repository.join(relative).to_str().expect("a UTF-8 path"));
    let mut env: Vec<(String, String)> = env.iter().map(|(key, value)| (key.to_string(), toml_string(value))).collect();
    let argv = match example {
        Example::Rust => format!("[{}]", toml_string(rust_binary().to_str().expect("a UTF-8 path"))),
        Example::Python => {
            env.push(("PYTHONPATH".into(), path("sdk/python")));
            env.push(("PYTHONDONTWRITEBYTECODE".into(), toml_string("1")));
            format!("[\"python3\", \"-u\", {}]", path("examples/python/worker.py"))
        }
    };
    let queues: Vec<String> = queues.iter().map(|queue| toml_string(queue)).collect();
    let env: Vec<String> = env.iter().map(|(key, value)| format!("{key} = {value}")).collect();
    format!(
        "[pools.{name}]\nargv = {argv}\nqueues = [{}]\nprocesses = {processes}\nwindow = 4\n\
         handshake_timeout = \"30s\"\nenv = {{ {} }}\n",
        queues.join(", "),
        env.join(", ")
    )
}
