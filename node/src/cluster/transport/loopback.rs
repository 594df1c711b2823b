//! chitchat's envelope encoding, borrowed through a loopback socket pair:
//! chitchat keeps `serialize` and `deserialize` crate-private, but its own
//! `UdpSocket` runs them. To encode, that socket sends the envelope to our
//! `tap`; to decode, the tap sends the bytes to it.
//!
//! Each operation is closed by a sentinel — a `Syn` addressed to a cluster
//! id no real cluster has, numbered — sent right behind it through the same
//! pair. Loopback keeps a pair's datagrams in order, so whatever arrives
//! before the sentinel of this operation belongs to it: a reply that comes
//! late (after a timeout) is recognised by its older sentinel and dropped,
//! and can never shift later results onto the wrong message. A payload
//! chitchat cannot decode yields nothing before its sentinel.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use chitchat::transport::{Socket, UdpSocket};
use chitchat::{ChitchatEnvelope, ChitchatMessage, ProtocolVersion};

/// How long one operation may take to come back through loopback.
const LOOPBACK_WAIT: Duration = Duration::from_millis(500);
const SENTINEL_PREFIX: &str = "chorus-loopback-sentinel-";
/// Digits of the sentinel number: a fixed width, so its encoding has a
/// fixed length and is recognised by its bytes.
const SENTINEL_DIGITS: usize = 20;
/// The largest datagram the pair carries.
const MAX_DATAGRAM: usize = 65_507;

pub struct LoopbackCodec {
    chitchat: UdpSocket,
    chitchat_addr: SocketAddr,
    tap: tokio::net::UdpSocket,
    tap_addr: SocketAddr,
    buffer: Vec<u8>,
    /// The encoding of sentinel 0, minus its number.
    sentinel_prefix: Vec<u8>,
    next_sentinel: u64,
}

/// A `Syn` with an empty digest: the sentinel's form, and the tests' message.
pub(super) fn syn(cluster_id: &str) -> ChitchatEnvelope {
    ChitchatEnvelope {
        version: ProtocolVersion::V0,
        message: ChitchatMessage::Syn {
            cluster_id: cluster_id.to_owned(),
            digest: Default::default(),
        },
    }
}

fn sentinel_envelope(number: u64) -> ChitchatEnvelope {
    syn(&format!(
        "{SENTINEL_PREFIX}{number:0width$}",
        width = SENTINEL_DIGITS
    ))
}

/// The number of a decoded sentinel.
fn sentinel_number(envelope: &ChitchatEnvelope) -> Option<u64> {
    match &envelope.message {
        ChitchatMessage::Syn { cluster_id, .. } => {
            cluster_id.strip_prefix(SENTINEL_PREFIX)?.parse().ok()
        }
        _ => None,
    }
}

impl LoopbackCodec {
    pub async fn open() -> anyhow::Result<Self> {
        let loopback: SocketAddr = ([127, 0, 0, 1], 0).into();
        let chitchat = UdpSocket::open(loopback).await?;
        let chitchat_addr = chitchat.local_addr()?;
        let tap = tokio::net::UdpSocket::bind(loopback)
            .await
            .context("cannot bind the gossip loopback tap")?;
        let tap_addr = tap.local_addr()?;
        let mut codec = LoopbackCodec {
            chitchat,
            chitchat_addr,
            tap,
            tap_addr,
            buffer: vec![0; MAX_DATAGRAM],
            sentinel_prefix: Vec::new(),
            next_sentinel: 1,
        };
        // Learn the sentinel's encoding: the pair has carried nothing yet.
        codec.chitchat.send(tap_addr, sentinel_envelope(0)).await?;
        let mut sentinel = codec.receive_at_tap().await?;
        sentinel.truncate(sentinel.len().saturating_sub(SENTINEL_DIGITS));
        codec.sentinel_prefix = sentinel;
        Ok(codec)
    }

    async fn receive_at_tap(&mut self) -> anyhow::Result<Vec<u8>> {
        loop {
            let (length, from) = self.tap.recv_from(&mut self.buffer).await?;
            // Only chitchat's end counts: another local process could
            // write to this loopback port too.
            if from == self.chitchat_addr {
                return Ok(self.buffer[..length].to_vec());
            }
        }
    }

    fn take_sentinel(&mut self) -> u64 {
        let number = self.next_sentinel;
        self.next_sentinel += 1;
        number
    }

