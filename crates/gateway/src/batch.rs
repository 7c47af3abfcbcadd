//! OpenAI's Files and Batch APIs: upload a JSONL file of requests, create a batch, poll it, download the
//! output and error files. Each request of a batch goes through the same routing and payment as a live one;
//! requests are spread over every provider serving the model (eight at a time), each falling back on the
//! others. Files and batch records live in the gateway's data directory, and every request is journaled
//! when it starts and when it ends, so a gateway that restarts resumes its batches without running (or
//! paying for) a request twice: one that was in flight at the crash may have been paid, so it is reported
//! as interrupted instead of being sent again. Each key keeps at most [`FileLimits`] of files, bytes and
//! batches in progress.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Multipart, Path as UrlPath, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tracing::warn;

use crate::call::{complete, embed, new_id};
use crate::openai::{self, ApiError};
use crate::requests::{chat_call, embed_call, text_call};
use crate::{FileLimits, Gateway, KeyState};

/// Requests of one batch in flight at once.
const CONCURRENCY: usize = 8;
/// Requests one batch may hold (OpenAI's limit).
const MAX_REQUESTS: usize = 50_000;
const ENDPOINTS: [&str; 3] = ["/v1/chat/completions", "/v1/completions", "/v1/embeddings"];

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct FileObject {
    id: String,
    object: String,
    bytes: u64,
    created_at: u64,
    filename: String,
    purpose: String,
    /// The account that owns it (kept on disk, never shown: see [`shown`]).
    #[serde(default)]
    owner: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Counts {
    total: u64,
    completed: u64,
    failed: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct BatchObject {
    id: String,
    object: String,
    endpoint: String,
    errors: Option<Value>,
    input_file_id: String,
    completion_window: String,
    status: String,
    output_file_id: Option<String>,
    error_file_id: Option<String>,
    created_at: u64,
    in_progress_at: Option<u64>,
    expires_at: Option<u64>,
    completed_at: Option<u64>,
    failed_at: Option<u64>,
    cancelling_at: Option<u64>,
    cancelled_at: Option<u64>,
    request_counts: Counts,
    metadata: Option<Value>,
    #[serde(default)]
    owner: String,
}

/// Where files and batches are kept.
#[derive(Debug)]
pub(crate) struct Store {
    dir: PathBuf,
    lock: tokio::sync::Mutex<()>,
}

impl Store {
    pub(crate) fn open(dir: &Path) -> std::io::Result<Store> {
        std::fs::create_dir_all(dir.join("files"))?;
        std::fs::create_dir_all(dir.join("batches"))?;
        Ok(Store { dir: dir.to_path_buf(), lock: tokio::sync::Mutex::new(()) })
    }

    fn file_meta(&self, id: &str) -> PathBuf {
        self.dir.join("files").join(format!("{id}.json"))
    }

    fn file_data(&self, id: &str) -> PathBuf {
        self.dir.join("files").join(format!("{id}.data"))
    }

    fn batch_path(&self, id: &str) -> PathBuf {
        self.dir.join("batches").join(format!("{id}.json"))
    }

    fn journal(&self, id: &str) -> PathBuf {
        self.dir.join("batches").join(format!("{id}.journal.jsonl"))
    }

    fn save_file(&self, file: &FileObject, data: &[u8]) -> std::io::Result<()> {
        write_atomic(&self.file_data(&file.id), data)?;
        write_atomic(&self.file_meta(&file.id), &serde_json::to_vec(file)?)
    }

    fn file(&self, id: &str) -> Option<FileObject> {
        if !valid_id(id) {
            return None;
        }
        serde_json::from_slice(&std::fs::read(self.file_meta(id)).ok()?).ok()
    }

    fn save_batch(&self, batch: &BatchObject) -> std::io::Result<()> {
        write_atomic(&self.batch_path(&batch.id), &serde_json::to_vec(batch)?)
    }

    fn batch(&self, id: &str) -> Option<BatchObject> {
        if !valid_id(id) {
            return None;
        }
        serde_json::from_slice(&std::fs::read(self.batch_path(id)).ok()?).ok()
    }

    fn list<T: for<'de> Deserialize<'de>>(&self, sub: &str) -> Vec<T> {
        let Ok(entries) = std::fs::read_dir(self.dir.join(sub)) else { return Vec::new() };
        entries
            .filter_map(|e| e.ok())
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .filter_map(|e| serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok())
            .collect()
    }
}

/// Files and batches: kept per account, listed newest first and only to their owner.
trait Owned: Serialize + for<'de> Deserialize<'de> {
    /// The store's folder of this kind.
    const FOLDER: &'static str;
    fn owner(&self) -> &str;
    /// Newest first, ties broken by id, so that listings are stable.
    fn order(&self) -> (u64, &str);
}

impl Owned for FileObject {
    const FOLDER: &'static str = "files";
    fn owner(&self) -> &str {
        &self.owner
    }
    fn order(&self) -> (u64, &str) {
        (self.created_at, &self.id)
    }
}

impl Owned for BatchObject {
    const FOLDER: &'static str = "batches";
    fn owner(&self) -> &str {
        &self.owner
    }
    fn order(&self) -> (u64, &str) {
        (self.created_at, &self.id)
    }
}

/// An OpenAI list object of the key's account's objects of one kind, newest first.
fn list_owned<T: Owned>(store: &Store, key: &KeyState) -> Json<Value> {
    let me = key.account.address().to_string();
    let mut items: Vec<T> = store.list::<T>(T::FOLDER);
    items.retain(|item| item.owner() == me);
    items.sort_by(|a, b| b.order().cmp(&a.order()));
    let data: Vec<Value> = items.iter().map(shown).collect();
    Json(json!({ "object": "list", "data": data, "has_more": false }))
}

/// An object as the API shows it: OpenAI's fields, without the owner the gateway keeps.
fn shown<T: Serialize>(object: &T) -> Value {
    let mut value = serde_json::to_value(object).unwrap_or(Value::Null);
    if let Some(map) = value.as_object_mut() {
        map.remove("owner");
    }
    value
}

/// Ids are ours (`file-…`, `batch_…`, hex): anything else never touches the file system.
fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() < 80 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, data)?;
    std::fs::rename(tmp, path)
}

