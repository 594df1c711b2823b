//! The authenticated transport on real UDP sockets on 127.0.0.1.

use std::time::Duration;

use super::loopback::syn;
use super::*;

const CLUSTER: &str = "transport-test";

fn secrets(secrets: &[&str]) -> Vec<String> {
    secrets.iter().map(|secret| (*secret).to_owned()).collect()
}

/// A transport's socket on an ephemeral port, and its counters.
async fn socket(accepted: &[&str]) -> (Box<dyn Socket>, Arc<GossipCounters>, SocketAddr) {
    let counters = Arc::new(GossipCounters::default());
    let probe = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = probe.local_addr().unwrap();
    drop(probe);
    let transport =
        AuthenticatedTransport::new(&secrets(accepted), CLUSTER, addr, 1, counters.clone())
            .unwrap();
    (transport.open(addr).await.unwrap(), counters, addr)
}

/// A plain socket that seals datagrams itself, as a peer (or an attacker
/// holding a captured datagram) would.
struct RawPeer {
    socket: tokio::net::UdpSocket,
    codec: LoopbackCodec,
}

impl RawPeer {
    async fn new() -> Self {
        RawPeer {
            socket: tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap(),
            codec: LoopbackCodec::open().await.unwrap(),
        }
    }

    /// A datagram for the node at `to`.
    async fn sealed(
        &mut self,
        secret: &str,
        to: SocketAddr,
        sent_at_ms: u64,
        sequence: u64,
    ) -> Vec<u8> {
        let payload = self.codec.encode(syn(CLUSTER)).await.unwrap();
        let header = Header {
            sender: self.socket.local_addr().unwrap(),
            sent_at_ms,
            sequence,
            fragment: 0,
            fragments: 1,
        };
        Sealer::new(&secrets(&[secret]), CLUSTER)
            .unwrap()
            .seal(&header, to, &payload)
    }

    async fn send(&self, datagram: &[u8], to: SocketAddr) {
        self.socket.send_to(datagram, to).await.unwrap();
    }
}

async fn received(socket: &mut Box<dyn Socket>) -> Option<RecvOutcome> {
    tokio::time::timeout(Duration::from_millis(300), socket.recv())
        .await
        .ok()
        .map(|outcome| outcome.unwrap())
}

fn load(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

#[tokio::test]
async fn a_replayed_stale_or_relayed_datagram_is_dropped() {
    let (mut node, counters, addr) = socket(&["the-secret-0123456789"]).await;
    let mut peer = RawPeer::new().await;
    let datagram = peer
        .sealed("the-secret-0123456789", addr, unix_millis(), 7)
        .await;
    peer.send(&datagram, addr).await;
    assert_eq!(received(&mut node).await.unwrap().envelope, syn(CLUSTER));

    peer.send(&datagram, addr).await;
    assert!(received(&mut node).await.is_none());
    assert_eq!(load(&counters.replayed), 1);

    let relay = RawPeer::new().await;
    relay.send(&datagram, addr).await;
    assert!(received(&mut node).await.is_none());
    assert_eq!(load(&counters.wrong_sender), 1);

    let old = peer
        .sealed("the-secret-0123456789", addr, unix_millis() - 60_000, 8)
        .await;
    peer.send(&old, addr).await;
    assert!(received(&mut node).await.is_none());
    assert_eq!(load(&counters.stale), 1);
}

#[tokio::test]
async fn a_datagram_captured_on_its_way_to_one_node_does_not_open_at_another() {
    let (mut meant, _, meant_addr) = socket(&["the-secret-0123456789"]).await;
    let (mut other, other_counters, other_addr) = socket(&["the-secret-0123456789"]).await;
    let mut peer = RawPeer::new().await;
    let datagram = peer
        .sealed("the-secret-0123456789", meant_addr, unix_millis(), 1)
        .await;
    // Re-sent from the sender's own address, fresh and never seen there.
    peer.send(&datagram, other_addr).await;
    assert!(received(&mut other).await.is_none());
    assert_eq!(load(&other_counters.auth_failures), 1);
    peer.send(&datagram, meant_addr).await;
    assert!(received(&mut meant).await.is_some());
}

#[tokio::test]
async fn the_old_secret_is_accepted_during_a_rotation_and_refused_after() {
    let (mut rotating, _, rotating_addr) =
        socket(&["new-secret-0123456789", "old-secret-0123456789"]).await;
    let (mut rotated, rotated_counters, rotated_addr) = socket(&["new-secret-0123456789"]).await;
    let mut peer = RawPeer::new().await;
    let old = peer
        .sealed("old-secret-0123456789", rotating_addr, unix_millis(), 1)
        .await;
    peer.send(&old, rotating_addr).await;
    assert!(received(&mut rotating).await.is_some());
    let old = peer
        .sealed("old-secret-0123456789", rotated_addr, unix_millis(), 2)
        .await;
    peer.send(&old, rotated_addr).await;
    assert!(received(&mut rotated).await.is_none());
    assert_eq!(load(&rotated_counters.auth_failures), 1);
}

#[tokio::test]
async fn a_message_larger_than_a_datagram_arrives_in_fragments() {
    let (mut sender, sender_counters, _) = socket(&["the-secret-0123456789"]).await;
    let (mut receiver, receiver_counters, receiver_addr) = socket(&["the-secret-0123456789"]).await;
    // chitchat's own limit for one message, and more than one datagram
    // carries once sealed.
    let huge = "x".repeat(65_480);
    let sent = sender.send(receiver_addr, syn(&huge)).await.unwrap();
    assert!(sent.num_bytes_sent > MAX_DATAGRAM);
    assert_eq!(load(&sender_counters.fragmented_sent), 1);
    assert_eq!(load(&sender_counters.packets_sent), 2);
    assert_eq!(received(&mut receiver).await.unwrap().envelope, syn(&huge));
    assert_eq!(load(&receiver_counters.reassembled), 1);

    let small = sender.send(receiver_addr, syn("small")).await.unwrap();
    assert!(small.num_bytes_sent < 200);
    assert_eq!(
        received(&mut receiver).await.unwrap().envelope,
        syn("small")
    );
    assert_eq!(receiver_counters.dropped(), 0);
}
