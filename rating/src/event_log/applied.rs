//! Which offsets of each partition this instance has applied to its store,
//! so a writer can wait until its own event is visible here (read your
//! writes), and startup can tell when the replay has caught up.
use std::{collections::HashMap, sync::Mutex, time::Duration};

use tokio::sync::watch;

#[derive(Debug)]
pub struct AppliedOffsets {
    /// The next offset to apply, per partition.
    next: Mutex<HashMap<i32, i64>>,
    changed: watch::Sender<()>,
}

impl Default for AppliedOffsets {
    fn default() -> Self {
        Self { next: Mutex::default(), changed: watch::channel(()).0 }
    }
}

impl AppliedOffsets {
    /// Records that the event at `offset` of `partition` has been applied.
    pub fn applied(&self, partition: i32, offset: i64) {
        {
            let mut next = self.next.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let entry = next.entry(partition).or_insert(0);
            *entry = (*entry).max(offset + 1);
        }
        self.changed.send_replace(());
    }

    /// Records that every event of `partition` before `next` has been
    /// applied (a batch, or a position read from the store).
    pub fn advance_to(&self, partition: i32, next: i64) {
        if next > 0 {
            self.applied(partition, next - 1);
        }
    }

    /// The next offset to apply in `partition` (0 before any).
    pub fn next_offset(&self, partition: i32) -> i64 {
        self.next.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).get(&partition).copied().unwrap_or(0)
    }

    /// Waits until the event at `offset` of `partition` has been applied;
    /// false if `timeout` passes first.
    pub async fn wait_for(&self, partition: i32, offset: i64, timeout: Duration) -> bool {
        let mut changes = self.changed.subscribe();
        let reached = async {
            while self.next_offset(partition) <= offset {
                if changes.changed().await.is_err() {
                    return false;
                }
            }
            true
        };
        tokio::time::timeout(timeout, reached).await.unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn waiters_wake_once_their_offset_is_applied() {
        let applied = Arc::new(AppliedOffsets::default());
        assert!(!applied.wait_for(0, 0, Duration::from_millis(20)).await, "nothing applied yet");
        let waiter = tokio::spawn({
            let applied = applied.clone();
            async move { applied.wait_for(1, 5, Duration::from_secs(5)).await }
        });
        applied.applied(1, 4);
        applied.applied(0, 9); // another partition does not count
        assert!(!waiter.is_finished());
        applied.applied(1, 5);
        assert!(waiter.await.unwrap());
        assert_eq!(applied.next_offset(1), 6);
        assert_eq!(applied.next_offset(0), 10);
    }
}
