//! Requests, tokens and spend added up from request log records, by key,
//! team and model. Every figure is a plain sum, so each node adds up its
//! own log and any node merges the others' into the cluster's.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::RequestRecord;

/// The sums of one group of requests.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsRow {
    /// A key's name, for the rows by key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub requests: u64,
    /// Requests that ended with a status of 400 or more.
    pub errors: u64,
    pub cache_hits: u64,
    /// Every input token, cached ones included.
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Of `prompt_tokens`, those read from and written to prompt caches.
    #[serde(default)]
    pub cache_read_tokens: u64,
    #[serde(default)]
    pub cache_write_tokens: u64,
    pub cost_micros: u64,
}

/// The sums of a set of records: overall, and by key, team and model
/// (records without one count in the totals only).
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub totals: StatsRow,
    pub by_key: BTreeMap<String, StatsRow>,
    pub by_team: BTreeMap<String, StatsRow>,
    pub by_model: BTreeMap<String, StatsRow>,
}

impl StatsRow {
    fn add(&mut self, record: &RequestRecord) {
        self.requests += 1;
        self.errors += u64::from(record.status >= 400);
        self.cache_hits += u64::from(record.cache.as_deref() == Some("hit"));
        self.prompt_tokens = self.prompt_tokens.saturating_add(record.prompt_tokens);
        self.completion_tokens = self
            .completion_tokens
            .saturating_add(record.completion_tokens);
        self.cache_read_tokens = self
            .cache_read_tokens
            .saturating_add(record.cache_read_tokens);
        self.cache_write_tokens = self
            .cache_write_tokens
            .saturating_add(record.cache_write_tokens);
        self.cost_micros = self.cost_micros.saturating_add(record.cost_micros);
    }

    fn merge(&mut self, other: StatsRow) {
        self.name = self.name.take().or(other.name);
        self.requests = self.requests.saturating_add(other.requests);
        self.errors = self.errors.saturating_add(other.errors);
        self.cache_hits = self.cache_hits.saturating_add(other.cache_hits);
        self.prompt_tokens = self.prompt_tokens.saturating_add(other.prompt_tokens);
        self.completion_tokens = self
            .completion_tokens
            .saturating_add(other.completion_tokens);
        self.cache_read_tokens = self
            .cache_read_tokens
            .saturating_add(other.cache_read_tokens);
        self.cache_write_tokens = self
            .cache_write_tokens
            .saturating_add(other.cache_write_tokens);
        self.cost_micros = self.cost_micros.saturating_add(other.cost_micros);
    }

    /// The row as the API shows it: `label` naming its group, and the cost
    /// in USD beside the exact micro-dollars.
    fn to_json(&self, label: Option<(&str, &str)>) -> Value {
        let mut row = Map::new();
        if let Some((field, value)) = label {
            row.insert(field.into(), value.into());
        }
        if let Value::Object(sums) = json!(self) {
            row.extend(sums);
        }
        row.insert("cost_usd".into(), json!(self.cost_micros as f64 / 1e6));
        Value::Object(row)
    }
}

impl Stats {
    pub fn add(&mut self, record: &RequestRecord) {
        self.totals.add(record);
        if let Some(key) = &record.key {
            let row = self.by_key.entry(key.clone()).or_default();
            row.add(record);
            if row.name.is_none() {
                row.name.clone_from(&record.key_name);
            }
        }
        if let Some(team) = &record.team {
            self.by_team.entry(team.clone()).or_default().add(record);
        }
        if let Some(alias) = &record.alias {
            self.by_model.entry(alias.clone()).or_default().add(record);
        }
    }

    /// Adds another node's sums to these.
    pub fn merge(&mut self, other: Stats) {
        self.totals.merge(other.totals);
        for (mine, theirs) in [
            (&mut self.by_key, other.by_key),
            (&mut self.by_team, other.by_team),
            (&mut self.by_model, other.by_model),
        ] {
            for (group, row) in theirs {
                mine.entry(group).or_default().merge(row);
            }
        }
    }

    /// The sums as `GET /v1/stats` shows them: lists of rows, most
    /// requests first.
    pub fn to_json(&self) -> Value {
        let rows = |groups: &BTreeMap<String, StatsRow>, field: &str| {
            let mut rows: Vec<(&String, &StatsRow)> = groups.iter().collect();
            rows.sort_by(|a, b| b.1.requests.cmp(&a.1.requests).then(a.0.cmp(b.0)));
            rows.into_iter()
                .map(|(group, row)| row.to_json(Some((field, group))))
                .collect::<Vec<_>>()
        };
        json!({
            "totals": self.totals.to_json(None),
            "by_key": rows(&self.by_key, "key"),
            "by_team": rows(&self.by_team, "team"),
            "by_model": rows(&self.by_model, "model"),
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn record(key: &str, team: Option<&str>, alias: &str, status: u16) -> RequestRecord {
        RequestRecord {
            id: format!("req-{key}-{alias}-{status}"),
            time_ms: 1_000,
            node: "a".into(),
            endpoint: "chat/completions".into(),
            key: Some(key.into()),
            key_name: Some(format!("{key}-name")),
            team: team.map(str::to_owned),
            alias: Some(alias.into()),
            deployment: Some("up/m".into()),
            attempts: 1,
            stream: false,
            status,
            outcome: "completed".into(),
            code: None,
            prompt_tokens: 10,
            completion_tokens: 5,
            cache_read_tokens: 4,
            cache_write_tokens: 0,
            usage_estimated: false,
            cost_micros: 1_500,
            latency_ms: 12.0,
            ttft_ms: None,
            cache: None,
        }
    }

    #[test]
    fn sums_by_group_merge_across_nodes() {
        let mut a = Stats::default();
        a.add(&record("k1", Some("t1"), "fast", 200));
        a.add(&record("k2", None, "fast", 429));
        let mut b = Stats::default();
        let mut hit = record("k1", Some("t1"), "smart", 200);
        hit.cache = Some("hit".into());
        hit.cost_micros = 0;
        b.add(&hit);
        a.merge(b);
        assert_eq!(a.totals.requests, 3);
        assert_eq!(a.totals.errors, 1);
        assert_eq!(a.totals.cache_hits, 1);
        assert_eq!(a.totals.cost_micros, 3_000);
        assert_eq!(a.by_key["k1"].requests, 2);
        assert_eq!(a.by_key["k1"].name.as_deref(), Some("k1-name"));
        assert_eq!(a.by_team.len(), 1, "a key without a team is in no team row");
        assert_eq!(a.by_model["fast"].prompt_tokens, 20);
        assert_eq!(a.by_model["fast"].cache_read_tokens, 8);
        let shown = a.to_json();
        assert_eq!(shown["by_model"][0]["model"], "fast");
        assert_eq!(shown["totals"]["cost_usd"], 0.003);
        let round_trip: Stats = serde_json::from_value(json!(a)).unwrap();
        assert_eq!(round_trip, a);
    }
}
