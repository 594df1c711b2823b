//! The node's RocksDB store, in `[storage] path`.
//!
//! - Column family `counters` holds the ledger: key `<counter key> NUL
//!   <node id> NUL <generation, 8 bytes big-endian>`, value the run's tally
//!   in its text form. Writes go through the WAL without fsync: a killed
//!   process loses nothing, and no request waits on the disk.
//! - Column family `meta` holds the last run generation handed out, so a
//!   restarted node always starts a newer run, whatever its clock says.
//! - Column family `admin` holds the merged admin state, keys and teams:
//!   key `key:<id>` or `team:<id>`, value the register's JSON. Keys are
//!   there only as SHA-256 hashes.
//! - Column families `cache` and `cache_expiry` hold the response cache:
//!   see [`cache`].
//! - Column family `requests` holds the request log: see [`requests`].
//! - Column families `items` and `items_expiry` hold stored responses and
//!   conversations: see [`items`].

mod cache;
mod items;
mod requests;

use std::path::Path;

use anyhow::Context;
use chorus_actors::{AdminStore, Contribution, LedgerStore, RunId, StoreChange, StoreError};
use chorus_proto::admin::{AdminEntry, EntryId};
use chorus_proto::counter::{CounterKey, Tally};
use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamily, ColumnFamilyDescriptor, Options, WriteBatch,
    WriteBufferManager, WriteOptions, DB,
};

pub use cache::CacheStore;
pub use items::ItemStore;
pub use requests::{Cursor, RequestStore};

const COUNTERS: &str = "counters";
const META: &str = "meta";
const ADMIN: &str = "admin";
const GENERATION: &[u8] = b"generation";

/// What all memtables together may hold before RocksDB flushes the largest.
/// RocksDB's default is 64 MiB per column family, eight of them here: a
/// node's memory would climb by hundreds of MiB as the request log fills
/// them, then fall at each flush.
const MEMTABLES_BYTES: usize = 16 << 20;
/// One memtable's size, before it is frozen and flushed.
const MEMTABLE_BYTES: usize = 4 << 20;
/// The block cache all families share. Index and filter blocks live in it
/// too, so the memory that reading needs stays bounded however large the
/// request log grows (by default each table keeps its own outside any cache).
const BLOCK_CACHE_BYTES: usize = 16 << 20;

pub struct Storage {
    db: DB,
    /// The block cache every family shares, for [`Storage::memory`].
    cache: Cache,
}

/// What the store holds in memory, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreMemory {
    /// Memtables, flushed or not: within [`MEMTABLES_BYTES`], roughly.
    pub memtables: u64,
    /// The block cache's contents: within [`BLOCK_CACHE_BYTES`].
    pub block_cache: u64,
    /// What open tables keep outside the cache.
    pub table_readers: u64,
}

fn store_error(
    action: &'static str,
    error: impl std::error::Error + Send + Sync + 'static,
) -> StoreError {
    StoreError {
        action,
        source: Box::new(error),
    }
}

fn missing_family(name: &'static str) -> StoreError {
    StoreError {
        action: "open a column family of",
        source: format!("column family `{name}` is missing").into(),
    }
}

impl Storage {
    pub fn open(path: &Path) -> anyhow::Result<Storage> {
        let cache = Cache::new_lru_cache(BLOCK_CACHE_BYTES);
        let mut options = bounded_memory(&cache);
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        let families = [
            COUNTERS,
            META,
            ADMIN,
            cache::CACHE,
            cache::CACHE_EXPIRY,
            requests::REQUESTS,
            items::ITEMS,
            items::ITEMS_EXPIRY,
        ]
        .map(|name| ColumnFamilyDescriptor::new(name, options.clone()));
        let db = DB::open_cf_descriptors(&options, path, families)
            .with_context(|| format!("cannot open the store at `{}`", path.display()))?;
        Ok(Storage { db, cache })
    }

    /// What the store holds in memory now.
    pub fn memory(&self) -> Result<StoreMemory, StoreError> {
        let stats = rocksdb::perf::get_memory_usage_stats(Some(&[&self.db]), Some(&[&self.cache]))
            .map_err(|e| store_error("read the memory use of", e))?;
        Ok(StoreMemory {
            memtables: stats.mem_table_total,
            block_cache: stats.cache_total,
            table_readers: stats.mem_table_readers_total,
        })
    }

