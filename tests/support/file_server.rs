//! A loopback HTTP server for a directory (a local Debian mirror), one request per connection,
//! that counts requests per path, can corrupt the next N responses for a path (so tests can
//! prove a bad download is refused and a good one fetched again) and can hold a response
//! half-sent (so a test can kill a client mid-transfer).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default)]
struct State {
    requests: BTreeMap<String, usize>,
    corrupt: BTreeMap<String, usize>,
    /// Paths whose responses wait (the headers and half the body sent) until released.
    held: Vec<String>,
}

/// How long a held response waits for [`FileServer::release`] at most.
const HOLD_LIMIT: Duration = Duration::from_secs(120);

pub struct FileServer {
    pub url: String,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    addr: String,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for FileServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(&self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl FileServer {
    pub fn start(dir: PathBuf) -> FileServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (state.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(conn) = conn {
                    serve(conn, &dir, &s);
                }
            }
        });
        FileServer {
            url: format!("http://{addr}"),
            state,
            stop,
            addr,
            thread: Some(thread),
        }
    }

    /// Requests seen for `path` (e.g. `/pool/main/a.deb`).
    pub fn requests(&self, path: &str) -> usize {
        *self.state.lock().unwrap().requests.get(path).unwrap_or(&0)
    }

    /// Responses for `path` send half their body, then wait until [`FileServer::release`].
    pub fn hold(&self, path: &str) {
        self.state.lock().unwrap().held.push(path.to_string());
    }

    pub fn release(&self) {
        self.state.lock().unwrap().held.clear();
    }

    /// The next `times` responses for `path` carry one flipped byte.
    pub fn corrupt(&self, path: &str, times: usize) {
        self.state
            .lock()
            .unwrap()
            .corrupt
            .insert(path.to_string(), times);
    }
}

fn serve(mut conn: TcpStream, dir: &std::path::Path, state: &Mutex<State>) {
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    // Bounded: a request head over 64 KiB is not one this server answers.
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 * 1024 {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head);
    let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut body = None;
    let held;
    {
        let mut s = state.lock().unwrap();
        *s.requests.entry(path.clone()).or_default() += 1;
        let file = dir.join(path.trim_start_matches('/'));
        if !path.contains("..") {
            if let Ok(mut bytes) = std::fs::read(&file) {
                if let Some(n) = s.corrupt.get_mut(&path).filter(|n| **n > 0) {
                    *n -= 1;
                    let mid = bytes.len() / 2;
                    bytes[mid] ^= 0xff;
                }
                body = Some(bytes);
            }
        }
        held = s.held.contains(&path);
    }
    if let (true, Some(b)) = (held, &body) {
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            b.len()
        );
        let _ = conn.write_all(head.as_bytes());
        let _ = conn.write_all(&b[..b.len() / 2]);
        let start = std::time::Instant::now();
        while state.lock().unwrap().held.contains(&path) && start.elapsed() < HOLD_LIMIT {
            std::thread::sleep(Duration::from_millis(20));
        }
        return;
    }
    let _ = match body {
        Some(b) => conn
            .write_all(
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    b.len()
                )
                .as_bytes(),
            )
            .and_then(|_| conn.write_all(&b)),
        None => conn
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
    };
}
