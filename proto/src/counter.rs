//! Cluster counters: what a counter is (a typed [`CounterKey`]: kind and
//! subject, the kind fixing the time window) and what one run of a node
//! contributes to it (a [`Tally`]), with the merge that makes gossiped
//! tallies a CRDT.
//!
//! Counts are [`Buckets`]: the count of the window bucket last written in
//! (`epoch`) and of the bucket before, so a one-minute rate can be read as a
//! sliding window and a daily spend resets at midnight UTC, while each
//! counter stays one value per node however long it lives: buckets expire
//! with their window instead of piling up.

use std::fmt;

/// How long a counter's buckets last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// One bucket forever: totals since the store began.
    Lifetime,
    /// One-minute buckets, read as a sliding window over the last minute.
    Minute,
    /// UTC days.
    Day,
    /// UTC calendar months.
    Month,
}

const MINUTE_MS: u64 = 60_000;
const DAY_MS: u64 = 86_400_000;

/// Months since January 1970 of the UTC date `days` days after the epoch
/// (Howard Hinnant's `civil_from_days`, for days from 1970 on).
fn month_of(days: u64) -> u64 {
    let shifted = days + 719_468;
    let era = shifted / 146_097;
    let day_of_era = shifted % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    // March-based: months 10 and 11 (January, February) belong to the next year.
    let (month, year_bump) = if shifted_month < 10 {
        (shifted_month + 3, 0)
    } else {
        (shifted_month - 9, 1)
    };
    let year = year_of_era + era * 400 + year_bump;
    (year - 1970) * 12 + (month - 1)
}

impl Window {
    /// The bucket `unix_ms` falls in.
    pub fn epoch(self, unix_ms: u64) -> u64 {
        match self {
            Window::Lifetime => 0,
            Window::Minute => unix_ms / MINUTE_MS,
            Window::Day => unix_ms / DAY_MS,
            Window::Month => month_of(unix_ms / DAY_MS),
        }
    }

    /// The counter's value at `unix_ms` from its cluster-wide buckets: the
    /// current bucket, plus for the sliding minute the previous bucket
    /// weighted by how much of it the last 60 s still cover, rounded up
    /// (the sliding-window-counter estimate).
    pub fn value(self, buckets: Buckets, unix_ms: u64) -> u64 {
        let rolled = buckets.at(self.epoch(unix_ms));
        match self {
            Window::Lifetime | Window::Day | Window::Month => rolled.current,
            Window::Minute => {
                // Rounded up, so a limit read off it is never exceeded by
                // the rounding.
                let into_bucket = unix_ms % MINUTE_MS;
                let overlap = (u128::from(rolled.previous) * u128::from(MINUTE_MS - into_bucket))
                    .div_ceil(u128::from(MINUTE_MS));
                rolled
                    .current
                    .saturating_add(u64::try_from(overlap).unwrap_or(u64::MAX))
            }
        }
    }
}

/// What a counter counts, which fixes its window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CounterKind {
    /// Upstream calls that ended, per deployment.
    Calls,
    /// Upstream calls that failed, per deployment.
    Errors,
    PromptTokens,
    CompletionTokens,
    /// What the calls cost at the deployment's prices, in micro-dollars.
    CostMicros,
    /// Calls in the last minute, per deployment.
    CallsMinute,
    /// What the calls cost today (UTC), in micro-dollars, per deployment.
    CostMicrosDay,
    /// Requests admitted in the last minute, per key or team.
    RequestsMinute,
    /// Tokens used in the last minute, per key or team, as requests end.
    TokensMinute,
    /// Tokens reserved at admission in the last minute, per key or team.
    /// A reservation counts until its request ends (see
    /// [`CounterKind::TokensMinuteFreed`]) or its node is known dead.
    TokensMinuteHeld,
    /// Reserved tokens whose request ended, counted in the minute they
    /// were reserved in.
    TokensMinuteFreed,
    /// Spend today (UTC), in micro-dollars, per key or team, as requests
    /// end.
    SpendMicrosDay,
    /// Spend reserved at admission today; see `TokensMinuteHeld`.
    SpendMicrosDayHeld,
    SpendMicrosDayFreed,
    /// Spend this month (UTC), in micro-dollars, per key or team.
    SpendMicrosMonth,
    SpendMicrosMonthHeld,
    SpendMicrosMonthFreed,
}