    /// The sentinel number these bytes encode, if they are one.
    fn sentinel_in(&self, bytes: &[u8]) -> Option<u64> {
        let digits = bytes.strip_prefix(self.sentinel_prefix.as_slice())?;
        if digits.len() != SENTINEL_DIGITS {
            return None;
        }
        std::str::from_utf8(digits).ok()?.parse().ok()
    }

    /// The wire bytes of `envelope`.
    pub async fn encode(&mut self, envelope: ChitchatEnvelope) -> anyhow::Result<Vec<u8>> {
        let sentinel = self.take_sentinel();
        self.chitchat.send(self.tap_addr, envelope).await?;
        self.chitchat
            .send(self.tap_addr, sentinel_envelope(sentinel))
            .await?;
        let collect = async {
            let mut encoded = None;
            loop {
                let bytes = self.receive_at_tap().await?;
                match self.sentinel_in(&bytes) {
                    Some(number) if number == sentinel => {
                        return encoded.context("the envelope never came back");
                    }
                    // An earlier operation's leftovers.
                    Some(_) => encoded = None,
                    None => encoded = Some(bytes),
                }
            }
        };
        tokio::time::timeout(LOOPBACK_WAIT, collect)
            .await
            .context("the gossip encoder did not answer over loopback")?
    }

    /// The envelope `payload` encodes, or `None` when it is not one.
    pub async fn decode(&mut self, payload: &[u8]) -> anyhow::Result<Option<ChitchatEnvelope>> {
        let sentinel = self.take_sentinel();
        let mut sentinel_bytes = self.sentinel_prefix.clone();
        sentinel_bytes
            .extend_from_slice(format!("{sentinel:0width$}", width = SENTINEL_DIGITS).as_bytes());
        self.tap.send_to(payload, self.chitchat_addr).await?;
        self.tap
            .send_to(&sentinel_bytes, self.chitchat_addr)
            .await?;
        let collect = async {
            let mut decoded = None;
            loop {
                let outcome = self.chitchat.recv().await?;
                if outcome.from_addr != self.tap_addr {
                    continue;
                }
                match sentinel_number(&outcome.envelope) {
                    Some(number) if number == sentinel => return Ok(decoded),
                    Some(_) => decoded = None,
                    None => decoded = Some(outcome.envelope),
                }
            }
        };
        tokio::time::timeout(LOOPBACK_WAIT, collect)
            .await
            .context("the gossip decoder did not answer over loopback")?
    }

    /// Sends raw bytes to chitchat's end, as a stray datagram would.
    #[cfg(test)]
    pub async fn inject(&self, bytes: &[u8]) {
        let _ = self.tap.send_to(bytes, self.chitchat_addr).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bad_cluster() -> ChitchatEnvelope {
        ChitchatEnvelope {
            version: ProtocolVersion::V0,
            message: ChitchatMessage::BadCluster,
        }
    }

    #[tokio::test]
    async fn envelopes_round_trip_and_garbage_decodes_to_nothing() {
        let mut codec = LoopbackCodec::open().await.unwrap();
        let bytes = codec.encode(syn("prod")).await.unwrap();
        assert_eq!(codec.decode(&bytes).await.unwrap(), Some(syn("prod")));
        assert_eq!(codec.decode(b"not chitchat").await.unwrap(), None);
        let bytes = codec.encode(bad_cluster()).await.unwrap();
        assert_eq!(codec.decode(&bytes).await.unwrap(), Some(bad_cluster()));
    }

    #[tokio::test]
    async fn a_late_or_stray_datagram_never_shifts_later_results() {
        let mut codec = LoopbackCodec::open().await.unwrap();
        let prod = codec.encode(syn("prod")).await.unwrap();
        let staging = codec.encode(syn("staging")).await.unwrap();
        // A reply left over from an operation that timed out: its bytes
        // and its sentinel arrive before the next operation's.
        codec.inject(&prod).await;
        let old_sentinel = codec.take_sentinel();
        let mut stale = codec.sentinel_prefix.clone();
        stale.extend_from_slice(format!("{old_sentinel:020}").as_bytes());
        codec.inject(&stale).await;
        assert_eq!(codec.decode(&staging).await.unwrap(), Some(syn("staging")));
        // A stray datagram from another socket is ignored.
        let stray = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        stray.send_to(&prod, codec.chitchat_addr).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(codec.decode(&staging).await.unwrap(), Some(syn("staging")));
        assert_eq!(
            codec.encode(syn("x")).await.unwrap(),
            codec.encode(syn("x")).await.unwrap()
        );
    }
}
