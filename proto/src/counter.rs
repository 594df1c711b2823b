//! Cluster counters: what a counter is (a typed [`CounterKey`]: kind and
//! subject, the kind fixing the time window) and what one run of a node
//! contributes to it (a [`Tally`]), with the merge that makes gossiped
//! tallies a CRDT.
//!
//! Counts are [`Buckets`]: the counts of the last few buckets of the
//! counter's window, so a one-minute rate reads the last 60 s and a daily
//! spend resets at midnight UTC, while each counter stays a few values per
//! node however long it lives: buckets expire with their window instead of
//! piling up.

use std::fmt;

/// How long a counter's buckets last.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Window {
    /// One bucket forever: totals since the store began.
    #[default]
    Lifetime,
    /// The last 60 s, counted in [`SLICE_MS`] slices.
    Minute,
    /// UTC days.
    Day,
    /// UTC calendar months.
    Month,
}

/// The sliding minute's bucket. Its value is every slice the last 60 s
/// touch, the oldest counted whole although only part of it is still in
/// the minute: never less than what the last 60 s really hold, so a limit
/// read off it holds in every 60 s window, whatever the timing. The price
/// is that a steady load at the limit gets `60 s / (60 s + SLICE_MS)` of
/// it (96.8 %) rather than all.
pub const SLICE_MS: u64 = 2_000;
/// The slices the sliding minute reads: the 30 whole ones the last 60 s
/// cover at a slice's start, and one more that is partly in the minute
/// until the next slice begins.
pub const MINUTE_SLICES: usize = (MINUTE_MS / SLICE_MS) as usize + 1;

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
            Window::Minute => unix_ms / SLICE_MS,
            Window::Day => unix_ms / DAY_MS,
            Window::Month => month_of(unix_ms / DAY_MS),
        }
    }

    /// How many buckets, the newest first, a counter keeps: the slices of
    /// the sliding minute; for a day or a month the previous one too, so a
    /// request admitted before midnight settles into the day it was
    /// reserved in.
    pub const fn kept(self) -> usize {
        match self {
            Window::Lifetime => 1,
            Window::Minute => MINUTE_SLICES,
            Window::Day | Window::Month => 2,
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

/// Counts in the last [`Window::kept`] buckets of a counter's window,
/// `counts()[i]` in bucket `epoch() - i`. Lifetime counters have one
/// bucket, epoch 0. No counts at all (the default) is the same in every
/// window, and combines with any.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Buckets {
    window: Window,
    epoch: u64,
    /// Newest first, without trailing zeros; empty only in the default.
    counts: Vec<u64>,
}

impl Buckets {
    /// `amount` counted in bucket `epoch` of `window`.
    pub fn new(window: Window, epoch: u64, amount: u64) -> Self {
        Buckets {
            window,
            epoch,
            counts: vec![amount],
        }
        .trimmed()
    }

    /// The newest bucket's epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The counts, newest first; zero where absent.
    pub fn counts(&self) -> &[u64] {
        &self.counts
    }

    /// The newest bucket's count.
    pub fn newest(&self) -> u64 {
        self.counts.first().copied().unwrap_or(0)
    }

    /// The one form of no counts: the default.
    fn trimmed(mut self) -> Self {
        self.counts.truncate(self.window.kept());
        while self.counts.last() == Some(&0) {
            self.counts.pop();
        }
        if self.counts.is_empty() {
            return Buckets::default();
        }
        self
    }

    /// The buckets as seen from bucket `epoch`: each moves back by the
    /// epochs passed, and those past the window's last are gone. Buckets
    /// from a later epoch (a peer's clock ahead of ours) are left as they
    /// are.
    pub fn at(&self, epoch: u64) -> Buckets {
        let passed = epoch.saturating_sub(self.epoch);
        if passed == 0 || self.counts.is_empty() {
            return self.clone();
        }
        let kept = self.window.kept();
        let Some(left) = usize::try_from(passed)
            .ok()
            .and_then(|passed| kept.checked_sub(passed))
            .filter(|left| *left > 0)
        else {
            return Buckets::default();
        };
        let mut counts = vec![0; kept - left];
        counts.extend(self.counts.iter().take(left));
        Buckets {
            window: self.window,
            epoch,
            counts,
        }
        .trimmed()
    }

    /// Applies `combine` to the counts of each bucket, seen from the later
    /// epoch.
    fn zip(&self, other: &Buckets, combine: impl Fn(u64, u64) -> u64) -> Buckets {
        let window = if self.counts.is_empty() {
            other.window
        } else {
            self.window
        };
        let epoch = self.epoch.max(other.epoch);
        let (a, b) = (self.at(epoch), other.at(epoch));
        let len = a.counts.len().max(b.counts.len());
        let count = |counts: &[u64], i: usize| counts.get(i).copied().unwrap_or(0);
        Buckets {
            window,
            epoch,
            counts: (0..len)
                .map(|i| combine(count(&a.counts, i), count(&b.counts, i)))
                .collect(),
        }
        .trimmed()
    }

    /// The least buckets at or above both: the merge of two observations of
    /// one count. Commutative, associative, idempotent and never below
    /// either input, so gossip may deliver them twice, late or out of order.
    pub fn merge(&self, other: &Buckets) -> Buckets {
        self.zip(other, u64::max)
    }

    /// Both counts added, bucket by bucket.
    pub fn plus(&self, other: &Buckets) -> Buckets {
        self.zip(other, u64::saturating_add)
    }

    /// What `self` counts beyond `other`, bucket by bucket (never below 0).
    pub fn minus(&self, other: &Buckets) -> Buckets {
        self.zip(other, u64::saturating_sub)
    }

    /// Whether these counts already include everything in `other`.
    pub fn covers(&self, other: &Buckets) -> bool {
        other.minus(self).counts.is_empty()
    }

    /// Whether nothing of it counts any more from bucket `epoch` on.
    pub fn expired_at(&self, epoch: u64) -> bool {
        self.at(epoch).counts.is_empty()
    }

    /// The counter's value at `unix_ms`: for the sliding minute, every
    /// slice the last 60 s touch (see [`SLICE_MS`]); otherwise the count of
    /// the bucket `unix_ms` falls in.
    pub fn value(&self, unix_ms: u64) -> u64 {
        let rolled = self.at(self.window.epoch(unix_ms));
        match self.window {
            Window::Minute => rolled
                .counts
                .iter()
                .fold(0, |sum, count| sum.saturating_add(*count)),
            Window::Lifetime | Window::Day | Window::Month => rolled.newest(),
        }
    }

    /// `epoch,count,count…`, newest first, with at least two counts: the
    /// form a day's, a month's and a lifetime's counts always had.
    fn encode(&self, out: &mut String) {
        use std::fmt::Write;
        let _ = write!(out, "{}", self.epoch);
        for i in 0..self.counts.len().max(2) {
            let _ = write!(out, ",{}", self.counts.get(i).copied().unwrap_or(0));
        }
    }

    /// Counts of `window`, as [`Buckets::encode`] writes them; `None` for
    /// more counts than any encoding of the window has.
    fn decode(text: &str, window: Window) -> Option<Buckets> {
        let mut fields = text.split(',');
        let epoch = fields.next()?.parse().ok()?;
        let most = window.kept().max(2);
        let mut counts = Vec::with_capacity(2);
        for field in fields {
            if counts.len() == most {
                return None;
            }
            counts.push(field.parse().ok()?);
        }
        (counts.len() >= 2).then_some(())?;
        Some(
            Buckets {
                window,
                epoch,
                counts,
            }
            .trimmed(),
        )
    }
}

/// What one run (process) of a node has counted for one counter: its
/// `total`, which includes the `earlier_runs` of the same node it has
/// folded in so far. Peers need both to know when an earlier run's tally
/// is accounted for and may be forgotten.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
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
    pub fn merge(&self, other: &Tally) -> Tally {
        Tally {
            total: self.total.merge(&other.total),
            earlier_runs: self.earlier_runs.merge(&other.earlier_runs),
        }
    }

    pub fn covers(&self, other: &Tally) -> bool {
        self.total.covers(&other.total) && self.earlier_runs.covers(&other.earlier_runs)
    }

    /// The total's buckets (`epoch,count,count…`), then `/` and the earlier runs'
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

    /// A tally of a counter of `window`; `None` for anything that is not
    /// what [`Tally::encode`] writes.
    pub fn decode(text: &str, window: Window) -> Option<Tally> {
        let (total, earlier_runs) = match text.split_once('/') {
            Some((total, earlier)) => (total, Buckets::decode(earlier, window)?),
            None => (text, Buckets::default()),
        };
        Some(Tally {
            total: Buckets::decode(total, window)?,
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
            let kind = CounterKind::from_tag(tag.parse().ok()?)?;
            Some((kind, Tally::decode(tally, kind.window())?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn window() -> impl Strategy<Value = Window> {
        prop_oneof![
            Just(Window::Lifetime),
            Just(Window::Minute),
            Just(Window::Day),
            Just(Window::Month),
        ]
    }

    fn buckets_of(window: Window) -> impl Strategy<Value = Buckets> {
        let epochs = if window == Window::Lifetime {
            0..1u64
        } else {
            100..140
        };
        let counts = proptest::collection::vec(0..1_000u64, 0..=window.kept());
        (epochs, counts).prop_map(move |(epoch, counts)| {
            Buckets {
                window,
                epoch,
                counts,
            }
            .trimmed()
        })
    }

    /// Three buckets of one window.
    fn three() -> impl Strategy<Value = [Buckets; 3]> {
        window()
            .prop_flat_map(|window| [buckets_of(window), buckets_of(window), buckets_of(window)])
    }

    fn tally_of(window: Window) -> impl Strategy<Value = Tally> {
        (buckets_of(window), buckets_of(window)).prop_map(|(total, earlier_runs)| Tally {
            total,
            earlier_runs,
        })
    }

    fn tally() -> impl Strategy<Value = Tally> {
        tally_of(Window::Minute)
    }

    proptest! {
        #[test]
        fn merge_is_commutative_associative_idempotent([a, b, c] in three()) {
            prop_assert_eq!(a.merge(&b), b.merge(&a));
            prop_assert_eq!(a.merge(&b).merge(&c), a.merge(&b.merge(&c)));
            prop_assert_eq!(a.merge(&a), a);
        }

        #[test]
        fn merge_covers_both_inputs(a in tally(), b in tally()) {
            let merged = a.merge(&b);
            prop_assert!(merged.covers(&a) && merged.covers(&b));
        }

        #[test]
        fn plus_and_minus_undo_each_other([a, b, _] in three()) {
            let sum = a.plus(&b);
            prop_assert!(sum.covers(&a) && sum.covers(&b));
            prop_assert_eq!(sum.minus(&b), a.at(sum.epoch()));
        }

        #[test]
        fn encoding_round_trips(a in tally()) {
            prop_assert_eq!(Tally::decode(&a.encode(), Window::Minute), Some(a));
        }

        /// Admitting whenever the sliding minute's value leaves room never
        /// lets more than the limit into any 60 s, whatever the timing.
        #[test]
        fn a_limit_on_the_sliding_minute_holds_in_every_60_s(
            gaps in proptest::collection::vec(0..5_000u64, 1..400), limit in 1..40u64,
        ) {
            let mut counted = Buckets::default();
            let mut admitted = Vec::new();
            let mut now = 1_000 * MINUTE_MS;
            for gap in gaps {
                now += gap;
                if counted.value(now) < limit {
                    counted = counted.plus(&Buckets::new(Window::Minute, Window::Minute.epoch(now), 1));
                    admitted.push(now);
                }
            }
            for (i, start) in admitted.iter().enumerate() {
                let within = admitted[i..].iter().take_while(|at| **at < start + MINUTE_MS).count();
                prop_assert!(within as u64 <= limit, "{within} admitted in the 60 s from {start}");
            }
        }

        #[test]
        fn tallies_of_a_subject_round_trip(tallies in proptest::collection::vec(
            proptest::sample::select(CounterKind::ALL.to_vec())
                .prop_flat_map(|kind| (Just(kind), tally_of(kind.window()))),
            1..8,
        )) {
            let text = encode_tallies(tallies.iter().map(|(kind, tally)| (*kind, tally)));
            prop_assert_eq!(decode_tallies(&text), Some(tallies));
        }

        #[test]
        fn garbage_does_not_decode_into_a_panic(text in ".{0,40}") {
            let _ = Tally::decode(&text, Window::Minute);
            let _ = CounterKey::decode(&text);
            let _ = decode_tallies(&text);
        }
    }

    /// A steady load at five times the limit gets at least 95 % of it.
    #[test]
    fn a_steady_load_gets_nearly_all_of_a_limit() {
        let limit = 300;
        let mut counted = Buckets::default();
        let mut admitted = 0;
        let start = 1_000 * MINUTE_MS;
        let gap = MINUTE_MS / (5 * limit);
        for now in (start..start + 10 * MINUTE_MS).step_by(gap as usize) {
            if counted.value(now) < limit {
                counted = counted.plus(&Buckets::new(Window::Minute, Window::Minute.epoch(now), 1));
                admitted += 1;
            }
        }
        assert!(
            admitted * 100 >= 10 * limit * 95 && admitted <= 10 * limit,
            "{admitted} admitted in 10 minutes at {limit} a minute"
        );
    }

    #[test]
    fn buckets_roll_and_expire_with_their_window() {
        let day = Buckets::new(Window::Day, 10, 7);
        assert_eq!(day.at(10), day);
        assert_eq!((day.at(11).epoch(), day.at(11).counts()), (11, &[0, 7][..]));
        assert!(!day.expired_at(11));
        assert!(day.expired_at(12));
        assert_eq!(day.at(9), day, "buckets from the future stay");
        let lifetime = Buckets::new(Window::Lifetime, 0, 7);
        assert!(!lifetime.expired_at(0), "lifetime counts never expire");
        let minute = Buckets::new(Window::Minute, 10, 7);
        assert!(!minute.expired_at(10 + MINUTE_SLICES as u64 - 1));
        assert!(minute.expired_at(10 + MINUTE_SLICES as u64));
    }

    #[test]
    fn the_minute_slides_and_the_day_resets() {
        let slice = |ms: u64| Window::Minute.epoch(ms);
        let at = |ms: u64, amount: u64| Buckets::new(Window::Minute, slice(ms), amount);
        // 60 at 10:59, 3 at 11:14.
        let minute = at(10 * MINUTE_MS + 59_000, 60).plus(&at(11 * MINUTE_MS + 14_000, 3));
        assert_eq!(minute.value(11 * MINUTE_MS + 15_000), 63);
        // The 10:59 slice (10:58–11:00) counts whole until 12:00.
        assert_eq!(minute.value(11 * MINUTE_MS + 59_999), 63);
        assert_eq!(minute.value(12 * MINUTE_MS), 3);
        assert_eq!(minute.value(12 * MINUTE_MS + 16_000), 0);
        let day = 86_400_000;
        assert_eq!(Buckets::new(Window::Day, 3, 5).value(3 * day + 1), 5);
        assert_eq!(Buckets::new(Window::Day, 3, 5).value(4 * day), 0);
        assert_eq!(Buckets::new(Window::Lifetime, 0, 9).value(4 * day), 9);
        assert_eq!(Window::Minute.epoch(11 * MINUTE_MS + 59_999), 359);
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
        let february = Buckets::new(Window::Month, 54 * 12 + 1, 9);
        assert_eq!(february.value(19_782 * day), 9);
        assert_eq!(february.value(19_783 * day), 0);
    }

    #[test]
    fn merging_keeps_the_higher_bucket_of_each() {
        let older = Buckets::new(Window::Day, 10, 5);
        let newer = Buckets::new(Window::Day, 11, 2);
        let merged = older.merge(&newer);
        assert_eq!((merged.epoch(), merged.counts()), (11, &[2, 5][..]));
        assert!(!newer.covers(&older));
        assert!(older.plus(&newer).covers(&older));
        assert_eq!(Tally::new(newer.clone()).encode(), "11,2,0");
        let folded = Tally {
            total: newer,
            earlier_runs: older,
        };
        assert_eq!(folded.encode(), "11,2,0/10,5,0");
        assert_eq!(Tally::decode("11,2,0/10,5", Window::Day), None);
        assert_eq!(
            Tally::decode("11,2,0,4", Window::Day),
            None,
            "a day keeps two"
        );
        let slices =
            Buckets::new(Window::Minute, 400, 2).merge(&Buckets::new(Window::Minute, 398, 1));
        assert_eq!(Tally::new(slices.clone()).encode(), "400,2,0,1");
        assert_eq!(
            Tally::decode("400,2,0,1", Window::Minute),
            Some(Tally::new(slices))
        );
        let too_many = format!("400{}", ",1".repeat(MINUTE_SLICES + 1));
        assert_eq!(Tally::decode(&too_many, Window::Minute), None);
    }

    /// Lifetime, day and month counts stored before the minute was sliced
    /// read as they were; a minute's old per-minute buckets read as long
    /// gone, never as counts in the future.
    #[test]
    fn counts_stored_before_the_minute_was_sliced_still_read() {
        let stored = Tally::decode("0,7,0", Window::Lifetime).unwrap();
        assert_eq!(stored.total.value(1), 7);
        let old_minute = Tally::decode("29500000,40,12", Window::Minute).unwrap();
        assert_eq!(old_minute.total.value(29_500_000 * MINUTE_MS), 0);
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
        let tally = Tally::new(Buckets::new(Window::Day, 11, 2));
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
