//! Admin state as it is gossiped and stored: virtual keys and teams, each
//! held in an [`Entry`], a last-writer-wins register stamped with a hybrid
//! logical clock ([`Stamp`]).
//!
//! Two changes are not plain writes, because a lost race must never undo
//! them: a revocation sticks to an entry whatever is written after it, and
//! a deletion is a tombstone that wins over every write to the same id
//! (ids are random and never reused, so nothing legitimate comes after
//! one). That makes [`Entry::merge`] a join: gossip may deliver entries
//! twice, late or out of order, and every node ends with the same state.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A hybrid logical clock reading: wall-clock milliseconds, a logical
/// count that orders changes within one millisecond (or while the wall
/// clock lags a stamp already seen), and the node that took the change,
/// which breaks the last ties. Ordered field by field.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Stamp {
    pub wall_ms: u64,
    pub logical: u32,
    pub node_id: String,
}

/// A policy limit. Each is optional: absent means "no limit of its own".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LimitKind {
    /// Requests per minute, a sliding window.
    Rpm,
    /// Tokens (prompt + completion) per minute, a sliding window.
    Tpm,
    /// Requests in flight at once, cluster-wide.
    MaxParallel,
    /// Spend per UTC day, in micro-dollars.
    BudgetDaily,
    /// Spend per UTC month, in micro-dollars.
    BudgetMonthly,
}

impl LimitKind {
    pub const ALL: [LimitKind; 5] = [
        LimitKind::Rpm,
        LimitKind::Tpm,
        LimitKind::MaxParallel,
        LimitKind::BudgetDaily,
        LimitKind::BudgetMonthly,
    ];

    /// The field's name in the admin API and the CLI.
    pub const fn field(self) -> &'static str {
        match self {
            LimitKind::Rpm => "rpm",
            LimitKind::Tpm => "tpm",
            LimitKind::MaxParallel => "max_parallel",
            LimitKind::BudgetDaily => "budget_daily_usd",
            LimitKind::BudgetMonthly => "budget_monthly_usd",
        }
    }

    /// Budgets are kept in micro-dollars and shown in USD.
    pub const fn is_budget(self) -> bool {
        matches!(self, LimitKind::BudgetDaily | LimitKind::BudgetMonthly)
    }
}

/// The limits of a key or a team; `None` is no limit of its own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpm: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_parallel: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_daily_micros: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_monthly_micros: Option<u64>,
}

impl Limits {
    /// No limit of its own at all.
    pub fn is_empty(&self) -> bool {
        LimitKind::ALL.iter().all(|kind| self.get(*kind).is_none())
    }

    pub fn get(&self, kind: LimitKind) -> Option<u64> {
        *self.slot(kind)
    }

    pub fn set(&mut self, kind: LimitKind, value: Option<u64>) {
        *self.slot_mut(kind) = value;
    }

    fn slot(&self, kind: LimitKind) -> &Option<u64> {
        match kind {
            LimitKind::Rpm => &self.rpm,
            LimitKind::Tpm => &self.tpm,
            LimitKind::MaxParallel => &self.max_parallel,
            LimitKind::BudgetDaily => &self.budget_daily_micros,
            LimitKind::BudgetMonthly => &self.budget_monthly_micros,
        }
    }

    fn slot_mut(&mut self, kind: LimitKind) -> &mut Option<u64> {
        match kind {
            LimitKind::Rpm => &mut self.rpm,
            LimitKind::Tpm => &mut self.tpm,
            LimitKind::MaxParallel => &mut self.max_parallel,
            LimitKind::BudgetDaily => &mut self.budget_daily_micros,
            LimitKind::BudgetMonthly => &mut self.budget_monthly_micros,
        }
    }
}

/// What keys and teams share: which models they may use and their limits.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// Model aliases allowed; empty allows every alias.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<String>,
    #[serde(default, flatten)]
    pub limits: Limits,
}

impl Policy {
    pub fn allows_model(&self, alias: &str) -> bool {
        self.models.is_empty() || self.models.iter().any(|model| model == alias)
    }
}

/// Free-form labels an operator attaches to a key or team.
pub type Metadata = serde_json::Map<String, serde_json::Value>;

/// A team: a policy its keys can only narrow, and that also holds for the
/// sum of its keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TeamRecord {
    pub name: String,
    #[serde(default, flatten)]
    pub policy: Policy,
    #[serde(default, skip_serializing_if = "Metadata::is_empty")]
    pub metadata: Metadata,
    pub created_ms: u64,
}

/// A virtual key. Only the SHA-256 of the key is kept, never the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    pub name: String,
    /// The id of the key's team.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    #[serde(with = "hex_sha256")]
    pub sha256: [u8; 32],
    #[serde(default, flatten)]
    pub policy: Policy,
    /// When the key stops working, in ms since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Metadata::is_empty")]
    pub metadata: Metadata,
    pub created_ms: u64,
}

/// Whether a register holds a record or a deletion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryState<T> {
    Live {
        record: T,
        /// When it was revoked, in ms since the Unix epoch: sticky, kept
        /// through any later write.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        revoked_ms: Option<u64>,
    },
    Deleted,
}