fn store(gateway: &Gateway) -> Result<&Store, ApiError> {
    gateway.store.as_ref().ok_or_else(|| {
        ApiError::not_found("This gateway keeps no files (it was started without a data directory).".into())
    })
}

fn io_error(e: std::io::Error) -> ApiError {
    ApiError {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        message: format!("The gateway could not store the data: {e}"),
        kind: "server_error",
        param: None,
        code: None,
    }
}

/// A key's files: how many, and their bytes together.
fn usage_of(store: &Store, owner: &str) -> (usize, u64) {
    let files: Vec<FileObject> = store.list("files");
    files.iter().filter(|f| f.owner == owner).fold((0, 0), |(n, bytes), f| (n + 1, bytes + f.bytes))
}

fn quota(message: String, code: &'static str) -> ApiError {
    ApiError {
        status: StatusCode::BAD_REQUEST,
        message,
        kind: "invalid_request_error",
        param: None,
        code: Some(code.into()),
    }
}

fn no_file(id: &str) -> ApiError {
    ApiError::not_found(format!("No such File object: {id}"))
}

/// `POST /v1/files` (multipart: `purpose`, `file`).
pub(crate) async fn upload(
    State(gateway): State<Arc<Gateway>>,
    headers: HeaderMap,
    mut multipart: Multipart,
) -> Result<Json<Value>, ApiError> {
    let key = gateway.authenticate(&headers)?;
    let store = store(&gateway)?;
    let limits: FileLimits = gateway.limits;
    let owner = key.account.address().to_string();
    let (files, bytes) = usage_of(store, &owner);
    if files >= limits.files_per_key {
        return Err(quota(
            format!("This key keeps {files} files, the most it may; delete some before uploading more."),
            "file_quota_exceeded",
        ));
    }
    let (mut purpose, mut file) = (None, None);
    while let Some(field) = multipart
        .next_field()
        .await
        .map_err(|e| ApiError::invalid(format!("The multipart body is malformed: {e}"), None, None))?
    {
        match field.name() {
            Some("purpose") => purpose = Some(field.text().await.unwrap_or_default()),
            Some("file") => {
                let name = field.file_name().unwrap_or("upload.jsonl").to_string();
                let data = field.bytes().await.map_err(|e| {
                    ApiError::invalid(format!("The file could not be read: {e}"), Some("file"), None)
                })?;
                file = Some((name, data));
            }
            _ => {}
        }
    }
    let purpose = purpose.ok_or_else(|| ApiError::invalid("Missing purpose.", Some("purpose"), None))?;
    if purpose != "batch" {
        return Err(ApiError::invalid(
            format!("'{purpose}' is not a supported purpose: this gateway takes files for batches only."),
            Some("purpose"),
            Some("invalid_value"),
        ));
    }
    let (filename, data) = file.ok_or_else(|| ApiError::invalid("Missing file.", Some("file"), None))?;
    if bytes.saturating_add(data.len() as u64) > limits.bytes_per_key {
        return Err(quota(
            format!(
                "This key's files take {bytes} bytes; {} more would pass its limit of {}.",
                data.len(),
                limits.bytes_per_key
            ),
            "file_quota_exceeded",
        ));
    }
    let object = FileObject {
        id: new_id("file"),
        object: "file".into(),
        bytes: data.len() as u64,
        created_at: gateway.clock.now_ms() / 1000,
        filename,
        purpose,
        owner: key.account.address().to_string(),
    };
    store.save_file(&object, &data).map_err(io_error)?;
    Ok(Json(shown(&object)))
}

