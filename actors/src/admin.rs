//! The admin state of the cluster — virtual keys and teams — as this node
//! knows it: every register merged from local changes, the store and
//! gossip, and the indexes the request path reads.
//!
//! A change made here (by the admin API) is stamped by the node's hybrid
//! logical clock, written to the store before it counts, and handed to
//! gossip at once; changes from peers are merged in with
//! [`Entry::merge`](chorus_proto::admin::Entry::merge), so every node ends
//! with the same state whatever the order of arrival.
//!
//! The request path looks a key up by its SHA-256 and its team by id in
//! sharded maps, never behind this registry's lock, which only admin
//! changes and gossip merges take.

mod hlc;
mod policy;
mod store;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use chorus_proto::admin::{AdminEntry, Entry, EntryId, EntryState, KeyRecord, Stamp, TeamRecord};
use dashmap::DashMap;
use tokio::sync::Notify;

use crate::clock::unix_millis;

pub use hlc::HybridClock;
pub use policy::{check_within_team, show_usd, AdminError, KeyPatch, PolicyPatch, TeamPatch};
pub use store::AdminStore;

/// A live key: its id, its record, and whether it was revoked.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyEntry {
    pub id: String,
    pub record: KeyRecord,
    pub revoked_ms: Option<u64>,
    /// The change that made this state.
    pub stamp: Stamp,
}

/// A live team: its id, its record, and whether it was revoked.
#[derive(Debug, Clone, PartialEq)]
pub struct TeamEntry {
    pub id: String,
    pub record: TeamRecord,
    pub revoked_ms: Option<u64>,
    pub stamp: Stamp,
}

/// Cheap to clone; every clone is the same registry.
#[derive(Clone)]
pub struct AdminRegistry(Arc<Inner>);

struct Inner {
    clock: HybridClock,
    store: Option<Arc<dyn AdminStore>>,
    book: Mutex<Book>,
    keys_by_hash: DashMap<[u8; 32], Arc<KeyEntry>>,
    /// The hash of each live key, by id.
    key_hashes: DashMap<String, [u8; 32]>,
    /// The id of each live key, by name (the last one indexed, should a
    /// race on two nodes have given two keys one name).
    key_names: DashMap<String, String>,
    teams: DashMap<String, Arc<TeamEntry>>,
    /// Woken by a local change, so gossip publishes it at once.
    changed_here: Notify,
}

#[derive(Default)]
struct Book {
    /// Every register, deletions included.
    entries: BTreeMap<EntryId, AdminEntry>,
    /// Registers changed since gossip last looked.
    changed: BTreeSet<EntryId>,
    /// Registers merged from gossip and not stored yet.
    unsaved: BTreeSet<EntryId>,
}

impl std::fmt::Debug for AdminRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminRegistry").finish_non_exhaustive()
    }
}

impl AdminRegistry {
    /// The registry of node `node_id`, starting from what the store kept.
    pub fn new(
        node_id: &str,
        restored: Vec<(EntryId, AdminEntry)>,
        store: Option<Arc<dyn AdminStore>>,
    ) -> Self {
        let registry = AdminRegistry(Arc::new(Inner {
            clock: HybridClock::new(node_id),
            store,
            book: Mutex::new(Book::default()),
            keys_by_hash: DashMap::new(),
            key_hashes: DashMap::new(),
            key_names: DashMap::new(),
            teams: DashMap::new(),
            changed_here: Notify::new(),
        }));
        {
            let mut book = registry.book();
            for (id, entry) in restored {
                registry.merge(&mut book, id, entry);
            }
            book.unsaved.clear();
        }
        registry
    }

    /// A poisoned lock only means a panic mid-update of plain maps, whose
    /// entries are replaced whole; they are still usable.
    fn book(&self) -> MutexGuard<'_, Book> {
        self.0.book.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The key whose SHA-256 is `sha256`, revoked or not.
    pub fn key_by_hash(&self, sha256: &[u8; 32]) -> Option<Arc<KeyEntry>> {
        self.0.keys_by_hash.get(sha256).map(|entry| entry.clone())
    }

    /// The live team `id`, revoked or not.
    pub fn team(&self, id: &str) -> Option<Arc<TeamEntry>> {
        self.0.teams.get(id).map(|entry| entry.clone())
    }

    /// How many live keys and teams there are.
    pub fn counts(&self) -> (usize, usize) {
        (self.0.keys_by_hash.len(), self.0.teams.len())
    }

    /// Every live key, by name.
    pub fn keys(&self) -> Vec<Arc<KeyEntry>> {
        let mut keys: Vec<_> = self
            .0
            .keys_by_hash
            .iter()
            .map(|entry| entry.clone())
            .collect();
        keys.sort_by(|a, b| a.record.name.cmp(&b.record.name));
        keys
    }