/// One key's or team's register: its latest state and the stamp of the
/// change that made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry<T> {
    pub stamp: Stamp,
    pub state: EntryState<T>,
}

impl<T: Clone> Entry<T> {
    pub fn live(stamp: Stamp, record: T) -> Self {
        Entry {
            stamp,
            state: EntryState::Live {
                record,
                revoked_ms: None,
            },
        }
    }

    pub fn record(&self) -> Option<&T> {
        match &self.state {
            EntryState::Live { record, .. } => Some(record),
            EntryState::Deleted => None,
        }
    }

    pub fn revoked_ms(&self) -> Option<u64> {
        match &self.state {
            EntryState::Live { revoked_ms, .. } => *revoked_ms,
            EntryState::Deleted => None,
        }
    }

    pub fn is_deleted(&self) -> bool {
        matches!(self.state, EntryState::Deleted)
    }

    /// The join of two states of one register: a deletion wins over any
    /// write, a revocation is kept, otherwise the later stamp wins.
    /// Commutative, associative and idempotent.
    pub fn merge(&self, other: &Entry<T>) -> Entry<T> {
        let (later, earlier) = if self.stamp >= other.stamp {
            (self, other)
        } else {
            (other, self)
        };
        match (&later.state, &earlier.state) {
            (EntryState::Deleted, _) => later.clone(),
            (_, EntryState::Deleted) => earlier.clone(),
            (
                EntryState::Live { record, revoked_ms },
                EntryState::Live {
                    revoked_ms: earlier_revoked,
                    ..
                },
            ) => {
                let revoked_ms = match (revoked_ms, earlier_revoked) {
                    (Some(a), Some(b)) => Some(*a.min(b)),
                    (a, b) => a.or(*b),
                };
                Entry {
                    stamp: later.stamp.clone(),
                    state: EntryState::Live {
                        record: record.clone(),
                        revoked_ms,
                    },
                }
            }
        }
    }
}

/// A register's state without its record: enough to tell whether merging
/// one state into another would change it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digest {
    pub stamp: Stamp,
    pub deleted: bool,
    pub revoked_ms: Option<u64>,
}

impl Digest {
    /// Whether the state `self` digests already holds everything in the
    /// state `other` digests: merging `other` in would change nothing.
    pub fn covers(&self, other: &Digest) -> bool {
        if self.deleted {
            return !(other.deleted && other.stamp > self.stamp);
        }
        if other.deleted || other.stamp > self.stamp {
            return false;
        }
        match (self.revoked_ms, other.revoked_ms) {
            (_, None) => true,
            (Some(mine), Some(theirs)) => mine <= theirs,
            (None, Some(_)) => false,
        }
    }
}

/// Which register an entry belongs to: kind and id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EntryId {
    Key(String),
    Team(String),
}

impl EntryId {
    /// Reads the one text form, `key:<id>` or `team:<id>` (its `Display`).
    pub fn decode(text: &str) -> Option<EntryId> {
        match text.split_once(':')? {
            ("key", id) if !id.is_empty() => Some(EntryId::Key(id.to_owned())),
            ("team", id) if !id.is_empty() => Some(EntryId::Team(id.to_owned())),
            _ => None,
        }
    }
}

impl fmt::Display for EntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EntryId::Key(id) => write!(f, "key:{id}"),
            EntryId::Team(id) => write!(f, "team:{id}"),
        }
    }
}

/// A key's or a team's register, as gossiped and stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminEntry {
    Key(Entry<KeyRecord>),
    Team(Entry<TeamRecord>),
}

impl AdminEntry {
    pub fn stamp(&self) -> &Stamp {
        match self {
            AdminEntry::Key(entry) => &entry.stamp,
            AdminEntry::Team(entry) => &entry.stamp,
        }
    }

    /// The merge of two states of the same register; `None` when they are
    /// of different kinds, which ids rule out.
    pub fn merge(&self, other: &AdminEntry) -> Option<AdminEntry> {
        match (self, other) {
            (AdminEntry::Key(a), AdminEntry::Key(b)) => Some(AdminEntry::Key(a.merge(b))),
            (AdminEntry::Team(a), AdminEntry::Team(b)) => Some(AdminEntry::Team(a.merge(b))),
            _ => None,
        }
    }

    /// What decides a merge, without the record: a stamp names one change,
    /// so two states with equal digests are equal.
    pub fn digest(&self) -> Digest {
        let (deleted, revoked_ms) = match self {
            AdminEntry::Key(entry) => (entry.is_deleted(), entry.revoked_ms()),
            AdminEntry::Team(entry) => (entry.is_deleted(), entry.revoked_ms()),
        };
        Digest {
            stamp: self.stamp().clone(),
            deleted,
            revoked_ms,
        }
    }

    /// The gossip and store form: JSON.
    pub fn encode(&self) -> String {
        let encoded = match self {
            AdminEntry::Key(entry) => serde_json::to_string(entry),
            AdminEntry::Team(entry) => serde_json::to_string(entry),
        };
        // Plain structs of strings and numbers always serialise.
        encoded.unwrap_or_default()
    }