fn owned_file(store: &Store, key: &KeyState, id: &str) -> Result<FileObject, ApiError> {
    store.file(id).filter(|f| f.owner == key.account.address().to_string()).ok_or_else(|| no_file(id))
}

pub(crate) async fn list_files(
    State(gateway): State<Arc<Gateway>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let key = gateway.authenticate(&headers)?;
    Ok(list_owned::<FileObject>(store(&gateway)?, &key))
}

pub(crate) async fn get_file(
    State(gateway): State<Arc<Gateway>>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
) -> Result<Json<Value>, ApiError> {
    let key = gateway.authenticate(&headers)?;
    Ok(Json(shown(&owned_file(store(&gateway)?, &key, &id)?)))
}

pub(crate) async fn file_content(
    State(gateway): State<Arc<Gateway>>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
) -> Result<Response, ApiError> {
    let key = gateway.authenticate(&headers)?;
    let store = store(&gateway)?;
    owned_file(store, &key, &id)?;
    let data = std::fs::read(store.file_data(&id)).map_err(|_| no_file(&id))?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], Bytes::from(data)).into_response())
}

pub(crate) async fn delete_file(
    State(gateway): State<Arc<Gateway>>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
) -> Result<Json<Value>, ApiError> {
    let key = gateway.authenticate(&headers)?;
    let store = store(&gateway)?;
    owned_file(store, &key, &id)?;
    let _ = std::fs::remove_file(store.file_data(&id));
    std::fs::remove_file(store.file_meta(&id)).map_err(io_error)?;
    Ok(Json(json!({ "id": id, "object": "file", "deleted": true })))
}

#[derive(Deserialize)]
struct CreateBatch {
    input_file_id: String,
    endpoint: String,
    completion_window: String,
    #[serde(default)]
    metadata: Option<Value>,
}

/// One line of a batch's input file.
#[derive(Clone, Deserialize)]
pub(crate) struct BatchLine {
    custom_id: String,
    method: String,
    url: String,
    body: Value,
}

