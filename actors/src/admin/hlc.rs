//! The hybrid logical clock that stamps admin changes. Its stamps follow
//! wall-clock time when clocks agree, and still order every change after
//! every stamp the node has seen when they do not: a node whose clock lags
//! cannot take a change that loses to one it already knows of.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use chorus_proto::admin::Stamp;

/// How far ahead of this node's clock a stamp seen may pull it. A peer
/// further ahead has a wrong clock, which must not drag every node's
/// stamps (and `updated_at`) into its future.
pub const MAX_AHEAD_MS: u64 = 60_000;

#[derive(Debug)]
pub struct HybridClock {
    node_id: String,
    /// The last (wall ms, logical) handed out or seen.
    last: Mutex<(u64, u32)>,
    /// A stamp too far ahead was seen: logged once.
    warned_ahead: AtomicBool,
}

impl HybridClock {
    pub fn new(node_id: impl Into<String>) -> Self {
        HybridClock {
            node_id: node_id.into(),
            last: Mutex::new((0, 0)),
            warned_ahead: AtomicBool::new(false),
        }
    }

    /// A stamp later than every stamp handed out or seen so far.
    pub fn stamp(&self, wall_ms: u64) -> Stamp {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let next = if wall_ms > last.0 {
            (wall_ms, 0)
        } else {
            (last.0, last.1.saturating_add(1))
        };
        *last = next;
        Stamp {
            wall_ms: next.0,
            logical: next.1,
            node_id: self.node_id.clone(),
        }
    }

    /// Takes in a stamp from elsewhere, so later local stamps order after
    /// it — up to `MAX_AHEAD_MS` ahead of `wall_ms`.
    pub fn observe(&self, stamp: &Stamp, wall_ms: u64) {
        let limit = wall_ms.saturating_add(MAX_AHEAD_MS);
        let seen = if stamp.wall_ms > limit {
            if !self.warned_ahead.swap(true, Ordering::Relaxed) {
                tracing::warn!(node_id = %stamp.node_id, ahead_ms = stamp.wall_ms - wall_ms,
                    "an admin change is stamped far in the future: is that node's clock right?");
            }
            (limit, 0)
        } else {
            (stamp.wall_ms, stamp.logical)
        };
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        *last = (*last).max(seen);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_only_go_up_whatever_the_wall_clock_does() {
        let clock = HybridClock::new("a");
        let first = clock.stamp(100);
        let same_ms = clock.stamp(100);
        let clock_went_back = clock.stamp(50);
        assert!(first < same_ms && same_ms < clock_went_back);
        assert_eq!((clock_went_back.wall_ms, clock_went_back.logical), (100, 2));
        assert_eq!(clock.stamp(200).logical, 0, "back to the wall clock");
    }

    #[test]
    fn a_lagging_node_stamps_after_what_it_has_seen() {
        let clock = HybridClock::new("slow");
        let seen = Stamp {
            wall_ms: 10_000,
            logical: 3,
            node_id: "fast".into(),
        };
        clock.observe(&seen, 9_000);
        let next = clock.stamp(9_000);
        assert!(next > seen, "{next:?}");
    }

    #[test]
    fn a_stamp_from_a_clock_far_ahead_pulls_only_a_minute() {
        let clock = HybridClock::new("here");
        let year_ahead = Stamp {
            wall_ms: 365 * 86_400_000,
            logical: 0,
            node_id: "wrong".into(),
        };
        clock.observe(&year_ahead, 1_000);
        assert_eq!(clock.stamp(1_000).wall_ms, 1_000 + MAX_AHEAD_MS);
    }
}
