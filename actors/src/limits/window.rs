//! A per-minute limit read off the sliding minute (see
//! [`SLICE_MS`]): how much of it is used now, what remains, how long a
//! refused request should wait, and when the window is clear again — the
//! figures behind `retry-after` and the `x-ratelimit-*` headers.
//!
//! The minute's value is every slice the last 60 s touch, the oldest
//! counted whole; it falls as each slice leaves, which is when a refused
//! request may fit again.

use chorus_proto::counter::{Buckets, Window, MINUTE_SLICES, SLICE_MS};

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
    pub fn of(buckets: &Buckets, limit: u64, now_ms: u64) -> Self {
        let used = buckets.value(now_ms);
        let rolled = buckets.at(Window::Minute.epoch(now_ms));
        let reset_ms = rolled
            .counts()
            .iter()
            .position(|count| *count > 0)
            .map_or(0, |age| leaves_in_ms(&rolled, age, now_ms));
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

/// How long until the slice `age` slices before `rolled`'s newest stops
/// counting, from `now_ms`.
fn leaves_in_ms(rolled: &Buckets, age: usize, now_ms: u64) -> u64 {
    let left_for = (MINUTE_SLICES - age) as u64;
    rolled
        .epoch()
        .saturating_add(left_for)
        .saturating_mul(SLICE_MS)
        .saturating_sub(now_ms)
}

/// How long until `need` more fits under `limit`, in ms, if nothing else
/// is counted meanwhile: until enough of the oldest slices have left the
/// minute. `None` when it never fits (`need` above `limit`).
pub fn wait_ms(buckets: &Buckets, limit: u64, need: u64, now_ms: u64) -> Option<u64> {
    if need > limit {
        return None;
    }
    let rolled = buckets.at(Window::Minute.epoch(now_ms));
    let mut used = rolled.value(now_ms);
    let mut wait = 0;
    for (age, count) in rolled.counts().iter().enumerate().rev() {
        if used.saturating_add(need) <= limit {
            break;
        }
        used = used.saturating_sub(*count);
        wait = leaves_in_ms(&rolled, age, now_ms);
    }
    Some(wait)
}

/// A duration as OpenAI writes it in `x-ratelimit-reset-*`: `20ms`, `1.5s`,
/// `6m0s`.
pub fn openai_duration(ms: u64) -> String {
    if ms < 1_000 {
        return format!("{ms}ms");
    }
    if ms < 60_000 {
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

    const MINUTE: u64 = 60_000;

    /// Counts newest first, in the slices before the one `now_ms` is in.
    fn slices(now_ms: u64, counts: &[u64]) -> Buckets {
        let epoch = Window::Minute.epoch(now_ms);
        counts
            .iter()
            .enumerate()
            .fold(Buckets::default(), |sum, (age, count)| {
                sum.plus(&Buckets::new(Window::Minute, epoch - age as u64, *count))
            })
    }

    #[test]
    fn figures_read_every_slice_of_the_last_minute() {
        let now = 10 * MINUTE + 15_000;
        // 3 now, 60 in the slice 60 s back (partly in the minute).
        let mut counts = vec![3];
        counts.resize(MINUTE_SLICES, 0);
        counts[MINUTE_SLICES - 1] = 60;
        let figures = MinuteFigures::of(&slices(now, &counts), 100, now);
        assert_eq!((figures.used, figures.remaining), (63, 37));
        // Clear once the slice of 3 has left: 62 s after it began.
        assert_eq!(figures.reset_ms, 62_000 - 1_000);
        assert!(figures.fits(37) && !figures.fits(38));
        let quiet = MinuteFigures::of(&Buckets::default(), 100, 10 * MINUTE);
        assert_eq!((quiet.used, quiet.remaining, quiet.reset_ms), (0, 100, 0));
    }

    #[test]
    fn a_refused_request_waits_for_the_oldest_slices_to_leave() {
        // Limit 10, all 10 counted 30 s ago (at a slice's start): one more
        // fits once that slice has left, 32 s later.
        let now = 10 * MINUTE;
        let mut counts = vec![0; 16];
        counts[15] = 10;
        let full = slices(now, &counts);
        assert_eq!(wait_ms(&full, 10, 1, now), Some(32_000));
        assert_eq!(wait_ms(&full, 10, 1, now + 32_000), Some(0));
        assert_eq!(wait_ms(&full, 10, 11, now), None, "never fits");
    }

    proptest! {
        /// After the wait, the request fits; a moment before, it did not.
        #[test]
        fn the_wait_is_exactly_long_enough(
            counts in proptest::collection::vec(0..20u64, 0..MINUTE_SLICES),
            limit in 1..60u64, need in 1..5u64, into in 0..SLICE_MS,
        ) {
            let now = 10 * MINUTE + into;
            let buckets = slices(now, &counts);
            if let Some(wait) = wait_ms(&buckets, limit, need, now) {
                let then = MinuteFigures::of(&buckets, limit, now + wait);
                prop_assert!(then.fits(need), "{counts:?} {limit} {need} at {into}: wait {wait}");
                if wait > 0 {
                    let before = MinuteFigures::of(&buckets, limit, now + wait - 1);
                    prop_assert!(!before.fits(need));
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