impl CounterKind {
    pub const ALL: [CounterKind; 17] = [
        CounterKind::Calls,
        CounterKind::Errors,
        CounterKind::PromptTokens,
        CounterKind::CompletionTokens,
        CounterKind::CostMicros,
        CounterKind::CallsMinute,
        CounterKind::CostMicrosDay,
        CounterKind::RequestsMinute,
        CounterKind::TokensMinute,
        CounterKind::TokensMinuteHeld,
        CounterKind::TokensMinuteFreed,
        CounterKind::SpendMicrosDay,
        CounterKind::SpendMicrosDayHeld,
        CounterKind::SpendMicrosDayFreed,
        CounterKind::SpendMicrosMonth,
        CounterKind::SpendMicrosMonthHeld,
        CounterKind::SpendMicrosMonthFreed,
    ];

    /// Whether it counts reservations, opened or closed: a run's count of
    /// those stands only while the run lives, since a dead run's requests
    /// died with it. Never folded into a later run, never republished.
    pub const fn is_held(self) -> bool {
        matches!(
            self,
            CounterKind::TokensMinuteHeld
                | CounterKind::TokensMinuteFreed
                | CounterKind::SpendMicrosDayHeld
                | CounterKind::SpendMicrosDayFreed
                | CounterKind::SpendMicrosMonthHeld
                | CounterKind::SpendMicrosMonthFreed
        )
    }

    /// The stable name used in gossip keys, store keys and the API.
    pub const fn code(self) -> &'static str {
        match self {
            CounterKind::Calls => "calls",
            CounterKind::Errors => "errors",
            CounterKind::PromptTokens => "prompt_tokens",
            CounterKind::CompletionTokens => "completion_tokens",
            CounterKind::CostMicros => "cost_micros",
            CounterKind::CallsMinute => "calls_minute",
            CounterKind::CostMicrosDay => "cost_micros_day",
            CounterKind::RequestsMinute => "requests_minute",
            CounterKind::TokensMinute => "tokens_minute",
            CounterKind::TokensMinuteHeld => "tokens_minute_held",
            CounterKind::TokensMinuteFreed => "tokens_minute_freed",
            CounterKind::SpendMicrosDay => "spend_micros_day",
            CounterKind::SpendMicrosDayHeld => "spend_micros_day_held",
            CounterKind::SpendMicrosDayFreed => "spend_micros_day_freed",
            CounterKind::SpendMicrosMonth => "spend_micros_month",
            CounterKind::SpendMicrosMonthHeld => "spend_micros_month_held",
            CounterKind::SpendMicrosMonthFreed => "spend_micros_month_freed",
        }
    }

    pub fn from_code(code: &str) -> Option<Self> {
        CounterKind::ALL
            .into_iter()
            .find(|kind| kind.code() == code)
    }

    /// The short name used inside a gossip entry, where every byte takes
    /// room from other news. Never reuse a retired tag.
    pub const fn tag(self) -> u8 {
        match self {
            CounterKind::Calls => 0,
            CounterKind::Errors => 1,
            CounterKind::PromptTokens => 2,
            CounterKind::CompletionTokens => 3,
            CounterKind::CostMicros => 4,
            CounterKind::CallsMinute => 5,
            CounterKind::CostMicrosDay => 6,
            CounterKind::RequestsMinute => 7,
            CounterKind::TokensMinute => 8,
            // 9, 11 and 13 were the retired `…Released` kinds.
            CounterKind::SpendMicrosDay => 10,
            CounterKind::SpendMicrosMonth => 12,
            CounterKind::TokensMinuteHeld => 14,
            CounterKind::TokensMinuteFreed => 15,
            CounterKind::SpendMicrosDayHeld => 16,
            CounterKind::SpendMicrosDayFreed => 17,
            CounterKind::SpendMicrosMonthHeld => 18,
            CounterKind::SpendMicrosMonthFreed => 19,
        }
    }

    pub fn from_tag(tag: u8) -> Option<Self> {
        CounterKind::ALL.into_iter().find(|kind| kind.tag() == tag)
    }

    pub const fn window(self) -> Window {
        match self {
            CounterKind::Calls
            | CounterKind::Errors
            | CounterKind::PromptTokens
            | CounterKind::CompletionTokens
            | CounterKind::CostMicros => Window::Lifetime,
            CounterKind::CallsMinute
            | CounterKind::RequestsMinute
            | CounterKind::TokensMinute
            | CounterKind::TokensMinuteHeld
            | CounterKind::TokensMinuteFreed => Window::Minute,
            CounterKind::CostMicrosDay
            | CounterKind::SpendMicrosDay
            | CounterKind::SpendMicrosDayHeld
            | CounterKind::SpendMicrosDayFreed => Window::Day,
            CounterKind::SpendMicrosMonth
            | CounterKind::SpendMicrosMonthHeld
            | CounterKind::SpendMicrosMonthFreed => Window::Month,
        }
    }
}

