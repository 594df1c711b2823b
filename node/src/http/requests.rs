//! `GET /admin/requests` and `GET /v1/stats`, behind the admin token: the
//! request log of the whole cluster, filtered and paged, and its sums by
//! key, team and model over a time range. Any node answers: it reads its
//! own log and asks every other live node for theirs (`peers`).
//!
//! ```text
//! GET /admin/requests?key=&team=&alias=&status=429|4xx&since_ms=&until_ms=&limit=&before=
//!     {"data": [records, newest first], "next_before": cursor or null, "nodes": …}
//! GET /v1/stats?key=&team=&alias=&status=&since_ms=&until_ms=   (default: the last 24 hours)
//!     {"totals": …, "by_key": […], "by_team": […], "by_model": […], "nodes": …}
//! ```

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, RawQuery, State};
use axum::Json;
use chorus_actors::clock::unix_millis;
use chorus_proto::{ErrorBody, ErrorType};
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

use super::peers::{self, Gathered, NODE_SCOPE};
use super::{authenticate_admin, ApiError, AppState};
use crate::request_log::{RequestLog, RequestRecord, Stats};
use crate::storage::Cursor;

const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 1000;
/// `/v1/stats` without `since_ms`: the last day.
const DEFAULT_STATS_SPAN_MS: u64 = 24 * 3600 * 1000;

/// The query of both endpoints; each reads the fields it knows.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogQuery {
    key: Option<String>,
    team: Option<String>,
    alias: Option<String>,
    /// A status (`429`) or a class of them (`4xx`).
    status: Option<String>,
    since_ms: Option<u64>,
    until_ms: Option<u64>,
    limit: Option<usize>,
    /// A page's `next_before`: the records after it.
    before: Option<String>,
    /// `node`: this node's records only (what peers ask each other).
    scope: Option<String>,
}

type Answer = Result<Json<Value>, ApiError>;

pub async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<LogQuery>, QueryRejection>,
    RawQuery(raw): RawQuery,
) -> Answer {
    let (log, query) = admitted(&state, &headers, query)?;
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    let filter = Filter::new(&query)?;
    let before = query.before.as_deref().map(cursor).transpose()?;
    let (since_ms, until_ms) = (
        query.since_ms.unwrap_or(0),
        query.until_ms.unwrap_or(u64::MAX),
    );
    let store = Arc::clone(log.store());
    let mut records = blocking(move || {
        let mut records = Vec::new();
        store.scan(since_ms, until_ms, before.as_ref(), |record| {
            if filter.matches(&record) {
                records.push(record);
            }
            records.len() < limit
        })?;
        Ok(records)
    })
    .await?;
    if query.scope.is_some() {
        return Ok(Json(json!({ "node": log.node(), "data": records })));
    }
    let gathered = peers::gather(
        &state,
        "/admin/requests",
        raw.as_deref().unwrap_or(""),
        &headers,
    )
    .await;
    for answer in &gathered.answers {
        let theirs = answer["data"].as_array().into_iter().flatten();
        records.extend(theirs.filter_map(|record| serde_json::from_value(record.clone()).ok()));
    }
    records.sort_by(|a: &RequestRecord, b| (b.time_ms, &b.id).cmp(&(a.time_ms, &a.id)));
    records.truncate(limit);
    let next_before = (records.len() == limit)
        .then(|| {
            records
                .last()
                .map(|last| format!("{}:{}", last.time_ms, last.id))
        })
        .flatten();
    Ok(Json(json!({
        "object": "list",
        "data": records,
        "next_before": next_before,
        "nodes": nodes(log.node(), &gathered),
    })))
}

pub async fn stats(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<LogQuery>, QueryRejection>,
) -> Answer {
    let (log, query) = admitted(&state, &headers, query)?;
    if query.limit.is_some() || query.before.is_some() {
        return Err(invalid(
            "limit",
            "`/v1/stats` adds every record up: it takes no `limit` or `before`",
        ));
    }
    let filter = Filter::new(&query)?;
    let until_ms = query.until_ms.unwrap_or_else(unix_millis);
    let since_ms = query
        .since_ms
        .unwrap_or(until_ms.saturating_sub(DEFAULT_STATS_SPAN_MS));
    let store = Arc::clone(log.store());
    let mut stats = blocking(move || {
        let mut stats = Stats::default();
        store.scan(since_ms, until_ms, None, |record| {
            if filter.matches(&record) {
                stats.add(&record);
            }
            true
        })?;
        Ok(stats)
    })
    .await?;
    if query.scope.is_some() {
        let mut stats = json!(stats);
        stats["node"] = json!(log.node());
        return Ok(Json(stats));
    }
    // Peers are asked for the same range, fixed here, and the same filters.
    let mut asked = format!("since_ms={since_ms}&until_ms={until_ms}");
    for (name, value) in [
        ("key", &query.key),
        ("team", &query.team),
        ("alias", &query.alias),
        ("status", &query.status),
    ] {
        if let Some(value) = value {
            asked.push_str(&format!("&{name}={}", encode(value)));
        }
    }
    let gathered = peers::gather(&state, "/v1/stats", &asked, &headers).await;
    for answer in &gathered.answers {
        if let Ok(theirs) = serde_json::from_value::<Stats>(answer.clone()) {
            stats.merge(theirs);
        }
    }
    let mut shown = stats.to_json();
    shown["object"] = json!("stats");
    shown["since_ms"] = json!(since_ms);
    shown["until_ms"] = json!(until_ms);
    shown["nodes"] = nodes(log.node(), &gathered);
    Ok(Json(shown))
}

