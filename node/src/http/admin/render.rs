//! Keys and teams as the admin API shows them: limits by their API names,
//! budgets in USD, times in RFC 3339 UTC, the team by id and name. Never
//! the key itself, which only the creating response carries.

use std::collections::HashMap;
use std::time::{Duration, UNIX_EPOCH};

use chorus_actors::{AdminRegistry, KeyEntry, TeamEntry};
use chorus_proto::admin::{LimitKind, Policy};
use serde_json::{json, Map, Value};

/// RFC 3339 in UTC, to the second; `null` for a time it cannot write
/// (past year 9999, which only a peer's garbage could bring).
pub fn time(unix_ms: u64) -> Value {
    use std::fmt::Write;
    let Some(at) = UNIX_EPOCH.checked_add(Duration::from_millis(unix_ms)) else {
        return Value::Null;
    };
    let mut text = String::new();
    match write!(text, "{}", humantime::format_rfc3339_seconds(at)) {
        Ok(()) => Value::String(text),
        Err(_) => Value::Null,
    }
}

fn optional_time(unix_ms: Option<u64>) -> Value {
    unix_ms.map_or(Value::Null, time)
}

/// `models` and every limit, by its API name; budgets in USD.
fn policy_fields(policy: &Policy, into: &mut Map<String, Value>) {
    into.insert("models".into(), json!(policy.models));
    for kind in LimitKind::ALL {
        let value = match policy.limits.get(kind) {
            None => Value::Null,
            // Micro-dollars up to 1e15 are exact as f64.
            Some(micros) if kind.is_budget() => json!(micros as f64 / 1e6),
            Some(count) => json!(count),
        };
        into.insert(kind.field().into(), value);
    }
}

/// Whether a key works now, and if not, why: `active`, `revoked`,
/// `expired`, `team_revoked` or `team_deleted`.
fn key_status(key: &KeyEntry, team: Option<&TeamEntry>, now_ms: u64) -> &'static str {
    if key.revoked_ms.is_some() {
        "revoked"
    } else if key
        .record
        .expires_ms
        .is_some_and(|expires| expires <= now_ms)
    {
        "expired"
    } else if key.record.team.is_some() && team.is_none() {
        "team_deleted"
    } else if team.is_some_and(|team| team.revoked_ms.is_some()) {
        "team_revoked"
    } else {
        "active"
    }
}

pub fn key(key: &KeyEntry, admin: &AdminRegistry, now_ms: u64) -> Value {
    let record = &key.record;
    let team_entry = record.team.as_ref().and_then(|team_id| admin.team(team_id));
    let team = record.team.as_ref().map(|team_id| {
        let name = team_entry.as_ref().map(|team| team.record.name.clone());
        json!({"id": team_id, "name": name})
    });
    let mut shown = Map::new();
    shown.insert("id".into(), json!(key.id));
    shown.insert("object".into(), json!("key"));
    shown.insert("name".into(), json!(record.name));
    shown.insert("team".into(), team.unwrap_or(Value::Null));
    policy_fields(&record.policy, &mut shown);
    shown.insert("expires_at".into(), optional_time(record.expires_ms));
    shown.insert(
        "status".into(),
        json!(key_status(key, team_entry.as_deref(), now_ms)),
    );
    shown.insert("revoked".into(), json!(key.revoked_ms.is_some()));
    shown.insert("revoked_at".into(), optional_time(key.revoked_ms));
    shown.insert("metadata".into(), Value::Object(record.metadata.clone()));
    shown.insert("created_at".into(), time(record.created_ms));
    shown.insert("updated_at".into(), time(key.stamp.wall_ms));
    Value::Object(shown)
}

/// How many live keys each team has, by team id.
pub fn keys_per_team(admin: &AdminRegistry) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for key in admin.keys() {
        if let Some(team) = &key.record.team {
            *counts.entry(team.clone()).or_insert(0) += 1;
        }
    }
    counts
}

/// `keys`: how many live keys the team has.
pub fn team(team: &TeamEntry, keys: usize) -> Value {
    let record = &team.record;
    let mut shown = Map::new();
    shown.insert("id".into(), json!(team.id));
    shown.insert("object".into(), json!("team"));
    shown.insert("name".into(), json!(record.name));
    policy_fields(&record.policy, &mut shown);
    shown.insert("keys".into(), json!(keys));
    shown.insert("revoked".into(), json!(team.revoked_ms.is_some()));
    shown.insert("revoked_at".into(), optional_time(team.revoked_ms));
    shown.insert("metadata".into(), Value::Object(record.metadata.clone()));
    shown.insert("created_at".into(), time(record.created_ms));
    shown.insert("updated_at".into(), time(team.stamp.wall_ms));
    Value::Object(shown)
}

/// OpenAI's list shape.
pub fn list(data: Vec<Value>) -> Value {
    json!({"object": "list", "data": data})
}

/// OpenAI's deletion shape.
pub fn deleted(id: &str, object: &str) -> Value {
    json!({"id": id, "object": object, "deleted": true})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_past_what_rfc_3339_can_write_are_null_not_a_panic() {
        assert_eq!(time(0), json!("1970-01-01T00:00:00Z"));
        assert_eq!(time(u64::MAX), Value::Null);
        assert_eq!(time(300_000_000_000_000), Value::Null, "year 11,000");
    }
}