/// One counter: a kind and what it counts for (a deployment, a key or a
/// team). Keys order by subject first (the field order), so a subject's
/// counters are neighbours: gossip publishes them as one entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CounterKey {
    pub subject: String,
    pub kind: CounterKind,
}

impl CounterKey {
    pub fn new(kind: CounterKind, subject: impl Into<String>) -> Self {
        CounterKey {
            kind,
            subject: subject.into(),
        }
    }

    /// Reads the key's one text form, `kind:subject` (its `Display`).
    pub fn decode(text: &str) -> Option<Self> {
        let (code, subject) = text.split_once(':')?;
        Some(CounterKey::new(CounterKind::from_code(code)?, subject))
    }

    pub fn window(&self) -> Window {
        self.kind.window()
    }
}

/// `kind:subject`, the one text form of a key, in gossip keys, store keys
/// and the API. Kind codes have no `:`, so the subject may (model names
/// such as `llama3:8b` do).
impl fmt::Display for CounterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind.code(), self.subject)
    }
}

/// Counts in one bucket of a counter's window (`epoch`) and in the bucket
/// before it. Lifetime counters have one bucket, epoch 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Buckets {
    pub epoch: u64,
    pub current: u64,
    pub previous: u64,
}

impl Buckets {
    /// `amount` counted in bucket `epoch`.
    pub fn new(epoch: u64, amount: u64) -> Self {
        Buckets {
            epoch,
            current: amount,
            previous: 0,
        }
    }

    /// The buckets as seen from bucket `epoch`: what was current becomes
    /// previous, and anything older is gone. Buckets from a later epoch (a
    /// peer's clock ahead of ours) are left as they are.
    pub fn at(self, epoch: u64) -> Buckets {
        match epoch.checked_sub(self.epoch) {
            None | Some(0) => self,
            Some(1) => Buckets {
                epoch,
                current: 0,
                previous: self.current,
            },
            Some(_) => Buckets {
                epoch,
                current: 0,
                previous: 0,
            },
        }
    }

    /// Applies `combine` to both bucket pairs, seen from the later epoch.
    fn zip(self, other: Buckets, combine: impl Fn(u64, u64) -> u64) -> Buckets {
        let epoch = self.epoch.max(other.epoch);
        let (a, b) = (self.at(epoch), other.at(epoch));
        Buckets {
            epoch,
            current: combine(a.current, b.current),
            previous: combine(a.previous, b.previous),
        }
    }

    /// The least buckets at or above both: the merge of two observations of
    /// one count. Commutative, associative, idempotent and never below
    /// either input, so gossip may deliver them twice, late or out of order.
    pub fn merge(self, other: Buckets) -> Buckets {
        self.zip(other, u64::max)
    }

    /// Both counts added, bucket by bucket.
    pub fn plus(self, other: Buckets) -> Buckets {
        self.zip(other, u64::saturating_add)
    }

    /// What `self` counts beyond `other`, bucket by bucket (never below 0).
    pub fn minus(self, other: Buckets) -> Buckets {
        self.zip(other, u64::saturating_sub)
    }

    /// Whether these counts already include everything in `other`.
    pub fn covers(self, other: Buckets) -> bool {
        let beyond = other.minus(self);
        beyond.current == 0 && beyond.previous == 0
    }

    /// Whether nothing of it counts any more from bucket `epoch` on.
    pub fn expired_at(self, epoch: u64) -> bool {
        let rolled = self.at(epoch);
        rolled.current == 0 && rolled.previous == 0
    }

    fn encode(&self, out: &mut String) {
        use std::fmt::Write;
        let _ = write!(out, "{},{},{}", self.epoch, self.current, self.previous);
    }

    fn decode(text: &str) -> Option<Buckets> {
        let mut fields = text.split(',').map(str::parse::<u64>);
        let mut next = || fields.next()?.ok();
        let buckets = Buckets {
            epoch: next()?,
            current: next()?,
            previous: next()?,
        };
        next().is_none().then_some(buckets)
    }
}

/// What one run (process) of a node has counted for one counter: its
/// `total`, which includes the `earlier_runs` of the same node it has
/// folded in so far. Peers need both to know when an earlier run's tally
/// is accounted for and may be forgotten.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Tally {
    pub total: Buckets,
    pub earlier_runs: Buckets,
}

