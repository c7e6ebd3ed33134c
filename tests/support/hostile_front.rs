//! A loopback HTTP front for the real registry that records what every client sent and can
//! misbehave on purpose: answer for the registry (a 401 of its own, a huge `Content-Length`, an
//! endless or stalled body, a malformed error), or forward and then edit the answer (rewrite
//! `Location` to another host, lie in `Docker-Content-Digest`). Two fronts on different
//! loopback addresses stand for a registry and the object storage it sends clients to.
//!
//! One request per connection (every answer says `Connection: close`), so reading an upstream
//! answer to EOF needs no HTTP framing. Every wait is bounded.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;

/// One request as the front received it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub target: String,
    pub authorization: Option<String>,
    /// The raw request head and body, for searching for secrets.
    pub raw: Vec<u8>,
}

/// What to do with a request.
pub enum Action {
    Forward,
    /// Send these bytes as the whole answer.
    Reply(Vec<u8>),
    /// Send this status and headers, then a chunked body that never ends (until the client
    /// hangs up, or 1 GiB, or 60 s).
    Endless(String),
    /// Send this head and a few body bytes, then nothing (until the client hangs up or 60 s).
    Stall(String),
}

/// An upstream answer, editable before it goes back to the client.
pub struct Response {
    pub status_line: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn set_header(&mut self, name: &str, value: &str) {
        self.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        self.headers.push((name.to_string(), value.to_string()));
    }
}

type Decide = dyn Fn(&Seen) -> Action + Send + Sync;
type Edit = dyn Fn(&Seen, &mut Response) + Send + Sync;

pub struct Config {
    /// A loopback address, e.g. "127.0.0.2".
    pub ip: &'static str,
    pub upstream: String,
    pub decide: Box<Decide>,
    pub edit: Box<Edit>,
    /// Forward with this `Authorization` instead of the client's: object storage accepts a
    /// signed URL, which the real registry behind does not know about, so the front signs for it.
    pub inject_auth: Option<Arc<Mutex<Option<String>>>>,
    /// Record the last client `Authorization` here (else in a cell of the front's own), so
    /// another front can forward with it the moment it arrives.
    pub record_auth: Option<Arc<Mutex<Option<String>>>>,
}

impl Config {
    pub fn forward(ip: &'static str, upstream: &str) -> Config {
        Config {
            ip,
            upstream: upstream.to_string(),
            decide: Box::new(|_| Action::Forward),
            edit: Box::new(|_, _| {}),
            inject_auth: None,
            record_auth: None,
        }
    }
}

