//! A file server on 127.0.0.1 for remote sources: Range requests (or not), a redirect, a
//! 404, slow answers, and a connection dropped halfway.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

#[derive(Default)]
pub struct Behaviour {
    /// Answer Range requests with 206 (else always 200 with the whole file).
    pub ranges: bool,
    /// The next full (non-Range) answers break off after this many bytes, one answer each.
    pub drop_after: Vec<usize>,
    /// Send the body in pieces of this many bytes with this pause between them.
    pub trickle: Option<(usize, Duration)>,
}

#[derive(Default)]
pub struct Shared {
    pub files: Mutex<HashMap<String, Vec<u8>>>,
    pub behaviour: Mutex<Behaviour>,
    /// Each GET: (path, Range header).
    pub requests: Mutex<Vec<(String, Option<String>)>>,
    /// Body bytes handed to the connection so far, over every answer.
    pub sent: std::sync::atomic::AtomicUsize,
}

pub struct FileServer {
    pub url: String,
    pub shared: Arc<Shared>,
}

impl FileServer {
    pub fn start(behaviour: Behaviour) -> FileServer {
        let shared = Arc::new(Shared {
            behaviour: Mutex::new(behaviour),
            ..Shared::default()
        });
        let app = Router::new()
            .route("/files/{name}", get(serve))
            .route(
                "/moved/{name}",
                get(|Path(name): Path<String>| async move {
                    (StatusCode::FOUND, [(header::LOCATION, format!("/files/{name}"))])
                }),
            )
            // To the same file on another host name: "localhost" instead of "127.0.0.1".
            .route(
                "/elsewhere/{name}",
                get(|Path(name): Path<String>, headers: HeaderMap| async move {
                    let host = headers
                        .get(header::HOST)
                        .and_then(|h| h.to_str().ok())
                        .unwrap_or_default();
                    let port = host.rsplit(':').next().unwrap_or_default().to_owned();
                    (
                        StatusCode::FOUND,
                        [(header::LOCATION, format!("http://localhost:{port}/files/{name}"))],
                    )
                }),
            )
            .with_state(Arc::clone(&shared));
        let url = format!("http://{}", crate::support::serve(app, 0));
        FileServer { url, shared }
    }

    pub fn put(&self, name: &str, bytes: Vec<u8>) -> String {
        self.shared.files.lock().unwrap().insert(name.to_owned(), bytes);
        format!("{}/files/{name}", self.url)
    }

    pub fn range_requests(&self) -> usize {
        self.shared
            .requests
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, r)| r.is_some())
            .count()
    }
}

async fn serve(State(shared): State<Arc<Shared>>, Path(name): Path<String>, headers: HeaderMap) -> Response {
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    shared.requests.lock().unwrap().push((name.clone(), range.clone()));
    let Some(file) = shared.files.lock().unwrap().get(&name).cloned() else {
        return (StatusCode::NOT_FOUND, "no such file").into_response();
    };
    let (ranges, drop_after, trickle) = {
        let mut b = shared.behaviour.lock().unwrap();
        let drop_after = if range.is_none() && !b.drop_after.is_empty() {
            Some(b.drop_after.remove(0))
        } else {
            None
        };
        (b.ranges, drop_after, b.trickle)
    };
    let total = file.len();
    let (status, body, content_range) = match range.as_deref().and_then(parse_range).filter(|_| ranges) {
        Some((start, end)) if start < total => {
            let end = end.unwrap_or(total - 1).min(total - 1);
            (
                StatusCode::PARTIAL_CONTENT,
                file[start..=end].to_vec(),
                Some(format!("bytes {start}-{end}/{total}")),
            )
        }
        _ => (StatusCode::OK, file, None),
    };
    let length = body.len();
    let mut pieces: Vec<Result<Bytes, std::io::Error>> = Vec::new();
    let cut = drop_after.unwrap_or(length).min(length);
    let step = trickle.map_or(64 * 1024, |(n, _)| n);
    for chunk in body[..cut].chunks(step.max(1)) {
        pieces.push(Ok(Bytes::copy_from_slice(chunk)));
    }
    if drop_after.is_some() {
        pieces.push(Err(std::io::Error::other("dropped halfway")));
    }
    let pause = trickle.map(|(_, d)| d);
    let counter = Arc::clone(&shared);
    let stream = futures_util::stream::iter(pieces).then(move |piece| {
        let counter = Arc::clone(&counter);
        async move {
            // The bytes before a drop reach the client first, so it breaks off mid-body.
            let wait = if piece.is_err() {
                Some(Duration::from_millis(100))
            } else {
                pause
            };
            if let Some(d) = wait {
                tokio::time::sleep(d).await;
            }
            if let Ok(bytes) = &piece {
                counter.sent.fetch_add(bytes.len(), std::sync::atomic::Ordering::SeqCst);
            }
            piece
        }
    });
    let mut response = Response::builder()
        .status(status)
        .header(header::CONTENT_LENGTH, length)
        .header(header::ETAG, "\"v1\"");
    if ranges {
        response = response.header(header::ACCEPT_RANGES, "bytes");
    }
    if let Some(cr) = content_range {
        response = response.header(header::CONTENT_RANGE, cr);
    }
    response.body(Body::from_stream(stream)).unwrap()
}

use futures_util::StreamExt;

fn parse_range(text: &str) -> Option<(usize, Option<usize>)> {
    let (start, end) = text.strip_prefix("bytes=")?.split_once('-')?;
    Some((start.parse().ok()?, end.parse().ok()))
}
