//! The response cache's entries in the node's store, with their expiry and
//! the bound on their total size.
//!
//! - Column family `cache`: key the 32-byte [`CacheKey`], value the time
//!   it was stored and the time it expires (8 bytes big-endian each, ms
//!   since the Unix epoch) then the answer.
//! - Column family `cache_expiry`: key the expiry then the cache key,
//!   value the entry's size. Read in order it gives the entries that
//!   expire first, which are the ones dropped — the expired ones, then
//!   while the cache is over its size, those with the least time left.
//!
//! The size, and the soonest expiry, are kept in memory, read once at
//! start from the index: a write scans the index only when the cache is
//! over its size or an entry has expired.

use std::sync::{Arc, Mutex};

use chorus_actors::StoreError;
use chorus_proto::cache::CacheKey;
use rocksdb::{IteratorMode, WriteBatch};

use super::{store_error, Storage};

pub(super) const CACHE: &str = "cache";
pub(super) const CACHE_EXPIRY: &str = "cache_expiry";

/// Bytes before a stored answer: when it was stored and when it expires.
const HEADER: usize = 16;

/// An answer read back from the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cached {
    pub body: Vec<u8>,
    /// When it was stored, in ms since the Unix epoch.
    pub stored_ms: u64,
}

/// The cache's entries in the store, within `max_bytes`.
pub struct CacheStore {
    storage: Arc<Storage>,
    max_bytes: u64,
    /// Writes hold it throughout, so the index and it never disagree.
    tally: Mutex<Tally>,
}

#[derive(Debug)]
struct Tally {
    /// What the entries take, index included.
    bytes: u64,
    /// The soonest expiry in the index; `u64::MAX` when it is empty.
    next_expiry_ms: u64,
}

impl CacheStore {
    pub fn open(storage: Arc<Storage>, max_bytes: u64) -> Result<Self, StoreError> {
        let mut tally = Tally {
            bytes: 0,
            next_expiry_ms: u64::MAX,
        };
        let index = storage.family(CACHE_EXPIRY)?;
        for entry in storage.db.iterator_cf(index, IteratorMode::Start) {
            let (index_key, size) =
                entry.map_err(|e| store_error("read the cache index from", e))?;
            tally.bytes = tally.bytes.saturating_add(decode_u64(&size).unwrap_or(0));
            tally.next_expiry_ms = tally.next_expiry_ms.min(expiry_of(&index_key));
        }
        Ok(CacheStore {
            storage,
            max_bytes,
            tally: Mutex::new(tally),
        })
    }

    /// The answer under `key`, unless there is none or it has expired.
    pub fn get(&self, key: &CacheKey, now_ms: u64) -> Result<Option<Cached>, StoreError> {
        let family = self.storage.family(CACHE)?;
        let Some(value) = self
            .storage
            .db
            .get_cf(family, key.0)
            .map_err(|e| store_error("read the cache from", e))?
        else {
            return Ok(None);
        };
        let Some((stored_ms, expires_ms)) = header(&value) else {
            return Ok(None);
        };
        if expires_ms <= now_ms {
            return Ok(None);
        }
        Ok(Some(Cached {
            body: value[HEADER..].to_vec(),
            stored_ms,
        }))
    }

    /// Stores `body` under `key` until `expires_ms`, replacing what was
    /// there, then drops expired entries and, while over the size bound,
    /// those that expire first. An answer larger than the whole cache is
    /// not stored.
    pub fn put(
        &self,
        key: &CacheKey,
        body: &[u8],
        now_ms: u64,
        expires_ms: u64,
    ) -> Result<(), StoreError> {
        let size = entry_size(body.len());
        if size > self.max_bytes {
            return Ok(());
        }
        let cache = self.storage.family(CACHE)?;
        let index = self.storage.family(CACHE_EXPIRY)?;
        let mut tally = self.tally.lock().unwrap_or_else(|p| p.into_inner());
        let mut batch = WriteBatch::default();
        let replaced = self
            .storage
            .db
            .get_cf(cache, key.0)
            .map_err(|e| store_error("read the cache from", e))?;
        let mut freed = 0;
        if let Some(old) = replaced {
            if let Some((_, old_expiry)) = header(&old) {
                batch.delete_cf(index, index_key(old_expiry, &key.0));
            }
            freed = entry_size(old.len().saturating_sub(HEADER));
        }
        let mut value = Vec::with_capacity(HEADER + body.len());
        value.extend_from_slice(&now_ms.to_be_bytes());
        value.extend_from_slice(&expires_ms.to_be_bytes());
        value.extend_from_slice(body);
        batch.put_cf(cache, key.0, value);
        batch.put_cf(index, index_key(expires_ms, &key.0), size.to_be_bytes());
        self.storage
            .db
            .write(batch)
            .map_err(|e| store_error("write the cache to", e))?;
        tally.bytes = tally.bytes.saturating_sub(freed).saturating_add(size);
        tally.next_expiry_ms = tally.next_expiry_ms.min(expires_ms);
        if tally.bytes > self.max_bytes || tally.next_expiry_ms <= now_ms {
            self.evict(&mut tally, now_ms)?;
        }
        Ok(())
    }