pub struct Front {
    pub addr: String,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    /// The last `Authorization` a client sent here.
    pub last_auth: Arc<Mutex<Option<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Front {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(&self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Front {
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

pub fn start(config: Config) -> Front {
    let listener = TcpListener::bind(format!("{}:0", config.ip)).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let last_auth = config
        .record_auth
        .clone()
        .unwrap_or_else(|| Arc::new(Mutex::new(None)));
    let config = Arc::new(config);
    let (stop2, seen2, last2) = (stop.clone(), seen.clone(), last_auth.clone());
    let thread = std::thread::spawn(move || {
        for conn in listener.incoming() {
            if stop2.load(Ordering::SeqCst) {
                break;
            }
            let Ok(conn) = conn else { continue };
            let (config, seen, last, stop) =
                (config.clone(), seen2.clone(), last2.clone(), stop2.clone());
            std::thread::spawn(move || {
                let _ = serve(conn, &config, &seen, &last, &stop);
            });
        }
    });
    Front {
        addr,
        seen,
        last_auth,
        stop,
        thread: Some(thread),
    }
}

fn serve(
    conn: TcpStream,
    config: &Config,
    seen: &Mutex<Vec<Seen>>,
    last_auth: &Mutex<Option<String>>,
    stop: &AtomicBool,
) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line)? == 0 {
        return Ok(());
    }
    let mut raw = request_line.clone().into_bytes();
    let mut head = Vec::new();
    let (mut content_length, mut authorization) = (0u64, None);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        raw.extend_from_slice(line.as_bytes());
        if line == "\r\n" {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            content_length = v.trim().parse().unwrap_or(0);
        }
        if let Some((_, v)) = line
            .split_once(':')
            .filter(|(k, _)| k.eq_ignore_ascii_case("authorization"))
        {
            authorization = Some(v.trim().to_string());
            if config.inject_auth.is_some() {
                continue;
            }
        }
        if lower.starts_with("connection:") {
            continue;
        }
        head.extend_from_slice(line.as_bytes());
    }
    let mut body = Vec::new();
    (&mut reader).take(content_length).read_to_end(&mut body)?;
    raw.extend_from_slice(&body);
    let mut parts = request_line.split_whitespace();
    let exchange = Seen {
        method: parts.next().unwrap_or("").to_string(),
        target: parts.next().unwrap_or("").to_string(),
        authorization: authorization.clone(),
        raw,
    };
    seen.lock().unwrap().push(exchange.clone());
    if authorization.is_some() {
        *last_auth.lock().unwrap() = authorization;
    }
    let mut c = &conn;
    match (config.decide)(&exchange) {
        Action::Reply(bytes) => c.write_all(&bytes),
        Action::Endless(head) => {
            c.write_all(
                format!("{head}Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n").as_bytes(),
            )?;
            let chunk = format!("{:x}\r\n{}\r\n", 64 * 1024, "x".repeat(64 * 1024));
            let start = Instant::now();
            for _ in 0..(1 << 14) {
                if stop.load(Ordering::SeqCst) || start.elapsed() > Duration::from_secs(60) {
                    break;
                }
                c.write_all(chunk.as_bytes())?;
            }
            Ok(())
        }
        Action::Stall(head) => {
            c.write_all(format!("{head}Connection: close\r\n\r\n{{\"tok").as_bytes())?;
            c.flush()?;
            // Wait for the client to give up: its hang-up ends the read with 0 or an error.
            conn.set_read_timeout(Some(Duration::from_secs(60)))?;
            let mut buf = [0u8; 64];
            let _ = (&conn).read(&mut buf);
            Ok(())
        }
        Action::Forward => {
            let mut up = TcpStream::connect(&config.upstream)?;
            up.set_read_timeout(Some(Duration::from_secs(60)))?;
            up.write_all(request_line.as_bytes())?;
            up.write_all(&head)?;
            if let Some(auth) = config
                .inject_auth
                .as_ref()
                .and_then(|a| a.lock().unwrap().clone())
            {
                up.write_all(format!("Authorization: {auth}\r\n").as_bytes())?;
            }
            up.write_all(b"Connection: close\r\n\r\n")?;
            up.write_all(&body)?;
            let mut answer = Vec::new();
            up.read_to_end(&mut answer)?;
            let mut resp = parse_response(&answer);
            (config.edit)(&exchange, &mut resp);
            let mut out = format!("{}\r\n", resp.status_line).into_bytes();
            for (k, v) in &resp.headers {
                out.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
            }
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(&resp.body);
            c.write_all(&out)
        }
    }
}

fn parse_response(answer: &[u8]) -> Response {
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(answer.len());
    let head = String::from_utf8_lossy(&answer[..split]).into_owned();
    let body = answer.get(split + 4..).unwrap_or_default().to_vec();
    let mut lines = head.split("\r\n");
    let status_line = lines
        .next()
        .unwrap_or("HTTP/1.1 502 Bad Gateway")
        .to_string();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Response {
        status_line,
        headers,
        body,
    }
}

/// A complete HTTP answer with a JSON body.
pub fn reply(status: &str, extra_headers: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\n{extra_headers}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The `Authorization` value a client sends for Basic credentials, to compare with what a front
/// saw or to search for in what kiln wrote.
pub fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}
