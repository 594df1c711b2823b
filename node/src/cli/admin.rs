//! `chorus key …` and `chorus team …`: the admin API from the command
//! line, against any node. Options become the API's JSON fields; answers
//! print as aligned tables (or the API's JSON with `--json`); a failure
//! prints the API's message and exits non-zero.

use std::process::ExitCode;

use comfy_table::{presets, Table};
use serde_json::{json, Map, Value};

use super::{AdminArgs, KeyAction, KeyFields, PolicyFields, TeamAction};

/// Columns of `key list`: (API field, heading).
const KEY_COLUMNS: &[(&str, &str)] = &[
    ("id", "ID"),
    ("name", "NAME"),
    ("team", "TEAM"),
    ("models", "MODELS"),
    ("rpm", "RPM"),
    ("tpm", "TPM"),
    ("max_parallel", "PARALLEL"),
    ("budget_daily_usd", "DAILY USD"),
    ("budget_monthly_usd", "MONTHLY USD"),
    ("expires_at", "EXPIRES"),
    ("status", "STATUS"),
];

const TEAM_COLUMNS: &[(&str, &str)] = &[
    ("id", "ID"),
    ("name", "NAME"),
    ("models", "MODELS"),
    ("rpm", "RPM"),
    ("tpm", "TPM"),
    ("max_parallel", "PARALLEL"),
    ("budget_daily_usd", "DAILY USD"),
    ("budget_monthly_usd", "MONTHLY USD"),
    ("keys", "KEYS"),
    ("revoked", "REVOKED"),
];

/// One API call: method, path (without the leading `/`), body.
struct Call {
    method: reqwest::Method,
    path: String,
    body: Option<Value>,
    /// What the answer is: one entry, or a list of them.
    shape: Shape,
}

