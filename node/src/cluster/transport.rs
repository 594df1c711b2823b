//! The gossip socket: every chitchat message leaves as one or more sealed
//! datagrams ([`seal`]: authenticated, bound to the sender, the time and a
//! sequence number; [`fragments`]: split when it does not fit) and comes
//! in only if it opens, is fresh ([`replay`]) and is complete. Everything
//! dropped is counted by cause; nothing dropped reaches chitchat. A node
//! without the secret can neither join nor inject state, and a captured
//! datagram cannot be replayed.
//!
//! Encoding and decoding chitchat's envelopes goes through [`loopback`],
//! since chitchat keeps that format to itself. Gossip is a few messages a
//! second per peer, so the extra loopback hop costs nothing that matters.

mod fragments;
#[cfg(test)]
mod fuzz;
mod intake;
mod loopback;
mod replay;
mod seal;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::Context;
use async_trait::async_trait;
use chitchat::transport::{RecvOutcome, SendOutcome, Socket, Transport};
use chitchat::ChitchatEnvelope;
use chorus_actors::clock::unix_millis;
use tokio::sync::mpsc;

use fragments::MAX_FRAGMENTS;
use intake::Intake;
use loopback::LoopbackCodec;
use seal::{Header, Refused, Sealer, HEADER_LEN};

/// The largest UDP payload.
const MAX_DATAGRAM: usize = 65_507;
/// The most of a message one datagram carries.
const MAX_PIECE: usize = MAX_DATAGRAM - HEADER_LEN;
/// Authenticated messages waiting for chitchat; more are dropped.
const INCOMING_QUEUE: usize = 1024;

/// What the node's gossip socket has seen, for the API and metrics.
#[derive(Debug, Default)]
pub struct GossipCounters {
    pub packets_sent: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub packets_received: AtomicU64,
    pub bytes_received: AtomicU64,
    /// Messages sent as more than one datagram.
    pub fragmented_sent: AtomicU64,
    /// Messages put back together from several datagrams.
    pub reassembled: AtomicU64,
    /// Right cluster, a MAC no accepted secret makes: forged or corrupted.
    pub auth_failures: AtomicU64,
    /// Tagged for another cluster id.
    pub other_cluster: AtomicU64,
    /// Too short to carry a header, not ours, or inconsistent fragments.
    pub malformed: AtomicU64,
    /// Authentic, but not a chitchat message (or the loopback codec failed).
    pub undecodable: AtomicU64,
    /// Authentic, but seen before.
    pub replayed: AtomicU64,
    /// Authentic, but sent too long ago (or too far ahead) by our clock.
    pub stale: AtomicU64,
    /// Authentic, but not from the address it was sealed for.
    pub wrong_sender: AtomicU64,
    /// Messages whose fragments did not all arrive in time.
    pub incomplete: AtomicU64,
    /// Messages chitchat was too far behind to take.
    pub queue_full: AtomicU64,
}

impl GossipCounters {
    fn count(counter: &AtomicU64, by: usize) {
        counter.fetch_add(by as u64, Ordering::Relaxed);
    }

    /// Datagrams or messages dropped for any reason.
    pub fn dropped(&self) -> u64 {
        [
            &self.auth_failures,
            &self.other_cluster,
            &self.malformed,
            &self.undecodable,
            &self.replayed,
            &self.stale,
            &self.wrong_sender,
            &self.incomplete,
            &self.queue_full,
        ]
        .iter()
        .map(|counter| counter.load(Ordering::Relaxed))
        .sum()
    }

    fn refused(&self, refused: Refused) -> &AtomicU64 {
        match refused {
            Refused::Malformed => &self.malformed,
            Refused::OtherCluster => &self.other_cluster,
            Refused::AuthFailure => &self.auth_failures,
        }
    }
}

/// A chitchat `Transport` whose sockets seal and check every datagram.
pub struct AuthenticatedTransport {
    sealer: Sealer,
    /// The address peers know this node by, sealed into every datagram.
    advertise: SocketAddr,
    /// The first sequence number: the run's generation, shifted so that a
    /// restarted node (whose generation is larger) never reuses one.
    first_sequence: u64,
    counters: Arc<GossipCounters>,
}

