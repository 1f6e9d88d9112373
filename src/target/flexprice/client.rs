//! One FlexPrice server: requests with its key, a cap on requests in flight, and retries
//! with exponential backoff and jitter for what FlexPrice calls transient.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use reqwest::{Method, StatusCode, Url};
use serde_json::Value;
use tokio::sync::Semaphore;

use crate::target::RequestStats;

/// The first retry waits about this long; each next one twice as long.
const BACKOFF_BASE: Duration = Duration::from_millis(200);
const BACKOFF_CAP: Duration = Duration::from_secs(20);
/// A `Retry-After` longer than this is cut to it, so a run cannot hang for hours.
const RETRY_AFTER_CAP: Duration = Duration::from_secs(300);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How much of a server's answer goes into a row's error.
const MESSAGE_MAX: usize = 1000;

/// Where and how to reach a FlexPrice server.
#[derive(Clone)]
pub struct ApiConfig {
    /// The base URL, without credentials or a trailing slash.
    pub url: Url,
    pub key: String,
    pub environment_id: Option<String>,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Attempts after the first for a transient failure.
    pub max_retries: u32,
    /// One request's limit, from connecting to the end of the answer.
    pub timeout: Duration,
    /// Events per bulk request (prices are capped at FlexPrice's 100).
    pub batch_size: usize,
}

// The key must never reach a log or an error message.
impl std::fmt::Debug for ApiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiConfig")
            .field("url", &self.url.as_str())
            .field("key", &"<redacted>")
            .field("environment_id", &self.environment_id)
            .field("concurrency", &self.concurrency)
            .finish_non_exhaustive()
    }
}

/// Parses a server URL for the API, dropping any credentials written into it (FlexPrice
/// authenticates with the key header; a password in the URL would end up in the store).
/// The runtime requests to a FlexPrice server run on: two worker threads (the machine's
/// requests wait on the network, not the CPU), named `flexprice-http` for a debugger.
/// Errors: the operating system refused the threads.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    use anyhow::Context;
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("flexprice-http")
        .enable_all()
        .build()
        .context("starting the HTTP runtime")
}

pub fn parse_url(text: &str) -> Result<Url, String> {
    let trimmed = text.trim();
    let mut url = Url::parse(trimmed).map_err(|e| format!("{:?} is not a URL: {e}", redact(trimmed)))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("{} is not an http(s) URL", redact(trimmed)));
    }
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.set_query(None);
    url.set_fragment(None);
    if let Ok(mut segments) = url.path_segments_mut() {
        segments.pop_if_empty();
    }
    Ok(url)
}

/// A parsed base URL as it is shown and recorded: no trailing slash.
pub fn display(url: &Url) -> String {
    url.as_str().trim_end_matches('/').to_owned()
}

/// A URL's text without the user and password it may carry.
pub fn redact(text: &str) -> String {
    match Url::parse(text) {
        Ok(mut url) if !url.username().is_empty() || url.password().is_some() => {
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.to_string()
        }
        Ok(_) => text.to_owned(),
        Err(_) => match text.rfind('@') {
            Some(at) => format!("…{}", &text[at..]),
            None => text.to_owned(),
        },
    }
}

/// A final answer: a success, or a refusal that retrying would not change.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// FlexPrice's error `code` (`not_found`, `database_error`, …), if the body has one.
    pub fn code(&self) -> Option<String> {
        code(&self.body)
    }

    /// The server's message: FlexPrice's `message` (or `error.message`), else the text.
    pub fn message(&self) -> String {
        server_message(self.status, &self.body)
    }
}

/// Why a request has no answer.
#[derive(Debug, Clone, PartialEq)]
pub enum CallError {
    /// Transient failures outlasted the retries; the rows of the request fail with this.
    GaveUp(String),
    /// The request reached the server but its answer was lost, and sending it again could
    /// create its records twice: the rows fail with this, not retried.
    Unknown(String),
    /// The server cannot be used at all (refused key, unreachable): the task fails.
    Fatal(String),
}

pub struct Api {
    http: reqwest::Client,
    pub config: ApiConfig,
    /// The URL as messages show it.
    pub base: String,
    permits: Semaphore,
    /// Some answer came back from the server: a connection refused afterwards is a blip to
    /// retry, before it a wrong URL to report at once.
    reached: AtomicBool,
    /// Once a request finds the server unusable (a refused key), no other is sent.
    fatal: std::sync::Mutex<Option<String>>,
}

