//! Which authentic datagrams are fresh: sent recently by the clock, and
//! with a sequence number not taken before from that sender.
//!
//! A datagram whose send time is more than [`MAX_CLOCK_SKEW`] from ours is
//! stale, however authentic. For the rest, each sender has a window over
//! its last [`WINDOW`] sequence numbers, as IPsec does: a number seen
//! before, or older than the window, is a replay. A sender silent for
//! twice the skew is forgotten: anything it sent before then is stale by
//! the clock anyway, so the map stays as small as the set of live peers.

use std::collections::HashMap;
use std::net::SocketAddr;

/// How far apart the clocks of two nodes may be. Also how long a captured
/// datagram stays replayable to a node that has just restarted.
pub const MAX_CLOCK_SKEW_MS: u64 = 30_000;
/// Sequence numbers remembered per sender.
const WINDOW: u64 = 128;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Fresh,
    Stale,
    Replayed,
}

#[derive(Debug, Default)]
pub struct ReplayGuard {
    senders: HashMap<SocketAddr, SenderWindow>,
}

#[derive(Debug)]
struct SenderWindow {
    highest: u64,
    /// Bit `i` set: `highest - i` was seen.
    seen: u128,
    last_heard_ms: u64,
}

impl ReplayGuard {
    /// Judges one authentic datagram and, if fresh, takes its number.
    pub fn check(
        &mut self,
        sender: SocketAddr,
        sent_at_ms: u64,
        sequence: u64,
        now_ms: u64,
    ) -> Verdict {
        if sent_at_ms.abs_diff(now_ms) > MAX_CLOCK_SKEW_MS {
            return Verdict::Stale;
        }
        self.senders.retain(|_, window| {
            now_ms.saturating_sub(window.last_heard_ms) <= 2 * MAX_CLOCK_SKEW_MS
        });
        let window = self.senders.entry(sender).or_insert(SenderWindow {
            highest: sequence,
            seen: 0,
            last_heard_ms: now_ms,
        });
        window.last_heard_ms = now_ms;
        if sequence > window.highest {
            let shift = sequence - window.highest;
            window.seen = if shift >= 128 {
                0
            } else {
                window.seen << shift
            };
            window.seen |= 1;
            window.highest = sequence;
            return Verdict::Fresh;
        }
        let back = window.highest - sequence;
        if back >= WINDOW {
            return Verdict::Replayed;
        }
        let bit = 1u128 << back;
        if window.seen & bit != 0 {
            return Verdict::Replayed;
        }
        window.seen |= bit;
        Verdict::Fresh
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000_000;

    fn sender(port: u16) -> SocketAddr {
        ([127, 0, 0, 1], port).into()
    }

    #[test]
    fn each_number_is_taken_once_and_reordering_within_the_window_is_fine() {
        let mut guard = ReplayGuard::default();
        assert_eq!(guard.check(sender(1), NOW, 100, NOW), Verdict::Fresh);
        assert_eq!(guard.check(sender(1), NOW, 100, NOW), Verdict::Replayed);
        assert_eq!(guard.check(sender(1), NOW, 105, NOW), Verdict::Fresh);
        assert_eq!(
            guard.check(sender(1), NOW, 103, NOW),
            Verdict::Fresh,
            "late, not seen"
        );
        assert_eq!(guard.check(sender(1), NOW, 103, NOW), Verdict::Replayed);
        assert_eq!(
            guard.check(sender(2), NOW, 100, NOW),
            Verdict::Fresh,
            "another sender"
        );
        assert_eq!(guard.check(sender(1), NOW, 105 + 200, NOW), Verdict::Fresh);
        assert_eq!(
            guard.check(sender(1), NOW, 105, NOW),
            Verdict::Replayed,
            "fell out of the window"
        );
    }

    #[test]
    fn old_or_future_datagrams_are_stale_and_silent_senders_are_forgotten() {
        let mut guard = ReplayGuard::default();
        let skew = MAX_CLOCK_SKEW_MS;
        assert_eq!(
            guard.check(sender(1), NOW - skew - 1, 1, NOW),
            Verdict::Stale
        );
        assert_eq!(
            guard.check(sender(1), NOW + skew + 1, 1, NOW),
            Verdict::Stale
        );
        assert_eq!(guard.check(sender(1), NOW, 500, NOW), Verdict::Fresh);
        // Silent for longer than twice the skew: a restart from a lower
        // number is accepted, and the old datagram is stale anyway.
        let later = NOW + 2 * skew + 1;
        assert_eq!(guard.check(sender(1), later, 7, later), Verdict::Fresh);
        assert_eq!(guard.check(sender(1), NOW, 500, later), Verdict::Stale);
    }
}
