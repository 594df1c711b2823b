//! Gossip packets authenticated with HMAC-SHA256 over the cluster secret.
//!
//! Every datagram on the wire is
//! `MAGIC (4) | cluster tag (8) | HMAC-SHA256 (32) | chitchat payload`, the
//! tag being the first bytes of SHA-256 of the cluster id. A packet that is
//! too short or too long, from another cluster, or whose MAC does not match
//! is dropped and counted; it never reaches chitchat. A node without the
//! secret can neither join nor inject state.
//!
//! chitchat keeps its envelope encoding private, so the socket borrows it
//! through loopback pairs: outgoing envelopes are encoded by a chitchat
//! `UdpSocket` sending to our `tap` socket, and incoming payloads, once
//! authenticated, go through another pair to be decoded. Gossip is a few
//! packets a second per peer, so the extra loopback hop costs nothing that
//! matters.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use chitchat::transport::{RecvOutcome, SendOutcome, Socket, Transport, UdpSocket};
use chitchat::ChitchatEnvelope;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

type HmacSha256 = Hmac<Sha256>;

const MAGIC: [u8; 4] = *b"CHG1";
const TAG_LEN: usize = 8;
const MAC_LEN: usize = 32;
const HEADER_LEN: usize = MAGIC.len() + TAG_LEN + MAC_LEN;
/// The largest UDP payload. chitchat fills packets up to this size itself,
/// so with our header its largest ones do not fit and are dropped (counted
/// as `oversized_sent`): keep gossip values small.
const MAX_DATAGRAM: usize = 65_507;
/// How long a decoded envelope may take to come back through loopback.
const LOOPBACK_WAIT: Duration = Duration::from_millis(200);
/// Authenticated packets waiting for chitchat; more are dropped.
const INCOMING_QUEUE: usize = 1024;

/// What the node's gossip socket has seen, for the status page and metrics.
#[derive(Debug, Default)]
pub struct GossipCounters {
    pub packets_sent: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub packets_received: AtomicU64,
    pub bytes_received: AtomicU64,
    /// Right cluster, wrong MAC: a forged or corrupted packet.
    pub auth_failures: AtomicU64,
    /// Tagged for another cluster id.
    pub other_cluster: AtomicU64,
    /// Too short to carry a header, too long for a datagram, or not ours.
    pub malformed: AtomicU64,
    /// Authenticated, but chitchat could not decode it.
    pub undecodable: AtomicU64,
    /// Our own packets too large for a datagram once signed; not sent.
    pub oversized_sent: AtomicU64,
}

impl GossipCounters {
    fn count(counter: &AtomicU64, by: usize) {
        counter.fetch_add(by as u64, Ordering::Relaxed);
    }

    /// Packets dropped for any reason.
    pub fn dropped(&self) -> u64 {
        [
            &self.auth_failures,
            &self.other_cluster,
            &self.malformed,
            &self.undecodable,
            &self.oversized_sent,
        ]
        .iter()
        .map(|counter| counter.load(Ordering::Relaxed))
        .sum()
    }
}

/// The keys every packet of one cluster is signed with.
#[derive(Clone)]
struct Signer {
    mac: HmacSha256,
    cluster_tag: [u8; TAG_LEN],
}

impl Signer {
    fn new(secret: &str, cluster_id: &str) -> anyhow::Result<Self> {
        let mac = HmacSha256::new_from_slice(secret.as_bytes())
            .map_err(|_| anyhow::anyhow!("the cluster secret cannot key HMAC-SHA256"))?;
        let digest = Sha256::digest(cluster_id.as_bytes());
        let mut cluster_tag = [0; TAG_LEN];
        cluster_tag.copy_from_slice(&digest[..TAG_LEN]);
        Ok(Signer { mac, cluster_tag })
    }

    /// The MAC covers the cluster tag too, so a tag cannot be swapped.
    fn mac(&self, payload: &[u8]) -> [u8; MAC_LEN] {
        let mut mac = self.mac.clone();
        mac.update(&self.cluster_tag);
        mac.update(payload);
        mac.finalize().into_bytes().into()
    }

    fn seal(&self, payload: &[u8]) -> Vec<u8> {
        let mut datagram = Vec::with_capacity(HEADER_LEN + payload.len());
        datagram.extend_from_slice(&MAGIC);
        datagram.extend_from_slice(&self.cluster_tag);
        datagram.extend_from_slice(&self.mac(payload));
        datagram.extend_from_slice(payload);
        datagram
    }

