//! Splitting a chitchat message that does not fit one sealed datagram, and
//! putting it back together.
//!
//! chitchat fills a reply up to the largest UDP payload, 65,507 bytes;
//! with our header on, that no longer fits. Dropping it would leave a peer
//! that is more than one message behind never catching up, so a message
//! travels as up to [`MAX_FRAGMENTS`] sealed datagrams with consecutive
//! sequence numbers, and is delivered once every fragment has arrived. An
//! incomplete message is dropped after [`REASSEMBLY_TIMEOUT`], as UDP
//! would drop it; chitchat's next round sends what is still missing.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The most fragments one message may have.
pub const MAX_FRAGMENTS: usize = 16;
/// How long the fragments of a message wait for the rest.
const REASSEMBLY_TIMEOUT: Duration = Duration::from_secs(2);
/// Bytes held for incomplete messages, across senders; the oldest goes first.
const MAX_PENDING_BYTES: usize = 8 * 1024 * 1024;

/// `payload` in pieces of at most `max_piece` bytes (one, if it fits).
pub fn split(payload: &[u8], max_piece: usize) -> Vec<&[u8]> {
    if payload.is_empty() {
        return vec![payload];
    }
    payload.chunks(max_piece).collect()
}

/// Messages whose fragments have started to arrive.
#[derive(Debug, Default)]
pub struct Reassembly {
    pending: HashMap<(SocketAddr, u64), Partial>,
    pending_bytes: usize,
}

#[derive(Debug)]
struct Partial {
    pieces: Vec<Option<Vec<u8>>>,
    missing: usize,
    started: Instant,
}

/// What one fragment did.
#[derive(Debug, PartialEq, Eq)]
pub enum Assembled {
    /// The message is complete.
    Message(Vec<u8>),
    /// More fragments are to come.
    Waiting,
    /// The fragment contradicts the others (count, index): dropped.
    Invalid,
}

impl Reassembly {
    /// Takes fragment `index` of `count` of the message whose first
    /// fragment had sequence number `sequence - index`. Returns how many
    /// incomplete messages timed out meanwhile, with the outcome.
    pub fn add(
        &mut self,
        sender: SocketAddr,
        sequence: u64,
        index: u8,
        count: u8,
        piece: &[u8],
    ) -> (Assembled, usize) {
        let (index, count) = (usize::from(index), usize::from(count));
        if count == 0 || count > MAX_FRAGMENTS || index >= count {
            return (Assembled::Invalid, 0);
        }
        if count == 1 {
            return (Assembled::Message(piece.to_vec()), 0);
        }
        let expired = self.expire();
        let Some(first) = sequence.checked_sub(index as u64) else {
            return (Assembled::Invalid, expired);
        };
        let partial = self
            .pending
            .entry((sender, first))
            .or_insert_with(|| Partial {
                pieces: vec![None; count],
                missing: count,
                started: Instant::now(),
            });
        if partial.pieces.len() != count {
            return (Assembled::Invalid, expired);
        }
        if partial.pieces[index].is_none() {
            partial.pieces[index] = Some(piece.to_vec());
            partial.missing -= 1;
            self.pending_bytes += piece.len();
        }
        if partial.missing > 0 {
            self.evict_over_budget();
            return (Assembled::Waiting, expired);
        }
        let Some(partial) = self.pending.remove(&(sender, first)) else {
            return (Assembled::Invalid, expired);
        };
        let message: Vec<u8> = partial.pieces.into_iter().flatten().flatten().collect();
        self.pending_bytes -= message.len();
        (Assembled::Message(message), expired)
    }

    /// Drops messages whose fragments stopped arriving; how many.
    fn expire(&mut self) -> usize {
        let before = self.pending.len();
        let mut freed = 0;
        self.pending.retain(|_, partial| {
            let keep = partial.started.elapsed() < REASSEMBLY_TIMEOUT;
            if !keep {
                freed += partial.pieces.iter().flatten().map(Vec::len).sum::<usize>();
            }
            keep
        });
        self.pending_bytes -= freed;
        before - self.pending.len()
    }

    fn evict_over_budget(&mut self) {
        while self.pending_bytes > MAX_PENDING_BYTES {
            let Some(oldest) = self
                .pending
                .iter()
                .min_by_key(|(_, partial)| partial.started)
                .map(|(key, _)| *key)
            else {
                return;
            };
            if let Some(partial) = self.pending.remove(&oldest) {
                self.pending_bytes -= partial.pieces.iter().flatten().map(Vec::len).sum::<usize>();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sender() -> SocketAddr {
        ([127, 0, 0, 1], 7946).into()
    }

    #[test]
    fn a_split_message_comes_back_whole_in_any_order() {
        let message: Vec<u8> = (0..250u8).collect();
        let pieces = split(&message, 100);
        assert_eq!(pieces.len(), 3);
        let mut reassembly = Reassembly::default();
        let count = pieces.len() as u8;
        assert_eq!(
            reassembly.add(sender(), 12, 2, count, pieces[2]).0,
            Assembled::Waiting
        );
        assert_eq!(
            reassembly.add(sender(), 10, 0, count, pieces[0]).0,
            Assembled::Waiting
        );
        assert_eq!(
            reassembly.add(sender(), 10, 0, count, pieces[0]).0,
            Assembled::Waiting,
            "a duplicate"
        );
        assert_eq!(
            reassembly.add(sender(), 11, 1, count, pieces[1]).0,
            Assembled::Message(message)
        );
        assert_eq!(reassembly.pending_bytes, 0);
        assert_eq!(split(b"small", 100), [&b"small"[..]]);
    }

    #[test]
    fn contradictory_fragments_are_refused() {
        let mut reassembly = Reassembly::default();
        assert_eq!(
            reassembly.add(sender(), 5, 2, 2, b"x").0,
            Assembled::Invalid
        );
        assert_eq!(
            reassembly.add(sender(), 5, 0, 0, b"x").0,
            Assembled::Invalid
        );
        assert_eq!(
            reassembly.add(sender(), 5, 0, 17, b"x").0,
            Assembled::Invalid
        );
        assert_eq!(
            reassembly.add(sender(), 5, 0, 2, b"x").0,
            Assembled::Waiting
        );
        assert_eq!(
            reassembly.add(sender(), 6, 1, 3, b"y").0,
            Assembled::Invalid,
            "count changed"
        );
        assert_eq!(
            reassembly.add(sender(), 1, 3, 4, b"y").0,
            Assembled::Invalid,
            "before sequence 0"
        );
    }
}
