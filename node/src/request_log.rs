//! The request log: one record per request this node answered or refused
//! — who asked, for what, where it went, what it used and cost, how long
//! it took, how it ended, and whether the cache answered — kept in the
//! node's store for `[storage] request_log_days`.
//!
//! Records leave the request path through a bounded channel to one writer
//! thread, which wakes every 100 ms to write what came in one batch, and
//! drops records past retention: a request never waits on the disk, and
//! never wakes the writer. Should the writer fall that far behind,
//! records are dropped and counted rather than held in memory.
//! Each node keeps its own; the admin API and `/v1/stats` gather every
//! live node's.

mod stats;
mod trail;

use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender, TryRecvError};
use std::sync::Arc;
use std::time::Duration;

use chorus_actors::clock::{millis, unix_millis};
use prometheus::IntCounter;
use serde::{Deserialize, Serialize};

use crate::storage::RequestStore;

pub use stats::Stats;
pub use trail::{Trail, Who};

/// Records waiting for the writer at most: seconds of traffic at the
/// writer's pace.
const QUEUE: usize = 65_536;
/// How often the writer wakes to write what came.
const DRAIN_EVERY: Duration = Duration::from_millis(100);
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
    /// Every input token, cached ones included.
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Of `prompt_tokens`, those read from the provider's prompt cache.
    #[serde(default)]
    pub cache_read_tokens: u64,
    /// Of `prompt_tokens`, those written to the provider's prompt cache.
    #[serde(default)]
    pub cache_write_tokens: u64,
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
    queue: SyncSender<Entry>,
    /// Records dropped because the writer could not keep up.
    dropped: IntCounter,
}

/// What the writer is handed.
enum Entry {
    Record(Box<RequestRecord>),
    /// Answered once everything queued before it is written.
    Flush(Sender<()>),
}

impl RequestLog {
    /// Starts the writer thread for `store`, keeping `retention`; records
    /// the writer cannot keep up with are counted in `dropped`.
    pub fn start(
        node: &str,
        store: Arc<RequestStore>,
        retention: Duration,
        dropped: IntCounter,
    ) -> std::io::Result<Self> {
        let (queue, entries) = sync_channel(QUEUE);
        let writer_store = Arc::clone(&store);
        std::thread::Builder::new()
            .name("request-log".into())
            .spawn(move || write(&writer_store, &entries, retention))?;
        Ok(RequestLog {
            inner: Arc::new(Inner {
                node: node.to_owned(),
                store,
                queue,
                dropped,
            }),
        })
    }

    /// The id this node's records carry.
    pub fn node(&self) -> &str {
        &self.inner.node
    }

    /// Queues `record` for the writer; dropped, and counted, when the
    /// queue is full.
    pub fn record(&self, record: Box<RequestRecord>) {
        if self.inner.queue.try_send(Entry::Record(record)).is_err() {
            if self.inner.dropped.get() == 0 {
                tracing::warn!("the request log cannot keep up; records are being dropped");
            }
            self.inner.dropped.inc();
        }
    }

    /// Waits, at most `timeout`, until every record queued so far is
    /// written: at shutdown. Blocks the thread.
    pub fn flush(&self, timeout: Duration) -> bool {
        let (done_tx, done_rx) = channel();
        self.inner.queue.send(Entry::Flush(done_tx)).is_ok()
            && done_rx.recv_timeout(timeout).is_ok()
    }

    pub fn store(&self) -> &Arc<RequestStore> {
        &self.inner.store
    }
}

/// The writer thread: batches of records to the store, and retention.
/// Ends when every [`RequestLog`] is gone.
fn write(store: &RequestStore, entries: &Receiver<Entry>, retention: Duration) {
    let mut pruned_at = 0u64;
    let mut pruned_before = 0u64;
    loop {
        // Asleep rather than waiting on the channel: senders never wake it.
        std::thread::sleep(DRAIN_EVERY);
        let mut batch = Vec::new();
        let mut flushes = Vec::new();
        let mut senders_gone = false;
        loop {
            match entries.try_recv() {
                Ok(Entry::Record(record)) => batch.push(*record),
                Ok(Entry::Flush(done)) => flushes.push(done),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    senders_gone = true;
                    break;
                }
            }
        }
        if !batch.is_empty() {
            if let Err(error) = store.put(&batch) {
                tracing::warn!(%error, records = batch.len(), "request log records could not be written");
            }
        }
        for done in flushes {
            let _ = done.send(());
        }
        let now_ms = unix_millis();
        if now_ms.saturating_sub(pruned_at) >= millis(PRUNE_EVERY) {
            pruned_at = now_ms;
            // From where the last pruning stopped: one small range each time.
            let before = now_ms.saturating_sub(millis(retention));
            match store.prune(pruned_before, before) {
                Ok(()) => pruned_before = before,
                Err(error) => {
                    tracing::warn!(%error, "old request log records could not be dropped")
                }
            }
        }
        if senders_gone {
            return;
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
