//! Counts the request actors under way, so a node shutting down can wait
//! until the last one has recorded its call before it sends its final
//! counts to peers and the store.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

/// Cheap to clone; every clone counts the same requests.
#[derive(Debug, Clone, Default)]
pub struct RequestTracker(Arc<Inner>);

#[derive(Debug, Default)]
struct Inner {
    running: AtomicUsize,
    idle: Notify,
}

/// One request under way, until dropped.
#[derive(Debug)]
pub struct Tracked(RequestTracker);

impl Drop for Tracked {
    fn drop(&mut self) {
        if self.0 .0.running.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0 .0.idle.notify_waiters();
        }
    }
}

impl RequestTracker {
    pub fn track(&self) -> Tracked {
        self.0.running.fetch_add(1, Ordering::AcqRel);
        Tracked(self.clone())
    }

    pub fn running(&self) -> usize {
        self.0.running.load(Ordering::Acquire)
    }

    /// Waits until no request is under way, or `limit` has passed.
    /// Returns whether none is.
    pub async fn idle(&self, limit: Duration) -> bool {
        let wait = async {
            loop {
                let idle = self.0.idle.notified();
                if self.running() == 0 {
                    return;
                }
                idle.await;
            }
        };
        tokio::time::timeout(limit, wait).await.is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn waits_for_the_last_request() {
        let tracker = RequestTracker::default();
        assert!(tracker.idle(Duration::from_millis(1)).await);
        let first = tracker.track();
        let second = tracker.track();
        assert!(!tracker.idle(Duration::from_secs(1)).await);
        drop(first);
        let waiter = tokio::spawn({
            let tracker = tracker.clone();
            async move { tracker.idle(Duration::from_secs(60)).await }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!waiter.is_finished());
        drop(second);
        assert!(waiter.await.unwrap());
    }
}
