//! The last ten minutes of this node's traffic, per alias and per
//! deployment, in 10-second buckets: requests, errors, rejections, spend,
//! and latency and TTFT histograms to read p50 and p99 from. The status
//! page draws its charts from it. Fed where the metrics are, and kept in
//! memory only: a restarted node starts a new history. Its series are the
//! configured aliases and deployments, fixed at start: no request can add
//! one.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{json, Value};

/// The width of one bucket.
pub const BUCKET: Duration = Duration::from_secs(10);
/// Buckets kept: ten minutes.
pub const BUCKETS: usize = 60;

/// Histogram bounds, in ms: 1 ms to about 160 s, each 35 % above the one
/// before; a value beyond the last counts in the last.
const BOUNDS: usize = 40;
const FIRST_BOUND_MS: f64 = 1.0;
const GROWTH: f64 = 1.35;

/// One 10-second bucket of one series.
#[derive(Debug, Clone)]
struct Bucket {
    /// Which 10-second slot since the Unix epoch this bucket holds now.
    slot: u64,
    requests: u64,
    errors: u64,
    rejections: u64,
    cost_micros: u64,
    latency: [u32; BOUNDS],
    ttft: [u32; BOUNDS],
}

impl Bucket {
    fn empty(slot: u64) -> Self {
        Bucket {
            slot,
            requests: 0,
            errors: 0,
            rejections: 0,
            cost_micros: 0,
            latency: [0; BOUNDS],
            ttft: [0; BOUNDS],
        }
    }
}

/// A ring of buckets for one alias or deployment.
#[derive(Debug)]
struct Series {
    buckets: Vec<Bucket>,
}

impl Series {
    fn new() -> Self {
        Series {
            buckets: vec![Bucket::empty(0); BUCKETS],
        }
    }

    /// The bucket of `slot`, emptied first if it held an older one.
    fn at(&mut self, slot: u64) -> &mut Bucket {
        let bucket = &mut self.buckets[(slot % BUCKETS as u64) as usize];
        if bucket.slot != slot {
            *bucket = Bucket::empty(slot);
        }
        bucket
    }
}

/// What one request adds to a series.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    pub error: bool,
    pub rejected: bool,
    pub cost_micros: u64,
    pub latency: Option<Duration>,
    pub ttft: Option<Duration>,
}

type SeriesByName = BTreeMap<String, Mutex<Series>>;

/// The node's recent history.
#[derive(Default)]
pub struct Recent {
    aliases: SeriesByName,
    deployments: SeriesByName,
}

impl Recent {
    /// A history of these aliases and deployments.
    pub fn new<'a>(
        aliases: impl IntoIterator<Item = &'a str>,
        deployments: impl IntoIterator<Item = &'a str>,
    ) -> Self {
        let series = |names: &mut dyn Iterator<Item = &'a str>| {
            names
                .map(|name| (name.to_owned(), Mutex::new(Series::new())))
                .collect()
        };
        Recent {
            aliases: series(&mut aliases.into_iter()),
            deployments: series(&mut deployments.into_iter()),
        }
    }

    /// Adds a request of `alias`, whose last call went to `deployment`,
    /// at `now_ms`.
    pub fn add(&self, alias: &str, deployment: Option<&str>, sample: Sample, now_ms: u64) {
        add(&self.aliases, alias, sample, now_ms);
        if let Some(deployment) = deployment {
            add(&self.deployments, deployment, sample, now_ms);
        }
    }

    /// The history as the status page reads it: for each alias and
    /// deployment, one value per bucket, oldest first, the last being the
    /// bucket under way.
    pub fn to_json(&self, now_ms: u64) -> Value {
        json!({
            "bucket_s": BUCKET.as_secs(),
            "buckets": BUCKETS,
            "now_ms": now_ms,
            "aliases": charts(&self.aliases, now_ms),
            "deployments": charts(&self.deployments, now_ms),
        })
    }
}

fn slot_of(now_ms: u64) -> u64 {
    now_ms / (BUCKET.as_millis() as u64)
}

fn add(series: &SeriesByName, name: &str, sample: Sample, now_ms: u64) {
    let Some(one) = series.get(name) else {
        return;
    };
    let mut one = one.lock().unwrap_or_else(|p| p.into_inner());
    let bucket = one.at(slot_of(now_ms));
    bucket.requests += 1;
    bucket.errors += u64::from(sample.error);
    bucket.rejections += u64::from(sample.rejected);
    bucket.cost_micros = bucket.cost_micros.saturating_add(sample.cost_micros);
    if let Some(latency) = sample.latency {
        bucket.latency[bound_of(latency)] += 1;
    }
    if let Some(ttft) = sample.ttft {
        bucket.ttft[bound_of(ttft)] += 1;
    }
}

