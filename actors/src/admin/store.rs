//! Where the admin state is kept between runs (RocksDB in `node`).

use chorus_proto::admin::{AdminEntry, EntryId};

use crate::ledger::StoreError;

pub trait AdminStore: Send + Sync + 'static {
    /// Writes `entries` at once, or none of them.
    fn save_admin(&self, entries: &[(EntryId, AdminEntry)]) -> Result<(), StoreError>;
}