    fn family(&self, name: &'static str) -> Result<&ColumnFamily, StoreError> {
        self.db.cf_handle(name).ok_or_else(|| missing_family(name))
    }

    /// The generation of the run starting now: `now_ms`, or one more than
    /// the last run's if the clock says otherwise. Written to disk before
    /// it is returned.
    pub fn next_generation(&self, now_ms: u64) -> Result<u64, StoreError> {
        let meta = self.family(META)?;
        let last = self
            .db
            .get_cf(meta, GENERATION)
            .map_err(|e| store_error("read the generation from", e))?
            .and_then(|bytes| <[u8; 8]>::try_from(bytes.as_slice()).ok())
            .map(u64::from_be_bytes);
        let generation = last.map_or(now_ms, |last| now_ms.max(last.saturating_add(1)));
        let mut durable = WriteOptions::default();
        durable.set_sync(true);
        self.db
            .put_cf_opt(meta, GENERATION, generation.to_be_bytes(), &durable)
            .map_err(|e| store_error("write the generation to", e))?;
        Ok(generation)
    }

    /// Every stored tally; entries that do not decode are skipped.
    pub fn load_counters(&self) -> Result<Vec<Contribution>, StoreError> {
        let family = self.family(COUNTERS)?;
        let mut contributions = Vec::new();
        for entry in self.db.iterator_cf(family, rocksdb::IteratorMode::Start) {
            let (key, value) = entry.map_err(|e| store_error("read the counters from", e))?;
            match decode(&key, &value) {
                Some(contribution) => contributions.push(contribution),
                None => {
                    tracing::warn!(key_len = key.len(), "skipped an undecodable stored counter")
                }
            }
        }
        Ok(contributions)
    }
}

impl Storage {
    /// Every stored admin register; entries that do not decode are skipped.
    pub fn load_admin(&self) -> Result<Vec<(EntryId, AdminEntry)>, StoreError> {
        let family = self.family(ADMIN)?;
        let mut entries = Vec::new();
        for stored in self.db.iterator_cf(family, rocksdb::IteratorMode::Start) {
            let (key, value) = stored.map_err(|e| store_error("read the admin state from", e))?;
            let decoded = std::str::from_utf8(&key)
                .ok()
                .and_then(EntryId::decode)
                .and_then(|id| {
                    let entry = AdminEntry::decode(&id, std::str::from_utf8(&value).ok()?)?;
                    Some((id, entry))
                });
            match decoded {
                Some(entry) => entries.push(entry),
                None => tracing::warn!(key_len = key.len(), "skipped an undecodable admin entry"),
            }
        }
        Ok(entries)
    }
}

impl AdminStore for Storage {
    fn save_admin(&self, entries: &[(EntryId, AdminEntry)]) -> Result<(), StoreError> {
        let family = self.family(ADMIN)?;
        let mut batch = WriteBatch::default();
        for (id, entry) in entries {
            batch.put_cf(family, id.to_string(), entry.encode());
        }
        self.db
            .write(batch)
            .map_err(|e| store_error("write the admin state to", e))
    }
}

impl LedgerStore for Storage {
    fn save(&self, changes: &[StoreChange]) -> Result<(), StoreError> {
        let family = self.family(COUNTERS)?;
        let mut batch = WriteBatch::default();
        for change in changes {
            match change {
                StoreChange::Put(contribution) => batch.put_cf(
                    family,
                    encode_key(&contribution.key, &contribution.run),
                    contribution.tally.encode(),
                ),
                StoreChange::Remove {
                    key,
                    node_id,
                    generation,
                } => {
                    let run = RunId {
                        node_id: node_id.clone(),
                        generation: *generation,
                    };
                    batch.delete_cf(family, encode_key(key, &run));
                }
            }
        }
        self.db
            .write(batch)
            .map_err(|e| store_error("write the counters to", e))
    }
}

/// Options under which the store's memory stays within [`MEMTABLES_BYTES`]
/// and [`BLOCK_CACHE_BYTES`] (plus RocksDB's own bookkeeping), however much
/// it holds: every family shares one memtable budget and one block cache.
fn bounded_memory(cache: &Cache) -> Options {
    let mut table = BlockBasedOptions::default();
    table.set_block_cache(cache);
    table.set_cache_index_and_filter_blocks(true);
    table.set_pin_l0_filter_and_index_blocks_in_cache(true);
    let mut options = Options::default();
    options.set_block_based_table_factory(&table);
    options.set_write_buffer_manager(&WriteBufferManager::new_write_buffer_manager(
        MEMTABLES_BYTES,
        false,
    ));
    options.set_write_buffer_size(MEMTABLE_BYTES);
    options
}