/// Reads and checks an input file; the errors say which line is wrong, as OpenAI's do.
fn parse_lines(data: &[u8], endpoint: &str) -> Result<Vec<BatchLine>, Vec<Value>> {
    let text = String::from_utf8_lossy(data);
    let mut lines = Vec::new();
    let mut errors = Vec::new();
    let mut seen = HashSet::new();
    for (i, raw) in text.lines().enumerate() {
        if raw.trim().is_empty() {
            continue;
        }
        let line_no = i + 1;
        let mut fail = |code: &str, message: String| {
            errors.push(json!({ "code": code, "message": message, "param": null, "line": line_no }));
        };
        match serde_json::from_str::<BatchLine>(raw) {
            Err(e) => fail("invalid_json_line", format!("This line is not a request object: {e}")),
            Ok(line) if line.method != "POST" => {
                fail("invalid_method", format!("Method `{}` is not POST.", line.method))
            }
            Ok(line) if line.url != endpoint => fail(
                "mismatched_endpoint",
                format!("The url `{}` does not match the batch's endpoint `{endpoint}`.", line.url),
            ),
            Ok(line) if !seen.insert(line.custom_id.clone()) => {
                fail("duplicate_custom_id", format!("The custom_id `{}` appears twice.", line.custom_id))
            }
            Ok(line) if line.body.get("stream").and_then(Value::as_bool) == Some(true) => {
                fail("invalid_request", "Requests in a batch cannot stream.".into())
            }
            Ok(line) => lines.push(line),
        }
    }
    if lines.is_empty() && errors.is_empty() {
        errors.push(json!({ "code": "empty_file", "message": "The input file has no requests.", "param": null, "line": null }));
    }
    if lines.len() > MAX_REQUESTS {
        errors.push(json!({ "code": "too_many_requests", "message": format!("A batch takes at most {MAX_REQUESTS} requests."), "param": null, "line": null }));
    }
    if errors.is_empty() {
        Ok(lines)
    } else {
        Err(errors)
    }
}

/// `POST /v1/batches`.
pub(crate) async fn create_batch(
    State(gateway): State<Arc<Gateway>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let key = gateway.authenticate(&headers)?;
    let store = store(&gateway)?;
    let request: CreateBatch = openai::parse(&body)?;
    if !ENDPOINTS.contains(&request.endpoint.as_str()) {
        return Err(ApiError::invalid(
            format!("'{}' is not one of {}.", request.endpoint, ENDPOINTS.join(", ")),
            Some("endpoint"),
            Some("invalid_value"),
        ));
    }
    if request.completion_window != "24h" {
        return Err(ApiError::invalid(
            "completion_window must be '24h'.",
            Some("completion_window"),
            Some("invalid_value"),
        ));
    }
    let input = owned_file(store, &key, &request.input_file_id)?;
    let owner = key.account.address().to_string();
    let running = store
        .list::<BatchObject>("batches")
        .iter()
        .filter(|b| b.owner == owner && (b.status == "in_progress" || b.status == "cancelling"))
        .count();
    if running >= gateway.limits.batches_per_key {
        return Err(ApiError {
            status: StatusCode::TOO_MANY_REQUESTS,
            message: format!(
                "This key has {running} batches in progress, the most it may; wait for one to end."
            ),
            kind: "rate_limit_error",
            param: None,
            code: Some("batch_quota_exceeded".into()),
        });
    }
    let data = std::fs::read(store.file_data(&input.id)).map_err(|_| no_file(&input.id))?;
    let now = gateway.clock.now_ms() / 1000;
    let mut batch = BatchObject {
        id: new_id("batch"),
        object: "batch".into(),
        endpoint: request.endpoint.clone(),
        errors: None,
        input_file_id: input.id,
        completion_window: request.completion_window,
        status: "in_progress".into(),
        output_file_id: None,
        error_file_id: None,
        created_at: now,
        in_progress_at: Some(now),
        expires_at: Some(now + 24 * 3600),
        completed_at: None,
        failed_at: None,
        cancelling_at: None,
        cancelled_at: None,
        request_counts: Counts::default(),
        metadata: request.metadata,
        owner: key.account.address().to_string(),
    };
    match parse_lines(&data, &request.endpoint) {
        Err(errors) => {
            batch.status = "failed".into();
            batch.in_progress_at = None;
            batch.failed_at = Some(now);
            batch.errors = Some(json!({ "object": "list", "data": errors }));
            store.save_batch(&batch).map_err(io_error)?;
        }
        Ok(lines) => {
            batch.request_counts.total = lines.len() as u64;
            store.save_batch(&batch).map_err(io_error)?;
            tokio::spawn(run(gateway.clone(), key, batch.id.clone(), lines));
        }
    }
    Ok(Json(shown(&batch)))
}

fn owned_batch(store: &Store, key: &KeyState, id: &str) -> Result<BatchObject, ApiError> {
    store
        .batch(id)
        .filter(|b| b.owner == key.account.address().to_string())
        .ok_or_else(|| ApiError::not_found(format!("No batch found with id '{id}'.")))
}

