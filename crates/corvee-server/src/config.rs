//! `corvee.toml`: the daemon's optional configuration — HTTP listener and
//! token, queues (concurrency, capacity, retry policy, timeouts, retention,
//! the monitor's age limit), worker pools (argv, processes, window) and the
//! command-job runner. Everything has a default, so no file is needed.
//!
//! Unknown keys are errors (a typo must not silently fall back to a
//! default), and every error names the file, the key and the reason.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use corvee_core::{QueueConfig, QueueName, Retention, RetryPolicy};
use serde::Deserialize;

/// Why the configuration could not be used.
#[derive(Debug, thiserror::Error)]
#[error("{}: {message}", path.display())]
pub struct ConfigError {
    /// The configuration file.
    pub path: PathBuf,
    /// What is wrong, with the key.
    pub message: String,
}

/// The daemon's configuration, validated.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where it came from (for messages), if from a file.
    pub path: Option<PathBuf>,
    /// This daemon's node id.
    pub node: u64,
    /// The HTTP listener.
    pub http: HttpConfig,
    /// Per-queue settings (queues not listed get the defaults).
    pub queues: BTreeMap<QueueName, QueueSettings>,
    /// Worker pools.
    pub pools: Vec<PoolSettings>,
    /// The command-job runner.
    pub commands: CommandSettings,
    /// Bytes of log kept per job.
    pub max_log_bytes_per_job: u64,
    /// How long a graceful shutdown waits for running jobs to stop.
    pub shutdown_grace: Duration,
    /// Store events buffered for the daemon's router before it falls
    /// behind (and recovers cancels and expiries from the state).
    pub event_buffer: usize,
    /// The monitor's thresholds.
    pub monitor: MonitorConfig,
}

/// The monitor's thresholds (each queue's `too_old` is with the queue).
#[derive(Clone, Debug)]
pub struct MonitorConfig {
    /// How often findings are recomputed.
    pub interval: Duration,
    /// An attempt this long past its lease deadline (its kill has not
    /// finished) is stuck.
    pub stuck_after: Duration,
    /// A spool file in `incoming/tmp/` older than this was abandoned by its
    /// writer.
    pub orphaned_spool_age: Duration,
}

/// The TCP listener and its access control.
#[derive(Clone, Debug)]
pub struct HttpConfig {
    /// The address to listen on; `None`: no TCP listener.
    pub listen: Option<SocketAddr>,
    /// The bearer token TCP requests must carry, if any.
    pub token: Option<String>,
    /// The largest request body accepted.
    pub max_body_bytes: usize,
    /// The most client connections open at once on each listener (the
    /// Unix socket and TCP each have their own, so remote clients cannot
    /// crowd out the local CLI); beyond, new ones wait until one closes.
    /// `None`: 1,024, or fewer if the open-file limit is low.
    pub max_connections: Option<usize>,
    /// How long a connection may take to send a request's headers, counted
    /// from when it could start one: HTTP/1.1 connections idle that long
    /// between requests are closed. HTTP/2 connections are pinged every
    /// half of it and closed if the peer does not answer.
    pub idle_timeout: Duration,
}

/// One queue's settings.
#[derive(Clone, Debug)]
pub struct QueueSettings {
    /// The store's queue settings.
    pub store: QueueConfig,
    /// Whether the file says the queue is paused; `None`: keep whatever a
    /// `pause`/`resume` made it.
    pub paused: Option<bool>,
    /// The monitor reports jobs waiting longer than this.
    pub too_old: Option<Duration>,
}

/// One worker pool.
#[derive(Clone, Debug)]
pub struct PoolSettings {
    /// The supervisor's pool configuration.
    pub pool: corvee_supervisor::PoolConfig,
    /// The queues it takes jobs from.
    pub queues: Vec<QueueName>,
}

/// The command-job runner.
#[derive(Clone, Debug)]
pub struct CommandSettings {
    /// The queue command jobs go to and are taken from.
    pub queue: QueueName,
    /// The runner's settings.
    pub runner: corvee_supervisor::CommandRunnerConfig,
}

/// The most `http.max_connections` accepted.
pub const MAX_CONNECTIONS: usize = 1 << 20;

/// The default TCP address: loopback, port 7483.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7483";