    /// What the entries take now, in bytes.
    pub fn bytes(&self) -> u64 {
        self.tally.lock().unwrap_or_else(|p| p.into_inner()).bytes
    }

    /// Drops expired entries, then those that expire first while over the
    /// size; the tally follows once the deletions are written.
    fn evict(&self, tally: &mut Tally, now_ms: u64) -> Result<(), StoreError> {
        let cache = self.storage.family(CACHE)?;
        let index = self.storage.family(CACHE_EXPIRY)?;
        let mut batch = WriteBatch::default();
        let mut bytes = tally.bytes;
        let mut next_expiry_ms = u64::MAX;
        for entry in self.storage.db.iterator_cf(index, IteratorMode::Start) {
            let (index_key, size) =
                entry.map_err(|e| store_error("read the cache index from", e))?;
            let expires_ms = expiry_of(&index_key);
            if expires_ms > now_ms && bytes <= self.max_bytes {
                next_expiry_ms = expires_ms;
                break;
            }
            batch.delete_cf(index, &index_key);
            if let Some(key) = index_key.get(8..) {
                batch.delete_cf(cache, key);
            }
            bytes = bytes.saturating_sub(decode_u64(&size).unwrap_or(0));
        }
        self.storage
            .db
            .write(batch)
            .map_err(|e| store_error("drop entries from the cache in", e))?;
        *tally = Tally {
            bytes,
            next_expiry_ms,
        };
        Ok(())
    }
}

/// What an entry with a body of `body_len` bytes takes: its value, its
/// key and its index entry.
fn entry_size(body_len: usize) -> u64 {
    (body_len + HEADER + 32 + 8 + 32 + 8) as u64
}

fn index_key(expires_ms: u64, key: &[u8; 32]) -> Vec<u8> {
    [&expires_ms.to_be_bytes()[..], key].concat()
}

/// The expiry an index key starts with; 0 (expired) for a damaged one.
fn expiry_of(index_key: &[u8]) -> u64 {
    index_key.get(..8).and_then(decode_u64).unwrap_or(0)
}

fn header(value: &[u8]) -> Option<(u64, u64)> {
    let stored = decode_u64(value.get(..8)?)?;
    let expires = decode_u64(value.get(8..HEADER)?)?;
    Some((stored, expires))
}

fn decode_u64(bytes: &[u8]) -> Option<u64> {
    <[u8; 8]>::try_from(bytes).ok().map(u64::from_be_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> CacheKey {
        CacheKey([byte; 32])
    }

    fn open(dir: &std::path::Path, max_bytes: u64) -> CacheStore {
        CacheStore::open(Arc::new(Storage::open(dir).unwrap()), max_bytes).unwrap()
    }

    #[test]
    fn an_answer_is_there_until_it_expires_and_after_a_restart() {
        let dir = crate::testing::scratch_dir("cache-ttl");
        {
            let cache = open(&dir, 1 << 20);
            cache.put(&key(1), b"answer", 1_000, 5_000).unwrap();
            let cached = cache.get(&key(1), 4_999).unwrap().unwrap();
            assert_eq!(cached.body, b"answer");
            assert_eq!(cached.stored_ms, 1_000);
            assert_eq!(cache.get(&key(1), 5_000).unwrap(), None, "expired");
            assert_eq!(cache.get(&key(2), 1_000).unwrap(), None);
        }
        let reopened = open(&dir, 1 << 20);
        assert_eq!(
            reopened.get(&key(1), 2_000).unwrap().unwrap().body,
            b"answer"
        );
        assert_eq!(reopened.bytes(), entry_size(6));
    }

    #[test]
    fn the_size_bound_drops_what_expires_first_and_expired_entries_go() {
        let dir = crate::testing::scratch_dir("cache-size");
        let body = [7u8; 100];
        // Room for three entries.
        let cache = open(&dir, entry_size(body.len()) * 3);
        cache.put(&key(1), &body, 0, 10_000).unwrap();
        cache.put(&key(2), &body, 0, 5_000).unwrap();
        cache.put(&key(3), &body, 0, 20_000).unwrap();
        cache.put(&key(4), &body, 0, 30_000).unwrap();
        assert_eq!(
            cache.get(&key(2), 1).unwrap(),
            None,
            "expires first, dropped"
        );
        for kept in [1, 3, 4] {
            assert!(cache.get(&key(kept), 1).unwrap().is_some(), "{kept}");
        }
        assert_eq!(cache.bytes(), entry_size(body.len()) * 3);
        // Replacing an entry counts it once; a later write drops expired ones.
        cache.put(&key(3), &body, 0, 40_000).unwrap();
        assert_eq!(cache.bytes(), entry_size(body.len()) * 3);
        cache.put(&key(5), b"x", 15_000, 50_000).unwrap();
        assert_eq!(cache.get(&key(1), 15_000).unwrap(), None);
        assert_eq!(cache.bytes(), entry_size(body.len()) * 2 + entry_size(1));
        let big = vec![0u8; 1000];
        cache.put(&key(6), &big, 15_000, 60_000).unwrap();
        assert_eq!(
            cache.get(&key(6), 15_000).unwrap(),
            None,
            "larger than the cache"
        );
    }
}
