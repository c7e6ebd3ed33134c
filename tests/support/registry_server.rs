//! Starts the real CNCF distribution registry (`docker-registry`) on a free loopback port, in one
//! of three configurations: plain HTTP, htpasswd Basic auth over TLS, and token auth backed by a
//! small in-process token server. The registry is killed when the handle drops.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;

use super::ports::free_port;

pub const USER: &str = "kiln";
pub const PASSWORD: &str = "s3cret-pass";
pub const TOKEN_SERVICE: &str = "kiln-test-registry";
pub const TOKEN_ISSUER: &str = "kiln-test-issuer";
/// The OAuth2 refresh token (docker's `identitytoken`) the token server accepts for `USER`.
pub const REFRESH_TOKEN: &str = "kiln-refresh-0f9e8d";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Plain,
    BasicTls,
    Token,
    /// TLS that requires a client certificate signed by the test CA (`http.tls.clientcas`); no
    /// other authentication. The client certificate and key are in `client_cert`.
    MutualTls,
}

pub struct TestRegistry {
    child: Child,
    pub addr: String,
    pub mode: Mode,
    pub dir: tempfile::TempDir,
    /// For TLS: a certs.d root holding `<addr>/ca.crt`, and the CA file itself.
    pub certs_d: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    pub token_server: Option<TokenServer>,
    /// For `MutualTls`: a client certificate and key the registry accepts.
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A CA and a server certificate for 127.0.0.1, made with the openssl CLI.
fn make_tls(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let ca_key = dir.join("ca.key");
    let ca = dir.join("ca.crt");
    run(Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ])
        .arg("-keyout")
        .arg(&ca_key)
        .arg("-out")
        .arg(&ca)
        .args([
            "-days",
            "2",
            "-subj",
            "/CN=kiln test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]));
    let key = dir.join("server.key");
    let csr = dir.join("server.csr");
    let crt = dir.join("server.crt");
    run(Command::new("openssl")
        .args([
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&csr)
        .args(["-subj", "/CN=127.0.0.1"]));
    let ext = dir.join("ext.cnf");
    std::fs::write(&ext, "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n").unwrap();
    run(Command::new("openssl")
        .args(["x509", "-req", "-days", "2"])
        .arg("-in")
        .arg(&csr)
        .arg("-CA")
        .arg(&ca)
        .arg("-CAkey")
        .arg(&ca_key)
        .arg("-CAcreateserial")
        .arg("-out")
        .arg(&crt)
        .arg("-extfile")
        .arg(&ext));
    (ca, crt, key)
}

/// A client certificate signed by the test CA in `dir` (made by `make_tls`).
fn make_client_cert(dir: &Path) -> (PathBuf, PathBuf) {
    let key = dir.join("client.key");
    let csr = dir.join("client.csr");
    let crt = dir.join("client.cert");
    run(Command::new("openssl")
        .args([
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&csr)
        .args(["-subj", "/CN=kiln test client"]));
    let ext = dir.join("client-ext.cnf");
    std::fs::write(
        &ext,
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n",
    )
    .unwrap();
    run(Command::new("openssl")
        .args(["x509", "-req", "-days", "2"])
        .arg("-in")
        .arg(&csr)
        .arg("-CA")
        .arg(dir.join("ca.crt"))
        .arg("-CAkey")
        .arg(dir.join("ca.key"))
        .arg("-CAcreateserial")
        .arg("-out")
        .arg(&crt)
        .arg("-extfile")
        .arg(&ext));
    (crt, key)
}

pub fn start(mode: Mode) -> TestRegistry {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let storage = dir.path().join("storage");
    std::fs::create_dir(&storage).unwrap();
    let mut config = format!(
        "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n  secret: kiln-test-secret\n",
        storage.display()
    );
    let (mut certs_d, mut ca_file, mut token_server, mut client_cert) = (None, None, None, None);
    match mode {
        Mode::Plain => {}
        Mode::BasicTls => {
            let (ca, crt, key) = make_tls(dir.path());
            config += &format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                crt.display(),
                key.display()
            );
            let htpasswd = dir.path().join("htpasswd");
            let line = run(Command::new("htpasswd").args(["-Bbn", USER, PASSWORD]));
            std::fs::write(&htpasswd, line.trim()).unwrap();
            config += &format!(
                "auth:\n  htpasswd:\n    realm: kiln-test\n    path: {}\n",
                htpasswd.display()
            );
            let root = dir.path().join("certs.d");
            std::fs::create_dir_all(root.join(&addr)).unwrap();
            std::fs::copy(&ca, root.join(&addr).join("ca.crt")).unwrap();
            certs_d = Some(root);
            ca_file = Some(ca);
        }
        Mode::MutualTls => {
            let (ca, crt, key) = make_tls(dir.path());
            config += &format!(
                "  tls:\n    certificate: {}\n    key: {}\n    clientcas:\n      - {}\n",
                crt.display(),
                key.display(),
                ca.display()
            );
            // certs.d trusts the server; the test decides whether the client pair is there.
            let root = dir.path().join("certs.d");
            std::fs::create_dir_all(root.join(&addr)).unwrap();
            std::fs::copy(&ca, root.join(&addr).join("ca.crt")).unwrap();
            certs_d = Some(root);
            ca_file = Some(ca);
            client_cert = Some(make_client_cert(dir.path()));
        }
        Mode::Token => {
            let ts = TokenServer::start(dir.path());
            config += &format!(
                "auth:\n  token:\n    realm: http://{}/token\n    service: {TOKEN_SERVICE}\n    issuer: {TOKEN_ISSUER}\n    rootcertbundle: {}\n",
                ts.addr,
                ts.cert.display()
            );
            token_server = Some(ts);
        }
    }
    let config_path = dir.path().join("config.yml");
    std::fs::write(&config_path, config).unwrap();
    let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
    let child = Command::new("docker-registry")
        .arg("serve")
        .arg(&config_path)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("docker-registry is installed");
    let mut reg = TestRegistry {
        child,
        addr,
        mode,
        dir,
        certs_d,
        ca_file,
        token_server,
        client_cert,
    };
    reg.wait_ready();
    reg
}

impl TestRegistry {
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                let log = std::fs::read_to_string(self.dir.path().join("registry.log"))
                    .unwrap_or_default();
                panic!("docker-registry exited with {status}: {log}");
            }
            if let Ok(mut s) = TcpStream::connect(&self.addr) {
                if matches!(self.mode, Mode::BasicTls | Mode::MutualTls) {
                    return; // TLS listener accepting is enough: it serves as soon as it listens.
                }
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let _ = write!(
                    s,
                    "GET /v2/ HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
                    self.addr
                );
                let mut line = String::new();
                if BufReader::new(s).read_line(&mut line).is_ok() && line.starts_with("HTTP/1.1") {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("docker-registry did not answer on {} within 15s", self.addr);
    }

    pub fn options(&self, prefix: &str) -> kiln::registry::PushOptions {
        let mut o = kiln::registry::PushOptions::new(&self.addr);
        o.prefix = prefix.to_string();
        o.retry.base_delay = Duration::from_millis(10);
        o.retry.max_delay = Duration::from_millis(200);
        o.certs_d = Some(self.certs_d.iter().cloned().collect());
        // Never pick up the developer's own credentials: tests say exactly which apply.
        o.credentials = Some(kiln::registry::CredentialSources::default());
        if matches!(self.mode, Mode::BasicTls | Mode::Token) {
            o.credentials = Some(kiln::registry::CredentialSources {
                env: Some(kiln::registry::Credential {
                    username: USER.into(),
                    password: PASSWORD.into(),
                }),
                ..Default::default()
            });
        }
        o
    }

    /// Arguments giving skopeo and podman access.
    pub fn tool_auth_args(&self) -> Vec<String> {
        let mut a = vec!["--tls-verify=false".to_string()];
        if matches!(self.mode, Mode::BasicTls | Mode::Token) {
            a.push(format!("--creds={USER}:{PASSWORD}"));
        }
        a
    }
}

/// A distribution token server: checks Basic credentials and signs ES256 JWTs whose `x5c`
/// carries a certificate the registry trusts through `rootcertbundle`.
pub struct TokenServer {
    pub addr: String,
    pub cert: PathBuf,
    pub requests: Arc<AtomicUsize>,
    /// Every request's line, `Authorization` and body, for checking who sent what.
    pub log: Arc<std::sync::Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(&self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn b64url(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

impl TokenServer {
    fn start(dir: &Path) -> TokenServer {
        let key = dir.join("token.key");
        let cert = dir.join("token.crt");
        run(Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .args(["-days", "2", "-subj", "/CN=kiln token signer"]));
        let der_key = dir.join("token.pk8");
        run(Command::new("openssl")
            .args(["pkcs8", "-topk8", "-nocrypt", "-outform", "DER"])
            .arg("-in")
            .arg(&key)
            .arg("-out")
            .arg(&der_key));
        let der_cert = dir.join("token.der");
        run(Command::new("openssl")
            .args(["x509", "-outform", "DER"])
            .arg("-in")
            .arg(&cert)
            .arg("-out")
            .arg(&der_cert));
        let rng = ring::rand::SystemRandom::new();
        let pair = ring::signature::EcdsaKeyPair::from_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &std::fs::read(&der_key).unwrap(),
            &rng,
        )
        .unwrap();
        let x5c =
            base64::engine::general_purpose::STANDARD.encode(std::fs::read(&der_cert).unwrap());
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(AtomicUsize::new(0));
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (stop2, requests2, log2) = (stop.clone(), requests.clone(), log.clone());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                requests2.fetch_add(1, Ordering::SeqCst);
                let _ = serve_token(conn, &pair, &rng, &x5c, &log2);
            }
        });
        TokenServer {
            addr,
            cert,
            requests,
            log,
            stop,
            thread: Some(thread),
        }
    }
}

fn serve_token(
    conn: TcpStream,
    pair: &ring::signature::EcdsaKeyPair,
    rng: &ring::rand::SystemRandom,
    x5c: &str,
    log: &std::sync::Mutex<Vec<String>>,
) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut authorization = None;
    let mut content_length = 0u64;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("authorization") {
                authorization = Some(v.trim().to_string());
            }
            if k.eq_ignore_ascii_case("content-length") {
                content_length = v.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut form = String::new();
    (&mut reader)
        .take(content_length.min(64 << 10))
        .read_to_string(&mut form)?;
    log.lock().unwrap().push(format!(
        "{} authorization={authorization:?} body={form}",
        request_line.trim()
    ));
    let target = request_line.split_whitespace().nth(1).unwrap_or("/");
    let url = url::Url::parse(&format!("http://x{target}")).unwrap();
    let mut scopes: Vec<String> = url
        .query_pairs()
        .filter(|(k, _)| k == "scope")
        .map(|(_, v)| v.into_owned())
        .collect();
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"))
    );
    let mut conn = conn;
    let mut oauth = false;
    if request_line.starts_with("POST ") {
        // The OAuth2 refresh-token grant: the form names the token and space-separated scopes.
        oauth = true;
        let fields: Vec<(String, String)> = url::form_urlencoded::parse(form.as_bytes())
            .into_owned()
            .collect();
        let field = |k: &str| fields.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        scopes = field("scope")
            .unwrap_or_default()
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        authorization = (field("grant_type").as_deref() == Some("refresh_token")
            && field("refresh_token").as_deref() == Some(REFRESH_TOKEN))
        .then(|| expected.clone())
        .or(Some("rejected".into()));
    }
    let (status, body) = match authorization {
        Some(a) if a != expected => (
            "401 Unauthorized",
            r#"{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}"#.to_string(),
        ),
        auth => {
            // Anonymous callers get a token with no access, as public token services do.
            let access: Vec<serde_json::Value> = if auth.is_some() {
                scopes
                    .iter()
                    .filter_map(|s| {
                        let mut parts = s.splitn(3, ':');
                        let (t, name, actions) = (parts.next()?, parts.next()?, parts.next()?);
                        Some(serde_json::json!({"type": t, "name": name, "actions": actions.split(',').collect::<Vec<_>>()}))
                    })
                    .collect()
            } else {
                Vec::new()
            };
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_secs();
            let header = serde_json::json!({"typ": "JWT", "alg": "ES256", "x5c": [x5c]});
            let claims = serde_json::json!({
                "iss": TOKEN_ISSUER, "sub": USER, "aud": TOKEN_SERVICE,
                "exp": now + 300, "nbf": now - 10, "iat": now - 10,
                "jti": format!("{now}-{}", rand::random::<u64>()), "access": access,
            });
            let signing_input = format!(
                "{}.{}",
                b64url(header.to_string().as_bytes()),
                b64url(claims.to_string().as_bytes())
            );
            let sig = pair.sign(rng, signing_input.as_bytes()).unwrap();
            let jwt = format!("{signing_input}.{}", b64url(sig.as_ref()));
            let body = if oauth {
                serde_json::json!({"access_token": jwt, "expires_in": 300})
            } else {
                serde_json::json!({"token": jwt, "expires_in": 300})
            };
            ("200 OK", body.to_string())
        }
    };
    write!(
        conn,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut rest = Vec::new();
    let _ = reader.take(0).read_to_end(&mut rest);
    Ok(())
}
