//! A minimal HTTP/1.1 client for the tests of `rprof-agent serve`: what they assert is the
//! bytes on the wire (status, headers, body), so nothing between them and the socket.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Go's content type for text answers and errors.
pub const TEXT_PLAIN: &str = "text/plain; charset=utf-8";
/// How long a response may take: the longest profile a test asks for, and then some.
const READ_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// Header names lowercased.
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Panics with the whole response unless the status is `status`.
    pub fn expect_status(&self, status: u16) -> &Self {
        assert_eq!(
            self.status,
            status,
            "status {}, headers {:?}, body:\n{}",
            self.status,
            self.headers,
            self.text()
        );
        self
    }

    /// Asserts the shape of Go's errors: text with `X-Go-Pprof: 1`, body `message\n`.
    pub fn expect_go_error(&self, status: u16, message: &str) {
        self.expect_status(status);
        assert_eq!(self.header("content-type"), Some(TEXT_PLAIN));
        assert_eq!(self.header("x-go-pprof"), Some("1"));
        assert_eq!(self.text(), format!("{message}\n"));
    }
}

/// Sends one request to 127.0.0.1:`port` (`Connection: close`) and reads the whole response.
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .unwrap_or_else(|err| panic!("connect to 127.0.0.1:{port}: {err}"));
    stream
        .set_read_timeout(Some(READ_TIMEOUT))
        .expect("set a read timeout");
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\
         Content-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream
        .write_all(request.as_bytes())
        .and_then(|()| stream.write_all(body))
        .expect("send the request");
    read_response(BufReader::new(stream))
}

fn read_response(mut reader: BufReader<TcpStream>) -> Response {
    let mut line = String::new();
    reader.read_line(&mut line).expect("read the status line");
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {line:?}"));
    let mut headers = HashMap::new();
    loop {
        line.clear();
        reader.read_line(&mut line).expect("read a header");
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':').expect("a header has a colon");
        headers.insert(name.to_ascii_lowercase(), value.trim().to_string());
    }
    let mut body = Vec::new();
    reader.read_to_end(&mut body).expect("read the body");
    if headers.get("transfer-encoding").map(String::as_str) == Some("chunked") {
        body = dechunk(&body);
    }
    Response {
        status,
        headers,
        body,
    }
}

fn dechunk(mut chunked: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let end = chunked
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("chunk size line");
        let size_text = std::str::from_utf8(&chunked[..end]).expect("ASCII chunk size");
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .expect("hex chunk size");
        if size == 0 {
            return body;
        }
        body.extend_from_slice(&chunked[end + 2..end + 2 + size]);
        chunked = &chunked[end + 2 + size + 2..];
    }
}
