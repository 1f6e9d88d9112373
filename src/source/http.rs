//! Downloads streamed as they are read: never a copy of the whole file in memory or on disk.
//! A request that fails before the first byte is retried; a connection that breaks off later
//! is picked up with a Range request where the server takes them.

use std::io::{self, Read};
use std::time::Duration;

use anyhow::{anyhow, Result};
use reqwest::blocking::{Client, Response};
use reqwest::header::{ACCEPT_RANGES, CONTENT_LENGTH, CONTENT_RANGE, ETAG, IF_RANGE, LAST_MODIFIED, RANGE};
use reqwest::StatusCode;

use super::guard::Guard;
use super::{links, Raw};
use crate::target::flexprice::client::{backoff, retry_after};

/// Attempts of a request that fails before its first byte.
const ATTEMPTS: u32 = 5;
/// Times a broken-off download is picked up again with a Range request.
const RECONNECTS: u32 = 5;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long one read may wait for bytes.
const READ_TIMEOUT: Duration = Duration::from_secs(60);
const RETRY_AFTER_CAP: Duration = Duration::from_secs(30);

/// A download in progress.
pub struct Download {
    client: Client,
    /// As given, credentials included, for the requests.
    url: String,
    /// Without credentials, for messages.
    shown: String,
    response: Response,
    /// The resource's whole length, when the server says.
    pub size: Option<u64>,
    pub fingerprint: Option<(u64, i64)>,
    /// The server takes Range requests.
    pub ranges: bool,
    validator: Option<String>,
    /// Where in the resource the next byte read is.
    pos: u64,
    /// Where the current response's body ends in the resource (its start plus its
    /// Content-Length), when the server says: a body that ends before it broke off.
    end: Option<u64>,
    reconnects: u32,
    /// For a guarded download: the most bytes, and when it must be done.
    limits: Option<(u64, std::time::Instant)>,
}

/// A client for `url`. With a guard: the URL is checked, the connection pinned to the
/// addresses checked, and redirects kept to the same host.
fn client(url: &str, guard: Option<&Guard>) -> Result<Client> {
    let mut builder = Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(READ_TIMEOUT)
        .user_agent(concat!("flexprice-import/", env!("CARGO_PKG_VERSION")));
    if let Some(guard) = guard {
        let (checked, addrs) = guard.check(url).map_err(|e| anyhow!("{}: {e}", links::redact(url)))?;
        let host = checked.host_str().unwrap_or_default().to_owned();
        builder = builder
            .resolve_to_addrs(&host, &addrs)
            .redirect(reqwest::redirect::Policy::custom(move |attempt| {
                if attempt.previous().len() >= 5 {
                    attempt.error("too many redirects")
                } else if attempt.url().host_str() != Some(host.as_str()) {
                    let to = attempt.url().host_str().unwrap_or("?").to_owned();
                    attempt.error(format!("a redirect to another host ({to}) is refused"))
                } else {
                    attempt.follow()
                }
            }));
    }
    builder.build().map_err(|e| anyhow!("setting up the HTTP client: {e}"))
}

/// Starts a download from the first byte (`head`: only the first bytes are wanted).
pub fn open(url: &str, head: Option<u64>, guard: Option<&Guard>) -> Result<Download> {
    let client = client(url, guard)?;
    let range = head.map(|n| format!("bytes=0-{}", n.saturating_sub(1)));
    let response = get(&client, url, range.as_deref(), None)?;
    let mut download = Download::new(client, url, response, 0);
    download.limits = guard.map(|g| {
        (
            g.max_bytes,
            std::time::Instant::now() + Duration::from_secs(g.max_seconds),
        )
    });
    Ok(download)
}

/// Continues a download at byte `from` with a Range request, if the server takes it and the
/// content is the one `fingerprint` describes; `None` when it answers with the whole file.
pub fn open_range(
    url: &str,
    from: u64,
    fingerprint: Option<(u64, i64)>,
    guard: Option<&Guard>,
) -> Result<Option<Download>> {
    let client = client(url, guard)?;
    let probe = open(url, Some(1), guard)?;
    if !probe.ranges || probe.fingerprint != fingerprint {
        return Ok(None);
    }
    let validator = probe.validator.clone();
    drop(probe);
    let response = get(&client, url, Some(&format!("bytes={from}-")), validator.as_deref())?;
    if response.status() != StatusCode::PARTIAL_CONTENT || range_start(&response) != Some(from) {
        return Ok(None);
    }
    let mut download = Download::new(client, url, response, from);
    download.limits = guard.map(|g| {
        (
            g.max_bytes,
            std::time::Instant::now() + Duration::from_secs(g.max_seconds),
        )
    });
    Ok(Some(download))
}

/// A GET retried while it fails before its first byte: connection errors, timeouts, 408, 429
/// (after `Retry-After`) and 5xx. Other statuses are errors at once.
fn get(client: &Client, url: &str, range: Option<&str>, if_range: Option<&str>) -> Result<Response> {
    let shown = links::redact(url);
    let mut attempt = 0;
    loop {
        let mut request = client.get(url);
        if let Some(range) = range {
            request = request.header(RANGE, range);
        }
        if let Some(validator) = if_range {
            request = request.header(IF_RANGE, validator);
        }
        let (wait, problem) = match request.send() {
            Ok(response) if response.status().is_success() => return Ok(response),
            Ok(response) => {
                let status = response.status();
                let retry = status.is_server_error()
                    || status == StatusCode::TOO_MANY_REQUESTS
                    || status == StatusCode::REQUEST_TIMEOUT;
                if !retry {
                    return Err(anyhow!("GET {shown}: {status}"));
                }
                let wait = retry_after(response.headers(), RETRY_AFTER_CAP);
                (wait, status.to_string())
            }
            // A refused redirect would be refused again.
            Err(e) if e.is_redirect() => return Err(anyhow!("GET {shown}: {}", chain(e))),
            Err(e) => (None, chain(e)),
        };
        attempt += 1;
        if attempt >= ATTEMPTS {
            return Err(anyhow!("GET {shown}: {problem} (gave up after {attempt} attempts)"));
        }
        std::thread::sleep(wait.unwrap_or_else(|| backoff(attempt - 1)));
    }
}

