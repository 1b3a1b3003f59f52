//! A fake daemon for the client's wire tests: listens on `corvee.sock` in a
//! temporary directory, reads one request per connection, and answers with
//! bytes the test wrote by hand (so malformed answers can be tested too).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::mpsc;
use std::thread::JoinHandle;

/// A request as the fake daemon received it.
#[derive(Debug)]
pub struct ReceivedRequest {
    /// `GET /v1/jobs/42 HTTP/1.1`.
    pub request_line: String,
    /// Header lines, as sent.
    pub headers: Vec<String>,
    /// The body (read by its Content-Length).
    pub body: Vec<u8>,
}

impl ReceivedRequest {
    /// The first header with this name (case-insensitive), its value.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.iter().find_map(|line| {
            let (header, value) = line.split_once(':')?;
            header.eq_ignore_ascii_case(name).then(|| value.trim().to_string())
        })
    }
}

/// What the fake daemon sends back: parts written one after another; each
/// part after the first waits for a `go` (from the test, or from another
/// answer's `sent`), so a test can check that the client hands over data
/// before the answer is complete, or order answers on different
/// connections. `sent` is signalled once the whole answer is out.
pub struct Answer {
    pub parts: Vec<Vec<u8>>,
    pub go: Option<mpsc::Receiver<()>>,
    pub sent: Option<mpsc::Sender<()>>,
}

impl Answer {
    /// All at once.
    pub fn whole(bytes: impl Into<Vec<u8>>) -> Answer {
        Answer { parts: vec![bytes.into()], go: None, sent: None }
    }

    /// A JSON answer with a Content-Length.
    pub fn json(status: &str, body: &str) -> Answer {
        Answer::whole(format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ))
    }
}

/// The fake daemon: its data directory, and a thread that gives the n-th
/// connection the n-th `Answer`, each connection served on its own thread
/// (so an event stream can stay open while other requests come).
pub struct FakeDaemon {
    pub dir: tempfile::TempDir,
    thread: Option<JoinHandle<Vec<JoinHandle<ReceivedRequest>>>>,
}

impl FakeDaemon {
    pub fn start(answers: Vec<Answer>) -> FakeDaemon {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let listener = UnixListener::bind(dir.path().join("corvee.sock")).expect("bind the fake daemon's socket");
        let thread = std::thread::spawn(move || {
            let mut connections = Vec::new();
            for answer in answers {
                let (stream, _) = listener.accept().expect("accept a connection");
                connections.push(std::thread::spawn(move || serve_one(stream, answer)));
            }
            connections
        });
        FakeDaemon { dir, thread: Some(thread) }
    }

    pub fn client(&self) -> corvee::client::Client {
        corvee::client::Client::for_dir(self.dir.path())
    }

    /// Waits for the fake daemon to have answered everything; the requests,
    /// in connection order.
    pub fn requests(mut self) -> Vec<ReceivedRequest> {
        let connections =
            self.thread.take().expect("requests are taken once").join().expect("the fake daemon does not panic");
        connections.into_iter().map(|connection| connection.join().expect("a connection does not panic")).collect()
    }
}

fn serve_one(stream: UnixStream, answer: Answer) -> ReceivedRequest {
    let mut reader = BufReader::new(stream.try_clone().expect("clone the stream"));
    let mut request_line = String::new();
    reader.read_line(&mut request_line).expect("read the request line");
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("read a header line");
        let line = line.trim_end().to_string();
        if line.is_empty() {
            break;
        }
        headers.push(line);
    }
    let mut request = ReceivedRequest { request_line: request_line.trim_end().to_string(), headers, body: Vec::new() };
    let length: usize = request.header("content-length").map_or(0, |value| value.parse().expect("a length"));
    request.body = vec![0; length];
    reader.read_exact(&mut request.body).expect("read the body");

    let mut writer = stream;
    for (index, part) in answer.parts.iter().enumerate() {
        if index > 0 {
            if let Some(go) = &answer.go {
                // The test says when the next part may go; if it hung up,
                // send the rest at once.
                let _ = go.recv();
            }
        }
        // The client may have gone away (a test that stops reading early).
        if writer.write_all(part).and_then(|()| writer.flush()).is_err() {
            break;
        }
    }
    if let Some(sent) = answer.sent {
        let _ = sent.send(());
    }
    request
}
