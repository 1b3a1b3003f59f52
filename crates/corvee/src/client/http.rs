//! HTTP/1.1 on a blocking byte stream: writing a request, reading a response
//! head, and reading its body framed by `Content-Length`, by chunks, or by
//! the end of the connection — as a `Read` that hands data over as soon as
//! it arrives, so that followed logs and event streams are not held back.
//!
//! Only what the corvee daemon needs: one request per connection
//! (`Connection: close`), no redirects, no compression. Every line and the
//! whole head have a length limit, so a confused peer cannot make the client
//! allocate without bound.

use std::io::{self, BufRead, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// The longest status or header line accepted.
const MAX_LINE_BYTES: usize = 16 * 1024;
/// The most header lines accepted in one response head (or trailer).
const MAX_HEADER_LINES: usize = 128;
/// The longest chunk-size line accepted (hex digits plus extensions).
const MAX_CHUNK_SIZE_LINE_BYTES: usize = 1024;

/// A connection to the daemon, on either of its listeners.
#[derive(Debug)]
pub(crate) enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Stream {
    pub(crate) fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Unix(stream) => stream.set_read_timeout(timeout),
            Stream::Tcp(stream) => stream.set_read_timeout(timeout),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(stream) => stream.read(buffer),
            Stream::Tcp(stream) => stream.read(buffer),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buffer: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(stream) => stream.write(buffer),
            Stream::Tcp(stream) => stream.write(buffer),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Unix(stream) => stream.flush(),
            Stream::Tcp(stream) => stream.flush(),
        }
    }
}

/// One request. The path includes the query string, already encoded.
#[derive(Debug)]
pub(crate) struct Request<'a> {
    pub(crate) method: &'static str,
    pub(crate) path: &'a str,
    pub(crate) body: Option<&'a [u8]>,
    /// The `Authorization` header's value (`Bearer ...`), if any. Never
    /// logged or shown in errors.
    pub(crate) authorization: Option<&'a str>,
    /// The `Host` header: the TCP address, or `localhost` on the socket.
    pub(crate) host: &'a str,
}

/// Writes `request` in one buffer, so that a small request is one `write`.
pub(crate) fn write_request(writer: &mut impl Write, request: &Request<'_>) -> io::Result<()> {
    let body = request.body.unwrap_or_default();
    let mut buffer = Vec::with_capacity(256 + body.len());
    write!(buffer, "{} {} HTTP/1.1\r\n", request.method, request.path)?;
    write!(buffer, "Host: {}\r\n", request.host)?;
    write!(buffer, "User-Agent: corvee/{}\r\n", env!("CARGO_PKG_VERSION"))?;
    buffer.extend_from_slice(b"Connection: close\r\n");
    if let Some(authorization) = request.authorization {
        write!(buffer, "Authorization: {authorization}\r\n")?;
    }
    if request.body.is_some() {
        buffer.extend_from_slice(b"Content-Type: application/json\r\n");
    }
    // A POST without a body still says so: some servers want a length on
    // every request that may carry one.
    if request.body.is_some() || request.method == "POST" {
        write!(buffer, "Content-Length: {}\r\n", body.len())?;
    }
    buffer.extend_from_slice(b"\r\n");
    buffer.extend_from_slice(body);
    writer.write_all(&buffer)?;
    writer.flush()
}

/// A response's status line and headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ResponseHead {
    pub(crate) status: u16,
    pub(crate) reason: String,
    /// In arrival order; names as sent (compare without case).
    pub(crate) headers: Vec<(String, String)>,
}