/// An error with its causes, without the URL (which may carry credentials).
fn chain(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        text.push_str(&format!(": {c}"));
        cause = c.source();
    }
    text
}

/// The first byte a 206 answer holds, from `Content-Range: bytes 100-199/200`.
fn range_start(response: &Response) -> Option<u64> {
    let text = response.headers().get(CONTENT_RANGE)?.to_str().ok()?;
    text.strip_prefix("bytes ")?.split('-').next()?.trim().parse().ok()
}

/// Where a response's body ends in the resource: `from` plus its Content-Length.
fn body_end(response: &Response, from: u64) -> Option<u64> {
    let length: u64 = response.headers().get(CONTENT_LENGTH)?.to_str().ok()?.parse().ok()?;
    Some(from + length)
}

/// The whole length from `Content-Range: bytes 0-0/200`.
fn range_total(response: &Response) -> Option<u64> {
    let text = response.headers().get(CONTENT_RANGE)?.to_str().ok()?;
    text.rsplit('/').next()?.trim().parse().ok()
}

impl Download {
    fn new(client: Client, url: &str, response: Response, from: u64) -> Download {
        let end = body_end(&response, from);
        let headers = response.headers();
        let size = if response.status() == StatusCode::PARTIAL_CONTENT {
            range_total(&response)
        } else {
            headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse().ok())
        };
        let validator = headers
            .get(ETAG)
            .or_else(|| headers.get(LAST_MODIFIED))
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        // A server that answered a Range request with 206 takes them, whatever it says.
        let ranges = response.status() == StatusCode::PARTIAL_CONTENT
            || headers
                .get(ACCEPT_RANGES)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.eq_ignore_ascii_case("bytes"));
        let fingerprint = match (&validator, size) {
            (None, None) => None,
            (v, size) => Some((
                size.unwrap_or(0),
                xxhash_rust::xxh3::xxh3_64(v.as_deref().unwrap_or_default().as_bytes()) as i64,
            )),
        };
        Download {
            client,
            shown: links::redact(url),
            url: url.to_owned(),
            response,
            size,
            fingerprint,
            ranges,
            validator,
            end,
            pos: from,
            reconnects: 0,
            limits: None,
        }
    }

    pub fn into_raw(self) -> Raw {
        Raw {
            size: self.size,
            fingerprint: self.fingerprint,
            ranges: Some(self.ranges),
            at: self.pos,
            read: Box::new(self),
        }
    }

    /// The first bytes of the download (at most 4).
    pub fn head(mut self) -> Result<Vec<u8>> {
        let mut head = Vec::with_capacity(4);
        (&mut self).take(4).read_to_end(&mut head)?;
        Ok(head)
    }

    /// Picks the download up where it broke off.
    fn reconnect(&mut self) -> io::Result<()> {
        let response = get(
            &self.client,
            &self.url,
            Some(&format!("bytes={}-", self.pos)),
            self.validator.as_deref(),
        )
        .map_err(|e| io::Error::other(format!("{e:#}")))?;
        if response.status() != StatusCode::PARTIAL_CONTENT || range_start(&response) != Some(self.pos) {
            return Err(io::Error::other(format!(
                "{}: the server sent the whole file again instead of the rest (it changed, or stopped taking Range requests)",
                self.shown
            )));
        }
        self.end = body_end(&response, self.pos);
        self.response = response;
        Ok(())
    }
}

impl Read for Download {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some((max_bytes, deadline)) = self.limits {
            if self.pos > max_bytes {
                return Err(io::Error::other(format!(
                    "the download of {} is over its limit of {max_bytes} bytes",
                    self.shown
                )));
            }
            if std::time::Instant::now() > deadline {
                return Err(io::Error::other(format!(
                    "the download of {} took longer than its time limit",
                    self.shown
                )));
            }
        }
        loop {
            let read = match self.response.read(buf) {
                // A body that ends before its Content-Length broke off, even if the connection
                // closed cleanly: it is picked up, or an error, never the end of the input.
                Ok(0) if !buf.is_empty() && self.end.is_some_and(|end| self.pos < end) => Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "the connection closed before the {} bytes the server announced",
                        self.end.unwrap_or_default()
                    ),
                )),
                read => read,
            };
            match read {
                Ok(n) => {
                    self.pos += n as u64;
                    return Ok(n);
                }
                // The error's text may hold the URL as given, credentials included.
                Err(e) if self.ranges && self.reconnects < RECONNECTS => {
                    let e = e.to_string().replace(&self.url, &self.shown);
                    self.reconnects += 1;
                    if let Err(again) = self.reconnect() {
                        return Err(io::Error::other(format!(
                            "the download of {} broke off at byte {} ({e}); picking it up failed: {again}",
                            self.shown, self.pos
                        )));
                    }
                }
                Err(e) => {
                    let e = e.to_string().replace(&self.url, &self.shown);
                    return Err(io::Error::other(format!(
                        "the download of {} broke off at byte {}: {e}{}",
                        self.shown,
                        self.pos,
                        if self.ranges {
                            ""
                        } else {
                            " (the server does not take Range requests, so it cannot be picked up)"
                        }
                    )));
                }
            }
        }
    }
}