fn encode_key(key: &CounterKey, run: &RunId) -> Vec<u8> {
    [
        key.to_string().as_bytes(),
        &[0],
        run.node_id.as_bytes(),
        &[0],
        &run.generation.to_be_bytes(),
    ]
    .concat()
}

fn decode(key: &[u8], value: &[u8]) -> Option<Contribution> {
    let (rest, generation) = key.split_last_chunk::<8>()?;
    let rest = rest.strip_suffix(&[0])?;
    let separator = rest.iter().position(|byte| *byte == 0)?;
    let counter = CounterKey::decode(std::str::from_utf8(&rest[..separator]).ok()?)?;
    let node_id = std::str::from_utf8(&rest[separator + 1..]).ok()?;
    let tally = Tally::decode(std::str::from_utf8(value).ok()?, counter.window())?;
    Some(Contribution {
        key: counter,
        run: RunId {
            node_id: node_id.to_owned(),
            generation: u64::from_be_bytes(*generation),
        },
        tally,
    })
}

#[cfg(test)]
mod tests {
    use chorus_proto::counter::{Buckets, CounterKind, Window};

    use super::*;

    fn contribution(node_id: &str, generation: u64, total: u64) -> Contribution {
        Contribution {
            key: CounterKey::new(CounterKind::Calls, "p/llama3:8b"),
            run: RunId {
                node_id: node_id.into(),
                generation,
            },
            tally: Tally::new(Buckets::new(Window::Lifetime, 0, total)),
        }
    }

    #[test]
    fn saved_tallies_load_back_after_reopening_and_removed_ones_do_not() {
        let dir = crate::testing::scratch_dir("storage");
        {
            let storage = Storage::open(&dir).unwrap();
            storage
                .save(&[
                    StoreChange::Put(contribution("a", 1, 3)),
                    StoreChange::Put(contribution("b", 2, 1)),
                ])
                .unwrap();
            storage
                .save(&[
                    StoreChange::Put(contribution("a", 1, 7)),
                    StoreChange::Remove {
                        key: contribution("b", 2, 0).key,
                        node_id: "b".into(),
                        generation: 2,
                    },
                ])
                .unwrap();
        }
        let storage = Storage::open(&dir).unwrap();
        assert_eq!(storage.load_counters().unwrap(), [contribution("a", 1, 7)]);
        assert_eq!(decode(b"no-separator", b"0,1,0"), None);
        assert_eq!(
            decode(
                &encode_key(&contribution("a", 1, 0).key, &contribution("a", 1, 0).run),
                b"x"
            ),
            None
        );
    }

    #[test]
    fn admin_entries_load_back_after_reopening() {
        use chorus_proto::admin::{Entry, Stamp, TeamRecord};
        let dir = crate::testing::scratch_dir("admin");
        let id = EntryId::Team("team_1".into());
        let entry = AdminEntry::Team(Entry::live(
            Stamp {
                wall_ms: 1,
                logical: 0,
                node_id: "a".into(),
            },
            TeamRecord {
                name: "research".into(),
                policy: Default::default(),
                metadata: Default::default(),
                created_ms: 1,
            },
        ));
        Storage::open(&dir)
            .unwrap()
            .save_admin(&[(id.clone(), entry.clone())])
            .unwrap();
        let reopened = Storage::open(&dir).unwrap();
        assert_eq!(reopened.load_admin().unwrap(), [(id, entry)]);
    }

    #[test]
    fn generations_only_go_up_whatever_the_clock_says() {
        let dir = crate::testing::scratch_dir("generation");
        let storage = Storage::open(&dir).unwrap();
        assert_eq!(storage.next_generation(1_000).unwrap(), 1_000);
        assert_eq!(
            storage.next_generation(900).unwrap(),
            1_001,
            "the clock went back"
        );
        assert_eq!(storage.next_generation(5_000).unwrap(), 5_000);
        drop(storage);
        let reopened = Storage::open(&dir).unwrap();
        assert_eq!(reopened.next_generation(5_000).unwrap(), 5_001);
    }
}