impl Tally {
    /// A run's total with nothing folded from earlier runs.
    pub fn new(total: Buckets) -> Self {
        Tally {
            total,
            earlier_runs: Buckets::default(),
        }
    }

    /// The merge of two observations of one run's tally.
    pub fn merge(self, other: Tally) -> Tally {
        Tally {
            total: self.total.merge(other.total),
            earlier_runs: self.earlier_runs.merge(other.earlier_runs),
        }
    }

    pub fn covers(self, other: Tally) -> bool {
        self.total.covers(other.total) && self.earlier_runs.covers(other.earlier_runs)
    }

    /// `epoch,current,previous` of the total, then `/` and the earlier runs'
    /// when there are any: the gossip and store form.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(32);
        self.total.encode(&mut out);
        if self.earlier_runs != Buckets::default() {
            out.push('/');
            self.earlier_runs.encode(&mut out);
        }
        out
    }

    /// `None` for anything that is not what [`Tally::encode`] writes.
    pub fn decode(text: &str) -> Option<Tally> {
        let (total, earlier_runs) = match text.split_once('/') {
            Some((total, earlier)) => (total, Buckets::decode(earlier)?),
            None => (text, Buckets::default()),
        };
        Some(Tally {
            total: Buckets::decode(total)?,
            earlier_runs,
        })
    }
}

/// One run's tallies of one subject's counters, in the one text form a
/// gossip entry carries: `tag=tally` for each kind, joined by `;`. One
/// entry per subject rather than per counter, so a request that moves
/// several counters of its key changes one gossip value, not seven.
pub fn encode_tallies<'a>(tallies: impl IntoIterator<Item = (CounterKind, &'a Tally)>) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(64);
    for (kind, tally) in tallies {
        if !out.is_empty() {
            out.push(';');
        }
        let _ = write!(out, "{}={}", kind.tag(), tally.encode());
    }
    out
}

