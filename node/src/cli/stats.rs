//! `chorus stats`: the cluster's requests, tokens and spend over a time
//! range (`GET /v1/stats` on any node), as a table per model, key and
//! team.

use std::process::ExitCode;
use std::time::Duration;

use chorus_actors::clock::{millis, unix_millis};
use comfy_table::{presets, Table};
use serde_json::Value;

use super::admin::{fail, fetch};
use super::StatsArgs;

/// The sums of each row: (API field, heading).
const SUMS: &[(&str, &str)] = &[
    ("requests", "REQUESTS"),
    ("errors", "ERRORS"),
    ("cache_hits", "CACHE HITS"),
    ("prompt_tokens", "PROMPT TOKENS"),
    ("completion_tokens", "COMPLETION TOKENS"),
    ("cache_read_tokens", "CACHE READ"),
    ("cache_write_tokens", "CACHE WRITE"),
    ("cost_usd", "COST USD"),
];

pub fn run(args: &StatsArgs) -> ExitCode {
    let (since, until) = match (
        span(&args.since),
        args.until.as_deref().map(span).transpose(),
    ) {
        (Ok(since), Ok(until)) => (since, until.unwrap_or(Duration::ZERO)),
        (Err(message), _) | (_, Err(message)) => return fail(&message),
    };
    let now_ms = unix_millis();
    let path = format!(
        "v1/stats?since_ms={}&until_ms={}",
        now_ms.saturating_sub(millis(since)),
        now_ms.saturating_sub(millis(until)),
    );
    match fetch(&args.admin, &reqwest::Method::GET, &path, None) {
        Ok(stats) if args.admin.json => {
            println!(
                "{}",
                serde_json::to_string_pretty(&stats).unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        Ok(stats) => {
            print!("{}", render(&stats));
            ExitCode::SUCCESS
        }
        Err(message) => fail(&message),
    }
}

/// `30s`, `15m`, `24h` or `7d`: a span back from now.
fn span(text: &str) -> Result<Duration, String> {
    let unit = text.char_indices().last().map_or(0, |(at, _)| at);
    let (count, unit) = text.split_at(unit);
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => 0,
    };
    count
        .parse::<u64>()
        .ok()
        .filter(|_| seconds > 0)
        .map(|count| Duration::from_secs(count.saturating_mul(seconds)))
        .ok_or_else(|| format!("`{text}` is not a span like 30s, 15m, 24h or 7d"))
}

/// The answer as text: which nodes answered, the totals, then a table by
/// model, by key and by team.
fn render(stats: &Value) -> String {
    let names = |field: &str| {
        let names: Vec<&str> = stats["nodes"][field]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        if names.is_empty() {
            "none".to_owned()
        } else {
            names.join(", ")
        }
    };
    let mut text = format!(
        "nodes answered: {}; missing: {}\n\n",
        names("answered"),
        names("missing")
    );
    let mut totals = table(&["TOTAL"]);
    totals.add_row(row(&[], &stats["totals"]));
    text.push_str(&format!("{totals}\n\n"));
    for (list, labels, headings) in [
        ("by_model", &["model"][..], &["MODEL"][..]),
        ("by_key", &["key", "name"][..], &["KEY", "NAME"][..]),
        ("by_team", &["team"][..], &["TEAM"][..]),
    ] {
        let mut rows = table(headings);
        for entry in stats[list].as_array().into_iter().flatten() {
            rows.add_row(row(labels, entry));
        }
        text.push_str(&format!("{rows}\n\n"));
    }
    text
}

fn table(headings: &[&str]) -> Table {
    let mut table = Table::new();
    table.load_preset(presets::NOTHING);
    table.set_header(
        headings
            .iter()
            .copied()
            .chain(SUMS.iter().map(|(_, heading)| *heading)),
    );
    table
}

/// A row's cells: its labels, then its sums.
fn row(labels: &[&str], entry: &Value) -> Vec<String> {
    let cell = |value: &Value| match value {
        Value::Null => "-".to_owned(),
        Value::String(text) => text.clone(),
        Value::Number(number) if number.is_f64() => {
            format!("{:.6}", number.as_f64().unwrap_or(0.0))
        }
        other => other.to_string(),
    };
    let labels = labels.iter().map(|label| cell(&entry[*label]));
    let sums = SUMS.iter().map(|(field, _)| cell(&entry[*field]));
    if labels.len() == 0 {
        // The totals row has the "TOTAL" heading over an empty cell.
        std::iter::once(String::new()).chain(sums).collect()
    } else {
        labels.chain(sums).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn spans_read_and_the_table_shows_each_group() {
        assert_eq!(span("24h").unwrap(), Duration::from_secs(86_400));
        assert_eq!(span("15m").unwrap(), Duration::from_secs(900));
        for bad in ["", "h", "24", "1w", "-1h"] {
            assert!(span(bad).is_err(), "{bad}");
        }
        let stats = json!({
            "nodes": {"answered": ["a", "b"], "missing": ["c"]},
            "totals": {"requests": 3, "errors": 1, "cache_hits": 0, "prompt_tokens": 30,
                "completion_tokens": 12, "cost_usd": 0.0015},
            "by_model": [{"model": "fast", "requests": 3, "cost_usd": 0.0015}],
            "by_key": [{"key": "key_1", "name": "ci", "requests": 2}],
            "by_team": [],
        });
        let text = render(&stats);
        assert!(text.contains("nodes answered: a, b; missing: c"), "{text}");
        for needle in [
            "MODEL",
            "fast",
            "0.001500",
            "key_1",
            "ci",
            "TEAM",
            "COMPLETION TOKENS",
        ] {
            assert!(text.contains(needle), "no {needle} in\n{text}");
        }
    }
}