    /// The payload of an authentic datagram, or the counter to blame.
    fn open<'a>(
        &self,
        datagram: &'a [u8],
        counters: &'a GossipCounters,
    ) -> Result<&'a [u8], &'a AtomicU64> {
        if datagram.len() < HEADER_LEN || datagram[..MAGIC.len()] != MAGIC {
            return Err(&counters.malformed);
        }
        let (tag, rest) = datagram[MAGIC.len()..].split_at(TAG_LEN);
        if tag != self.cluster_tag {
            return Err(&counters.other_cluster);
        }
        let (mac, payload) = rest.split_at(MAC_LEN);
        let mut expected = self.mac.clone();
        expected.update(&self.cluster_tag);
        expected.update(payload);
        // `verify_slice` compares in constant time.
        expected
            .verify_slice(mac)
            .map_err(|_| &counters.auth_failures)?;
        Ok(payload)
    }
}

/// A chitchat `Transport` whose sockets sign and check every packet.
pub struct AuthenticatedTransport {
    signer: Signer,
    counters: Arc<GossipCounters>,
}

impl AuthenticatedTransport {
    pub fn new(
        secret: &str,
        cluster_id: &str,
        counters: Arc<GossipCounters>,
    ) -> anyhow::Result<Self> {
        Ok(AuthenticatedTransport {
            signer: Signer::new(secret, cluster_id)?,
            counters,
        })
    }
}

#[async_trait]
impl Transport for AuthenticatedTransport {
    async fn open(&self, listen_addr: SocketAddr) -> anyhow::Result<Box<dyn Socket>> {
        let public = tokio::net::UdpSocket::bind(listen_addr)
            .await
            .with_context(|| format!("cannot bind the gossip socket to {listen_addr}/udp"))?;
        let public = Arc::new(public);
        let (incoming_tx, incoming_rx) = mpsc::channel(INCOMING_QUEUE);
        let receiver = Receiver {
            public: public.clone(),
            codec: LoopbackCodec::open().await?,
            signer: self.signer.clone(),
            counters: self.counters.clone(),
            incoming_tx,
        };
        tokio::spawn(receiver.run());
        Ok(Box::new(AuthenticatedSocket {
            public,
            codec: LoopbackCodec::open().await?,
            signer: self.signer.clone(),
            counters: self.counters.clone(),
            incoming_rx,
        }))
    }
}

/// chitchat's own socket and our end of a loopback pair: chitchat encodes
/// an envelope by sending it to `tap`, and decodes a payload `tap` sends it.
struct LoopbackCodec {
    chitchat: UdpSocket,
    chitchat_addr: SocketAddr,
    tap: tokio::net::UdpSocket,
    tap_addr: SocketAddr,
    buffer: Vec<u8>,
}

impl LoopbackCodec {
    async fn open() -> anyhow::Result<Self> {
        let loopback: SocketAddr = ([127, 0, 0, 1], 0).into();
        let chitchat = UdpSocket::open(loopback).await?;
        let chitchat_addr = chitchat.local_addr()?;
        let tap = tokio::net::UdpSocket::bind(loopback)
            .await
            .context("cannot bind the gossip loopback tap")?;
        let tap_addr = tap.local_addr()?;
        Ok(LoopbackCodec {
            chitchat,
            chitchat_addr,
            tap,
            tap_addr,
            buffer: vec![0; MAX_DATAGRAM],
        })
    }

    async fn encode(&mut self, envelope: ChitchatEnvelope) -> anyhow::Result<Vec<u8>> {
        self.chitchat.send(self.tap_addr, envelope).await?;
        loop {
            let received =
                tokio::time::timeout(LOOPBACK_WAIT, self.tap.recv_from(&mut self.buffer));
            let (length, from) = received
                .await
                .context("the gossip encoder did not answer over loopback")??;
            if from == self.chitchat_addr {
                return Ok(self.buffer[..length].to_vec());
            }
        }
    }

    /// `None` when the payload is not a chitchat envelope: chitchat drops
    /// such datagrams silently and keeps waiting, hence the timeout.
    async fn decode(&mut self, payload: &[u8]) -> anyhow::Result<Option<ChitchatEnvelope>> {
        self.tap.send_to(payload, self.chitchat_addr).await?;
        match tokio::time::timeout(LOOPBACK_WAIT, self.chitchat.recv()).await {
            // Only what our tap sent counts: another local process could
            // write to this loopback port too.
            Ok(outcome) => {
                let outcome = outcome?;
                Ok((outcome.from_addr == self.tap_addr).then_some(outcome.envelope))
            }
            Err(_) => Ok(None),
        }
    }
}

/// Reads the public socket in its own task, so that `Socket::recv` (which
/// chitchat cancels at every gossip tick) only ever waits on a channel.
struct Receiver {
    public: Arc<tokio::net::UdpSocket>,
    codec: LoopbackCodec,
    signer: Signer,
    counters: Arc<GossipCounters>,
    incoming_tx: mpsc::Sender<anyhow::Result<RecvOutcome>>,
}

