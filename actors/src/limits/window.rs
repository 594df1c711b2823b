//! A per-minute limit read off a sliding-window counter: how much of it is
//! used now, what remains, how long a refused request should wait, and
//! when the window is clear again — the figures behind `retry-after` and
//! the `x-ratelimit-*` headers.
//!
//! The estimate is the current minute's count plus the previous minute's,
//! weighted by how much of it the last 60 s still cover, rounded up; it
//! falls as the previous minute slides out, which is when a refused
//! request fits again.

use chorus_proto::counter::{Buckets, Window};

const MINUTE_MS: u64 = 60_000;

/// One minute limit as of one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MinuteFigures {
    pub limit: u64,
    pub used: u64,
    /// What another request may still take now.
    pub remaining: u64,
    /// Until the whole window is empty, in ms.
    pub reset_ms: u64,
}

impl MinuteFigures {
    /// `buckets` (cluster-wide) against `limit` at `now_ms`.
    pub fn of(buckets: Buckets, limit: u64, now_ms: u64) -> Self {
        let used = Window::Minute.value(buckets, now_ms);
        let rolled = buckets.at(Window::Minute.epoch(now_ms));
        let left_in_minute = MINUTE_MS - now_ms % MINUTE_MS;
        let reset_ms = if rolled.current > 0 {
            left_in_minute + MINUTE_MS
        } else if rolled.previous > 0 {
            left_in_minute
        } else {
            0
        };
        MinuteFigures {
            limit,
            used,
            remaining: limit.saturating_sub(used),
            reset_ms,
        }
    }

    /// Whether `need` more fits now.
    pub fn fits(&self, need: u64) -> bool {
        self.used.saturating_add(need) <= self.limit
    }
}

/// How long until `need` more fits under `limit`, in ms, if nothing else
/// is counted meanwhile; `None` when it never fits (`need` above `limit`).
pub fn wait_ms(buckets: Buckets, limit: u64, need: u64, now_ms: u64) -> Option<u64> {
    if need > limit {
        return None;
    }
    let rolled = buckets.at(Window::Minute.epoch(now_ms));
    let into_minute = now_ms % MINUTE_MS;
    let room = limit - need;
    if rolled.current <= room {
        // Within this minute, once enough of the previous one slid out:
        // ⌈previous × (60 s − t) / 60 s⌉ ≤ room − current.
        let allowed = room - rolled.current;
        if rolled.previous <= allowed {
            return Some(0);
        }
        let until = MINUTE_MS - allowed * MINUTE_MS / rolled.previous;
        return Some(until.saturating_sub(into_minute));
    }
    // Not this minute: the current count becomes the previous one, which
    // must slide out far enough: ⌈current × (60 s − t) / 60 s⌉ ≤ room.
    let until = MINUTE_MS - room * MINUTE_MS / rolled.current;
    Some(MINUTE_MS - into_minute + until)
}

/// A duration as OpenAI writes it in `x-ratelimit-reset-*`: `20ms`, `1.5s`,
/// `6m0s`.
pub fn openai_duration(ms: u64) -> String {
    if ms < 1_000 {
        return format!("{ms}ms");
    }
    if ms < MINUTE_MS {
        let tenths = ms.div_ceil(100);
        return if tenths.is_multiple_of(10) {
            format!("{}s", tenths / 10)
        } else {
            format!("{}.{}s", tenths / 10, tenths % 10)
        };
    }
    let seconds = ms.div_ceil(1_000);
    format!("{}m{}s", seconds / 60, seconds % 60)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const MINUTE: u64 = MINUTE_MS;

    #[test]
    fn figures_read_the_sliding_estimate() {
        let buckets = Buckets {
            epoch: 10,
            current: 3,
            previous: 60,
        };
        // 15 s into minute 10: 3 + 60 × 45/60.
        let figures = MinuteFigures::of(buckets, 100, 10 * MINUTE + 15_000);
        assert_eq!((figures.used, figures.remaining), (48, 52));
        assert_eq!(figures.reset_ms, 45_000 + MINUTE);
        assert!(figures.fits(52) && !figures.fits(53));
        let quiet = MinuteFigures::of(Buckets::default(), 100, 10 * MINUTE);
        assert_eq!((quiet.used, quiet.remaining, quiet.reset_ms), (0, 100, 0));
    }

    #[test]
    fn a_refused_request_waits_for_the_previous_minute_to_slide_out() {
        let full = Buckets {
            epoch: 10,
            current: 0,
            previous: 10,
        };
        // Limit 10, at 0 s into the minute: one more fits once a tenth of
        // the previous minute has gone, 6 s later.
        assert_eq!(wait_ms(full, 10, 1, 10 * MINUTE), Some(6_000));
        assert_eq!(wait_ms(full, 10, 1, 10 * MINUTE + 6_000), Some(0));
        // This minute is full by itself: into the next minute, then 6 s.
        let this_minute = Buckets {
            epoch: 10,
            current: 10,
            previous: 0,
        };
        assert_eq!(
            wait_ms(this_minute, 10, 1, 10 * MINUTE + 50_000),
            Some(16_000)
        );
        assert_eq!(
            wait_ms(this_minute, 10, 11, 10 * MINUTE),
            None,
            "never fits"
        );
    }

    proptest! {
        /// After the wait, the request fits; a moment before, it did not.
        #[test]
        fn the_wait_is_exactly_long_enough(
            current in 0..50u64, previous in 0..50u64, limit in 1..60u64,
            need in 1..5u64, into in 0..MINUTE,
        ) {
            let buckets = Buckets { epoch: 10, current, previous };
            let now = 10 * MINUTE + into;
            if let Some(wait) = wait_ms(buckets, limit, need, now) {
                let then = MinuteFigures::of(buckets, limit, now + wait);
                prop_assert!(then.fits(need), "{buckets:?} {limit} {need} at {into}: wait {wait}");
                if wait > 0 {
                    let before = MinuteFigures::of(buckets, limit, now + wait - 1);
                    prop_assert!(!before.fits(need) || wait <= 1);
                }
            }
        }
    }

    #[test]
    fn durations_read_like_openai_s() {
        assert_eq!(openai_duration(20), "20ms");
        assert_eq!(openai_duration(1_000), "1s");
        assert_eq!(openai_duration(1_450), "1.5s");
        assert_eq!(openai_duration(360_000), "6m0s");
        assert_eq!(openai_duration(61_500), "1m2s");
    }
}
