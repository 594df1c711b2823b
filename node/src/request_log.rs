//! The request log: one record per request this node answered or refused
//! — who asked, for what, where it went, what it used and cost, how long
//! it took, how it ended, and whether the cache answered — kept in the
//! node's store for `[request_log] retention_days`.
//!
//! Records leave the request path through a bounded channel to one writer
//! thread, which writes them in batches and drops those past retention;
//! a request never waits on the disk. When the writer falls that far
//! behind, records are dropped and counted rather than held in memory.
//! Each node keeps its own; the admin API and `/v1/stats` gather every
//! live node's.

mod stats;
mod trail;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Duration;

use chorus_actors::clock::{millis, unix_millis};
use serde::{Deserialize, Serialize};

use crate::storage::RequestStore;

pub use stats::Stats;
pub use trail::{Trail, Who};

/// Records waiting for the writer at most.
const QUEUE: usize = 16_384;
/// Records written in one batch at most.
const BATCH: usize = 512;
/// How often the writer drops records past retention.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// One request, as the log keeps it. No prompt, no answer, no key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestRecord {
    /// The request's `x-request-id`.
    pub id: String,
    /// When it arrived, in ms since the Unix epoch.
    pub time_ms: u64,
    /// The node that answered it.
    pub node: String,
    /// The endpoint, e.g. `chat/completions`.
    pub endpoint: String,
    /// The virtual key's id, or the bootstrap key's name; `None` when the
    /// request carried no valid key.
    pub key: Option<String>,
    pub key_name: Option<String>,
    /// The key's team id.
    pub team: Option<String>,
    /// The alias asked for, once the body was read.
    pub alias: Option<String>,
    /// The deployment of its last call.
    pub deployment: Option<String>,
    pub attempts: u32,
    pub stream: bool,
    pub status: u16,
    /// `completed`, `failed`, `cancelled`, `rejected` or `cached`.
    pub outcome: String,
    /// The error code of a refusal.
    pub code: Option<String>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Whether the tokens were counted by Chorus, not reported upstream.
    pub usage_estimated: bool,
    /// What it cost at the deployment's prices, in micro-USD.
    pub cost_micros: u64,
    pub latency_ms: f64,
    pub ttft_ms: Option<f64>,
    /// `hit` or `miss` when the request took part in the cache.
    pub cache: Option<String>,
}

/// The node's request log. Cheap to clone.
#[derive(Clone)]
pub struct RequestLog {
    inner: Arc<Inner>,
}

struct Inner {
    node: String,
    store: Arc<RequestStore>,
    queue: SyncSender<RequestRecord>,
    dropped: AtomicU64,
}

impl RequestLog {
    /// Starts the writer thread for `store`, keeping `retention`.
    pub fn start(
        node: &str,
        store: Arc<RequestStore>,
        retention: Duration,
    ) -> std::io::Result<Self> {
        let (queue, records) = sync_channel(QUEUE);
        let writer_store = Arc::clone(&store);
        std::thread::Builder::new()
            .name("request-log".into())
            .spawn(move || write(&writer_store, &records, retention))?;
        Ok(RequestLog {
            inner: Arc::new(Inner {
                node: node.to_owned(),
                store,
                queue,
                dropped: AtomicU64::new(0),
            }),
        })
    }

    /// The id this node's records carry.
    pub fn node(&self) -> &str {
        &self.inner.node
    }

    /// Queues `record` for the writer; dropped, and counted, when the
    /// queue is full.
    pub fn record(&self, record: RequestRecord) {
        match self.inner.queue.try_send(record) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                if self.inner.dropped.fetch_add(1, Ordering::Relaxed) == 0 {
                    tracing::warn!("the request log cannot keep up; records are being dropped");
                }
            }
            Err(TrySendError::Disconnected(_)) => {
                tracing::error!("the request log writer has stopped");
            }
        }
    }

    /// Records dropped because the writer could not keep up.
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    pub fn store(&self) -> &Arc<RequestStore> {
        &self.inner.store
    }
}

/// The writer thread: batches of records to the store, and retention.
/// Ends when every [`RequestLog`] is gone.
fn write(store: &RequestStore, records: &Receiver<RequestRecord>, retention: Duration) {
    let mut pruned_at = 0u64;
    loop {
        let mut batch = Vec::new();
        match records.recv_timeout(PRUNE_EVERY) {
            Ok(record) => batch.push(record),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        batch.extend(records.try_iter().take(BATCH - batch.len()));
        if !batch.is_empty() {
            if let Err(error) = store.put(&batch) {
                tracing::warn!(%error, records = batch.len(), "request log records could not be written");
            }
        }
        let now_ms = unix_millis();
        if now_ms.saturating_sub(pruned_at) >= millis(PRUNE_EVERY) {
            pruned_at = now_ms;
            if let Err(error) = store.prune(now_ms.saturating_sub(millis(retention))) {
                tracing::warn!(%error, "old request log records could not be dropped");
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    pub(crate) use super::stats::tests::record;
    use super::RequestRecord;

    /// A record of request `id`, arrived at `time_ms`.
    pub(crate) fn record_at(time_ms: u64, id: &str) -> RequestRecord {
        RequestRecord {
            id: id.to_owned(),
            time_ms,
            ..record("k", None, "fast", 200)
        }
    }
}