impl Api {
    pub fn new(config: ApiConfig) -> Result<Api, String> {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(config.timeout)
            .user_agent(concat!("flexprice-import/", env!("CARGO_PKG_VERSION")))
            // A redirect would resend the key to wherever it points.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("setting up the HTTP client: {e}"))?;
        Ok(Api {
            http,
            base: display(&config.url),
            permits: Semaphore::new(config.concurrency.max(1)),
            config,
            reached: AtomicBool::new(false),
            fatal: std::sync::Mutex::new(None),
        })
    }

    /// The server's URL for a path under it (segments are percent-encoded).
    pub fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.config.url.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// Sends a request, retrying transient failures. `idempotent`: sending it twice does no
    /// harm, so a request whose answer was lost is sent again.
    pub async fn call(
        &self,
        method: Method,
        url: Url,
        body: Option<Vec<u8>>,
        idempotent: bool,
        stats: &mut RequestStats,
    ) -> Result<Answer, CallError> {
        let result = self.call_unless_stopped(method, url, body, idempotent, stats).await;
        if let Err(CallError::Fatal(message)) = &result {
            self.fatal
                .lock()
                .expect("never poisoned: nothing panics holding it")
                .get_or_insert_with(|| message.clone());
        }
        result
    }

    async fn call_unless_stopped(
        &self,
        method: Method,
        url: Url,
        body: Option<Vec<u8>>,
        idempotent: bool,
        stats: &mut RequestStats,
    ) -> Result<Answer, CallError> {
        let what = format!("{method} {}", url.path());
        let mut attempt: u32 = 0;
        loop {
            let permit = self.permits.acquire().await.expect("the semaphore is never closed");
            if let Some(message) = self.fatal.lock().expect("never poisoned").clone() {
                return Err(CallError::Fatal(message));
            }
            stats.requests += 1;
            if attempt > 0 {
                stats.retries += 1;
            }
            let mut request = self
                .http
                .request(method.clone(), url.clone())
                .header("x-api-key", &self.config.key)
                .header("accept", "application/json");
            if let Some(env) = &self.config.environment_id {
                request = request.header("X-Environment-ID", env);
            }
            if let Some(body) = &body {
                request = request.header("content-type", "application/json").body(body.clone());
            }
            let result = match request.send().await {
                Ok(response) => {
                    let status = response.status();
                    let retry_after = retry_after(response.headers(), RETRY_AFTER_CAP);
                    let content_type = response
                        .headers()
                        .get(reqwest::header::CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("none")
                        .to_owned();
                    match response.bytes().await {
                        Ok(bytes) => Ok((status, retry_after, content_type, scrub(&bytes, &self.config.key))),
                        // The status came, the body did not: the server did see the request.
                        Err(e) => Err((false, e.without_url().to_string())),
                    }
                }
                Err(e) => Err((e.is_connect(), describe(&e))),
            };
            drop(permit);
            let exhausted = attempt >= self.config.max_retries;
            let (wait, last) = match result {
                Ok((status, retry_after, content_type, body)) => {
                    self.reached.store(true, Ordering::Relaxed);
                    let message = || format!("{what}: {}", server_message(status, &body));
                    match status.as_u16() {
                        // A gateway in front of FlexPrice may answer these with a page of
                        // its own: they are retried whatever their shape.
                        429 | 408 | 503 => (retry_after, message()),
                        // FlexPrice's `database_error`: the database refused the write (a
                        // unique index, most often) and the transaction was rolled back, so
                        // nothing was stored: an answer, not a lost one.
                        500 if !idempotent && code(&body).as_deref() == Some("database_error") => {
                            return Ok(Answer { status, body })
                        }
                        // A gateway or server failure may come after the work was done.
                        500 | 502 | 504 if !idempotent => return Err(CallError::Unknown(message())),
                        500 | 502 | 504 => (retry_after, message()),
                        // Every other answer of FlexPrice's is JSON (handlers and its auth
                        // middleware alike; gin's plain-text `404 page not found` is a route
                        // that does not exist): anything else is not FlexPrice, and sending
                        // more rows to it would only reject them one by one.
                        _ if !is_json(&body) => {
                            return Err(CallError::Fatal(format!(
                                "{} does not answer as a FlexPrice server: {what} answered {status}, \
                                 content-type {content_type}: {}",
                                self.base,
                                first_line(&body)
                            )))
                        }
                        401 => {
                            return Err(CallError::Fatal(format!(
                                "{} refused the API key: {}",
                                self.base,
                                message()
                            )))
                        }
                        // 403 is a key without access to the environment, a missing
                        // permission or a suspended tenant: the server's reason says which.
                        403 => {
                            return Err(CallError::Fatal(format!(
                                "{} refused the request: {}",
                                self.base,
                                message()
                            )))
                        }
                        _ => return Ok(Answer { status, body }),
                    }
                }
                Err((true, error)) if !self.reached.load(Ordering::Relaxed) => {
                    return Err(CallError::Fatal(format!(
                        "cannot reach the FlexPrice server at {}: {error}",
                        self.base
                    )))
                }
                Err((true, error)) if exhausted => {
                    return Err(CallError::Fatal(format!(
                        "the FlexPrice server at {} stopped answering ({} attempts): {error}",
                        self.base,
                        attempt + 1
                    )))
                }
                Err((true, error)) => (None, error),
                Err((false, error)) if !idempotent => {
                    return Err(CallError::Unknown(format!("{what}: {error}")));
                }
                Err((false, error)) => (None, format!("{what}: {error}")),
            };
            if exhausted {
                return Err(CallError::GaveUp(format!(
                    "{last} (gave up after {} attempts)",
                    attempt + 1
                )));
            }
            tokio::time::sleep(wait.unwrap_or_else(|| backoff(attempt))).await;
            attempt += 1;
        }
    }
}

impl Api {
    /// Whether the key is bound to an environment of its own (a key stored in FlexPrice: the
    /// server ignores `X-Environment-ID` for it), found by one request without the header:
    /// a key that needs the header answers 403 "Invalid or inaccessible environment"
    /// (`internal/rest/middleware/auth.go`). Any other failure answers `false`, so that the
    /// ledger keeps environments apart rather than skip records another one never got.
    pub async fn key_is_bound(&self) -> bool {
        let mut url = self.url(&["v1", "features"]);
        url.query_pairs_mut().append_pair("limit", "1");
        let request = self
            .http
            .get(url)
            .header("x-api-key", &self.config.key)
            .header("accept", "application/json");
        match request.send().await {
            Ok(response) => response.status().is_success(),
            Err(_) => false,
        }
    }
}

/// Exponential backoff with jitter: between half and all of base·2ⁿ, capped.
pub fn backoff(attempt: u32) -> Duration {
    let full = BACKOFF_BASE.saturating_mul(1u32 << attempt.min(16)).min(BACKOFF_CAP);
    full.mul_f64(0.5 + fastrand::f64() * 0.5)
}

/// `Retry-After` in seconds or as an HTTP date, capped at `cap`.
pub fn retry_after(headers: &reqwest::header::HeaderMap, cap: Duration) -> Option<Duration> {
    let text = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
    let wait = match text.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => httpdate::parse_http_date(text)
            .ok()?
            .duration_since(std::time::SystemTime::now())
            .unwrap_or_default(),
    };
    Some(wait.min(cap))
}

