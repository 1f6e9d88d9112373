//! The design's HTTP task API, on the same store as the command line: create a task, get one,
//! list them with FlexPrice's filters, and read a task's rejected rows. Keys map to tenants;
//! a tenant sees only its own tasks. Errors have FlexPrice's shape.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::rejection::JsonRejection;
use axum::extract::Request;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;

use crate::reader::Format;
use crate::source::guard::Guard;
use crate::source::links;
use crate::store::postgres::PgStore;
use crate::store::{backend, StoreLocation, TaskFilter, TaskStore};
use crate::task::{EntityType, FileType, Task, TaskMetadata, TaskType};

/// Request bodies over this are refused.
pub const BODY_LIMIT: usize = 64 * 1024;

/// What the API needs: the store, who may call it, and the download guard for new tasks.
pub struct Api {
    /// A SQLite file or a PostgreSQL database: every route works on both.
    pub db: StoreLocation,
    /// API key → tenant.
    pub keys: HashMap<String, String>,
    pub guard: Guard,
    /// Write one line per request to stderr.
    pub log_requests: bool,
    /// PostgreSQL sessions between requests, taken by the next ones: opening a session costs
    /// a connection, its authentication and the schema's version check (a request took 26 ms
    /// on PostgreSQL that way, 1.6-2 ms on a kept session, 2.3-2.8 ms on SQLite, which opens
    /// its file per request; see README, A shared store on PostgreSQL).
    pub idle: Mutex<Vec<PgStore>>,
}

impl Drop for Api {
    /// The last handle on the API goes when `serve` stops, inside its tokio runtime, where
    /// closing a `postgres::Client` (a blocking call) panics ("Cannot start a runtime from
    /// within a runtime"): `serve` on PostgreSQL exited 101 at SIGTERM once it had kept a
    /// session. The idle sessions are closed on a plain thread instead.
    fn drop(&mut self) {
        let idle = std::mem::take(self.idle.get_mut().unwrap_or_else(|e| e.into_inner()));
        if !idle.is_empty() {
            let _ = std::thread::spawn(move || drop(idle)).join();
        }
    }
}

/// Idle PostgreSQL sessions kept at most (more at once are opened, and closed after).
const IDLE_SESSIONS: usize = 8;
/// How long an idle session may take to show it is alive before it is dropped.
const SESSION_CHECK: std::time::Duration = std::time::Duration::from_secs(2);

pub fn router(api: Arc<Api>) -> Router {
    let log = api.log_requests;
    Router::new()
        .route("/health", get(health))
        .route("/v1/tasks", get(list_tasks).post(create_task))
        .route("/v1/tasks/{id}", get(get_task))
        .route("/v1/tasks/{id}/errors", get(task_errors))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .method_not_allowed_fallback(|method: Method| async move {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!("{method} is not allowed on this route"),
            )
        })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn(move |request: Request, next: Next| {
            log_request(log, request, next)
        }))
        .with_state(api)
}

/// One line on stderr per request once it is answered: time, method, path and query, status,
/// and how long it took. Never a header (the API key is one).
async fn log_request(log: bool, request: Request, next: Next) -> Response {
    let started = std::time::Instant::now();
    let method = request.method().clone();
    let target = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "/".into());
    let response = next.run(request).await;
    if log {
        eprintln!(
            "{} {method} {target} {} {:.1} ms",
            Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            response.status().as_u16(),
            started.elapsed().as_secs_f64() * 1000.0,
        );
    }
    response
}

/// `GET /health`, without a key: 200 with the store's state, or 503 when the store cannot be
/// read (gone, damaged, unreadable), for load balancers and monitors.
async fn health(State(api): State<Arc<Api>>) -> Response {
    let db = api.db.clone();
    let read = tokio::task::spawn_blocking(move || backend::health(&db)).await;
    match read {
        Ok(Ok(state)) => Json(json!({"status": "ok", "store": state})).into_response(),
        Ok(Err(e)) => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", format!("{e:#}")).into_response()
        }
        Err(e) => ApiError::from(anyhow::anyhow!("the health check stopped: {e}")).into_response(),
    }
}