/// The admin token, a node with a request log, and a query that reads.
fn admitted(
    state: &AppState,
    headers: &HeaderMap,
    query: Result<Query<LogQuery>, QueryRejection>,
) -> Result<(RequestLog, LogQuery), ApiError> {
    authenticate_admin(state.admin_token_sha256.as_ref(), headers)?;
    let Some(log) = state.request_log.clone() else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorType::InvalidRequest,
            "request_log_off",
            "this node keeps no request log: give it a [storage] section",
        ));
    };
    let Query(query) = query.map_err(|rejection| {
        ApiError::bad_request(
            ErrorBody::new(ErrorType::InvalidRequest, rejection.body_text())
                .with_code("invalid_query"),
        )
    })?;
    if query
        .scope
        .as_deref()
        .is_some_and(|scope| scope != NODE_SCOPE.1)
    {
        return Err(invalid("scope", "`scope` can only be `node`"));
    }
    Ok((log, query))
}

fn invalid(param: &str, message: &str) -> ApiError {
    ApiError::bad_request(
        ErrorBody::new(ErrorType::InvalidRequest, message)
            .with_code("invalid_query")
            .with_param(param),
    )
}

/// A query value, percent-encoded.
fn encode(value: &str) -> String {
    let Ok(mut url) = reqwest::Url::parse("http://x/") else {
        return String::new();
    };
    url.query_pairs_mut().append_pair("v", value);
    url.query()
        .unwrap_or("")
        .trim_start_matches("v=")
        .to_owned()
}

/// A `next_before` cursor: `<time_ms>:<id>`.
fn cursor(text: &str) -> Result<Cursor, ApiError> {
    text.split_once(':')
        .and_then(|(time_ms, id)| Some((time_ms.parse().ok()?, id.to_owned())))
        .ok_or_else(|| invalid("before", "`before` must be a page's `next_before`"))
}

/// Which nodes' records an answer holds.
fn nodes(this: &str, gathered: &Gathered) -> Value {
    let mut answered = vec![this.to_owned()];
    answered.extend(gathered.answered.iter().cloned());
    json!({"answered": answered, "missing": gathered.missing})
}

/// Runs a scan of the store off the async workers.
async fn blocking<T: Send + 'static>(
    scan: impl FnOnce() -> Result<T, chorus_actors::StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    let unavailable = |detail: String| {
        tracing::error!(error = %detail, "the request log could not be read");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorType::Unavailable,
            "store_unavailable",
            "the request log could not be read on this node; retry it",
        )
    };
    match tokio::task::spawn_blocking(scan).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(unavailable(error.to_string())),
        Err(error) => Err(unavailable(error.to_string())),
    }
}

/// The records a query's filters keep.
struct Filter {
    key: Option<String>,
    team: Option<String>,
    alias: Option<String>,
    status: Option<StatusFilter>,
}

enum StatusFilter {
    Exact(u16),
    /// `4xx`: the hundreds digit.
    Class(u16),
}

impl Filter {
    fn new(query: &LogQuery) -> Result<Self, ApiError> {
        let status = match query.status.as_deref() {
            None => None,
            Some(text) => Some(match text.strip_suffix("xx") {
                Some(class) => StatusFilter::Class(class.parse().map_err(|_| bad_status())?),
                None => StatusFilter::Exact(text.parse().map_err(|_| bad_status())?),
            }),
        };
        Ok(Filter {
            key: query.key.clone(),
            team: query.team.clone(),
            alias: query.alias.clone(),
            status,
        })
    }

    fn matches(&self, record: &RequestRecord) -> bool {
        let same = |wanted: &Option<String>, have: &Option<String>| {
            wanted.is_none() || wanted.as_deref() == have.as_deref()
        };
        let status = match self.status {
            None => true,
            Some(StatusFilter::Exact(status)) => record.status == status,
            Some(StatusFilter::Class(class)) => record.status / 100 == class,
        };
        same(&self.key, &record.key)
            && same(&self.team, &record.team)
            && same(&self.alias, &record.alias)
            && status
    }
}

fn bad_status() -> ApiError {
    invalid(
        "status",
        "`status` must be a status like `429` or a class like `4xx`",
    )
}