impl ResponseHead {
    /// The first header with this name (case-insensitive).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(header, _)| header.eq_ignore_ascii_case(name)).map(|(_, value)| value.as_str())
    }

    /// How the body that follows this head is delimited.
    pub(crate) fn framing(&self) -> io::Result<Framing> {
        if (100..200).contains(&self.status) || self.status == 204 || self.status == 304 {
            return Ok(Framing::Empty);
        }
        if let Some(encoding) = self.header("transfer-encoding") {
            // Only `chunked` is ever sent by the daemon; anything else would
            // need decoding this client does not do.
            if encoding.trim().eq_ignore_ascii_case("chunked") {
                return Ok(Framing::Chunked);
            }
            return Err(malformed(format!("unsupported Transfer-Encoding {encoding:?}")));
        }
        if let Some(length) = self.header("content-length") {
            let length =
                length.trim().parse::<u64>().map_err(|_| malformed(format!("bad Content-Length {length:?}")))?;
            return Ok(Framing::Length(length));
        }
        Ok(Framing::UntilClose)
    }
}

/// How a body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Framing {
    Empty,
    Length(u64),
    Chunked,
    UntilClose,
}

/// An `InvalidData` error: the peer did not speak HTTP/1.1 as expected.
pub(crate) fn malformed(detail: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, detail)
}

/// Reads one CRLF- (or LF-) terminated line of at most `limit` bytes,
/// without the terminator. `None` if the stream ended before any byte.
fn read_line(reader: &mut impl BufRead, limit: usize, what: &str) -> io::Result<Option<String>> {
    let mut line = Vec::new();
    let read = reader.by_ref().take(limit as u64 + 2).read_until(b'\n', &mut line)?;
    if read == 0 {
        return Ok(None);
    }
    if line.last() != Some(&b'\n') {
        if line.len() > limit {
            return Err(malformed(format!("{what} longer than {limit} bytes")));
        }
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("connection closed in the middle of a {what}"),
        ));
    }
    line.pop();
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    String::from_utf8(line).map(Some).map_err(|_| malformed(format!("{what} is not UTF-8")))
}

/// Reads header lines up to the empty line that ends them.
fn read_header_lines(reader: &mut impl BufRead, what: &str) -> io::Result<Vec<(String, String)>> {
    let mut headers = Vec::new();
    loop {
        let line = read_line(reader, MAX_LINE_BYTES, what)?
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, format!("connection closed in the {what}s")))?;
        if line.is_empty() {
            return Ok(headers);
        }
        if headers.len() == MAX_HEADER_LINES {
            return Err(malformed(format!("more than {MAX_HEADER_LINES} {what}s")));
        }
        let (name, value) =
            line.split_once(':').ok_or_else(|| malformed(format!("{what} without a colon: {line:?}")))?;
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
}

/// Reads a response head, skipping interim `1xx` responses.
pub(crate) fn read_head(reader: &mut impl BufRead) -> io::Result<ResponseHead> {
    loop {
        let status_line = read_line(reader, MAX_LINE_BYTES, "status line")?.ok_or_else(|| {
            io::Error::new(io::ErrorKind::UnexpectedEof, "the daemon closed the connection without answering")
        })?;
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or_default();
        if !version.starts_with("HTTP/1.") {
            return Err(malformed(format!("not an HTTP/1.x status line: {status_line:?}")));
        }
        let status = parts
            .next()
            .and_then(|code| code.parse::<u16>().ok())
            .filter(|code| (100..600).contains(code))
            .ok_or_else(|| malformed(format!("bad status code in {status_line:?}")))?;
        let reason = parts.next().unwrap_or_default().to_string();
        let headers = read_header_lines(reader, "header line")?;
        if (100..200).contains(&status) && status != 101 {
            continue;
        }
        return Ok(ResponseHead { status, reason, headers });
    }
}

/// Where a [`BodyReader`] stands.
#[derive(Debug)]
enum BodyState {
    Length {
        remaining: u64,
    },
    /// Inside a chunk (`remaining > 0`), or between chunks; `crlf_pending`
    /// when a chunk's data ended and its CRLF is still to be read.
    Chunked {
        remaining: u64,
        crlf_pending: bool,
    },
    UntilClose,
    Done,
}