impl AuthenticatedTransport {
    /// `secrets`: the first signs, all are accepted.
    pub fn new(
        secrets: &[String],
        cluster_id: &str,
        advertise: SocketAddr,
        generation: u64,
        counters: Arc<GossipCounters>,
    ) -> anyhow::Result<Self> {
        Ok(AuthenticatedTransport {
            sealer: Sealer::new(secrets, cluster_id)?,
            advertise,
            first_sequence: generation << 20,
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
        // Peers send to the advertised address; one that reaches the
        // listen address names that one.
        let mut receivers = vec![self.advertise];
        if listen_addr != self.advertise && !listen_addr.ip().is_unspecified() {
            receivers.push(listen_addr);
        }
        let receiver = Receiver {
            public: public.clone(),
            codec: LoopbackCodec::open().await?,
            intake: Intake::new(self.sealer.clone(), receivers, self.counters.clone()),
            counters: self.counters.clone(),
            incoming_tx,
        };
        tokio::spawn(receiver.run());
        Ok(Box::new(AuthenticatedSocket {
            public,
            codec: LoopbackCodec::open().await?,
            sealer: self.sealer.clone(),
            advertise: self.advertise,
            next_sequence: self.first_sequence,
            counters: self.counters.clone(),
            incoming_rx,
        }))
    }
}

/// Reads the public socket in its own task, so that `Socket::recv` (which
/// chitchat cancels at every gossip tick) only ever waits on a channel.
struct Receiver {
    public: Arc<tokio::net::UdpSocket>,
    codec: LoopbackCodec,
    intake: Intake,
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
                    // chitchat stops on this error; readiness reports it.
                    let _ = self
                        .incoming_tx
                        .send(Err(error).context("the gossip socket failed"))
                        .await;
                    return;
                }
            };
            GossipCounters::count(&self.counters.packets_received, 1);
            GossipCounters::count(&self.counters.bytes_received, length);
            let Some(message) = self.intake.accept(&buffer[..length], from, unix_millis()) else {
                continue;
            };
            let envelope = match self.codec.decode(&message).await {
                Ok(Some(envelope)) => envelope,
                Ok(None) => {
                    GossipCounters::count(&self.counters.undecodable, 1);
                    continue;
                }
                Err(error) => {
                    tracing::warn!(%error, "could not decode a gossip message");
                    GossipCounters::count(&self.counters.undecodable, 1);
                    continue;
                }
            };
            let outcome = RecvOutcome {
                from_addr: from,
                envelope,
                num_bytes_received: message.len(),
            };
            match self.incoming_tx.try_send(Ok(outcome)) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    // chitchat is behind: drop, as UDP would.
                    GossipCounters::count(&self.counters.queue_full, 1);
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return,
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
    sealer: Sealer,
    advertise: SocketAddr,
    next_sequence: u64,
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

    /// An error here means one message was not sent; chitchat logs it and
    /// goes on gossiping.
    async fn send(
        &mut self,
        to: SocketAddr,
        envelope: ChitchatEnvelope,
    ) -> anyhow::Result<SendOutcome> {
        let message = self.codec.encode(envelope).await?;
        let pieces = fragments::split(&message, MAX_PIECE);
        let fragments = u8::try_from(pieces.len())
            .ok()
            .filter(|count| usize::from(*count) <= MAX_FRAGMENTS)
            .context("a gossip message too large to fragment")?;
        if fragments > 1 {
            GossipCounters::count(&self.counters.fragmented_sent, 1);
        }
        let sent_at_ms = unix_millis();
        let mut sent = 0;
        for (index, piece) in (0..fragments).zip(pieces) {
            let header = Header {
                sender: self.advertise,
                sent_at_ms,
                sequence: self.next_sequence,
                fragment: index,
                fragments,
            };
            self.next_sequence += 1;
            let datagram = self.sealer.seal(&header, to, piece);
            sent += self
                .public
                .send_to(&datagram, to)
                .await
                .context("cannot send gossip")?;
            GossipCounters::count(&self.counters.packets_sent, 1);
        }
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
mod tests;