pub(crate) async fn get_batch(
    State(gateway): State<Arc<Gateway>>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
) -> Result<Json<Value>, ApiError> {
    let key = gateway.authenticate(&headers)?;
    Ok(Json(shown(&owned_batch(store(&gateway)?, &key, &id)?)))
}

pub(crate) async fn list_batches(
    State(gateway): State<Arc<Gateway>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let key = gateway.authenticate(&headers)?;
    Ok(list_owned::<BatchObject>(store(&gateway)?, &key))
}

/// `POST /v1/batches/{id}/cancel`: requests not yet started are not run; the output has those that finished.
pub(crate) async fn cancel_batch(
    State(gateway): State<Arc<Gateway>>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
) -> Result<Json<Value>, ApiError> {
    let key = gateway.authenticate(&headers)?;
    let store = store(&gateway)?;
    let _guard = store.lock.lock().await;
    let mut batch = owned_batch(store, &key, &id)?;
    if batch.status == "in_progress" {
        batch.status = "cancelling".into();
        batch.cancelling_at = Some(gateway.clock.now_ms() / 1000);
        store.save_batch(&batch).map_err(io_error)?;
    } else if batch.status != "cancelling" {
        return Err(ApiError {
            status: StatusCode::CONFLICT,
            message: format!("Cannot cancel a batch with status '{}'.", batch.status),
            kind: "invalid_request_error",
            param: None,
            code: None,
        });
    }
    Ok(Json(shown(&batch)))
}

/// What a batch's journal says: requests that ended, and requests that started.
#[derive(Debug, Default, PartialEq, Eq)]
struct Journal {
    ended: HashSet<String>,
    started: HashSet<String>,
}

fn read_journal(text: &str) -> Journal {
    let mut journal = Journal::default();
    for record in text.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()) {
        let Some(id) = record["custom_id"].as_str() else { continue };
        if record.get("started").is_some() {
            journal.started.insert(id.to_string());
        } else {
            journal.ended.insert(id.to_string());
        }
    }
    journal
}

/// The result record of a request, as the output and error files carry it.
fn result_record(custom_id: &str, status: u16, body: Value, ok: bool) -> Value {
    json!({
        "id": new_id("batch_req"),
        "custom_id": custom_id,
        "response": { "status_code": status, "request_id": new_id("req"), "body": body },
        "error": null,
        "ok": ok,
    })
}

/// Appends one record to a batch's journal, under the store's lock.
async fn journal(store: &Store, path: &Path, record: &Value) {
    let _guard = store.lock.lock().await;
    let appended = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, format!("{record}\n").as_bytes()));
    if let Err(e) = appended {
        warn!(path = %path.display(), error = %e, "cannot journal a batch record");
    }
}

/// Runs a batch's requests that the journal does not have yet, then writes the output and error files. A
/// request the journal shows started but not ended was in flight when the gateway stopped: it may have been
/// paid, so it ends as an error instead of being sent again.
pub(crate) async fn run(gateway: Arc<Gateway>, key: Arc<KeyState>, id: String, lines: Vec<BatchLine>) {
    let Some(store) = gateway.store.as_ref() else { return };
    let journal_path = store.journal(&id);
    let seen = read_journal(&std::fs::read_to_string(&journal_path).unwrap_or_default());
    let mut pending = Vec::new();
    for (index, line) in lines.into_iter().enumerate() {
        if seen.ended.contains(&line.custom_id) {
            continue;
        }
        if seen.started.contains(&line.custom_id) {
            let error = ApiError::upstream(
                "The gateway stopped while this request was in flight. It was not sent again because it may \
                 already have been paid; submit it again if you need its answer.",
            );
            let record = result_record(&line.custom_id, 500, error.body(), false);
            journal(store, &journal_path, &record).await;
            count(store, &id, false).await;
            continue;
        }
        pending.push((index, line));
    }
    let gateway_ref = &gateway;
    let key_ref = &key;
    let id_ref = &id;
    let journal_path_ref = &journal_path;
    let mut results = futures_util::stream::iter(pending)
        .map(|(index, line)| async move {
            let cancelled = gateway_ref
                .store
                .as_ref()
                .and_then(|s| s.batch(id_ref))
                .is_none_or(|b| b.status != "in_progress");
            if cancelled {
                return None;
            }
            let started = json!({ "custom_id": line.custom_id, "started": true });
            journal(store, journal_path_ref, &started).await;
            let body = serde_json::to_vec(&line.body).unwrap_or_default();
            let result = match line.url.as_str() {
                "/v1/chat/completions" => match chat_call(&body) {
                    Ok(call) => complete(gateway_ref, key_ref, call, index).await,
                    Err(e) => Err(e),
                },
                "/v1/completions" => match text_call(&body) {
                    Ok(call) => complete(gateway_ref, key_ref, call, index).await,
                    Err(e) => Err(e),
                },
                _ => match embed_call(&body) {
                    Ok(call) => embed(gateway_ref, key_ref, call, index).await,
                    Err(e) => Err(e),
                },
            };
            Some((line.custom_id, result))
        })
        .buffer_unordered(CONCURRENCY);
    while let Some(result) = results.next().await {
        let Some((custom_id, result)) = result else { continue };
        let (status, body, ok) = match result {
            Ok(body) => (200u16, body, true),
            Err(e) => (e.status.as_u16(), e.body(), false),
        };
        journal(store, &journal_path, &result_record(&custom_id, status, body, ok)).await;
        count(store, &id, ok).await;
    }
    drop(results);
    if let Err(e) = finish(store, &id, gateway.clock.now_ms() / 1000) {
        warn!(batch = %id, error = %e, "cannot finish a batch");
    }
}

