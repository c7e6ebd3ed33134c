//! A loopback HTTP proxy in front of the registry that injects faults at seeded-random: it
//! resets connections half-way through upload bodies and answers 500, 503 and 429 (with
//! `Retry-After: 1`) without forwarding. The number of faults is capped so runs stay short.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::{Rng, SeedableRng};

#[derive(Default)]
pub struct FaultCounts {
    pub resets: AtomicUsize,
    pub statuses: AtomicUsize,
    pub forwarded: AtomicUsize,
}

pub struct FaultProxy {
    pub addr: String,
    pub counts: Arc<FaultCounts>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(&self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

enum Fault {
    None,
    Reset,
    Status(&'static str, bool),
}

struct Plan {
    rng: rand::rngs::StdRng,
    budget: usize,
}

impl Plan {
    fn decide(&mut self, method: &str, body_len: u64) -> Fault {
        if self.budget == 0 {
            return Fault::None;
        }
        let roll: f64 = self.rng.gen();
        let fault = if (method == "PATCH" || method == "PUT") && body_len >= 64 * 1024 && roll < 0.3
        {
            Fault::Reset
        } else if roll < 0.06 {
            Fault::Status("500 Internal Server Error", false)
        } else if roll < 0.12 {
            Fault::Status("503 Service Unavailable", false)
        } else if roll < 0.15 {
            Fault::Status("429 Too Many Requests", true)
        } else {
            Fault::None
        };
        if !matches!(fault, Fault::None) {
            self.budget -= 1;
        }
        fault
    }
}

/// Sends a TCP RST instead of an orderly close, which is what a dropped link looks like.
fn reset(conn: TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    unsafe {
        libc::setsockopt(
            conn.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &linger as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    drop(conn);
}

pub fn start(upstream: &str, seed: u64, max_faults: usize) -> FaultProxy {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new(FaultCounts::default());
    let plan = Arc::new(Mutex::new(Plan {
        rng: rand::rngs::StdRng::seed_from_u64(seed),
        budget: max_faults,
    }));
    let (stop2, counts2, upstream) = (stop.clone(), counts.clone(), upstream.to_string());
    let thread = std::thread::spawn(move || {
        for conn in listener.incoming() {
            if stop2.load(Ordering::SeqCst) {
                break;
            }
            let Ok(conn) = conn else { continue };
            let (plan, counts, upstream) = (plan.clone(), counts2.clone(), upstream.clone());
            std::thread::spawn(move || {
                let _ = serve(conn, &upstream, &plan, &counts);
            });
        }
    });
    FaultProxy {
        addr,
        counts,
        stop,
        thread: Some(thread),
    }
}

fn serve(
    conn: TcpStream,
    upstream: &str,
    plan: &Mutex<Plan>,
    counts: &FaultCounts,
) -> std::io::Result<()> {
    // Bounded: an idle keep-alive connection ends after this long.
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    // One request per client connection: every answer says `Connection: close`.
    {
        let mut head = Vec::new();
        let mut content_length = 0u64;
        let mut request_line = String::new();
        if reader.read_line(&mut request_line)? == 0 {
            return Ok(());
        }
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            if line == "\r\n" {
                break;
            }
            let lower = line.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                content_length = v.trim().parse().unwrap_or(0);
            }
            if lower.starts_with("connection:") {
                continue;
            }
            head.extend_from_slice(line.as_bytes());
        }
        let method = request_line
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_string();
        let fault = plan.lock().unwrap().decide(&method, content_length);
        match fault {
            Fault::Reset => {
                counts.resets.fetch_add(1, Ordering::SeqCst);
                let mut half = (&mut reader).take(content_length / 2);
                std::io::copy(&mut half, &mut std::io::sink())?;
                reset(conn);
                Ok(())
            }
            Fault::Status(status, retry_after) => {
                counts.statuses.fetch_add(1, Ordering::SeqCst);
                std::io::copy(
                    &mut (&mut reader).take(content_length),
                    &mut std::io::sink(),
                )?;
                let body =
                    r#"{"errors":[{"code":"UNAVAILABLE","message":"injected by the test proxy"}]}"#;
                let ra = if retry_after {
                    "Retry-After: 1\r\n"
                } else {
                    ""
                };
                let mut c = &conn;
                write!(
                    c,
                    "HTTP/1.1 {status}\r\n{ra}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )?;
                Ok(())
            }
            Fault::None => {
                counts.forwarded.fetch_add(1, Ordering::SeqCst);
                let mut up = TcpStream::connect(upstream)?;
                up.set_read_timeout(Some(Duration::from_secs(60)))?;
                up.write_all(request_line.as_bytes())?;
                up.write_all(&head)?;
                // One request per upstream connection: reading the answer to EOF then needs no
                // HTTP parsing, even for HEAD.
                up.write_all(b"Connection: close\r\n\r\n")?;
                std::io::copy(&mut (&mut reader).take(content_length), &mut up)?;
                let mut response = Vec::new();
                up.read_to_end(&mut response)?;
                let mut c = &conn;
                c.write_all(&response)?;
                // The registry answered `Connection: close`, so the client opens a new connection.
                Ok(())
            }
        }
    }
}
