//! What can go wrong talking to the daemon, as an enum callers can branch on.

use std::io;
use std::path::PathBuf;

/// An error from the daemon's API, or from reaching it.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing listens on the data directory's socket: the socket file is
    /// missing, or it is left over from a daemon that is gone (connection
    /// refused).
    #[error("no corvee daemon is running for {dir}; start one with 'corvee serve --dir {dir}'", dir = .dir.display())]
    NoDaemon {
        /// The data directory.
        dir: PathBuf,
        /// The socket that was tried.
        socket: PathBuf,
        /// `NotFound` or `ConnectionRefused`.
        cause: io::ErrorKind,
    },
    /// Nothing listens on the TCP address (connection refused).
    #[error("no corvee daemon is listening on {address}")]
    NoDaemonAt {
        /// `host:port`.
        address: String,
    },
    /// Connecting failed for another reason (permissions, a path too long
    /// for a Unix socket, an unreachable host).
    #[error("cannot connect to the corvee daemon at {address}")]
    Connect {
        /// The socket path or `host:port`.
        address: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Sending the request or reading the answer failed (the connection
    /// broke, or a read timed out).
    #[error("{request} failed")]
    Io {
        /// `METHOD /path`.
        request: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The answer is not the HTTP/1.1 this client expects.
    #[error("{request}: the daemon's answer is not valid HTTP ({detail})")]
    Protocol {
        /// `METHOD /path`.
        request: String,
        /// What was wrong.
        detail: String,
    },
    /// The answer is larger than the client accepts for this request.
    #[error("{request}: the daemon's answer is larger than {limit} bytes")]
    ResponseTooLarge {
        /// `METHOD /path`.
        request: String,
        /// The limit, in bytes.
        limit: u64,
    },
    /// The request could not be encoded as JSON (for instance a path that is
    /// not UTF-8).
    #[error("{request}: cannot encode the request as JSON")]
    Encode {
        /// `METHOD /path`.
        request: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// The answer is HTTP but its JSON is not what the API documents.
    #[error("{request}: the daemon's answer does not have the documented shape")]
    Decode {
        /// `METHOD /path`.
        request: String,
        /// Where and why.
        #[source]
        source: serde_json::Error,
    },
    /// The daemon answered with an error (boxed: it is the largest
    /// variant, and errors travel through every `Result`).
    #[error(transparent)]
    Api(Box<ApiError>),
}

impl From<ApiError> for ClientError {
    fn from(error: ApiError) -> ClientError {
        ClientError::Api(Box::new(error))
    }
}

impl ClientError {
    /// The daemon's stable error code (`job_not_found`, `wrong_state`, ...),
    /// if the daemon answered with an error.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api(error) => Some(&error.code),
            _ => None,
        }
    }

    /// Whether the daemon could not be reached because none is running.
    pub fn is_no_daemon(&self) -> bool {
        matches!(self, ClientError::NoDaemon { .. } | ClientError::NoDaemonAt { .. })
    }
}

/// An error the daemon answered with: its HTTP status, stable `code`,
/// message for humans, and the fields naming what it is about (`job`,
/// `state`, `queue`, `limit`, ...).
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{message} ({code})")]
pub struct ApiError {
    /// The HTTP status.
    pub status: u16,
    /// The stable code to branch on; `http_<status>` when the body was not
    /// the documented error JSON.
    pub code: String,
    /// The daemon's message.
    pub message: String,
    /// The other fields of the error object.
    pub fields: serde_json::Map<String, serde_json::Value>,
}

/// The longest part of a non-JSON error body kept as the message.
const MAX_UNDOCUMENTED_MESSAGE_BYTES: usize = 512;

impl ApiError {
    /// Reads an error answer: the documented `{"error": {"code", "message",
    /// ...}}`, or, for anything else, `http_<status>` with the start of the
    /// body (or the reason phrase) as the message.
    pub(crate) fn from_response(status: u16, reason: &str, body: &[u8]) -> ApiError {
        if let Ok(serde_json::Value::Object(mut outer)) = serde_json::from_slice::<serde_json::Value>(body) {
            if let Some(serde_json::Value::Object(mut error)) = outer.remove("error") {
                let code = error.remove("code").and_then(|code| code.as_str().map(str::to_string));
                let message = error.remove("message").and_then(|message| message.as_str().map(str::to_string));
                if let Some(code) = code {
                    let message = message.unwrap_or_else(|| code.clone());
                    return ApiError { status, code, message, fields: error };
                }
            }
        }
        let text = String::from_utf8_lossy(body);
        let mut message = text.trim().to_string();
        if message.len() > MAX_UNDOCUMENTED_MESSAGE_BYTES {
            let mut end = MAX_UNDOCUMENTED_MESSAGE_BYTES;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
            message.push('…');
        }
        if message.is_empty() {
            message = format!("HTTP {status} {reason}").trim().to_string();
        }
        ApiError { status, code: format!("http_{status}"), message, fields: serde_json::Map::new() }
    }
}
