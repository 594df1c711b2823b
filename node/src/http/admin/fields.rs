//! Reading an admin request body into a [`KeyPatch`] or [`TeamPatch`],
//! field by field, so every mistake is a 400 whose `param` names the field:
//! an unknown field, a wrong type, a value out of range, a model this node
//! does not serve.
//!
//! `null` clears an optional field (`"rpm": null` removes the key's own
//! rpm limit); a field left out is left as it is.

use chorus_actors::admin::{KeyPatch, PolicyPatch, TeamPatch};
use chorus_actors::Routes;
use chorus_proto::admin::{LimitKind, Metadata};
use chorus_proto::ErrorType;
use http::StatusCode;
use serde_json::{Map, Value};

use crate::http::ApiError;

const KEY_FIELDS: &[&str] = &[
    "name",
    "team",
    "models",
    "rpm",
    "tpm",
    "max_parallel",
    "budget_daily_usd",
    "budget_monthly_usd",
    "expires_at",
    "metadata",
    "revoked",
];
const TEAM_FIELDS: &[&str] = &[
    "name",
    "models",
    "rpm",
    "tpm",
    "max_parallel",
    "budget_daily_usd",
    "budget_monthly_usd",
    "metadata",
    "revoked",
];

/// Longest name, in characters.
const MAX_NAME_CHARS: usize = 64;
/// Largest `metadata`, as JSON: it is gossiped to every node.
const MAX_METADATA_BYTES: usize = 4096;
/// Largest budget, in USD: more is a typo, and stays far from u64's end.
const MAX_BUDGET_USD: f64 = 1e9;
/// The last second of year 9999, in ms: later is a typo (milliseconds sent
/// as seconds, say), and RFC 3339 cannot write it.
const MAX_EXPIRES_MS: u64 = 253_402_300_799_000;

/// Whether the request creates (name required) or changes a register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Create,
    Update,
}

/// A key change read from a body, and whether it asks to revoke.
pub struct KeyChange {
    pub patch: KeyPatch,
    pub revoke: bool,
}

pub struct TeamChange {
    pub patch: TeamPatch,
    pub revoke: bool,
}

pub fn invalid(param: &str, message: impl Into<String>) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        ErrorType::InvalidRequest,
        "invalid_field",
        message,
    )
    .with_param(param)
}

pub fn key_change(
    body: &[u8],
    purpose: Purpose,
    routes: &Routes,
    now_ms: u64,
) -> Result<KeyChange, ApiError> {
    let mut fields = Fields::parse(body, KEY_FIELDS)?;
    let patch = KeyPatch {
        name: fields.name(purpose, "key_")?,
        team: fields.optional_string("team")?,
        policy: fields.policy(routes)?,
        expires_ms: fields.expires_at(now_ms)?,
        metadata: fields.metadata()?,
    };
    let revoke = fields.revoked(purpose)?;
    Ok(KeyChange { patch, revoke })
}

pub fn team_change(body: &[u8], purpose: Purpose, routes: &Routes) -> Result<TeamChange, ApiError> {
    let mut fields = Fields::parse(body, TEAM_FIELDS)?;
    let patch = TeamPatch {
        name: fields.name(purpose, "team_")?,
        policy: fields.policy(routes)?,
        metadata: fields.metadata()?,
    };
    let revoke = fields.revoked(purpose)?;
    Ok(TeamChange { patch, revoke })
}

/// The fields of a JSON object, taken one by one.
struct Fields(Map<String, Value>);