    /// Every live team, by name.
    pub fn teams(&self) -> Vec<Arc<TeamEntry>> {
        let mut teams: Vec<_> = self.0.teams.iter().map(|entry| entry.clone()).collect();
        teams.sort_by(|a, b| a.record.name.cmp(&b.record.name));
        teams
    }

    /// The live key with this id or name.
    pub fn key(&self, id_or_name: &str) -> Result<Arc<KeyEntry>, AdminError> {
        let by_id = |id: &str| {
            let hash = *self.0.key_hashes.get(id)?;
            self.key_by_hash(&hash)
        };
        by_id(id_or_name)
            .or_else(|| {
                let id = self.0.key_names.get(id_or_name)?.clone();
                by_id(&id)
            })
            .ok_or_else(|| AdminError::NotFound {
                what: "key",
                id: id_or_name.to_owned(),
            })
    }

    /// The live team with this id or name.
    pub fn find_team(&self, id_or_name: &str) -> Result<Arc<TeamEntry>, AdminError> {
        if let Some(team) = self.team(id_or_name) {
            return Ok(team);
        }
        self.0
            .teams
            .iter()
            .find(|entry| entry.record.name == id_or_name)
            .map(|entry| entry.clone())
            .ok_or_else(|| AdminError::NotFound {
                what: "team",
                id: id_or_name.to_owned(),
            })
    }

    pub fn create_key(
        &self,
        id: String,
        sha256: [u8; 32],
        patch: &KeyPatch,
        now_ms: u64,
    ) -> Result<Arc<KeyEntry>, AdminError> {
        let mut book = self.book();
        let mut record = KeyRecord {
            name: String::new(),
            team: None,
            sha256,
            policy: Default::default(),
            expires_ms: None,
            metadata: Default::default(),
            created_ms: now_ms,
        };
        let team = self.resolve_team(patch)?;
        patch.apply(&mut record, team);
        self.check_key(&record, &id)?;
        let stamp = self.0.clock.stamp(now_ms);
        let entry = AdminEntry::Key(Entry::live(stamp, record));
        self.write(&mut book, EntryId::Key(id.clone()), entry)?;
        self.key(&id)
    }

    pub fn update_key(
        &self,
        id_or_name: &str,
        patch: &KeyPatch,
        now_ms: u64,
    ) -> Result<Arc<KeyEntry>, AdminError> {
        let mut book = self.book();
        let current = self.key(id_or_name)?;
        let mut record = current.record.clone();
        let team = self.resolve_team(patch)?;
        patch.apply(&mut record, team);
        self.check_key(&record, &current.id)?;
        let entry = AdminEntry::Key(Entry {
            stamp: self.0.clock.stamp(now_ms),
            state: EntryState::Live {
                record,
                revoked_ms: current.revoked_ms,
            },
        });
        self.write(&mut book, EntryId::Key(current.id.clone()), entry)?;
        self.key(&current.id)
    }

    pub fn revoke_key(&self, id_or_name: &str, now_ms: u64) -> Result<Arc<KeyEntry>, AdminError> {
        let mut book = self.book();
        let current = self.key(id_or_name)?;
        let entry = AdminEntry::Key(Entry {
            stamp: self.0.clock.stamp(now_ms),
            state: EntryState::Live {
                record: current.record.clone(),
                revoked_ms: Some(current.revoked_ms.unwrap_or(now_ms)),
            },
        });
        self.write(&mut book, EntryId::Key(current.id.clone()), entry)?;
        self.key(&current.id)
    }

    pub fn delete_key(&self, id_or_name: &str, now_ms: u64) -> Result<(), AdminError> {
        let mut book = self.book();
        let current = self.key(id_or_name)?;
        let entry = AdminEntry::Key(Entry {
            stamp: self.0.clock.stamp(now_ms),
            state: EntryState::Deleted,
        });
        self.write(&mut book, EntryId::Key(current.id.clone()), entry)
    }

    pub fn create_team(
        &self,
        id: String,
        patch: &TeamPatch,
        now_ms: u64,
    ) -> Result<Arc<TeamEntry>, AdminError> {
        let mut book = self.book();
        let mut record = TeamRecord {
            name: String::new(),
            policy: Default::default(),
            metadata: Default::default(),
            created_ms: now_ms,
        };
        patch.apply(&mut record);
        self.check_team_name(&record.name, &id)?;
        let entry = AdminEntry::Team(Entry::live(self.0.clock.stamp(now_ms), record));
        self.write(&mut book, EntryId::Team(id.clone()), entry)?;
        self.find_team(&id)
    }