/// An error in FlexPrice's shape: `{"code", "message", "http_status_code"}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "validation_error", message)
    }

    fn not_found(id: &str) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("task {id} not found"))
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", format!("{e:#}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"code": self.code, "message": self.message, "http_status_code": self.status.as_u16()});
        (self.status, Json(body)).into_response()
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// The caller's tenant, from `x-api-key`.
fn tenant(api: &Api, headers: &HeaderMap) -> ApiResult<String> {
    let key = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    api.keys.get(key).cloned().ok_or_else(|| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            if key.is_empty() {
                "the x-api-key header is required"
            } else {
                "the API key is not valid"
            },
        )
    })
}

/// Runs store work off the async threads, through the store trait: on a SQLite file opened
/// for it, or on an idle PostgreSQL session that still answers (a new one when none does),
/// put back after unless the server ended it.
async fn blocking<T: Send + 'static>(
    api: &Arc<Api>,
    work: impl FnOnce(&dyn TaskStore) -> ApiResult<T> + Send + 'static,
) -> ApiResult<T> {
    let api = Arc::clone(api);
    tokio::task::spawn_blocking(move || {
        let StoreLocation::Postgres(url) = &api.db else {
            let store = backend::open(&api.db)?;
            return work(store.as_ref());
        };
        let store = loop {
            let Some(store) = api.idle.lock().ok().and_then(|mut idle| idle.pop()) else {
                break PgStore::open(url)?;
            };
            // One that the server ended meanwhile is dropped, not handed to the request.
            if store.is_alive(SESSION_CHECK) {
                break store;
            }
        };
        let result = work(&store);
        if store.is_open() {
            if let Ok(mut idle) = api.idle.lock() {
                if idle.len() < IDLE_SESSIONS {
                    idle.push(store);
                }
            }
        }
        result
    })
    .await
    .map_err(|e| ApiError::from(anyhow::anyhow!("the request's work stopped: {e}")))?
}

#[derive(Debug, Deserialize)]
struct CreateTask {
    task_type: Option<String>,
    entity_type: Option<String>,
    file_url: Option<String>,
    file_type: Option<String>,
    webhook_url: Option<String>,
}

async fn create_task(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    body: Result<Json<CreateTask>, JsonRejection>,
) -> ApiResult<Response> {
    let tenant_id = tenant(&api, &headers)?;
    let Json(body) = body.map_err(|rejection| {
        let status = rejection.status();
        let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "request_too_large"
        } else {
            "validation_error"
        };
        ApiError::new(status, code, rejection.body_text())
    })?;
    let task_type: TaskType = parse_field("task_type", body.task_type.as_deref())?;
    if task_type != TaskType::Import {
        return Err(ApiError::bad_request("only IMPORT tasks can be created over HTTP"));
    }
    let entity_type: EntityType = parse_field("entity_type", body.entity_type.as_deref())?;
    let file_type: FileType = parse_field("file_type", body.file_type.as_deref())?;
    let file_url = body
        .file_url
        .as_deref()
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .ok_or_else(|| ApiError::bad_request("file_url is required"))?;
    let direct = links::direct_download(file_url);
    let guard = api.guard.clone();
    let webhook_url = match body.webhook_url.as_deref().filter(|u| !u.trim().is_empty()) {
        Some(url) => Some(checked_webhook(&guard, url).await?),
        None => None,
    };
    let checked = {
        let (guard, direct) = (guard.clone(), direct.clone());
        tokio::task::spawn_blocking(move || guard.check(&direct))
            .await
            .map_err(|e| ApiError::from(anyhow::anyhow!("{e}")))?
    };
    checked.map_err(ApiError::bad_request)?;
    let format = match file_type {
        FileType::Csv => Format::Csv,
        FileType::Json => {
            let name = direct.to_ascii_lowercase();
            if name.contains(".jsonl") || name.contains(".ndjson") {
                Format::Jsonl
            } else {
                Format::Json
            }
        }
    };
    let task = Task::pending(
        &tenant_id,
        task_type,
        entity_type,
        (direct, file_type),
        TaskMetadata {
            input_format: Some(format.as_str().into()),
            target: Some("local".into()),
            source_guard: Some(guard),
            webhook_url,
            ..TaskMetadata::default()
        },
        "api",
    );
    let task = blocking(&api, move |store| {
        store.tasks().create(&task)?;
        Ok(task)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(task)).into_response())
}

