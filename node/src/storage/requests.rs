//! The request log's records in the node's store.
//!
//! Column family `requests`: key the request's arrival (ms since the Unix
//! epoch, 8 bytes big-endian) then its id, value the record's JSON. Keys
//! sort by time, so a time range is one scan, newest first for the admin
//! API, and retention is one range deletion.

use std::sync::Arc;

use chorus_actors::StoreError;
use rocksdb::{Direction, IteratorMode, WriteBatch};

use super::{store_error, Storage};
use crate::request_log::RequestRecord;

pub(super) const REQUESTS: &str = "requests";

/// A position in the log: a record's arrival and id.
pub type Cursor = (u64, String);

pub struct RequestStore {
    storage: Arc<Storage>,
}

impl RequestStore {
    pub fn new(storage: Arc<Storage>) -> Self {
        RequestStore { storage }
    }

    pub fn put(&self, records: &[RequestRecord]) -> Result<(), StoreError> {
        let family = self.storage.family(REQUESTS)?;
        let mut batch = WriteBatch::default();
        for record in records {
            let value = serde_json::to_vec(record)
                .map_err(|e| store_error("encode a request record for", e))?;
            batch.put_cf(family, key(record.time_ms, &record.id), value);
        }
        self.storage
            .db
            .write(batch)
            .map_err(|e| store_error("write the request log to", e))
    }

    /// Drops the records that arrived from `from_ms` to before `before_ms`.
    pub fn prune(&self, from_ms: u64, before_ms: u64) -> Result<(), StoreError> {
        let family = self.storage.family(REQUESTS)?;
        self.storage
            .db
            .delete_range_cf(family, from_ms.to_be_bytes(), before_ms.to_be_bytes())
            .map_err(|e| store_error("drop old records from the request log in", e))
    }

    /// Visits the records that arrived from `since_ms` to `until_ms`, both
    /// included, newest first, starting after `after` when given, for as
    /// long as `visit` says to go on. Records that do not decode are
    /// skipped.
    pub fn scan(
        &self,
        since_ms: u64,
        until_ms: u64,
        after: Option<&Cursor>,
        mut visit: impl FnMut(RequestRecord) -> bool,
    ) -> Result<(), StoreError> {
        let family = self.storage.family(REQUESTS)?;
        // Past every key of `until_ms`: an arrival one ms later, no id.
        let start = match after {
            Some((time_ms, id)) => key(*time_ms, id),
            None => until_ms.saturating_add(1).to_be_bytes().to_vec(),
        };
        let entries = self
            .storage
            .db
            .iterator_cf(family, IteratorMode::From(&start, Direction::Reverse));
        for entry in entries {
            let (stored_key, value) =
                entry.map_err(|e| store_error("read the request log from", e))?;
            if stored_key[..] == start[..] {
                continue;
            }
            let time_ms = stored_key
                .get(..8)
                .and_then(|bytes| <[u8; 8]>::try_from(bytes).ok())
                .map_or(0, u64::from_be_bytes);
            if time_ms < since_ms {
                break;
            }
            if time_ms > until_ms {
                continue;
            }
            match serde_json::from_slice(&value) {
                Ok(record) => {
                    if !visit(record) {
                        break;
                    }
                }
                Err(error) => tracing::warn!(%error, "skipped an undecodable request record"),
            }
        }
        Ok(())
    }
}

fn key(time_ms: u64, id: &str) -> Vec<u8> {
    [&time_ms.to_be_bytes()[..], id.as_bytes()].concat()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request_log::tests::record_at;

    fn store(name: &str) -> RequestStore {
        let dir = crate::testing::scratch_dir(name);
        RequestStore::new(Arc::new(Storage::open(&dir).unwrap()))
    }

    fn ids(
        store: &RequestStore,
        since: u64,
        until: u64,
        after: Option<&Cursor>,
        limit: usize,
    ) -> Vec<String> {
        let mut ids = Vec::new();
        store
            .scan(since, until, after, |record| {
                ids.push(record.id);
                ids.len() < limit
            })
            .unwrap();
        ids
    }

    #[test]
    fn records_come_back_newest_first_within_the_range_and_page_by_cursor() {
        let store = store("requests-scan");
        let records: Vec<RequestRecord> = [(100, "a"), (200, "b"), (200, "c"), (300, "d")]
            .into_iter()
            .map(|(time_ms, id)| record_at(time_ms, id))
            .collect();
        store.put(&records).unwrap();
        assert_eq!(ids(&store, 0, u64::MAX, None, 10), ["d", "c", "b", "a"]);
        assert_eq!(ids(&store, 150, 250, None, 10), ["c", "b"]);
        assert_eq!(
            ids(&store, 200, 200, None, 10),
            ["c", "b"],
            "both ends included"
        );
        assert_eq!(ids(&store, 0, u64::MAX, None, 2), ["d", "c"]);
        let cursor = (200, "c".to_owned());
        assert_eq!(ids(&store, 0, u64::MAX, Some(&cursor), 2), ["b", "a"]);
        store.prune(0, 200).unwrap();
        assert_eq!(ids(&store, 0, u64::MAX, None, 10), ["d", "c", "b"]);
    }
}