    /// Narrowing a team below its keys is allowed: each request is held to
    /// the stricter of the two anyway.
    pub fn update_team(
        &self,
        id_or_name: &str,
        patch: &TeamPatch,
        now_ms: u64,
    ) -> Result<Arc<TeamEntry>, AdminError> {
        let mut book = self.book();
        let current = self.find_team(id_or_name)?;
        let mut record = current.record.clone();
        patch.apply(&mut record);
        self.check_team_name(&record.name, &current.id)?;
        let entry = AdminEntry::Team(Entry {
            stamp: self.0.clock.stamp(now_ms),
            state: EntryState::Live {
                record,
                revoked_ms: current.revoked_ms,
            },
        });
        self.write(&mut book, EntryId::Team(current.id.clone()), entry)?;
        self.find_team(&current.id)
    }

    /// A revoked team's keys stop working with it.
    pub fn revoke_team(&self, id_or_name: &str, now_ms: u64) -> Result<Arc<TeamEntry>, AdminError> {
        let mut book = self.book();
        let current = self.find_team(id_or_name)?;
        let entry = AdminEntry::Team(Entry {
            stamp: self.0.clock.stamp(now_ms),
            state: EntryState::Live {
                record: current.record.clone(),
                revoked_ms: Some(current.revoked_ms.unwrap_or(now_ms)),
            },
        });
        self.write(&mut book, EntryId::Team(current.id.clone()), entry)?;
        self.find_team(&current.id)
    }

    /// Refused while keys still belong to the team.
    pub fn delete_team(&self, id_or_name: &str, now_ms: u64) -> Result<(), AdminError> {
        let mut book = self.book();
        let current = self.find_team(id_or_name)?;
        let members = self
            .0
            .keys_by_hash
            .iter()
            .filter(|key| key.record.team.as_deref() == Some(current.id.as_str()))
            .count();
        if members > 0 {
            return Err(AdminError::Conflict {
                param: "id".into(),
                message: format!(
                    "team `{}` still has {members} key(s): delete them or move them to another team first",
                    current.record.name
                ),
            });
        }
        let entry = AdminEntry::Team(Entry {
            stamp: self.0.clock.stamp(now_ms),
            state: EntryState::Deleted,
        });
        self.write(&mut book, EntryId::Team(current.id.clone()), entry)
    }

    /// The team id a patch names, if it names one: `Some(None)` takes the
    /// key out of its team.
    fn resolve_team(&self, patch: &KeyPatch) -> Result<Option<Option<String>>, AdminError> {
        let Some(team) = &patch.team else {
            return Ok(None);
        };
        let Some(team) = team else {
            return Ok(Some(None));
        };
        let found = self
            .find_team(team)
            .map_err(|_| AdminError::invalid("team", format!("team `{team}` does not exist")))?;
        if found.revoked_ms.is_some() {
            return Err(AdminError::invalid(
                "team",
                format!("team `{team}` is revoked"),
            ));
        }
        Ok(Some(Some(found.id.clone())))
    }

    /// A key's name is unique among live keys, and it can only narrow its team.
    fn check_key(&self, record: &KeyRecord, id: &str) -> Result<(), AdminError> {
        let same_name = self
            .key(&record.name)
            .ok()
            .filter(|key| key.record.name == record.name && key.id != id)
            .map(|key| key.revoked_ms.is_some());
        if let Some(revoked) = same_name {
            let hint = if revoked {
                " (revoked: delete it to use the name again)"
            } else {
                ""
            };
            return Err(AdminError::Conflict {
                param: "name".into(),
                message: format!("a key named `{}` already exists{hint}", record.name),
            });
        }
        if let Some(team_id) = &record.team {
            let team = self.team(team_id).ok_or_else(|| {
                AdminError::invalid(
                    "team",
                    format!("the key's team `{team_id}` was deleted: set `team` to null or another team"),
                )
            })?;
            check_within_team(&record.policy, &team.record)?;
        }
        Ok(())
    }

    fn check_team_name(&self, name: &str, id: &str) -> Result<(), AdminError> {
        if self
            .0
            .teams
            .iter()
            .any(|team| team.record.name == name && team.id != id)
        {
            return Err(AdminError::Conflict {
                param: "name".into(),
                message: format!("a team named `{name}` already exists"),
            });
        }
        Ok(())
    }

