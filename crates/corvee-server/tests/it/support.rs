//! A daemon on a temporary directory, and a minimal HTTP/1.1 client for its
//! Unix socket (one request per connection).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use serde_json::Value;

pub struct TestDaemon {
    pub dir: tempfile::TempDir,
    pub running: Option<corvee_server::Running>,
}

impl TestDaemon {
    /// Starts a daemon with `config` (TOML) on a fresh directory; TCP off
    /// unless `config` sets `http.listen`.
    pub async fn start(config: &str) -> TestDaemon {
        let dir = tempfile::tempdir().unwrap();
        let config = if config.contains("listen =") {
            config.to_owned()
        } else if config.contains("[http]") {
            config.replacen("[http]", "[http]\nlisten = \"none\"", 1)
        } else {
            format!("{config}\n[http]\nlisten = \"none\"\n")
        };
        std::fs::write(dir.path().join("corvee.toml"), config).unwrap();
        let running = corvee_server::start(corvee_server::ServeOptions {
            dir: dir.path().join("data"),
            config: Some(dir.path().join("corvee.toml")),
        })
        .await
        .unwrap();
        TestDaemon { dir, running: Some(running) }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn socket(&self) -> PathBuf {
        self.data_dir().join("corvee.sock")
    }

    pub async fn stop(mut self) {
        self.running.take().unwrap().shutdown().await.unwrap();
    }
}

/// A response: status, headers (lowercase names), body.
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|error| panic!("not JSON ({error}): {}", String::from_utf8_lossy(&self.body)))
    }
}

/// One request over the socket, on a blocking thread.
pub async fn request(socket: &Path, method: &str, path: &str, body: Option<&[u8]>) -> Response {
    let socket = socket.to_path_buf();
    let (method, path, body) = (method.to_string(), path.to_string(), body.map(<[u8]>::to_vec));
    tokio::task::spawn_blocking(move || {
        let mut stream = UnixStream::connect(&socket).unwrap();
        let body = body.unwrap_or_default();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: corvee\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .unwrap();
        stream.write_all(&body).unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).unwrap();
        parse_response(&raw)
    })
    .await
    .unwrap()
}

fn parse_response(raw: &[u8]) -> Response {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a complete response head");
    let head = std::str::from_utf8(&raw[..end]).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(": "))
        .map(|(name, value)| (name.to_ascii_lowercase(), value.to_string()))
        .collect();
    let mut body = raw[end + 4..].to_vec();
    if headers.iter().any(|(name, value)| name == "transfer-encoding" && value == "chunked") {
        body = dechunk(&body);
    }
    Response { status, headers, body }
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let line_end = raw.windows(2).position(|w| w == b"\r\n").unwrap();
        let size = usize::from_str_radix(std::str::from_utf8(&raw[..line_end]).unwrap().trim(), 16).unwrap();
        if size == 0 {
            return body;
        }
        body.extend_from_slice(&raw[line_end + 2..line_end + 2 + size]);
        raw = &raw[line_end + 2 + size + 2..];
    }
}

pub async fn post_json(socket: &Path, path: &str, body: Value) -> Response {
    request(socket, "POST", path, Some(body.to_string().as_bytes())).await
}