enum Shape {
    One,
    List(&'static [(&'static str, &'static str)]),
}

/// What a key or team command asks of the API, whichever of the two.
enum Action<'a> {
    Create(Value),
    List,
    Info(&'a str),
    Update(&'a str, Value),
    Revoke(&'a str),
    Delete(&'a str),
}

pub fn run_key(admin: &AdminArgs, action: &KeyAction) -> ExitCode {
    let action = match action {
        KeyAction::Create(fields) => key_body(fields).map(Action::Create),
        KeyAction::List => Ok(Action::List),
        KeyAction::Info { id } => Ok(Action::Info(id)),
        KeyAction::Update { id, fields } => key_body(fields).map(|body| Action::Update(id, body)),
        KeyAction::Revoke { id } => Ok(Action::Revoke(id)),
        KeyAction::Delete { id } => Ok(Action::Delete(id)),
    };
    match action {
        Ok(action) => run(admin, call("keys", KEY_COLUMNS, action)),
        Err(message) => fail(&message),
    }
}

pub fn run_team(admin: &AdminArgs, action: &TeamAction) -> ExitCode {
    let body = |fields| policy_body(fields).map(Value::Object);
    let action = match action {
        TeamAction::Create(fields) => body(fields).map(Action::Create),
        TeamAction::List => Ok(Action::List),
        TeamAction::Info { id } => Ok(Action::Info(id)),
        TeamAction::Update { id, fields } => body(fields).map(|body| Action::Update(id, body)),
        TeamAction::Revoke { id } => Ok(Action::Revoke(id)),
        TeamAction::Delete { id } => Ok(Action::Delete(id)),
    };
    match action {
        Ok(action) => run(admin, call("teams", TEAM_COLUMNS, action)),
        Err(message) => fail(&message),
    }
}

/// The API call for `action` on `/admin/{resource}`; `columns` for a list.
fn call(
    resource: &str,
    columns: &'static [(&'static str, &'static str)],
    action: Action<'_>,
) -> Call {
    use reqwest::Method;
    let one = |method, path: String, body| Call {
        method,
        path,
        body,
        shape: Shape::One,
    };
    let resource = format!("admin/{resource}");
    let at = |id: &str| format!("{resource}/{}", segment(id));
    match action {
        Action::Create(body) => one(Method::POST, resource.clone(), Some(body)),
        Action::List => Call {
            method: Method::GET,
            path: resource.clone(),
            body: None,
            shape: Shape::List(columns),
        },
        Action::Info(id) => one(Method::GET, at(id), None),
        Action::Update(id, body) => one(Method::PATCH, at(id), Some(body)),
        Action::Revoke(id) => one(Method::POST, format!("{}/revoke", at(id)), None),
        Action::Delete(id) => one(Method::DELETE, at(id), None),
    }
}

/// An id or name as one URL path segment, percent-encoded.
fn segment(id: &str) -> String {
    let Ok(mut url) = reqwest::Url::parse("http://x/") else {
        return id.to_owned();
    };
    if let Ok(mut segments) = url.path_segments_mut() {
        segments.push(id);
    }
    url.path().trim_start_matches('/').to_owned()
}

fn key_body(fields: &KeyFields) -> Result<Value, String> {
    let mut body = policy_body(&fields.policy)?;
    if let Some(team) = &fields.team {
        body.insert("team".into(), none_or(team, |team| Ok(json!(team)))?);
    }
    if let Some(expires_at) = &fields.expires_at {
        body.insert(
            "expires_at".into(),
            none_or(expires_at, |time| Ok(json!(time)))?,
        );
    }
    Ok(Value::Object(body))
}

fn policy_body(fields: &PolicyFields) -> Result<Map<String, Value>, String> {
    let mut body = Map::new();
    if let Some(name) = &fields.name {
        body.insert("name".into(), json!(name));
    }
    if let Some(models) = &fields.models {
        let models = none_or(models, |models| {
            let list: Vec<&str> = models
                .split(',')
                .map(str::trim)
                .filter(|m| !m.is_empty())
                .collect();
            Ok(json!(list))
        })?;
        body.insert("models".into(), models);
    }
    let counts = [
        ("rpm", &fields.rpm),
        ("tpm", &fields.tpm),
        ("max_parallel", &fields.max_parallel),
    ];
    for (field, value) in counts {
        if let Some(value) = value {
            let parsed = none_or(value, |text| {
                text.parse::<u64>()
                    .map(|count| json!(count))
                    .map_err(|_| format!("--{}: `{text}` is not a whole number", flag(field)))
            })?;
            body.insert(field.into(), parsed);
        }
    }
    let budgets = [
        ("budget_daily_usd", &fields.budget_daily_usd),
        ("budget_monthly_usd", &fields.budget_monthly_usd),
    ];
    for (field, value) in budgets {
        if let Some(value) = value {
            let parsed = none_or(value, |text| {
                text.parse::<f64>()
                    .ok()
                    .filter(|usd| usd.is_finite())
                    .map(|usd| json!(usd))
                    .ok_or_else(|| format!("--{}: `{text}` is not an amount of USD", flag(field)))
            })?;
            body.insert(field.into(), parsed);
        }
    }
    if !fields.metadata.is_empty() {
        let mut metadata = Map::new();
        for label in &fields.metadata {
            let (name, value) = label
                .split_once('=')
                .ok_or_else(|| format!("--metadata: `{label}` is not NAME=VALUE"))?;
            metadata.insert(name.to_owned(), json!(value));
        }
        body.insert("metadata".into(), Value::Object(metadata));
    }
    Ok(body)
}

fn flag(field: &str) -> String {
    field.replace('_', "-")
}

/// `none` is JSON null; anything else goes through `parse`.
fn none_or(text: &str, parse: impl Fn(&str) -> Result<Value, String>) -> Result<Value, String> {
    if text == "none" {
        Ok(Value::Null)
    } else {
        parse(text)
    }
}

pub(super) fn fail(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::FAILURE
}

fn run(admin: &AdminArgs, call: Call) -> ExitCode {
    match fetch(admin, &call.method, &call.path, call.body.as_ref()) {
        Ok(value) if admin.json => {
            println!(
                "{}",
                serde_json::to_string_pretty(&value).unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        Ok(value) => {
            print_answer(&value, &call.shape);
            ExitCode::SUCCESS
        }
        Err(message) => fail(&message),
    }
}

/// Makes one API call with the admin token and waits for its JSON; an
/// error is the message to print.
pub(super) fn fetch(
    admin: &AdminArgs,
    method: &reqwest::Method,
    path: &str,
    body: Option<&Value>,
) -> Result<Value, String> {
    let Some(token) = admin.token.as_deref().filter(|token| !token.is_empty()) else {
        return Err("no admin token: pass --token or set CHORUS_ADMIN_TOKEN".into());
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| format!("cannot start the async runtime: {error}"))?;
    runtime.block_on(send(&admin.url, token, method, path, body))
}

async fn send(
    url: &str,
    token: &str,
    method: &reqwest::Method,
    path: &str,
    body: Option<&Value>,
) -> Result<Value, String> {
    let base = url.trim_end_matches('/');
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
    let mut request = client
        .request(method.clone(), format!("{base}/{path}"))
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request
        .send()
        .await
        .map_err(|e| format!("cannot reach {base}: {e}"))?;
    let status = response.status();
    let body: Value = response
        .json()
        .await
        .map_err(|e| format!("{base} answered {status} without JSON: {e}"))?;
    if status.is_success() {
        return Ok(body);
    }
    let error = &body["error"];
    let message = error["message"].as_str().unwrap_or("no message");
    Err(match error["param"].as_str() {
        Some(param) => format!("{message} (HTTP {}, field `{param}`)", status.as_u16()),
        None => format!("{message} (HTTP {})", status.as_u16()),
    })
}

fn print_answer(value: &Value, shape: &Shape) {
    match shape {
        Shape::List(columns) => {
            let mut table = Table::new();
            table.load_preset(presets::NOTHING);
            table.set_header(columns.iter().map(|(_, heading)| *heading));
            for entry in value["data"].as_array().into_iter().flatten() {
                table.add_row(columns.iter().map(|(field, _)| show(field, &entry[*field])));
            }
            println!("{table}");
        }
        Shape::One => {
            let mut table = Table::new();
            table.load_preset(presets::NOTHING);
            if let Some(fields) = value.as_object() {
                for (field, shown) in fields {
                    if field != "key" && field != "object" {
                        table.add_row([field.clone(), show(field, shown)]);
                    }
                }
            }
            println!("{table}");
            if let Some(key) = value["key"].as_str() {
                println!("\nkey: {key}\n(shown only now: keep it somewhere safe)");
            }
        }
    }
}

/// A field's value for a table cell.
fn show(field: &str, value: &Value) -> String {
    match value {
        Value::Null => "-".into(),
        Value::Bool(true) => "yes".into(),
        Value::Bool(false) => "no".into(),
        Value::String(text) => text.clone(),
        Value::Array(items) if items.is_empty() && field == "models" => "all".into(),
        Value::Array(items) => items
            .iter()
            .map(|item| show(field, item))
            .collect::<Vec<_>>()
            .join(","),
        Value::Object(map) if field == "team" => map
            .get("name")
            .and_then(Value::as_str)
            .or_else(|| map.get("id").and_then(Value::as_str))
            .unwrap_or("-")
            .to_owned(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_become_the_api_fields_and_none_clears() {
        let fields = KeyFields {
            policy: PolicyFields {
                name: Some("ci".into()),
                models: Some("fast, smart".into()),
                rpm: Some("none".into()),
                tpm: Some("1000".into()),
                budget_daily_usd: Some("1.5".into()),
                metadata: vec!["owner=ops".into()],
                ..PolicyFields::default()
            },
            team: Some("research".into()),
            expires_at: None,
        };
        assert_eq!(
            key_body(&fields).unwrap(),
            json!({"name": "ci", "models": ["fast", "smart"], "rpm": null, "tpm": 1000,
                   "budget_daily_usd": 1.5, "metadata": {"owner": "ops"}, "team": "research"})
        );
        let wrong = PolicyFields {
            max_parallel: Some("two".into()),
            ..PolicyFields::default()
        };
        assert_eq!(
            policy_body(&wrong).unwrap_err(),
            "--max-parallel: `two` is not a whole number"
        );
        assert_eq!(segment("a b/c"), "a%20b%2Fc");
        let infinite = PolicyFields {
            budget_daily_usd: Some("inf".into()),
            ..PolicyFields::default()
        };
        assert!(policy_body(&infinite).is_err(), "never a silent null");
    }
}