    /// Stores a local change, then makes it count and wakes gossip.
    fn write(&self, book: &mut Book, id: EntryId, entry: AdminEntry) -> Result<(), AdminError> {
        let merged = match book.entries.get(&id) {
            Some(current) => current.merge(&entry).unwrap_or(entry),
            None => entry,
        };
        if let Some(store) = &self.0.store {
            store.save_admin(&[(id.clone(), merged.clone())])?;
        }
        self.merge(book, id, merged);
        self.0.changed_here.notify_one();
        Ok(())
    }

    /// Merges `entry` into register `id` and the indexes; whether it changed.
    fn merge(&self, book: &mut Book, id: EntryId, entry: AdminEntry) -> bool {
        self.0.clock.observe(entry.stamp(), unix_millis());
        let merged = match book.entries.get(&id) {
            Some(current) => match current.merge(&entry) {
                Some(merged) if merged != *current => merged,
                _ => return false,
            },
            None => entry,
        };
        self.index(&id, &merged);
        book.entries.insert(id.clone(), merged);
        book.changed.insert(id.clone());
        book.unsaved.insert(id);
        true
    }

    fn index(&self, id: &EntryId, entry: &AdminEntry) {
        match (id, entry) {
            (EntryId::Key(id), AdminEntry::Key(entry)) => match &entry.state {
                EntryState::Live { record, revoked_ms } => {
                    self.0.key_hashes.insert(id.clone(), record.sha256);
                    if let Some(before) = self.key_by_hash(&record.sha256) {
                        self.unname_key(&before.record.name, id);
                    }
                    self.0.key_names.insert(record.name.clone(), id.clone());
                    self.0.keys_by_hash.insert(
                        record.sha256,
                        Arc::new(KeyEntry {
                            id: id.clone(),
                            record: record.clone(),
                            revoked_ms: *revoked_ms,
                            stamp: entry.stamp.clone(),
                        }),
                    );
                }
                EntryState::Deleted => {
                    if let Some((_, hash)) = self.0.key_hashes.remove(id) {
                        if let Some((_, before)) = self.0.keys_by_hash.remove(&hash) {
                            self.unname_key(&before.record.name, id);
                        }
                    }
                }
            },
            (EntryId::Team(id), AdminEntry::Team(entry)) => match &entry.state {
                EntryState::Live { record, revoked_ms } => {
                    self.0.teams.insert(
                        id.clone(),
                        Arc::new(TeamEntry {
                            id: id.clone(),
                            record: record.clone(),
                            revoked_ms: *revoked_ms,
                            stamp: entry.stamp.clone(),
                        }),
                    );
                }
                EntryState::Deleted => {
                    self.0.teams.remove(id);
                }
            },
            _ => tracing::warn!(%id, "ignored an admin entry of the wrong kind"),
        }
    }

    /// Drops `name` from the name index if it names key `id`.
    fn unname_key(&self, name: &str, id: &str) {
        self.0.key_names.remove_if(name, |_, named| named == id);
    }

    /// Merges an entry a peer published; whether it changed anything.
    pub fn observe(&self, id: EntryId, entry: AdminEntry) -> bool {
        let mut book = self.book();
        if let Some(current) = book.entries.get(&id) {
            if current.merge(&entry).is_none() {
                tracing::debug!(%id, "ignored an admin entry of the wrong kind");
                return false;
            }
        }
        self.merge(&mut book, id, entry)
    }

    /// Stores what gossip merged in since the last call, in one batch; on
    /// failure it stays unsaved and the next call tries again.
    pub fn save_observed(&self) {
        let Some(store) = &self.0.store else {
            return;
        };
        let mut book = self.book();
        if book.unsaved.is_empty() {
            return;
        }
        let batch: Vec<(EntryId, AdminEntry)> = book
            .unsaved
            .iter()
            .filter_map(|id| Some((id.clone(), book.entries.get(id)?.clone())))
            .collect();
        match store.save_admin(&batch) {
            Ok(()) => book.unsaved.clear(),
            Err(error) => {
                tracing::error!(%error, entries = batch.len(), "cannot save admin changes; will retry");
            }
        }
    }

    /// The register `id`, deletions included.
    pub fn entry(&self, id: &EntryId) -> Option<AdminEntry> {
        self.book().entries.get(id).cloned()
    }

    /// Every register id, deletions included.
    pub fn ids(&self) -> Vec<EntryId> {
        self.book().entries.keys().cloned().collect()
    }

    /// Registers changed since the last call.
    pub fn take_changed(&self) -> BTreeSet<EntryId> {
        std::mem::take(&mut self.book().changed)
    }

    /// Resolves when a local change waits to be published.
    pub async fn changed_here(&self) {
        self.0.changed_here.notified().await;
    }
}

#[cfg(test)]
mod tests;