/// What the key becomes in an answer that echoes it.
pub const KEY_SCRUBBED: &str = "[api key]";

/// An answer's body with every occurrence of the key replaced, before anything reads it: a
/// server or proxy that echoes the key (`{"error":"invalid api key sk_…"}`) would otherwise
/// put it in rows' errors, the task's error summary, `inspect` and `--json`.
pub fn scrub(body: &[u8], key: &str) -> Vec<u8> {
    let key = key.as_bytes();
    // A key this short would match innocent text; the tool refuses an empty key anyway.
    if key.len() < 4 || body.len() < key.len() {
        return body.to_vec();
    }
    let mut out = Vec::with_capacity(body.len());
    let mut rest = body;
    while let Some(at) = rest.windows(key.len()).position(|w| w == key) {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(KEY_SCRUBBED.as_bytes());
        rest = &rest[at + key.len()..];
    }
    out.extend_from_slice(rest);
    out
}

fn code(body: &[u8]) -> Option<String> {
    let value: Value = serde_json::from_slice(body).ok()?;
    value.get("code")?.as_str().map(str::to_owned)
}

/// Whether a body is a JSON object, as every answer of FlexPrice's is.
fn is_json(body: &[u8]) -> bool {
    matches!(serde_json::from_slice::<Value>(body), Ok(Value::Object(_)))
}