/// A webhook URL from a tenant is checked like a file_url: it is fetched by this server too.
async fn checked_webhook(guard: &Guard, url: &str) -> ApiResult<String> {
    let (guard, text) = (guard.clone(), url.to_owned());
    let checked = tokio::task::spawn_blocking(move || guard.check(&text))
        .await
        .map_err(|e| ApiError::from(anyhow::anyhow!("{e}")))?;
    checked
        .map(|(url, _)| url.to_string())
        .map_err(|e| ApiError::bad_request(format!("webhook_url: {}", e.replace("file_url", "the URL"))))
}

fn parse_field<T: std::str::FromStr<Err = String>>(name: &str, value: Option<&str>) -> ApiResult<T> {
    let value = value.ok_or_else(|| ApiError::bad_request(format!("{name} is required")))?;
    value
        .parse()
        .map_err(|e: String| ApiError::bad_request(format!("{name}: {e}")))
}

async fn get_task(State(api): State<Arc<Api>>, headers: HeaderMap, Path(id): Path<String>) -> ApiResult<Json<Task>> {
    let tenant_id = tenant(&api, &headers)?;
    blocking(&api, move |store| {
        // Another tenant's task is "not found", never "forbidden": its existence is not told.
        store
            .tasks()
            .get(&tenant_id, &id)?
            .map(Json)
            .ok_or_else(|| ApiError::not_found(&id))
    })
    .await
}

/// Paging parameters: `limit` 1..=1000 (default 50), `offset`.
fn page(query: &HashMap<String, String>) -> ApiResult<(u32, u64)> {
    let limit = match query.get("limit") {
        None => 50,
        Some(text) => match text.parse::<u32>() {
            Ok(n @ 1..=1000) => n,
            _ => return Err(ApiError::bad_request("limit must be from 1 to 1000")),
        },
    };
    let offset = match query.get("offset") {
        None => 0,
        Some(text) => text
            .parse::<u64>()
            .map_err(|_| ApiError::bad_request("offset must be a whole number"))?,
    };
    Ok((limit, offset))
}

fn time_param(query: &HashMap<String, String>, name: &str) -> ApiResult<Option<DateTime<Utc>>> {
    query
        .get(name)
        .map(|t| {
            DateTime::parse_from_rfc3339(t)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| ApiError::bad_request(format!("{name} must be an RFC 3339 time")))
        })
        .transpose()
}

fn enum_param<T: std::str::FromStr<Err = String>>(query: &HashMap<String, String>, name: &str) -> ApiResult<Option<T>> {
    query
        .get(name)
        .map(|v| {
            v.parse()
                .map_err(|e: String| ApiError::bad_request(format!("{name}: {e}")))
        })
        .transpose()
}

async fn list_tasks(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Json<serde_json::Value>> {
    let tenant_id = tenant(&api, &headers)?;
    let (limit, offset) = page(&query)?;
    let ascending = match query.get("order").map(|o| o.to_ascii_lowercase()).as_deref() {
        None | Some("desc") => false,
        Some("asc") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "order must be asc or desc, not {other:?}"
            )))
        }
    };
    let by_updated = match query.get("sort").map(String::as_str) {
        None | Some("created_at") => false,
        Some("updated_at") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "sort must be created_at or updated_at, not {other:?}"
            )))
        }
    };
    let filter = TaskFilter {
        tenant_id,
        task_type: enum_param(&query, "task_type")?,
        entity_type: enum_param(&query, "entity_type")?,
        task_status: enum_param(&query, "task_status")?,
        created_by: query.get("created_by").cloned(),
        since: time_param(&query, "start_time")?,
        until: time_param(&query, "end_time")?,
        limit,
        offset,
        ascending,
        by_updated,
        ..TaskFilter::default()
    };
    blocking(&api, move |store| {
        let page = store.tasks().list(&filter)?;
        Ok(Json(json!({
            "items": page.items,
            "pagination": {"total": page.total, "limit": limit, "offset": offset},
        })))
    })
    .await
}

async fn task_errors(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Json<serde_json::Value>> {
    let tenant_id = tenant(&api, &headers)?;
    let (limit, offset) = page(&query)?;
    blocking(&api, move |store| {
        if store.tasks().get(&tenant_id, &id)?.is_none() {
            return Err(ApiError::not_found(&id));
        }
        let errors = store.task_errors();
        let items = errors.page(&id, limit, offset)?;
        let total = errors.count(&id)?;
        Ok(Json(json!({
            "items": items,
            "pagination": {"total": total, "limit": limit, "offset": offset},
        })))
    })
    .await
}