impl Default for Config {
    fn default() -> Config {
        Config {
            path: None,
            node: 1,
            http: HttpConfig {
                listen: Some(DEFAULT_LISTEN.parse().expect("valid")),
                token: None,
                max_body_bytes: 64 << 20,
                max_connections: None,
                idle_timeout: Duration::from_secs(60),
            },
            queues: BTreeMap::new(),
            pools: Vec::new(),
            commands: CommandSettings {
                queue: QueueName::new("commands").expect("valid"),
                runner: corvee_supervisor::CommandRunnerConfig::default(),
            },
            max_log_bytes_per_job: 1 << 20,
            shutdown_grace: Duration::from_secs(10),
            event_buffer: 65_536,
            monitor: MonitorConfig {
                interval: Duration::from_secs(2),
                stuck_after: Duration::from_secs(30),
                orphaned_spool_age: Duration::from_secs(3600),
            },
        }
    }
}

// ---- the file's shape --------------------------------------------------

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct File {
    node: Option<u64>,
    shutdown_grace: Option<String>,
    event_buffer: Option<usize>,
    #[serde(default)]
    http: HttpFile,
    #[serde(default)]
    logs: LogsFile,
    #[serde(default)]
    commands: CommandsFile,
    #[serde(default)]
    queues: BTreeMap<String, QueueFile>,
    #[serde(default)]
    pools: BTreeMap<String, PoolFile>,
    #[serde(default)]
    monitor: MonitorFile,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct MonitorFile {
    interval: Option<String>,
    stuck_after: Option<String>,
    orphaned_spool_age: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct HttpFile {
    listen: Option<String>,
    token: Option<String>,
    token_file: Option<PathBuf>,
    max_body_bytes: Option<usize>,
    max_connections: Option<usize>,
    idle_timeout: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct LogsFile {
    max_bytes_per_job: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CommandsFile {
    queue: Option<String>,
    concurrency: Option<usize>,
    interrupt_grace: Option<String>,
    term_grace: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct QueueFile {
    paused: Option<bool>,
    concurrency: Option<u32>,
    capacity: Option<u64>,
    max_attempts: Option<u16>,
    timeout: Option<String>,
    retry_base: Option<String>,
    retry_max: Option<String>,
    retry_jitter_percent: Option<u8>,
    retain_completed: Option<String>,
    retain_cancelled: Option<String>,
    retain_discarded: Option<String>,
    max_completed: Option<u64>,
    max_finished_bytes: Option<u64>,
    too_old: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PoolFile {
    argv: Vec<String>,
    queues: Vec<String>,
    #[serde(default)]
    kinds: Vec<String>,
    processes: Option<usize>,
    window: Option<u32>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    cwd: Option<PathBuf>,
    handshake_timeout: Option<String>,
    heartbeat_interval: Option<String>,
    interrupt_grace: Option<String>,
    term_grace: Option<String>,
}

/// Parses a duration like `500ms`, `30s`, `10m`, `2h` or `7d`.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let millis = match unit {
        "ms" => Some(number),
        "s" => number.checked_mul(1_000),
        "m" => number.checked_mul(60_000),
        "h" => number.checked_mul(3_600_000),
        "d" => number.checked_mul(86_400_000),
        _ => None,
    }?;
    Some(Duration::from_millis(millis))
}

impl Config {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let error = |message: String| ConfigError { path: path.to_path_buf(), message };
        let text = std::fs::read_to_string(path).map_err(|source| error(format!("cannot read it: {source}")))?;
        Config::parse(&text, path)
    }

    /// Parses and validates configuration text (`path` is for messages and
    /// for resolving relative paths).
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let error = |message: String| ConfigError { path: path.to_path_buf(), message };
        let file: File = toml::from_str(text).map_err(|source| error(source.to_string().trim_end().to_string()))?;
        let mut config = Config { path: Some(path.to_path_buf()), ..Config::default() };
        let duration = |key: &str, value: &Option<String>| -> Result<Option<Duration>, ConfigError> {
            match value {
                None => Ok(None),
                Some(text) => parse_duration(text).map(Some).ok_or_else(|| {
                    error(format!("key {key}: invalid duration {text:?} (use e.g. 500ms, 30s, 10m, 2h, 7d)"))
                }),
            }
        };
        let queue_name =
            |key: &str, name: &str| QueueName::new(name).map_err(|source| error(format!("key {key}: {source}")));

        if let Some(node) = file.node {
            config.node = node;
        }
        if let Some(grace) = duration("shutdown_grace", &file.shutdown_grace)? {
            config.shutdown_grace = grace;
        }
        if let Some(buffer) = file.event_buffer {
            if !(1..=1 << 24).contains(&buffer) {
                return Err(error(format!("key event_buffer: {buffer} is not between 1 and 16777216")));
            }
            config.event_buffer = buffer;
        }
        if let Some(interval) = duration("monitor.interval", &file.monitor.interval)? {
            if interval.is_zero() {
                return Err(error("key monitor.interval: must be more than 0".into()));
            }
            config.monitor.interval = interval;
        }
        if let Some(after) = duration("monitor.stuck_after", &file.monitor.stuck_after)? {
            config.monitor.stuck_after = after;
        }
        if let Some(age) = duration("monitor.orphaned_spool_age", &file.monitor.orphaned_spool_age)? {
            config.monitor.orphaned_spool_age = age;
        }

        // HTTP: loopback unless a token protects it.
        if let Some(listen) = &file.http.listen {
            config.http.listen = match listen.as_str() {
                "" | "none" => None,
                other => Some(other.parse().map_err(|_| {
                    error(format!("key http.listen: {other:?} is not an address like 127.0.0.1:7483 (or \"none\")"))
                })?),
            };
        }
        config.http.token = match (&file.http.token, &file.http.token_file) {
            (Some(_), Some(_)) => return Err(error("keys http.token and http.token_file: give one, not both".into())),
            (Some(token), None) => Some(token.clone()),
            (None, Some(token_file)) => {
                let token_path = resolve(path, token_file);
                let token = std::fs::read_to_string(&token_path).map_err(|source| {
                    error(format!("key http.token_file: cannot read {}: {source}", token_path.display()))
                })?;
                Some(token.trim().to_string())
            }
            (None, None) => None,
        };
        if config.http.token.as_deref().is_some_and(|token| token.len() < 16) {
            return Err(error("key http.token: a token must be at least 16 characters".into()));
        }
        if let Some(listen) = config.http.listen {
            if !listen.ip().is_loopback() && config.http.token.is_none() {
                return Err(error(format!(
                    "key http.listen: {listen} is not a loopback address; set http.token (or http.token_file) \
                     so that only clients with the token can use the API"
                )));
            }
        }
        if let Some(max) = file.http.max_body_bytes {
            if max < 1024 {
                return Err(error("key http.max_body_bytes: must be at least 1024".into()));
            }
            config.http.max_body_bytes = max;
        }
        if let Some(max) = file.http.max_connections {
            if !(1..=MAX_CONNECTIONS).contains(&max) {
                return Err(error(format!("key http.max_connections: must be between 1 and {MAX_CONNECTIONS}")));
            }
            config.http.max_connections = Some(max);
        }
        if let Some(timeout) = duration("http.idle_timeout", &file.http.idle_timeout)? {
            if timeout < Duration::from_secs(1) {
                return Err(error("key http.idle_timeout: must be at least 1s".into()));
            }
            config.http.idle_timeout = timeout;
        }
        if let Some(max) = file.logs.max_bytes_per_job {
            config.max_log_bytes_per_job = max;
        }

        // Command jobs.
        if let Some(queue) = &file.commands.queue {
            config.commands.queue = queue_name("commands.queue", queue)?;
        }
        if let Some(concurrency) = file.commands.concurrency {
            if concurrency == 0 {
                return Err(error("key commands.concurrency: must be at least 1".into()));
            }
            config.commands.runner.max_concurrent = concurrency;
        }
        if let Some(grace) = duration("commands.interrupt_grace", &file.commands.interrupt_grace)? {
            config.commands.runner.interrupt_grace = grace;
        }
        if let Some(grace) = duration("commands.term_grace", &file.commands.term_grace)? {
            config.commands.runner.term_grace = grace;
        }

        // Queues.
        for (name, queue) in &file.queues {
            let key = |field: &str| format!("queues.{name}.{field}");
            let name = queue_name(&format!("queues.{name}"), name)?;
            let mut store = QueueConfig::default();
            let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
            store.concurrency = queue.concurrency;
            store.capacity = queue.capacity;
            if queue.concurrency == Some(0) {
                return Err(error(format!("key {}: must be at least 1", key("concurrency"))));
            }
            if let Some(attempts) = queue.max_attempts {
                if attempts == 0 {
                    return Err(error(format!("key {}: must be at least 1", key("max_attempts"))));
                }
                store.default_max_attempts = attempts;
            }
            if let Some(timeout) = duration(&key("timeout"), &queue.timeout)? {
                store.default_timeout_ms = u32::try_from(millis(timeout))
                    .ok()
                    .filter(|&ms| ms > 0)
                    .ok_or_else(|| error(format!("key {}: must be between 1ms and 49d", key("timeout"))))?;
            }
            let defaults = RetryPolicy::default();
            store.retry = RetryPolicy {
                base_ms: duration(&key("retry_base"), &queue.retry_base)?.map_or(defaults.base_ms, millis),
                max_ms: duration(&key("retry_max"), &queue.retry_max)?.map_or(defaults.max_ms, millis),
                jitter_percent: queue.retry_jitter_percent.unwrap_or(defaults.jitter_percent),
            };
            if store.retry.jitter_percent > 100 {
                return Err(error(format!("key {}: at most 100", key("retry_jitter_percent"))));
            }
            let retention = Retention::default();
            store.retention = Retention {
                completed_ms: duration(&key("retain_completed"), &queue.retain_completed)?
                    .map_or(retention.completed_ms, millis),
                cancelled_ms: duration(&key("retain_cancelled"), &queue.retain_cancelled)?
                    .map_or(retention.cancelled_ms, millis),
                discarded_ms: duration(&key("retain_discarded"), &queue.retain_discarded)?
                    .map_or(retention.discarded_ms, millis),
                max_completed: queue.max_completed.unwrap_or(retention.max_completed),
                max_finished_bytes: queue.max_finished_bytes.unwrap_or(retention.max_finished_bytes),
            };
            let too_old = duration(&key("too_old"), &queue.too_old)?;
            config.queues.insert(name, QueueSettings { store, paused: queue.paused, too_old });
        }

        // Pools.
        for (name, pool) in &file.pools {
            let key = |field: &str| format!("pools.{name}.{field}");
            if pool.argv.is_empty() || pool.argv[0].is_empty() {
                return Err(error(format!("key {}: give the program and its arguments as a list", key("argv"))));
            }
            if pool.queues.is_empty() {
                return Err(error(format!("key {}: list at least one queue", key("queues"))));
            }
            let mut supervisor = corvee_supervisor::PoolConfig::new(name.clone(), pool.argv.clone());
            supervisor.env = pool.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            supervisor.cwd = pool.cwd.as_ref().map(|cwd| resolve(path, cwd));
            supervisor.processes = pool.processes.unwrap_or(1);
            supervisor.window = pool.window.unwrap_or(8);
            supervisor.kinds = pool.kinds.clone();
            if supervisor.processes == 0 || supervisor.processes > 1024 {
                return Err(error(format!("key {}: between 1 and 1024", key("processes"))));
            }
            if supervisor.window == 0 || supervisor.window > corvee_supervisor::MAX_WINDOW {
                return Err(error(format!("key {}: between 1 and {}", key("window"), corvee_supervisor::MAX_WINDOW)));
            }
            if let Some(timeout) = duration(&key("handshake_timeout"), &pool.handshake_timeout)? {
                supervisor.timeouts.handshake = timeout;
            }
            if let Some(interval) = duration(&key("heartbeat_interval"), &pool.heartbeat_interval)? {
                supervisor.timeouts.heartbeat_interval = interval;
            }
            if let Some(grace) = duration(&key("interrupt_grace"), &pool.interrupt_grace)? {
                supervisor.timeouts.interrupt_grace = grace;
            }
            if let Some(grace) = duration(&key("term_grace"), &pool.term_grace)? {
                supervisor.timeouts.term_grace = grace;
            }
            let queues =
                pool.queues.iter().map(|queue| queue_name(&key("queues"), queue)).collect::<Result<Vec<_>, _>>()?;
            if queues.contains(&config.commands.queue) {
                return Err(error(format!(
                    "key {}: {} is the command-job queue; pools take jobs from other queues",
                    key("queues"),
                    config.commands.queue
                )));
            }
            config.pools.push(PoolSettings { pool: supervisor, queues });
        }
        Ok(config)
    }

    /// The settings of a queue (defaults if it is not configured).
    pub fn queue(&self, name: &QueueName) -> Option<&QueueSettings> {
        self.queues.get(name)
    }
}

/// A path from the configuration, relative to the configuration file.
fn resolve(config: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        return path.to_path_buf();
    }
    config.parent().map_or_else(|| path.to_path_buf(), |dir| dir.join(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(text, Path::new("/etc/corvee.toml")).map_err(|error| error.to_string())
    }

    #[test]
    fn no_file_means_defaults() {
        let config = parse("").unwrap();
        assert_eq!(config.http.listen, Some("127.0.0.1:7483".parse().unwrap()));
        assert!(config.pools.is_empty() && config.queues.is_empty());
    }

    #[test]
    fn a_full_file_is_understood() {
        let config = parse(
            r#"
            node = 3
            [http]
            listen = "127.0.0.1:9000"
            [commands]
            concurrency = 2
            [queues.images]
            concurrency = 4
            capacity = 1000
            max_attempts = 5
            timeout = "10m"
            retry_base = "2s"
            max_finished_bytes = 1048576
            too_old = "1h"
            [pools.thumbs]
            argv = ["python3", "worker.py"]
            queues = ["images"]
            processes = 2
            window = 16
            env = { MODE = "fast" }
            cwd = "workers"
            "#,
        )
        .unwrap();
        assert_eq!(config.node, 3);
        let images = config.queue(&QueueName::new("images").unwrap()).unwrap();
        assert_eq!(
            (images.store.concurrency, images.store.capacity, images.store.default_max_attempts),
            (Some(4), Some(1000), 5)
        );
        assert_eq!((images.store.default_timeout_ms, images.store.retry.base_ms), (600_000, 2_000));
        assert_eq!(images.too_old, Some(Duration::from_secs(3600)));
        assert_eq!(images.store.retention.max_finished_bytes, 1 << 20);
        let pool = &config.pools[0];
        assert_eq!((pool.pool.processes, pool.pool.window), (2, 16));
        assert_eq!(pool.pool.cwd.as_deref(), Some(Path::new("/etc/workers")));
        assert_eq!(config.commands.runner.max_concurrent, 2);
    }

    #[test]
    fn errors_name_the_file_the_key_and_the_reason() {
        for (text, expected) in [
            ("[queues.images]\ntimeout = \"10 minutes\"", "key queues.images.timeout: invalid duration"),
            ("[queues.Images]\n", "invalid queue name \"Images\""),
            ("[queues.a]\nconcurency = 3", "unknown field `concurency`"),
            ("[http]\nlisten = \"0.0.0.0:7483\"", "not a loopback address; set http.token"),
            ("[http]\nmax_connections = 0", "key http.max_connections: must be between 1 and"),
            ("[pools.p]\nargv = []\nqueues = [\"a\"]", "key pools.p.argv"),
            ("[pools.p]\nargv = [\"x\"]\nqueues = [\"commands\"]", "command-job queue"),
            ("[pools.p]\nargv = [\"x\"]\nqueues = [\"a\"]\nwindow = 0", "key pools.p.window"),
        ] {
            let message = parse(text).unwrap_err();
            assert!(message.starts_with("/etc/corvee.toml: "), "{message}");
            assert!(message.contains(expected), "{text:?}: {message}");
        }
    }

    #[test]
    fn a_token_allows_other_addresses() {
        let config = parse("[http]\nlisten = \"0.0.0.0:7483\"\ntoken = \"0123456789abcdef0123\"").unwrap();
        assert_eq!(config.http.token.as_deref(), Some("0123456789abcdef0123"));
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("7d"), Some(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_duration("7"), None);
        assert_eq!(parse_duration("m"), None);
    }
}