impl Receiver {
    async fn run(mut self) {
        let mut buffer = vec![0; MAX_DATAGRAM];
        loop {
            let (length, from) = match self.public.recv_from(&mut buffer).await {
                Ok(received) => received,
                // A peer that went away (ICMP unreachable), or a moment's
                // memory pressure: the socket itself is fine.
                Err(error) if is_transient(&error) => continue,
                Err(error) => {
                    let _ = self
                        .incoming_tx
                        .send(Err(error).context("gossip socket failed"))
                        .await;
                    return;
                }
            };
            GossipCounters::count(&self.counters.packets_received, 1);
            GossipCounters::count(&self.counters.bytes_received, length);
            let payload = match self.signer.open(&buffer[..length], &self.counters) {
                Ok(payload) => payload,
                Err(counter) => {
                    GossipCounters::count(counter, 1);
                    tracing::debug!(%from, length, "dropped an unauthenticated gossip packet");
                    continue;
                }
            };
            let outcome = match self.codec.decode(payload).await {
                Ok(Some(envelope)) => Ok(RecvOutcome {
                    from_addr: from,
                    envelope,
                    num_bytes_received: length,
                }),
                Ok(None) => {
                    GossipCounters::count(&self.counters.undecodable, 1);
                    continue;
                }
                Err(error) => Err(error),
            };
            let fatal = outcome.is_err();
            // A full queue means chitchat is behind: drop, as UDP would.
            match self.incoming_tx.try_send(outcome) {
                Err(mpsc::error::TrySendError::Closed(_)) => return,
                _ if fatal => return,
                _ => {}
            }
        }
    }
}

fn is_transient(error: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(
        error.kind(),
        ErrorKind::ConnectionReset | ErrorKind::ConnectionRefused | ErrorKind::OutOfMemory
    )
}

struct AuthenticatedSocket {
    /// Faces the network: sealed datagrams only.
    public: Arc<tokio::net::UdpSocket>,
    codec: LoopbackCodec,
    signer: Signer,
    counters: Arc<GossipCounters>,
    incoming_rx: mpsc::Receiver<anyhow::Result<RecvOutcome>>,
}

#[async_trait]
impl Socket for AuthenticatedSocket {
    fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        self.public
            .local_addr()
            .context("cannot read the gossip address")
    }

    async fn send(
        &mut self,
        to: SocketAddr,
        envelope: ChitchatEnvelope,
    ) -> anyhow::Result<SendOutcome> {
        let payload = self.codec.encode(envelope).await?;
        let datagram = self.signer.seal(&payload);
        if datagram.len() > MAX_DATAGRAM {
            // chitchat sizes packets for bare UDP; our header can tip the
            // largest over. Dropping one is what UDP would do anyway.
            GossipCounters::count(&self.counters.oversized_sent, 1);
            return Ok(SendOutcome { num_bytes_sent: 0 });
        }
        let sent = self
            .public
            .send_to(&datagram, to)
            .await
            .context("cannot send gossip")?;
        GossipCounters::count(&self.counters.packets_sent, 1);
        GossipCounters::count(&self.counters.bytes_sent, sent);
        Ok(SendOutcome {
            num_bytes_sent: sent,
        })
    }

    async fn recv(&mut self) -> anyhow::Result<RecvOutcome> {
        match self.incoming_rx.recv().await {
            Some(outcome) => outcome,
            None => Err(anyhow::anyhow!("the gossip receiver stopped")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> Signer {
        Signer::new("s3cret", "prod").unwrap()
    }

    #[test]
    fn sealed_packets_open_and_tampered_ones_do_not() {
        let counters = GossipCounters::default();
        let sealed = signer().seal(b"hello");
        assert_eq!(signer().open(&sealed, &counters).unwrap(), b"hello");

        let mut flipped = sealed.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert!(std::ptr::eq(
            signer().open(&flipped, &counters).unwrap_err(),
            &counters.auth_failures
        ));

        let wrong_secret = Signer::new("guess", "prod").unwrap().seal(b"hello");
        assert!(std::ptr::eq(
            signer().open(&wrong_secret, &counters).unwrap_err(),
            &counters.auth_failures
        ));

        let other_cluster = Signer::new("s3cret", "staging").unwrap().seal(b"hello");
        assert!(std::ptr::eq(
            signer().open(&other_cluster, &counters).unwrap_err(),
            &counters.other_cluster
        ));

        for garbage in [&b""[..], b"CHG1", &[0u8; 100][..]] {
            assert!(std::ptr::eq(
                signer().open(garbage, &counters).unwrap_err(),
                &counters.malformed
            ));
        }
    }
}
