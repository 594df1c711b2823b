//! What becomes of one datagram that reached the gossip socket: opened
//! ([`seal`](super::seal)), checked for sender, age and replay
//! ([`replay`](super::replay)), and put together with the rest of its
//! message ([`fragments`](super::fragments)). No socket and no clock of
//! its own, so every path can be tested and fuzzed with made-up datagrams.

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use super::fragments::{Assembled, Reassembly};
use super::replay::{ReplayGuard, Verdict};
use super::seal::Sealer;
use super::GossipCounters;

pub struct Intake {
    sealer: Sealer,
    /// This node's gossip addresses: a datagram sealed for another node's
    /// does not open here.
    receivers: Vec<SocketAddr>,
    replay: ReplayGuard,
    reassembly: Reassembly,
    counters: Arc<GossipCounters>,
}

impl Intake {
    pub fn new(sealer: Sealer, receivers: Vec<SocketAddr>, counters: Arc<GossipCounters>) -> Self {
        Intake {
            sealer,
            receivers,
            replay: ReplayGuard::default(),
            reassembly: Reassembly::default(),
            counters,
        }
    }

    /// The whole message once `datagram`, received from `from` at
    /// `now_ms`, opens, is fresh, and completes it; `None` (and the cause
    /// counted) otherwise.
    pub fn accept(&mut self, datagram: &[u8], from: SocketAddr, now_ms: u64) -> Option<Vec<u8>> {
        let counters = self.counters.clone();
        let refuse = |counter: &AtomicU64| {
            GossipCounters::count(counter, 1);
            tracing::debug!(%from, length = datagram.len(), "dropped a gossip datagram");
            None
        };
        let (header, piece) = match self.sealer.open(datagram, &self.receivers) {
            Ok(opened) => opened,
            Err(refused) => return refuse(counters.refused(refused)),
        };
        if header.sender != SocketAddr::new(from.ip().to_canonical(), from.port()) {
            return refuse(&counters.wrong_sender);
        }
        match self
            .replay
            .check(header.sender, header.sent_at_ms, header.sequence, now_ms)
        {
            Verdict::Fresh => {}
            Verdict::Stale => return refuse(&counters.stale),
            Verdict::Replayed => return refuse(&counters.replayed),
        }
        let (assembled, timed_out) = self.reassembly.add(
            header.sender,
            header.sequence,
            header.fragment,
            header.fragments,
            piece,
        );
        GossipCounters::count(&counters.incomplete, timed_out);
        match assembled {
            Assembled::Message(message) => {
                if header.fragments > 1 {
                    GossipCounters::count(&counters.reassembled, 1);
                }
                Some(message)
            }
            Assembled::Waiting => None,
            Assembled::Invalid => refuse(&counters.malformed),
        }
    }
}
