//! The load section: how many requests each run has in flight for each
//! key or team with limits, `key:<id>` or `team:<id>` → `count,unix_ms`,
//! so `max_parallel` holds across the cluster. A gauge, not a counter:
//! only live runs' figures count, since a dead run's requests died with
//! it. A run republishes a figure above zero every second, stamped, and
//! peers drop figures not refreshed for a few seconds, so a figure left
//! behind by a crash or a restarted gossip actor cannot hold a key back.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use super::bus::{Change, Liveness, Observed, RunStatus, Section};
use crate::ledger::RunId;
use crate::limits::Limiter;

/// How often a figure above zero is published again, unchanged or not.
const REFRESH: Duration = Duration::from_secs(1);

#[derive(Default)]
pub(super) struct LoadSection {
    /// What this node last published, by subject, and when.
    published: HashMap<String, (u64, u64)>,
}

impl LoadSection {
    pub fn observe(&self, limiter: &Limiter, observed: &Observed, now_ms: u64) {
        let in_flight = observed
            .value
            .split_once(',')
            .and_then(|(count, _stamp)| count.parse::<u64>().ok());
        match in_flight {
            Some(in_flight) => {
                limiter.note_remote_in_flight(
                    &observed.publisher,
                    &observed.key,
                    in_flight,
                    now_ms,
                );
            }
            None => tracing::debug!(key = %observed.key, "ignored an unreadable load entry"),
        }
    }

    /// Forgets what runs no longer alive had in flight, and publishes this
    /// node's figures that changed or are due for a refresh.
    pub fn changes(&mut self, limiter: &Limiter, runs: &[RunStatus], now_ms: u64) -> Vec<Change> {
        let alive: HashSet<&RunId> = runs
            .iter()
            .filter(|status| status.liveness == Liveness::Alive)
            .map(|status| &status.run)
            .collect();
        limiter.keep_remote_runs(|run| alive.contains(run), now_ms);
        let refresh_ms = REFRESH.as_millis() as u64;
        let current: HashMap<String, u64> = limiter
            .local_in_flight()
            .into_iter()
            .filter(|(_, in_flight)| *in_flight > 0)
            .collect();
        let mut changes = Vec::new();
        let set = |subject: &str, in_flight: u64| Change::Set {
            section: Section::Load,
            key: subject.to_owned(),
            value: format!("{in_flight},{now_ms}"),
        };
        for (subject, in_flight) in &current {
            let due = self.published.get(subject).is_none_or(|(published, at)| {
                published != in_flight || now_ms.saturating_sub(*at) >= refresh_ms
            });
            if due {
                changes.push(set(subject, *in_flight));
                self.published.insert(subject.clone(), (*in_flight, now_ms));
            }
        }
        self.published.retain(|subject, _| {
            let still = current.contains_key(subject);
            if !still {
                // Zero, rather than a deletion, which peers are not told of.
                changes.push(set(subject, 0));
            }
            still
        });
        changes
    }
}