impl Fields {
    fn parse(body: &[u8], known: &[&str]) -> Result<Fields, ApiError> {
        let value: Value = serde_json::from_slice(body).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorType::InvalidRequest,
                "invalid_json",
                format!("the body is not valid JSON: {e}"),
            )
        })?;
        let Value::Object(map) = value else {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorType::InvalidRequest,
                "invalid_json",
                "the body must be a JSON object",
            ));
        };
        if let Some(unknown) = map.keys().find(|name| !known.contains(&name.as_str())) {
            return Err(invalid(
                unknown,
                format!(
                    "unknown field `{unknown}`; known fields: {}",
                    known.join(", ")
                ),
            ));
        }
        Ok(Fields(map))
    }

    /// `None` when absent; `Some(Value::Null)` when null.
    fn take(&mut self, name: &str) -> Option<Value> {
        self.0.remove(name)
    }

    fn name(&mut self, purpose: Purpose, id_prefix: &str) -> Result<Option<String>, ApiError> {
        let Some(value) = self.take("name") else {
            return match purpose {
                Purpose::Create => Err(invalid("name", "`name` is required")),
                Purpose::Update => Ok(None),
            };
        };
        let Value::String(name) = value else {
            return Err(invalid("name", "`name` must be a string"));
        };
        let chars = name.chars().count();
        if chars == 0 || chars > MAX_NAME_CHARS {
            return Err(invalid(
                "name",
                format!("`name` must be 1 to {MAX_NAME_CHARS} characters"),
            ));
        }
        if name.chars().any(char::is_control) || name.trim() != name {
            return Err(invalid(
                "name",
                "`name` must not have control characters or surrounding spaces",
            ));
        }
        if name.starts_with(id_prefix) {
            return Err(invalid(
                "name",
                format!("`name` must not start with `{id_prefix}`, which ids start with"),
            ));
        }
        Ok(Some(name))
    }

    fn optional_string(&mut self, param: &str) -> Result<Option<Option<String>>, ApiError> {
        match self.take(param) {
            None => Ok(None),
            Some(Value::Null) => Ok(Some(None)),
            Some(Value::String(text)) if !text.is_empty() => Ok(Some(Some(text))),
            Some(_) => Err(invalid(
                param,
                format!("`{param}` must be a non-empty string or null"),
            )),
        }
    }

    fn policy(&mut self, routes: &Routes) -> Result<PolicyPatch, ApiError> {
        let models = match self.take("models") {
            None => None,
            Some(Value::Null) => Some(Vec::new()),
            Some(Value::Array(items)) => {
                let mut models = Vec::with_capacity(items.len());
                for item in items {
                    let Value::String(model) = item else {
                        return Err(invalid("models", "`models` must be a list of model names"));
                    };
                    if routes.get(&model).is_none() {
                        return Err(invalid(
                            "models",
                            format!("model `{model}` is not served here: GET /v1/models lists the aliases"),
                        ));
                    }
                    if !models.contains(&model) {
                        models.push(model);
                    }
                }
                Some(models)
            }
            Some(_) => return Err(invalid("models", "`models` must be a list of model names")),
        };
        let mut limits = Vec::new();
        for kind in LimitKind::ALL {
            if let Some(value) = self.take(kind.field()) {
                limits.push((kind, limit(kind, &value)?));
            }
        }
        Ok(PolicyPatch { models, limits })
    }

    /// RFC 3339 in UTC (`2026-12-31T00:00:00Z`) or seconds since the Unix
    /// epoch; in the future.
    fn expires_at(&mut self, now_ms: u64) -> Result<Option<Option<u64>>, ApiError> {
        let expires_ms = match self.take("expires_at") {
            None => return Ok(None),
            Some(Value::Null) => return Ok(Some(None)),
            Some(Value::Number(seconds)) => seconds
                .as_u64()
                .and_then(|seconds| seconds.checked_mul(1000))
                .ok_or_else(|| {
                    invalid(
                        "expires_at",
                        "`expires_at` as a number must be whole seconds since the Unix epoch",
                    )
                })?,
            Some(Value::String(text)) => parse_time(&text).ok_or_else(|| {
                invalid(
                    "expires_at",
                    "`expires_at` must be RFC 3339 in UTC, e.g. `2026-12-31T00:00:00Z`, or seconds since the Unix epoch",
                )
            })?,
            Some(_) => {
                return Err(invalid(
                    "expires_at",
                    "`expires_at` must be a string, a number or null",
                ))
            }
        };
        if expires_ms <= now_ms {
            return Err(invalid("expires_at", "`expires_at` is in the past"));
        }
        if expires_ms > MAX_EXPIRES_MS {
            return Err(invalid(
                "expires_at",
                "`expires_at` is after year 9999: as a number it is seconds, not milliseconds, since the Unix epoch",
            ));
        }
        Ok(Some(Some(expires_ms)))
    }

    fn metadata(&mut self) -> Result<Option<Metadata>, ApiError> {
        match self.take("metadata") {
            None => Ok(None),
            Some(Value::Null) => Ok(Some(Metadata::new())),
            Some(Value::Object(map)) => {
                let size = serde_json::to_vec(&map).map_or(usize::MAX, |json| json.len());
                if size > MAX_METADATA_BYTES {
                    return Err(invalid(
                        "metadata",
                        format!("`metadata` is larger than {MAX_METADATA_BYTES} bytes as JSON"),
                    ));
                }
                Ok(Some(map))
            }
            Some(_) => Err(invalid("metadata", "`metadata` must be a JSON object")),
        }
    }

    /// `revoked: true` revokes, on an update only; a revocation cannot be undone.
    fn revoked(&mut self, purpose: Purpose) -> Result<bool, ApiError> {
        match (self.take("revoked"), purpose) {
            (None, _) | (Some(Value::Bool(false)), Purpose::Create) => Ok(false),
            (Some(Value::Bool(true)), Purpose::Update) => Ok(true),
            (Some(Value::Bool(false)), Purpose::Update) => Err(invalid(
                "revoked",
                "a revocation cannot be undone: create a new key instead",
            )),
            (Some(Value::Bool(true)), Purpose::Create) => {
                Err(invalid("revoked", "a new key cannot start revoked"))
            }
            (Some(_), _) => Err(invalid("revoked", "`revoked` must be true or false")),
        }
    }
}

