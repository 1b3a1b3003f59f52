//! The small value types of the job model: ids, names, priorities, time.
//! Names are validated where they enter (`QueueName::new`, `Kind::new`), so
//! the rest of the code can trust them.

use std::fmt;
use std::sync::Arc;

use crate::error::CoreError;

/// A job's id: assigned by the store, increasing in enqueue order, never
/// reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct JobId(pub u64);

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Milliseconds since the Unix epoch. corvee-core reads no clock: every
/// time comes in as a value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// This time plus `millis`, saturating.
    pub fn plus_millis(self, millis: u64) -> Timestamp {
        Timestamp(self.0.saturating_add(millis))
    }

    /// Milliseconds from `earlier` to this time (0 if `earlier` is later).
    pub fn millis_since(self, earlier: Timestamp) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0)
    }
}

/// How urgent a job is: **lower runs first** (0 is the most urgent), and
/// jobs of equal priority run in enqueue order. The default, 1024, leaves
/// room on both sides (it is also beanstalkd's customary default, whose
/// clients use the same order).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Priority(pub u32);

impl Priority {
    /// The priority of a job that does not say.
    pub const DEFAULT: Priority = Priority(1024);
}

impl Default for Priority {
    fn default() -> Priority {
        Priority::DEFAULT
    }
}

/// An attempt number, from 1: the fencing token of one execution.
pub type Attempt = u32;

/// The longest queue name.
pub const MAX_QUEUE_NAME_BYTES: usize = 64;
/// The longest job kind.
pub const MAX_KIND_BYTES: usize = 128;

/// A validated queue name: 1 to 64 bytes of `a-z`, `0-9`, `.`, `_`, `-`,
/// starting with a letter or digit. Shared, not copied, when cloned: every
/// event and lease carries one.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QueueName(Arc<str>);

impl QueueName {
    /// Checks `name` and wraps it, or says what is wrong with it.
    pub fn new(name: impl Into<String>) -> Result<QueueName, CoreError> {
        let name = name.into();
        match queue_name_problem(&name) {
            None => Ok(QueueName(name.into())),
            Some(reason) => Err(CoreError::InvalidQueueName { name, reason }),
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn queue_name_problem(name: &str) -> Option<&'static str> {
    let bytes = name.as_bytes();
    if bytes.is_empty() {
        return Some("it is empty");
    }
    if bytes.len() > MAX_QUEUE_NAME_BYTES {
        return Some("it is longer than 64 bytes");
    }
    if !(bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit()) {
        return Some("it must start with a lowercase letter or a digit");
    }
    if !bytes.iter().all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')) {
        return Some("only lowercase letters, digits, '.', '_' and '-' are allowed");
    }
    None
}

impl fmt::Display for QueueName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for QueueName {
    type Err = CoreError;

    fn from_str(name: &str) -> Result<QueueName, CoreError> {
        QueueName::new(name)
    }
}

/// A validated job kind: what the worker dispatches on. 1 to 128 bytes of
/// printable ASCII without spaces (e.g. `thumbnail`, `mail.send`,
/// `billing/invoice-v2`). Shared when cloned, like [`QueueName`].
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Kind(Arc<str>);

impl Kind {
    /// Checks `kind` and wraps it, or says what is wrong with it.
    pub fn new(kind: impl Into<String>) -> Result<Kind, CoreError> {
        let kind = kind.into();
        let reason = if kind.is_empty() {
            Some("it is empty")
        } else if kind.len() > MAX_KIND_BYTES {
            Some("it is longer than 128 bytes")
        } else if !kind.bytes().all(|b| b.is_ascii_graphic()) {
            Some("only printable ASCII without spaces is allowed")
        } else {
            None
        };
        match reason {
            None => Ok(Kind(kind.into())),
            Some(reason) => Err(CoreError::InvalidKind { kind, reason }),
        }
    }

    /// The kind.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Who holds a lease. Decides what happens when it expires: an attempt run
/// by this daemon's own supervisor must be confirmed dead (its process
/// reaped) before the job can run again; an attempt held by a client the
/// supervisor does not own is fenced at once and the job retried.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum LeaseHolder {
    /// A worker process (or command job) of the supervisor of node `node`.
    Supervised {
        /// The daemon's node id (one per daemon; several share a database).
        node: u64,
    },
    /// A client outside the supervisor (a library consumer, a beanstalkd
    /// connection), identified for display.
    External {
        /// Who, for humans.
        client: String,
    },
}

impl fmt::Display for LeaseHolder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LeaseHolder::Supervised { node } => write!(f, "supervisor of node {node}"),
            LeaseHolder::External { client } => write!(f, "client {client}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_names_are_checked() {
        for good in ["default", "a", "mail.outbound", "q_1-2", "0", &"x".repeat(64)] {
            assert!(QueueName::new(good).is_ok(), "{good}");
        }
        for (bad, why) in [
            ("", "empty"),
            ("Mail", "start with"),
            ("-x", "start with"),
            ("a b", "only lowercase"),
            ("é", "start with"),
            (&"x".repeat(65) as &str, "longer than 64"),
        ] {
            let error = QueueName::new(bad).unwrap_err().to_string();
            assert!(error.contains(why), "{bad:?}: {error}");
            assert!(error.contains(&format!("{bad:?}")), "{error} should quote the name");
        }
    }

    #[test]
    fn kinds_are_checked() {
        assert!(Kind::new("billing/invoice-v2").is_ok());
        assert!(Kind::new("has space").is_err());
        assert!(Kind::new("").is_err());
    }
}