/// A foreign answer's first non-blank line, cut short, for the task's error.
fn first_line(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("(empty body)");
    cut(line, 200)
}

fn cut(text: &str, max: usize) -> String {
    if text.chars().count() > max {
        text.chars().take(max).chain("…".chars()).collect()
    } else {
        text.to_owned()
    }
}

fn describe(e: &reqwest::Error) -> String {
    use std::error::Error;
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    // The innermost cause says what happened (refused, reset); the URL is left out, since
    // the message already names the server.
    let mut cause: &dyn Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    format!("{kind}: {cause}")
}

/// The server's reason, cut short: FlexPrice's handler errors give `message` and, for a
/// validation failure, the field-level reasons in `details` keyed by Go field name (shown as
/// `message (Field: reason; …)`); its auth middleware gives `error` and/or `message`
/// (`Access denied: Invalid or inaccessible environment`). Else the body's text.
pub fn server_message(status: StatusCode, body: &[u8]) -> String {
    let from_json = serde_json::from_slice::<Value>(body).ok().and_then(|v| {
        let message = v.get("message").and_then(Value::as_str);
        let error = v
            .get("error")
            .and_then(Value::as_str)
            .or_else(|| v.pointer("/error/message").and_then(Value::as_str));
        let mut text = match (error, message) {
            (Some(e), Some(m)) if e != m => format!("{e}: {m}"),
            (_, Some(m)) => m.to_owned(),
            (Some(e), None) => e.to_owned(),
            (None, None) => return None,
        };
        if let Some(details) = v.get("details").and_then(Value::as_object).filter(|d| !d.is_empty()) {
            let reasons: Vec<String> = details
                .iter()
                .map(|(field, reason)| match reason {
                    Value::String(r) => format!("{field}: {r}"),
                    other => format!("{field}: {other}"),
                })
                .collect();
            text = format!("{text} ({})", reasons.join("; "));
        }
        Some(text)
    });
    let text = from_json.unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_owned());
    let text = cut(&text, MESSAGE_MAX);
    if text.is_empty() {
        status.to_string()
    } else {
        format!("{status}: {text}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_stay_in_a_url() {
        let url = parse_url("https://user:secret@api.example.com/base/?x=1").unwrap();
        assert_eq!(url.as_str(), "https://api.example.com/base");
        assert_eq!(redact("https://u:p@h.example/x"), "https://h.example/x");
        assert!(parse_url("ftp://h").unwrap_err().contains("not an http"));
    }

    #[test]
    fn an_echoed_key_is_scrubbed_from_the_answer() {
        assert_eq!(
            scrub(br#"{"error":"invalid api key sk_123, sk_123!"}"#, "sk_123"),
            br#"{"error":"invalid api key [api key], [api key]!"}"#.to_vec()
        );
        assert_eq!(scrub(b"nothing here", "sk_123"), b"nothing here".to_vec());
    }

    #[test]
    fn backoff_grows_with_jitter_and_a_cap() {
        for attempt in 0..20 {
            let d = backoff(attempt);
            let full = BACKOFF_BASE.saturating_mul(1 << attempt.min(16)).min(BACKOFF_CAP);
            assert!(d >= full / 2 && d <= full, "{attempt}: {d:?}");
        }
    }

    #[test]
    fn flexprice_error_messages_are_read() {
        let status = StatusCode::BAD_REQUEST;
        assert_eq!(
            server_message(
                status,
                br#"{"code":"validation_error","message":"event_name is required","http_status_code":400}"#
            ),
            "400 Bad Request: event_name is required"
        );
        assert_eq!(
            server_message(status, br#"{"success":false,"error":{"message":"bad"}}"#),
            "400 Bad Request: bad"
        );
        assert_eq!(server_message(status, b""), "400 Bad Request");
        assert_eq!(
            server_message(
                status,
                br#"{"code":"validation_error","message":"Request validation failed","http_status_code":400,
                     "details":{"EventName":"required","Timestamp":"bad"}}"#
            ),
            "400 Bad Request: Request validation failed (EventName: required; Timestamp: bad)"
        );
        assert_eq!(
            server_message(
                StatusCode::FORBIDDEN,
                br#"{"error":"Access denied","message":"Invalid or inaccessible environment"}"#
            ),
            "403 Forbidden: Access denied: Invalid or inaccessible environment"
        );
    }
}