/// A response body as a `Read`: returns data as it arrives, and 0 at the
/// body's end (for chunked bodies, after the last chunk and trailers). A
/// body cut short is an `UnexpectedEof` error, never a silent end.
#[derive(Debug)]
pub(crate) struct BodyReader<R> {
    reader: R,
    state: BodyState,
}

impl<R: BufRead> BodyReader<R> {
    pub(crate) fn new(reader: R, framing: Framing) -> BodyReader<R> {
        let state = match framing {
            Framing::Empty | Framing::Length(0) => BodyState::Done,
            Framing::Length(remaining) => BodyState::Length { remaining },
            Framing::Chunked => BodyState::Chunked { remaining: 0, crlf_pending: false },
            Framing::UntilClose => BodyState::UntilClose,
        };
        BodyReader { reader, state }
    }

    /// Copies what is buffered or arrives next, at most `limit` bytes.
    fn read_some(&mut self, buffer: &mut [u8], limit: u64) -> io::Result<usize> {
        let available = self.reader.fill_buf()?;
        let count = available.len().min(buffer.len()).min(usize::try_from(limit).unwrap_or(usize::MAX));
        buffer[..count].copy_from_slice(&available[..count]);
        self.reader.consume(count);
        Ok(count)
    }

    /// Reads the next chunk-size line; 0 means the last chunk (then the
    /// trailers are read and dropped).
    fn read_chunk_size(&mut self) -> io::Result<u64> {
        let line = read_line(&mut self.reader, MAX_CHUNK_SIZE_LINE_BYTES, "chunk-size line")?
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed between chunks"))?;
        let digits = line.split(';').next().unwrap_or_default().trim();
        let size = u64::from_str_radix(digits, 16).map_err(|_| malformed(format!("bad chunk-size line {line:?}")))?;
        if size == 0 {
            read_header_lines(&mut self.reader, "trailer line")?;
        }
        Ok(size)
    }
}

impl<R: BufRead> Read for BodyReader<R> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        if buffer.is_empty() {
            return Ok(0);
        }
        loop {
            match self.state {
                BodyState::Done => return Ok(0),
                BodyState::UntilClose => {
                    let count = self.read_some(buffer, u64::MAX)?;
                    if count == 0 {
                        self.state = BodyState::Done;
                    }
                    return Ok(count);
                }
                BodyState::Length { remaining } => {
                    let count = self.read_some(buffer, remaining)?;
                    if count == 0 {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            format!("connection closed with {remaining} bytes of the body still to come"),
                        ));
                    }
                    let remaining = remaining - count as u64;
                    self.state = if remaining == 0 { BodyState::Done } else { BodyState::Length { remaining } };
                    return Ok(count);
                }
                BodyState::Chunked { remaining: 0, crlf_pending } => {
                    if crlf_pending {
                        let line = read_line(&mut self.reader, 0, "chunk end")?.ok_or_else(|| {
                            io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed after a chunk's data")
                        })?;
                        if !line.is_empty() {
                            return Err(malformed("a chunk's data is longer than its size".to_string()));
                        }
                    }
                    let size = self.read_chunk_size()?;
                    self.state = if size == 0 {
                        BodyState::Done
                    } else {
                        BodyState::Chunked { remaining: size, crlf_pending: false }
                    };
                }
                BodyState::Chunked { remaining, .. } => {
                    let count = self.read_some(buffer, remaining)?;
                    if count == 0 {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "connection closed in the middle of a chunk",
                        ));
                    }
                    let remaining = remaining - count as u64;
                    self.state = BodyState::Chunked { remaining, crlf_pending: remaining == 0 };
                    return Ok(count);
                }
            }
        }
    }
}

/// Percent-encodes `value` for a path segment or a query value: everything
/// but RFC 3986's unreserved characters.
pub(crate) fn percent_encode(value: &str) -> String {
    let mut encoded = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}