/// Counts one ended request in the batch's record.
async fn count(store: &Store, id: &str, ok: bool) {
    let _guard = store.lock.lock().await;
    if let Some(mut batch) = store.batch(id) {
        if ok {
            batch.request_counts.completed += 1;
        } else {
            batch.request_counts.failed += 1;
        }
        let _ = store.save_batch(&batch);
    }
}

/// Splits the journal into the output file (successes) and the error file (failures) and closes the batch.
fn finish(store: &Store, id: &str, now: u64) -> std::io::Result<()> {
    let Some(mut batch) = store.batch(id) else { return Ok(()) };
    let journal = std::fs::read_to_string(store.journal(id)).unwrap_or_default();
    let (mut output, mut errors) = (String::new(), String::new());
    for line in journal.lines() {
        let Ok(mut record) = serde_json::from_str::<Value>(line) else { continue };
        if record.get("started").is_some() {
            continue;
        }
        let ok = record["ok"].as_bool().unwrap_or(false);
        if let Some(map) = record.as_object_mut() {
            map.remove("ok");
        }
        let target = if ok { &mut output } else { &mut errors };
        target.push_str(&record.to_string());
        target.push('\n');
    }
    let save = |text: &str, name: &str| -> std::io::Result<Option<String>> {
        if text.is_empty() {
            return Ok(None);
        }
        let file = FileObject {
            id: new_id("file"),
            object: "file".into(),
            bytes: text.len() as u64,
            created_at: now,
            filename: format!("{id}_{name}.jsonl"),
            purpose: "batch_output".into(),
            owner: batch.owner.clone(),
        };
        store.save_file(&file, text.as_bytes())?;
        Ok(Some(file.id))
    };
    batch.output_file_id = save(&output, "output")?;
    batch.error_file_id = save(&errors, "error")?;
    if batch.status == "cancelling" {
        batch.status = "cancelled".into();
        batch.cancelled_at = Some(now);
    } else {
        batch.status = "completed".into();
        batch.completed_at = Some(now);
    }
    store.save_batch(&batch)
}

/// Batches a previous run of the gateway left in progress, with their requests, to run again.
pub(crate) fn unfinished(store: &Store) -> Vec<(BatchObject, Vec<BatchLine>)> {
    store
        .list::<BatchObject>("batches")
        .into_iter()
        .filter(|b| b.status == "in_progress" || b.status == "cancelling")
        .filter_map(|b| {
            let data = std::fs::read(store.file_data(&b.input_file_id)).ok()?;
            let lines = parse_lines(&data, &b.endpoint).ok()?;
            Some((b, lines))
        })
        .collect()
}

pub(crate) fn owner_of(batch: &BatchObject) -> &str {
    &batch.owner
}

pub(crate) fn id_of(batch: &BatchObject) -> &str {
    &batch.id
}
