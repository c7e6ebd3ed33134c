//! A registry that tries to take what it should not, or answers what it should not: kiln's
//! credentials stay on the registry's own origin and its token realm, and hostile answers end
//! in clear, bounded errors. The real distribution registry sits behind `hostile_front`, a
//! recording front that redirects to a second loopback address (standing for object storage,
//! as S3-backed registries use) or misbehaves on purpose.

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use kiln::registry::{self, Credential, CredentialSources, PushImage, PushOptions};
use support::hostile_front::{self, basic, reply, Action, Config, Front};
use support::registry_images;
use support::registry_server::{start, Mode, PASSWORD, REFRESH_TOKEN, USER};

fn api_image(tags: &[&str]) -> PushImage {
    PushImage {
        service: "api".into(),
        layout: registry_images::images().api.clone(),
        tags: tags.iter().map(|t| t.to_string()).collect(),
    }
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str("\n  caused by: ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

fn options(addr: &str, prefix: &str, cred: Option<Credential>) -> PushOptions {
    let mut o = PushOptions::new(addr);
    o.prefix = prefix.into();
    o.jobs = 2;
    o.retry.base_delay = Duration::from_millis(10);
    o.retry.max_delay = Duration::from_millis(200);
    o.retry.attempts = 2;
    o.certs_d = Some(Vec::new());
    o.credentials = Some(CredentialSources {
        env: cred,
        ..Default::default()
    });
    o
}

fn user_cred(password: &str) -> Option<Credential> {
    Some(Credential {
        username: USER.into(),
        password: password.into(),
    })
}

/// A front at 127.0.0.1 for `upstream` that sends every upload session and every blob HEAD to
/// `storage` (another loopback address), the way S3-backed registries send clients to S3.
fn redirecting_front(
    upstream: &str,
    storage: &Front,
    decide: impl Fn(&hostile_front::Seen) -> Option<Action> + Send + Sync + 'static,
) -> Front {
    redirecting_front_recording(upstream, storage, decide, None)
}

/// [`redirecting_front`], recording the clients' last `Authorization` in `record`.
fn redirecting_front_recording(
    upstream: &str,
    storage: &Front,
    decide: impl Fn(&hostile_front::Seen) -> Option<Action> + Send + Sync + 'static,
    record: Option<Arc<Mutex<Option<String>>>>,
) -> Front {
    let storage_base = format!("http://{}", storage.addr);
    let redirect_base = storage_base.clone();
    hostile_front::start(Config {
        decide: Box::new(move |seen| {
            if let Some(a) = decide(seen) {
                return a;
            }
            if seen.method == "HEAD" && seen.target.contains("/blobs/sha256:") {
                return Action::Reply(
                    format!(
                        "HTTP/1.1 307 Temporary Redirect\r\nLocation: {redirect_base}{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                        seen.target
                    )
                    .into_bytes(),
                );
            }
            Action::Forward
        }),
        edit: Box::new(move |_, resp| {
            if let Some(loc) = resp.header("Location").map(str::to_string) {
                if let Some(i) = loc.find("/v2/") {
                    resp.set_header("Location", &format!("{storage_base}{}", &loc[i..]));
                }
            }
        }),
        record_auth: record,
        ..Config::forward("127.0.0.1", upstream)
    })
}

/// Asserts that storage served real traffic and never saw an `Authorization` header.
fn assert_storage_saw_no_credentials(storage: &Front) {
    let seen = storage.seen();
    assert!(
        seen.iter()
            .any(|s| s.method == "PATCH" || s.method == "PUT"),
        "uploads went to storage: {:?}",
        seen.iter()
            .map(|s| (&s.method, &s.target))
            .collect::<Vec<_>>()
    );
    assert!(
        seen.iter().any(|s| s.method == "HEAD"),
        "blob checks were redirected to storage"
    );
    for s in &seen {
        assert_eq!(
            s.authorization, None,
            "{} {} reached storage with credentials",
            s.method, s.target
        );
    }
}

#[test]
fn basic_credentials_stay_on_the_registry_when_uploads_and_blob_checks_go_to_storage() {
    let reg = start(Mode::Plain);
    let storage = hostile_front::start(Config::forward("127.0.0.2", &reg.addr));
    // The front plays a Basic-auth registry: it refuses anything without the right password.
    let expected = basic(USER, PASSWORD);
    let front = redirecting_front(&reg.addr, &storage, move |seen| {
        (seen.authorization.as_deref() != Some(expected.as_str())).then(|| {
            Action::Reply(reply(
                "401 Unauthorized",
                "WWW-Authenticate: Basic realm=\"kiln-test\"\r\n",
                r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
            ))
        })
    });
    let opts = options(&front.addr, "s3", user_cred(PASSWORD));
    let report = registry::push_all(&opts, &[api_image(&["v1"])])
        .remove(0)
        .unwrap_or_else(|e| panic!("{}", chain(&e)));
    assert_eq!(report.uploaded_blobs, 4, "{report:?}");
    assert_storage_saw_no_credentials(&storage);
    // The registry itself did get the credentials, on every request after the first.
    assert!(front
        .seen()
        .iter()
        .any(|s| s.authorization.as_deref() == Some(basic(USER, PASSWORD).as_str())));
}

#[test]
fn with_a_token_service_the_realm_gets_the_password_and_the_registry_only_tokens() {
    let reg = start(Mode::Token);
    let storage_auth = Arc::new(Mutex::new(None));
    let storage = hostile_front::start(Config {
        inject_auth: Some(storage_auth.clone()),
        ..Config::forward("127.0.0.2", &reg.addr)
    });
    // Storage "checks the URL signature": here, by forwarding with the token the client last
    // gave the registry's front, shared with it directly (no copy that could lag behind).
    let front =
        redirecting_front_recording(&reg.addr, &storage, |_| None, Some(storage_auth.clone()));
    let opts = options(&front.addr, "tok", user_cred(PASSWORD));
    registry::push_all(&opts, &[api_image(&["v1"])])
        .remove(0)
        .unwrap_or_else(|e| panic!("{}", chain(&e)));
    assert_storage_saw_no_credentials(&storage);
    for s in front.seen() {
        if let Some(a) = &s.authorization {
            assert!(
                a.starts_with("Bearer "),
                "{} {} got {a}",
                s.method,
                s.target
            );
        }
        let raw = String::from_utf8_lossy(&s.raw);
        assert!(!raw.contains(PASSWORD), "the registry saw the password");
    }
    let ts = reg.token_server.as_ref().unwrap();
    let log = ts.log.lock().unwrap().clone();
    assert!(!log.is_empty());
    for line in &log {
        assert!(
            line.contains(&format!("authorization=Some({:?})", basic(USER, PASSWORD))),
            "the realm got exactly the registry's credentials: {line}"
        );
    }
}

#[test]
fn an_identity_token_is_exchanged_at_the_realm_and_never_sent_to_the_registry() {
    let reg = start(Mode::Token);
    let front = hostile_front::start(Config::forward("127.0.0.1", &reg.addr));
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.json");
    let write = |token: &str| {
        let v = serde_json::json!({"auths": {front.addr.clone(): {
            "auth": base64::engine::general_purpose::STANDARD.encode(format!("{USER}:")),
            "identitytoken": token,
        }}});
        std::fs::write(&config, v.to_string()).unwrap();
    };
    write(REFRESH_TOKEN);
    let mut opts = options(&front.addr, "oauth", None);
    opts.credentials = Some(CredentialSources {
        docker_config: Some(config.clone()),
        ..Default::default()
    });
    let report = registry::push_all(&opts, &[api_image(&["v1"])]).remove(0);
    report.unwrap_or_else(|e| panic!("{}", chain(&e)));
    let log = reg
        .token_server
        .as_ref()
        .unwrap()
        .log
        .lock()
        .unwrap()
        .clone();
    assert!(
        log.iter().all(|l| l.starts_with("POST ")
            && l.contains("grant_type=refresh_token")
            && l.contains("authorization=None")),
        "{log:#?}"
    );
    for s in front.seen() {
        let raw = String::from_utf8_lossy(&s.raw);
        assert!(
            !raw.contains(REFRESH_TOKEN),
            "the registry saw the refresh token"
        );
        if let Some(a) = &s.authorization {
            assert!(a.starts_with("Bearer "), "{a}");
        }
    }

    // A revoked token fails clearly, without echoing the token.
    write("revoked-token-123");
    let err = registry::push_all(&opts, &[api_image(&["v2"])])
        .remove(0)
        .unwrap_err();
    let text = chain(&err);
    assert!(text.contains("rejected the identity token"), "{text}");
    assert!(!text.contains("revoked-token-123"), "{text}");
}

#[test]
fn a_loopback_registry_cannot_send_credentials_to_a_plain_http_realm_elsewhere() {
    let reg = start(Mode::Plain);
    let front = hostile_front::start(Config {
        decide: Box::new(|_| {
            Action::Reply(reply(
                "401 Unauthorized",
                "WWW-Authenticate: Bearer realm=\"http://auth.kiln.invalid/token\",service=\"x\"\r\n",
                "{}",
            ))
        }),
        ..Config::forward("127.0.0.1", &reg.addr)
    });
    let opts = options(&front.addr, "realm", user_cred(PASSWORD));
    let err = registry::push_all(&opts, &[api_image(&["v1"])])
        .remove(0)
        .unwrap_err();
    let text = chain(&err);
    assert!(text.contains("refusing a plain-HTTP token realm"), "{text}");
    assert!(text.contains("auth.kiln.invalid"), "{text}");
    assert!(!text.contains(PASSWORD), "{text}");
}

#[test]
fn an_insecure_remote_registry_may_use_a_plain_http_realm_only_on_its_own_host() {
    let reg = start(Mode::Plain);
    // Token services that record who called; both refuse, since only the call matters here.
    let token = || {
        hostile_front::start(Config {
            decide: Box::new(|_| Action::Reply(reply("401 Unauthorized", "", "{}"))),
            ..Config::forward("127.0.0.1", &reg.addr)
        })
    };
    let (elsewhere, own_host) = (token(), token());
    let port = |f: &Front| f.addr.rsplit(':').next().unwrap().to_string();
    let cases = [
        (
            format!("http://auth.kiln.test:{}/token", port(&elsewhere)),
            &elsewhere,
            false,
        ),
        (
            format!("http://registry.kiln.test:{}/token", port(&own_host)),
            &own_host,
            true,
        ),
    ];
    for (realm, token_front, allowed) in cases {
        let challenge = format!("WWW-Authenticate: Bearer realm=\"{realm}\",service=\"x\"\r\n");
        let front = hostile_front::start(Config {
            decide: Box::new(move |_| Action::Reply(reply("401 Unauthorized", &challenge, "{}"))),
            ..Config::forward("127.0.0.1", &reg.addr)
        });
        // The names are not loopback to kiln; only the resolver override knows where they are.
        let registry = format!("registry.kiln.test:{}", port(&front));
        let mut opts = options(&registry, "remote", user_cred(PASSWORD));
        opts.insecure_registries = vec![registry.clone()];
        let lo: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
        opts.resolve = vec![
            ("registry.kiln.test".into(), lo),
            ("auth.kiln.test".into(), lo),
        ];
        let text = chain(
            &registry::push_all(&opts, &[api_image(&["v1"])])
                .remove(0)
                .unwrap_err(),
        );
        let calls = token_front.seen();
        if allowed {
            assert!(text.contains("rejected the credentials"), "{text}");
            assert_eq!(
                calls.last().and_then(|s| s.authorization.clone()),
                Some(basic(USER, PASSWORD)),
                "the insecure registry's own realm got the credentials"
            );
        } else {
            assert!(text.contains("refusing a plain-HTTP token realm"), "{text}");
            assert!(calls.is_empty(), "nothing was sent to {realm}");
        }
        assert!(!text.contains(PASSWORD), "{text}");
    }
}

#[test]
fn client_certificates_come_from_certs_d() {
    let reg = start(Mode::MutualTls);
    let certs_d = reg.certs_d.clone().unwrap();
    let mut opts = options(&reg.addr, "mtls", None);
    opts.certs_d = Some(vec![certs_d.clone()]);
    // Without the client pair the registry refuses the handshake.
    let err = registry::push_all(&opts, &[api_image(&["v1"])])
        .remove(0)
        .unwrap_err();
    assert!(chain(&err).contains(&reg.addr), "{}", chain(&err));
    // A certificate without its key is a setup error that names both files.
    let (cert, key) = reg.client_cert.clone().unwrap();
    let dir = certs_d.join(&reg.addr);
    std::fs::copy(&cert, dir.join("client.cert")).unwrap();
    let text = chain(
        &registry::push_all(&opts, &[api_image(&["v1"])])
            .remove(0)
            .unwrap_err(),
    );
    assert!(
        text.contains("client.cert") && text.contains("client.key"),
        "{text}"
    );
    std::fs::copy(&key, dir.join("client.key")).unwrap();
    let report = registry::push_all(&opts, &[api_image(&["v1"])])
        .remove(0)
        .unwrap_or_else(|e| panic!("{}", chain(&e)));
    assert_eq!(report.uploaded_blobs, 4);
}

/// The push error, checked to name the registry, the repository and (when given) a digest.
fn push_error(opts: &PushOptions, digest: Option<&str>) -> String {
    let err = registry::push_all(opts, &[api_image(&["v1"])])
        .remove(0)
        .unwrap_err();
    let text = chain(&err);
    assert!(text.contains(&opts.registry), "{text}");
    assert!(text.contains(&format!("{}/api", opts.prefix)), "{text}");
    if let Some(d) = digest {
        assert!(text.contains(d), "{text}");
    }
    text
}

#[test]
fn a_manifest_answer_with_the_wrong_digest_fails_naming_the_digest() {
    let reg = start(Mode::Plain);
    let front = hostile_front::start(Config {
        edit: Box::new(|seen, resp| {
            if seen.method == "PUT" && seen.target.contains("/manifests/") {
                resp.set_header(
                    "Docker-Content-Digest",
                    &format!("sha256:{}", "0".repeat(64)),
                );
            }
        }),
        ..Config::forward("127.0.0.1", &reg.addr)
    });
    let opts = options(&front.addr, "lie", None);
    let layout = registry::layout::read_layout(&registry_images::images().api).unwrap();
    let manifest = layout.manifests.last().unwrap().digest.to_string();
    let text = push_error(&opts, Some(&manifest));
    assert!(text.contains(&"0".repeat(64)), "{text}");
}

#[test]
fn malformed_endless_and_oversized_answers_end_in_bounded_errors() {
    let reg = start(Mode::Plain);
    let layout = registry::layout::read_layout(&registry_images::images().api).unwrap();
    let manifest = layout.manifests.last().unwrap().digest.to_string();
    // One front per misbehaviour, each on the manifest PUT (after every blob went up).
    type MakeAction = Box<dyn Fn() -> Action + Send + Sync>;
    let cases: Vec<(&str, MakeAction, &str)> = vec![
        (
            "malformed",
            Box::new(|| Action::Reply(reply("400 Bad Request", "", "{\"errors\":[{\"code\":"))),
            "HTTP 400",
        ),
        (
            "endless",
            Box::new(|| Action::Endless("HTTP/1.1 400 Bad Request\r\n".into())),
            "HTTP 400",
        ),
    ];
    for (name, action, expect) in cases {
        let action = Arc::new(action);
        let front = hostile_front::start(Config {
            decide: Box::new(move |seen| {
                if seen.method == "PUT" && seen.target.contains("/manifests/") {
                    action()
                } else {
                    Action::Forward
                }
            }),
            ..Config::forward("127.0.0.1", &reg.addr)
        });
        let opts = options(&front.addr, name, None);
        let text = push_error(&opts, Some(&manifest));
        assert!(text.contains(expect), "{name}: {text}");
    }

    // Bodies kiln reads whole: a referrers index announced at 10 GB, one that never ends, and
    // one far larger than announced.
    let subject: kiln::digest::Digest = manifest.parse().unwrap();
    let cases: Vec<(&str, Action, &str)> = vec![
        (
            "announced",
            Action::Reply(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.index.v1+json\r\nContent-Length: 10000000000\r\nConnection: close\r\n\r\n{}".to_vec(),
            ),
            "response body of 10000000000 bytes is over the 4194304-byte limit",
        ),
        (
            "endless",
            Action::Endless("HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.index.v1+json\r\n".into()),
            "over the 4194304-byte limit",
        ),
        (
            "understated",
            Action::Reply(
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: 20\r\nConnection: close\r\n\r\n{{\"manifests\":[{}]}}",
                    "{},".repeat(1 << 20)
                )
                .into_bytes(),
            ),
            "referrers index does not parse",
        ),
    ];
    for (name, action, expect) in cases {
        let action = Mutex::new(Some(action));
        let front = hostile_front::start(Config {
            decide: Box::new(move |seen| {
                if seen.target.contains("/referrers/") {
                    action.lock().unwrap().take().unwrap_or(Action::Forward)
                } else {
                    Action::Forward
                }
            }),
            ..Config::forward("127.0.0.1", &reg.addr)
        });
        let opts = options(&front.addr, name, None);
        let err = registry::list_referrers(&opts, "api", &subject, None).unwrap_err();
        let text = chain(&err);
        assert!(text.contains(expect), "{name}: {text}");
        assert!(
            text.contains(&front.addr) && text.contains(&subject.to_string()),
            "{text}"
        );
    }
}

#[test]
fn a_token_answer_that_stalls_ends_with_the_request_timeout() {
    let reg = start(Mode::Plain);
    let token = hostile_front::start(Config {
        decide: Box::new(|_| Action::Stall("HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n".into())),
        ..Config::forward("127.0.0.2", &reg.addr)
    });
    let realm = format!("http://{}/token", token.addr);
    let front = hostile_front::start(Config {
        decide: Box::new(move |seen| {
            if seen.authorization.is_none() {
                Action::Reply(reply(
                    "401 Unauthorized",
                    &format!("WWW-Authenticate: Bearer realm=\"{realm}\",service=\"x\"\r\n"),
                    "{}",
                ))
            } else {
                Action::Forward
            }
        }),
        ..Config::forward("127.0.0.1", &reg.addr)
    });
    let mut opts = options(&front.addr, "stall", user_cred(PASSWORD));
    opts.request_timeout = Some(Duration::from_secs(2));
    let started = Instant::now();
    let err = registry::push_all(&opts, &[api_image(&["v1"])])
        .remove(0)
        .unwrap_err();
    let text = chain(&err);
    assert!(
        text.contains(&token.addr) && text.contains("reading the response body"),
        "{text}"
    );
    // Generous: two attempts of a 2 s timeout each, on a loaded machine.
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
}