fn charts(series: &SeriesByName, now_ms: u64) -> Value {
    let now = slot_of(now_ms);
    let mut charts = serde_json::Map::new();
    for (name, one) in series {
        let one = one.lock().unwrap_or_else(|p| p.into_inner());
        let slots = (0..BUCKETS as u64)
            .rev()
            .map(|back| now.saturating_sub(back));
        let buckets: Vec<Option<&Bucket>> = slots
            .map(|slot| {
                let bucket = &one.buckets[(slot % BUCKETS as u64) as usize];
                (bucket.slot == slot).then_some(bucket)
            })
            .collect();
        let per = |value: fn(&Bucket) -> f64| -> Vec<f64> {
            buckets.iter().map(|b| b.map_or(0.0, value)).collect()
        };
        let quantile = |q: f64, histogram: fn(&Bucket) -> &[u32; BOUNDS]| -> Vec<Option<f64>> {
            buckets
                .iter()
                .map(|b| b.and_then(|b| quantile_ms(histogram(b), q)))
                .collect()
        };
        let share = |part: fn(&Bucket) -> u64| -> Vec<f64> {
            buckets
                .iter()
                .map(|b| b.map_or(0.0, |b| ratio(part(b), b.requests)))
                .collect()
        };
        charts.insert(
            name.clone(),
            json!({
                "rps": per(|b| b.requests as f64 / BUCKET.as_secs_f64()),
                "latency_p50_ms": quantile(0.5, |b| &b.latency),
                "latency_p99_ms": quantile(0.99, |b| &b.latency),
                "ttft_p50_ms": quantile(0.5, |b| &b.ttft),
                "ttft_p99_ms": quantile(0.99, |b| &b.ttft),
                "error_rate": share(|b| b.errors),
                "rejection_rate": share(|b| b.rejections),
                "spend_usd": per(|b| b.cost_micros as f64 / 1e6),
                "requests": per(|b| b.requests as f64).iter().sum::<f64>(),
            }),
        );
    }
    Value::Object(charts)
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// The histogram slot of a duration: the first bound at or above it.
fn bound_of(duration: Duration) -> usize {
    let ms = duration.as_secs_f64() * 1000.0;
    if ms <= FIRST_BOUND_MS {
        return 0;
    }
    let slot = (ms / FIRST_BOUND_MS).ln() / GROWTH.ln();
    (slot.ceil() as usize).min(BOUNDS - 1)
}

/// The upper bound of a histogram slot, in ms.
fn bound_ms(slot: usize) -> f64 {
    FIRST_BOUND_MS * GROWTH.powi(slot as i32)
}

/// The `q` quantile of a histogram, as its slot's upper bound (an
/// overestimate by at most 35 %); `None` when it is empty.
fn quantile_ms(histogram: &[u32; BOUNDS], q: f64) -> Option<f64> {
    let total: u64 = histogram.iter().map(|count| u64::from(*count)).sum();
    if total == 0 {
        return None;
    }
    let rank = ((total as f64) * q).ceil().max(1.0) as u64;
    let mut seen = 0u64;
    for (slot, count) in histogram.iter().enumerate() {
        seen += u64::from(*count);
        if seen >= rank {
            return Some(bound_ms(slot));
        }
    }
    Some(bound_ms(BOUNDS - 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(latency_ms: u64) -> Sample {
        Sample {
            latency: Some(Duration::from_millis(latency_ms)),
            cost_micros: 10,
            ..Sample::default()
        }
    }

    #[test]
    fn buckets_hold_the_last_ten_minutes_and_quantiles_come_from_them() {
        let recent = Recent::new(["fast"], ["up/m"]);
        let start = 1_000_000_000;
        for latency in 1..=100 {
            recent.add("fast", Some("up/m"), sample(latency), start);
        }
        recent.add(
            "fast",
            None,
            Sample {
                rejected: true,
                ..Sample::default()
            },
            start,
        );
        recent.add(
            "fast",
            Some("up/m"),
            Sample {
                error: true,
                ..sample(5)
            },
            start + 10_000,
        );
        let shown = recent.to_json(start + 10_000);
        let fast = &shown["aliases"]["fast"];
        let rps = fast["rps"].as_array().unwrap();
        assert_eq!(rps.len(), BUCKETS);
        assert_eq!(rps[BUCKETS - 2], 10.1, "101 requests in 10 s");
        assert_eq!(rps[BUCKETS - 1], 0.1);
        let p50 = fast["latency_p50_ms"][BUCKETS - 2].as_f64().unwrap();
        let p99 = fast["latency_p99_ms"][BUCKETS - 2].as_f64().unwrap();
        assert!((50.0..=50.0 * GROWTH).contains(&p50), "{p50}");
        assert!((99.0..=99.0 * GROWTH).contains(&p99), "{p99}");
        assert_eq!(fast["latency_p50_ms"][0], Value::Null, "an empty bucket");
        assert_eq!(
            fast["rejection_rate"][BUCKETS - 2].as_f64().unwrap(),
            1.0 / 101.0
        );
        assert_eq!(fast["error_rate"][BUCKETS - 1], 1.0);
        assert_eq!(shown["deployments"]["up/m"]["requests"], 101.0);
        // Ten minutes on, the old buckets are gone.
        let later = recent.to_json(start + 10 * 60 * 1000 + 10_000);
        assert_eq!(later["aliases"]["fast"]["requests"], 0.0);
        recent.add("made-up", Some("nowhere/x"), sample(1), start);
        let shown = recent.to_json(start);
        assert!(
            shown["aliases"].get("made-up").is_none(),
            "only configured series"
        );
        assert!((fast["spend_usd"][BUCKETS - 2].as_f64().unwrap() - 0.001).abs() < 1e-9);
    }

    #[test]
    fn durations_land_in_the_first_bound_at_or_above_them() {
        assert_eq!(bound_of(Duration::ZERO), 0);
        assert_eq!(bound_of(Duration::from_millis(1)), 0);
        let slot = bound_of(Duration::from_millis(100));
        assert!(bound_ms(slot) >= 100.0 && bound_ms(slot - 1) < 100.0);
        assert_eq!(bound_of(Duration::from_secs(100_000)), BOUNDS - 1);
        assert_eq!(quantile_ms(&[0; BOUNDS], 0.5), None);
    }
}