/// `None` for anything that is not what [`encode_tallies`] writes.
pub fn decode_tallies(text: &str) -> Option<Vec<(CounterKind, Tally)>> {
    text.split(';')
        .map(|part| {
            let (tag, tally) = part.split_once('=')?;
            Some((
                CounterKind::from_tag(tag.parse().ok()?)?,
                Tally::decode(tally)?,
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn buckets() -> impl Strategy<Value = Buckets> {
        (100..106u64, 0..1_000u64, 0..1_000u64).prop_map(|(epoch, current, previous)| Buckets {
            epoch,
            current,
            previous,
        })
    }

    fn tally() -> impl Strategy<Value = Tally> {
        (buckets(), prop_oneof![Just(Buckets::default()), buckets()]).prop_map(
            |(total, earlier_runs)| Tally {
                total,
                earlier_runs,
            },
        )
    }

    proptest! {
        #[test]
        fn merge_is_commutative_associative_idempotent(a in buckets(), b in buckets(), c in buckets()) {
            prop_assert_eq!(a.merge(b), b.merge(a));
            prop_assert_eq!(a.merge(b).merge(c), a.merge(b.merge(c)));
            prop_assert_eq!(a.merge(a), a);
        }

        #[test]
        fn merge_covers_both_inputs(a in tally(), b in tally()) {
            let merged = a.merge(b);
            prop_assert!(merged.covers(a) && merged.covers(b));
        }

        #[test]
        fn plus_and_minus_undo_each_other(a in buckets(), b in buckets()) {
            let sum = a.plus(b);
            prop_assert!(sum.covers(a) && sum.covers(b));
            let epoch = sum.epoch;
            prop_assert_eq!(sum.minus(b), a.at(epoch));
        }

        #[test]
        fn encoding_round_trips(a in tally()) {
            prop_assert_eq!(Tally::decode(&a.encode()), Some(a));
        }

        #[test]
        fn tallies_of_a_subject_round_trip(tallies in proptest::collection::vec(
            (proptest::sample::select(CounterKind::ALL.to_vec()), tally()), 1..8)) {
            let text = encode_tallies(tallies.iter().map(|(kind, tally)| (*kind, tally)));
            prop_assert_eq!(decode_tallies(&text), Some(tallies));
        }

        #[test]
        fn garbage_does_not_decode_into_a_panic(text in ".{0,40}") {
            let _ = Tally::decode(&text);
            let _ = CounterKey::decode(&text);
            let _ = decode_tallies(&text);
        }
    }

    #[test]
    fn buckets_roll_and_expire_with_their_window() {
        let buckets = Buckets::new(10, 7);
        assert_eq!(buckets.at(10), buckets);
        assert_eq!((buckets.at(11).current, buckets.at(11).previous), (0, 7));
        assert!(!buckets.expired_at(11));
        assert!(buckets.expired_at(12));
        assert_eq!(buckets.at(9), buckets, "buckets from the future stay");
        assert!(
            !Buckets::new(0, 7).expired_at(0),
            "lifetime counts never expire"
        );
    }

    #[test]
    fn the_minute_slides_and_the_day_resets() {
        let minute = 60_000;
        let buckets = Buckets {
            epoch: 11,
            current: 3,
            previous: 60,
        };
        // 15 s into minute 11: all 3 of this minute, 45/60 of the last one.
        assert_eq!(Window::Minute.value(buckets, 11 * minute + 15_000), 3 + 45);
        assert_eq!(Window::Minute.value(buckets, 12 * minute), 3);
        assert_eq!(Window::Minute.value(buckets, 13 * minute), 0);
        let day = 86_400_000;
        assert_eq!(Window::Day.value(Buckets::new(3, 5), 3 * day + 1), 5);
        assert_eq!(Window::Day.value(Buckets::new(3, 5), 4 * day), 0);
        assert_eq!(Window::Lifetime.value(Buckets::new(0, 9), 4 * day), 9);
        assert_eq!(Window::Minute.epoch(11 * minute + 59_999), 11);
    }

    #[test]
    fn months_are_utc_calendar_months() {
        let day = 86_400_000;
        assert_eq!(Window::Month.epoch(0), 0, "January 1970");
        assert_eq!(Window::Month.epoch(31 * day - 1), 0);
        assert_eq!(Window::Month.epoch(31 * day), 1, "1 February 1970");
        // 2024-02-29 (leap day) and 2024-03-01, 2026-12-31 and 2027-01-01.
        assert_eq!(Window::Month.epoch(19_782 * day), 54 * 12 + 1);
        assert_eq!(Window::Month.epoch(19_783 * day), 54 * 12 + 2);
        assert_eq!(Window::Month.epoch(20_818 * day + day - 1), 56 * 12 + 11);
        assert_eq!(Window::Month.epoch(20_819 * day), 57 * 12);
        assert_eq!(
            Window::Month.value(Buckets::new(54 * 12 + 1, 9), 19_782 * day),
            9
        );
        assert_eq!(
            Window::Month.value(Buckets::new(54 * 12 + 1, 9), 19_783 * day),
            0
        );
    }

    #[test]
    fn merging_keeps_the_higher_bucket_of_each() {
        let older = Buckets::new(10, 5);
        let newer = Buckets::new(11, 2);
        let merged = older.merge(newer);
        assert_eq!((merged.epoch, merged.current, merged.previous), (11, 2, 5));
        assert!(!newer.covers(older));
        assert!(older.plus(newer).covers(older));
        assert_eq!(Tally::new(newer).encode(), "11,2,0");
        let folded = Tally {
            total: newer,
            earlier_runs: older,
        };
        assert_eq!(folded.encode(), "11,2,0/10,5,0");
        assert_eq!(Tally::decode("11,2,0/10,5"), None);
        assert_eq!(Tally::decode("11,2,0,4"), None);
    }

    #[test]
    fn keys_have_one_text_form() {
        let key = CounterKey::new(CounterKind::Calls, "ollama/llama3:8b");
        assert_eq!(key.to_string(), "calls:ollama/llama3:8b");
        assert_eq!(CounterKey::decode(&key.to_string()), Some(key.clone()));
        assert_eq!(CounterKey::decode("nope:x"), None);
        assert_eq!(CounterKey::decode("calls"), None);
        for kind in CounterKind::ALL {
            assert_eq!(CounterKind::from_code(kind.code()), Some(kind));
            assert_eq!(CounterKind::from_tag(kind.tag()), Some(kind));
        }
        let tally = Tally::new(Buckets::new(11, 2));
        assert_eq!(
            encode_tallies([
                (CounterKind::RequestsMinute, &tally),
                (CounterKind::SpendMicrosDay, &tally)
            ]),
            "7=11,2,0;10=11,2,0"
        );
        for garbage in ["", "7=11,2,0;", "99=11,2,0", "7:11,2,0", "7=11,2"] {
            assert_eq!(decode_tallies(garbage), None, "{garbage:?}");
        }
    }
}