/// A limit's value: a whole count from 1 for counts, USD from 0 for
/// budgets (kept in micro-dollars), or null to clear it.
fn limit(kind: LimitKind, value: &Value) -> Result<Option<u64>, ApiError> {
    let field = kind.field();
    if value.is_null() {
        return Ok(None);
    }
    if kind.is_budget() {
        let usd = value
            .as_f64()
            .filter(|usd| (0.0..=MAX_BUDGET_USD).contains(usd))
            .ok_or_else(|| {
                invalid(
                    field,
                    format!(
                        "`{field}` must be a number of USD from 0 to {MAX_BUDGET_USD}, or null"
                    ),
                )
            })?;
        // In range, so the cast neither wraps nor saturates.
        return Ok(Some((usd * 1e6).round() as u64));
    }
    value
        .as_u64()
        .filter(|count| *count >= 1)
        .map(Some)
        .ok_or_else(|| {
            invalid(
                field,
                format!("`{field}` must be a whole number from 1, or null"),
            )
        })
}

/// Milliseconds since the Unix epoch of an RFC 3339 UTC time.
pub fn parse_time(text: &str) -> Option<u64> {
    let time = humantime::parse_rfc3339_weak(text).ok()?;
    let since = time.duration_since(std::time::UNIX_EPOCH).ok()?;
    u64::try_from(since.as_millis()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes() -> Routes {
        let ledger = crate::http::tests::ledger();
        crate::http::tests::routes_of(&["fast", "smart"], &ledger)
    }

    fn param_of(body: &str, purpose: Purpose) -> String {
        match key_change(body.as_bytes(), purpose, &routes(), 1_000) {
            Err(error) => error.body.error.param.unwrap_or_default(),
            Ok(_) => panic!("accepted: {body}"),
        }
    }

    #[test]
    fn every_field_reads_into_the_patch() {
        let body = r#"{"name": "ci", "team": "research", "models": ["fast"], "rpm": 10,
            "budget_daily_usd": 1.5, "expires_at": "2030-01-01T00:00:00Z",
            "metadata": {"owner": "ops"}}"#;
        let change = key_change(body.as_bytes(), Purpose::Create, &routes(), 1_000).unwrap();
        let patch = change.patch;
        assert_eq!(patch.name.as_deref(), Some("ci"));
        assert_eq!(patch.team, Some(Some("research".into())));
        assert_eq!(patch.policy.models, Some(vec!["fast".to_owned()]));
        assert!(patch.policy.limits.contains(&(LimitKind::Rpm, Some(10))));
        assert!(patch
            .policy
            .limits
            .contains(&(LimitKind::BudgetDaily, Some(1_500_000))));
        assert_eq!(patch.expires_ms, Some(Some(1_893_456_000_000)));
        assert_eq!(patch.metadata.unwrap()["owner"], "ops");
        assert!(!change.revoke);

        let cleared = key_change(
            br#"{"rpm": null, "revoked": true}"#,
            Purpose::Update,
            &routes(),
            0,
        )
        .unwrap();
        assert_eq!(cleared.patch.policy.limits, [(LimitKind::Rpm, None)]);
        assert!(cleared.revoke);
    }

    #[test]
    fn each_mistake_names_its_field() {
        for (body, param) in [
            (r#"{"rpm": 1}"#, "name"),
            (r#"{"name": "", "rpm": 1}"#, "name"),
            (r#"{"name": "key_x"}"#, "name"),
            (r#"{"name": "a", "rpm": 0}"#, "rpm"),
            (r#"{"name": "a", "tpm": -3}"#, "tpm"),
            (r#"{"name": "a", "max_parallel": 1.5}"#, "max_parallel"),
            (
                r#"{"name": "a", "budget_daily_usd": -1}"#,
                "budget_daily_usd",
            ),
            (
                r#"{"name": "a", "budget_monthly_usd": "10"}"#,
                "budget_monthly_usd",
            ),
            (r#"{"name": "a", "models": ["gpt-9"]}"#, "models"),
            (r#"{"name": "a", "models": "fast"}"#, "models"),
            (r#"{"name": "a", "expires_at": "tomorrow"}"#, "expires_at"),
            (r#"{"name": "a", "expires_at": 0}"#, "expires_at"),
            (
                r#"{"name": "a", "expires_at": 1767225600000}"#,
                "expires_at",
            ),
            (r#"{"name": "a", "expires_at": 1767225600.5}"#, "expires_at"),
            (r#"{"name": "a", "metadata": [1]}"#, "metadata"),
            (r#"{"name": "a", "team": 7}"#, "team"),
            (r#"{"name": "a", "revoked": true}"#, "revoked"),
            (r#"{"name": "a", "colour": "blue"}"#, "colour"),
        ] {
            assert_eq!(param_of(body, Purpose::Create), param, "{body}");
        }
        assert_eq!(
            param_of(r#"{"revoked": false}"#, Purpose::Update),
            "revoked"
        );
        let huge = format!(
            r#"{{"name": "a", "metadata": {{"x": "{}"}}}}"#,
            "y".repeat(5000)
        );
        assert_eq!(param_of(&huge, Purpose::Create), "metadata");
        assert!(key_change(b"[1]", Purpose::Create, &routes(), 0).is_err());
        assert!(key_change(b"{", Purpose::Create, &routes(), 0).is_err());
    }
}