    /// The entry of register `id` in `text`; `None` for anything else.
    pub fn decode(id: &EntryId, text: &str) -> Option<AdminEntry> {
        match id {
            EntryId::Key(_) => serde_json::from_str(text).ok().map(AdminEntry::Key),
            EntryId::Team(_) => serde_json::from_str(text).ok().map(AdminEntry::Team),
        }
    }
}

mod hex_sha256 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(hash: &[u8; 32], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&hex::encode(hash))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<[u8; 32], D::Error> {
        let text = String::deserialize(deserializer)?;
        let mut hash = [0; 32];
        hex::decode_to_slice(text, &mut hash).map_err(serde::de::Error::custom)?;
        Ok(hash)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn stamp(wall_ms: u64, logical: u32, node_id: &str) -> Stamp {
        Stamp {
            wall_ms,
            logical,
            node_id: node_id.into(),
        }
    }

    fn team(name: &str, rpm: Option<u64>) -> TeamRecord {
        TeamRecord {
            name: name.into(),
            policy: Policy {
                models: vec!["fast".into()],
                limits: Limits {
                    rpm,
                    ..Limits::default()
                },
            },
            metadata: Metadata::new(),
            created_ms: 1,
        }
    }

    /// Entries of one register. One stamp is one change, so the record
    /// follows from the stamp; deletion and revocation vary freely.
    fn entry() -> impl Strategy<Value = Entry<TeamRecord>> {
        (
            0..4u64,
            0..2u32,
            prop_oneof![Just("a"), Just("b")],
            any::<bool>(),
            prop::option::of(0..3u64),
        )
            .prop_map(|(wall, logical, node, deleted, revoked_ms)| {
                let rpm = wall * 10 + u64::from(logical) + u64::from(node == "b") * 100;
                let stamp = stamp(wall, logical, node);
                if deleted {
                    return Entry {
                        stamp,
                        state: EntryState::Deleted,
                    };
                }
                Entry {
                    stamp,
                    state: EntryState::Live {
                        record: team("t", Some(rpm)),
                        revoked_ms,
                    },
                }
            })
    }

    proptest! {
        #[test]
        fn merge_is_a_join(a in entry(), b in entry(), c in entry()) {
            prop_assert_eq!(a.merge(&b), b.merge(&a));
            prop_assert_eq!(a.merge(&b).merge(&c), a.merge(&b.merge(&c)));
            prop_assert_eq!(a.merge(&a), a.clone());
            let joined = a.merge(&b);
            prop_assert_eq!(joined.merge(&a), joined, "the join covers its inputs");
        }

        #[test]
        fn a_digest_covers_exactly_when_its_entry_does(a in entry(), b in entry()) {
            let (a, b) = (AdminEntry::Team(a), AdminEntry::Team(b));
            let covers = a.merge(&b).as_ref() == Some(&a);
            prop_assert_eq!(a.digest().covers(&b.digest()), covers);
        }

        #[test]
        fn garbage_does_not_decode_into_a_panic(text in ".{0,60}") {
            let _ = EntryId::decode(&text);
            let _ = AdminEntry::decode(&EntryId::Key("k".into()), &text);
        }
    }

    #[test]
    fn a_later_write_wins_but_not_over_a_revocation_or_a_deletion() {
        let first = Entry::live(stamp(1, 0, "a"), team("t", Some(1)));
        let later = Entry::live(stamp(2, 0, "b"), team("t", Some(2)));
        assert_eq!(first.merge(&later), later);

        let revoked = Entry {
            stamp: stamp(1, 1, "a"),
            state: EntryState::Live {
                record: team("t", Some(1)),
                revoked_ms: Some(7),
            },
        };
        let merged = revoked.merge(&later);
        assert_eq!(merged.record(), later.record(), "the later write's fields");
        assert_eq!(merged.revoked_ms(), Some(7), "but still revoked");

        let deleted = Entry::<TeamRecord> {
            stamp: stamp(0, 0, "c"),
            state: EntryState::Deleted,
        };
        assert!(later.merge(&deleted).is_deleted(), "even an older deletion");
    }

    #[test]
    fn entries_round_trip_through_their_text_forms() {
        let key = AdminEntry::Key(Entry::live(
            stamp(5, 2, "node-1"),
            KeyRecord {
                name: "ci".into(),
                team: Some("team_1".into()),
                sha256: [7; 32],
                policy: Policy {
                    models: vec!["fast".into()],
                    limits: Limits {
                        rpm: Some(10),
                        budget_daily_micros: Some(1_000_000),
                        ..Limits::default()
                    },
                },
                expires_ms: Some(99),
                metadata: Metadata::new(),
                created_ms: 3,
            },
        ));
        let id = EntryId::Key("key_1".into());
        assert_eq!(EntryId::decode(&id.to_string()), Some(id.clone()));
        assert_eq!(AdminEntry::decode(&id, &key.encode()), Some(key.clone()));
        assert!(key.encode().contains(&"07".repeat(32)), "the hash in hex");
        assert_eq!(EntryId::decode("key:"), None);
        assert_eq!(EntryId::decode("user:x"), None);
    }
}
