//! The retry layer: connection failures, 429 and 5xx are tried again with exponential backoff
//! and jitter, `Retry-After` as a floor, bounded in attempts and in total time. Requests that
//! opt out (upload PATCH and the closing PUT) get exactly one attempt.

use std::time::{Duration, Instant, SystemTime};

use rand::Rng as _;
use reqwest::blocking::Response;
use reqwest::header::{HeaderMap, AUTHORIZATION, RETRY_AFTER};
use reqwest::{Method, StatusCode};

use super::{status_error, Request, Transport};
use crate::registry::error::{redact_url, transport_message, RegistryError};

/// How failed requests are retried. Tests shrink `base_delay` to keep runs short.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Attempts per request, including the first.
    pub attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// No retry starts once this much time has passed since the first attempt.
    pub max_total: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 6,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(20),
            max_total: Duration::from_secs(180),
        }
    }
}

impl RetryPolicy {
    /// Delay before retry number `attempt` (0-based): exponential, with "equal jitter" so that
    /// parallel uploads failing together do not retry in lockstep; a `Retry-After` is a floor.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.max_delay);
        let half = exp / 2;
        let jitter = if half.is_zero() {
            Duration::ZERO
        } else {
            rand::thread_rng().gen_range(Duration::ZERO..=half)
        };
        let d = half + jitter;
        match retry_after {
            Some(ra) => d.max(ra),
            None => d,
        }
    }
}

impl Transport {
    /// Sends with retries on transport errors, 429 and 5xx (when the request allows them).
    pub(super) fn attempt_loop(
        &self,
        req: &Request,
        auth: Option<&str>,
    ) -> Result<Response, RegistryError> {
        let start = Instant::now();
        let method = req.method.to_string();
        let mut attempt = 0u32;
        loop {
            let body = req
                .body
                .to_reqwest()
                .map_err(|e| RegistryError::Setup(format!("reading request body: {e}")))?;
            let mut builder = self
                .client
                .request(req.method.clone(), &req.url)
                .headers(req.headers.clone());
            if let Some(a) = auth {
                builder = builder.header(AUTHORIZATION, a);
            }
            if req.body.len() > 0
                || matches!(req.method, Method::PUT | Method::PATCH | Method::POST)
            {
                builder = builder.body(body);
            }
            let outcome = builder.send();
            let (retry_after, err) = match outcome {
                Ok(resp) if is_transient(resp.status()) => {
                    let ra = retry_after(resp.headers(), SystemTime::now());
                    (ra, status_error(&method, &req.url, resp))
                }
                Ok(resp) => return Ok(resp),
                Err(e) => (
                    None,
                    RegistryError::Transport {
                        method: method.clone(),
                        url: redact_url(&req.url),
                        message: transport_message(e),
                    },
                ),
            };
            attempt += 1;
            if !req.retry || attempt >= self.retry.attempts {
                return Err(err);
            }
            let delay = self.retry.delay(attempt - 1, retry_after);
            if start.elapsed() + delay > self.retry.max_total {
                return Err(err);
            }
            std::thread::sleep(delay);
        }
    }
}

pub fn is_transient(status: StatusCode) -> bool {
    status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS
}

/// `Retry-After` as delay-seconds or as an HTTP-date (RFC 9110 §10.2.3), relative to `now`; a
/// date already past means "now". Capped at an hour: a hostile value must not park a push.
fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let d = match v.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => {
            let at = httpdate::parse_http_date(v).ok()?;
            at.duration_since(now).unwrap_or(Duration::ZERO)
        }
    };
    Some(d.min(Duration::from_secs(3600)))
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;

    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_honours_retry_after() {
        let p = RetryPolicy {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
            ..Default::default()
        };
        for attempt in 0..10 {
            let d = p.delay(attempt, None);
            let exp =
                Duration::from_millis(100 * (1 << attempt.min(4))).min(Duration::from_millis(1000));
            assert!(
                d >= exp / 2 && d <= exp,
                "attempt {attempt}: {d:?} not in [{:?}, {exp:?}]",
                exp / 2
            );
        }
        assert!(p.delay(0, Some(Duration::from_secs(2))) >= Duration::from_secs(2));
    }

    #[test]
    fn retry_after_takes_seconds_and_http_dates() {
        // 2015-10-21T07:28:00Z
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480);
        let at = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(RETRY_AFTER, HeaderValue::from_static(v));
            retry_after(&h, now)
        };
        assert_eq!(at("3"), Some(Duration::from_secs(3)));
        assert_eq!(
            at("Wed, 21 Oct 2015 07:28:07 GMT"),
            Some(Duration::from_secs(7))
        );
        // The obsolete forms RFC 9110 still requires recipients to accept.
        assert_eq!(
            at("Wednesday, 21-Oct-15 07:28:30 GMT"),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            at("Wed Oct 21 07:29:00 2015"),
            Some(Duration::from_secs(60))
        );
        assert_eq!(at("Wed, 21 Oct 2015 07:00:00 GMT"), Some(Duration::ZERO));
        assert_eq!(at("999999999"), Some(Duration::from_secs(3600)));
        assert_eq!(at("soon"), None);
    }
}
