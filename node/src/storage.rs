//! The node's RocksDB store, in `[storage] path`. Column family `counters`
//! holds the ledger: key `<counter name> NUL <node id>`, value the node's
//! total as 8 big-endian bytes. Writes go through the WAL without fsync:
//! a killed process loses nothing, and no request waits on the disk.

use std::path::Path;

use anyhow::Context;
use chorus_actors::{Contribution, LedgerStore};
use rocksdb::{ColumnFamilyDescriptor, Options, WriteBatch, DB};

const COUNTERS: &str = "counters";

pub struct Storage {
    db: DB,
}

impl Storage {
    pub fn open(path: &Path) -> anyhow::Result<Storage> {
        let mut options = Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        let families = vec![ColumnFamilyDescriptor::new(COUNTERS, Options::default())];
        let db = DB::open_cf_descriptors(&options, path, families)
            .with_context(|| format!("cannot open the store at `{}`", path.display()))?;
        Ok(Storage { db })
    }

    /// Every stored contribution; entries that do not decode are skipped.
    pub fn load_counters(&self) -> anyhow::Result<Vec<Contribution>> {
        let family = self
            .db
            .cf_handle(COUNTERS)
            .context("the counters column family is missing")?;
        let mut contributions = Vec::new();
        for entry in self.db.iterator_cf(family, rocksdb::IteratorMode::Start) {
            let (key, value) = entry.context("cannot read the counters")?;
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

impl LedgerStore for Storage {
    fn save(&self, entries: &[Contribution]) -> Result<(), String> {
        let family = self
            .db
            .cf_handle(COUNTERS)
            .ok_or("the counters column family is missing")?;
        let mut batch = WriteBatch::default();
        for (name, node, total) in entries {
            batch.put_cf(family, key(name, node), total.to_be_bytes());
        }
        self.db.write(batch).map_err(|e| e.to_string())
    }
}

fn key(name: &str, node: &str) -> Vec<u8> {
    [name.as_bytes(), &[0], node.as_bytes()].concat()
}

fn decode(key: &[u8], value: &[u8]) -> Option<Contribution> {
    let separator = key.iter().position(|byte| *byte == 0)?;
    let name = std::str::from_utf8(&key[..separator]).ok()?;
    let node = std::str::from_utf8(&key[separator + 1..]).ok()?;
    let total = u64::from_be_bytes(value.try_into().ok()?);
    Some((name.to_owned(), node.to_owned(), total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_counters_load_back_after_reopening() {
        let dir = std::env::temp_dir().join(format!("chorus-storage-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        {
            let storage = Storage::open(&dir).unwrap();
            storage
                .save(&[
                    ("calls/p/m".into(), "a".into(), 3),
                    ("calls/p/m".into(), "b".into(), 1),
                ])
                .unwrap();
            storage
                .save(&[("calls/p/m".into(), "a".into(), 7)])
                .unwrap();
        }
        let storage = Storage::open(&dir).unwrap();
        let mut loaded = storage.load_counters().unwrap();
        loaded.sort();
        assert_eq!(
            loaded,
            [
                ("calls/p/m".to_owned(), "a".to_owned(), 7),
                ("calls/p/m".to_owned(), "b".to_owned(), 1)
            ]
        );
        assert_eq!(decode(b"no-separator", &[0; 8]), None);
        assert_eq!(decode(b"n\0a", &[0; 3]), None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
