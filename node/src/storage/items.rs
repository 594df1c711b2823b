//! The stored responses and conversations this node holds (see
//! [`crate::stored`]), each until it expires.
//!
//! - Column family `items`: key the item's key, value its expiry (ms since
//!   the Unix epoch, 8 bytes big-endian) then the item's JSON.
//! - Column family `items_expiry`: key the expiry then the item's key, no
//!   value. Read in order it gives the items that expire first; each write
//!   drops a bounded number of expired ones, so the store never holds much
//!   past its time and no write waits on a long sweep.

use std::sync::Arc;

use chorus_actors::StoreError;
use rocksdb::{Direction, IteratorMode, WriteBatch};

use super::{store_error, Storage};

pub(super) const ITEMS: &str = "items";
pub(super) const ITEMS_EXPIRY: &str = "items_expiry";

/// Expired items one write drops at most.
const SWEEP_LIMIT: usize = 256;

pub struct ItemStore {
    storage: Arc<Storage>,
}

impl ItemStore {
    pub fn new(storage: Arc<Storage>) -> Self {
        ItemStore { storage }
    }

    /// The item under `key`, unless there is none or it has expired.
    pub fn get(&self, key: &str, now_ms: u64) -> Result<Option<Vec<u8>>, StoreError> {
        let family = self.storage.family(ITEMS)?;
        let value = self
            .storage
            .db
            .get_cf(family, key)
            .map_err(|e| store_error("read a stored item from", e))?;
        Ok(value.and_then(|value| live(&value, now_ms).map(<[u8]>::to_vec)))
    }

    /// The live items whose keys start with `prefix`, in key order.
    pub fn scan(&self, prefix: &str, now_ms: u64) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let family = self.storage.family(ITEMS)?;
        let mut found = Vec::new();
        let entries = self.storage.db.iterator_cf(
            family,
            IteratorMode::From(prefix.as_bytes(), Direction::Forward),
        );
        for entry in entries {
            let (key, value) = entry.map_err(|e| store_error("read stored items from", e))?;
            if !key.starts_with(prefix.as_bytes()) {
                break;
            }
            let (Ok(key), Some(body)) = (std::str::from_utf8(&key), live(&value, now_ms)) else {
                continue;
            };
            found.push((key.to_owned(), body.to_vec()));
        }
        Ok(found)
    }

    /// Stores `body` under `key` until `expires_ms`, replacing what was
    /// there, then drops up to [`SWEEP_LIMIT`] expired items.
    pub fn put(
        &self,
        key: &str,
        body: &[u8],
        expires_ms: u64,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let items = self.storage.family(ITEMS)?;
        let index = self.storage.family(ITEMS_EXPIRY)?;
        let mut batch = WriteBatch::default();
        let replaced = self
            .storage
            .db
            .get_cf(items, key)
            .map_err(|e| store_error("read a stored item from", e))?;
        if let Some(old_expiry) = replaced.as_deref().and_then(expiry) {
            batch.delete_cf(index, index_key(old_expiry, key));
        }
        batch.put_cf(items, key, [&expires_ms.to_be_bytes()[..], body].concat());
        batch.put_cf(index, index_key(expires_ms, key), []);
        for entry in self
            .storage
            .db
            .iterator_cf(index, IteratorMode::Start)
            .take(SWEEP_LIMIT)
        {
            let (index_key, _) = entry.map_err(|e| store_error("read the item index from", e))?;
            if expiry(&index_key).is_some_and(|expires_ms| expires_ms > now_ms) {
                break;
            }
            batch.delete_cf(index, &index_key);
            // The key written now may still have an expired copy indexed:
            // its index entry goes, its new value stays.
            match index_key.get(8..) {
                Some(expired) if expired != key.as_bytes() => batch.delete_cf(items, expired),
                _ => {}
            }
        }
        self.storage
            .db
            .write(batch)
            .map_err(|e| store_error("write a stored item to", e))
    }
}

fn index_key(expires_ms: u64, key: &str) -> Vec<u8> {
    [&expires_ms.to_be_bytes()[..], key.as_bytes()].concat()
}

/// The expiry a stored value or an index key starts with.
fn expiry(bytes: &[u8]) -> Option<u64> {
    let head = bytes.get(..8)?;
    <[u8; 8]>::try_from(head).ok().map(u64::from_be_bytes)
}

/// A stored value's body, unless it has expired or is damaged.
fn live(value: &[u8], now_ms: u64) -> Option<&[u8]> {
    expiry(value)
        .filter(|expires_ms| *expires_ms > now_ms)
        .and_then(|_| value.get(8..))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &std::path::Path) -> ItemStore {
        ItemStore::new(Arc::new(Storage::open(dir).unwrap()))
    }

    #[test]
    fn an_item_is_there_until_it_expires_and_after_a_restart() {
        let dir = crate::testing::scratch_dir("items-ttl");
        {
            let items = open(&dir);
            items.put("response/a", b"{}", 5_000, 1_000).unwrap();
            assert_eq!(items.get("response/a", 4_999).unwrap().unwrap(), b"{}");
            assert_eq!(items.get("response/a", 5_000).unwrap(), None, "expired");
            assert_eq!(items.get("response/b", 1_000).unwrap(), None);
        }
        let reopened = open(&dir);
        assert_eq!(reopened.get("response/a", 2_000).unwrap().unwrap(), b"{}");
    }

    #[test]
    fn a_scan_finds_live_items_under_a_prefix_in_key_order() {
        let dir = crate::testing::scratch_dir("items-scan");
        let items = open(&dir);
        items.put("conv/a/2", b"two", 9_000, 0).unwrap();
        items.put("conv/a/1", b"one", 9_000, 0).unwrap();
        items.put("conv/a/0", b"gone", 1_000, 0).unwrap();
        items.put("conv/ab/1", b"other", 9_000, 0).unwrap();
        items.put("conv/b/1", b"other", 9_000, 0).unwrap();
        let found = items.scan("conv/a/", 2_000).unwrap();
        assert_eq!(
            found,
            [
                ("conv/a/1".to_owned(), b"one".to_vec()),
                ("conv/a/2".to_owned(), b"two".to_vec())
            ]
        );
    }

    #[test]
    fn writes_drop_expired_items_and_replacing_keeps_one_index_entry() {
        let dir = crate::testing::scratch_dir("items-sweep");
        let items = open(&dir);
        items.put("a", b"1", 1_000, 0).unwrap();
        items.put("a", b"2", 3_000, 0).unwrap();
        items.put("b", b"3", 2_000, 0).unwrap();
        // At 2 500 "b" has expired: the next write drops it, and the old
        // index entry of "a" went when "a" was replaced.
        items.put("c", b"4", 9_000, 2_500).unwrap();
        // "d" expired unswept, then written again: the sweep in the same
        // write must not take the new value.
        items.put("d", b"old", 2_600, 0).unwrap();
        items.put("d", b"new", 9_000, 2_700).unwrap();
        assert_eq!(items.get("d", 2_700).unwrap().unwrap(), b"new");
        let family = items.storage.family(ITEMS).unwrap();
        let raw = |key: &str| items.storage.db.get_cf(family, key).unwrap();
        assert!(raw("b").is_none(), "swept");
        assert_eq!(items.get("a", 2_500).unwrap().unwrap(), b"2");
        let index = items.storage.family(ITEMS_EXPIRY).unwrap();
        let entries = items
            .storage
            .db
            .iterator_cf(index, IteratorMode::Start)
            .count();
        assert_eq!(entries, 3, "one index entry each for a, c and d");
    }
}
