//! Gossip between in-process nodes over the real authenticated transport
//! on 127.0.0.1.

use std::time::{Duration, Instant};

use super::*;
use crate::config::ClusterConfig;

const SECRET: &str = "cluster-unit-test-secret-0123";

fn free_udp_addr() -> SocketAddr {
    let probe = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    probe.local_addr().unwrap()
}

pub(crate) fn config(node_id: &str, listen: SocketAddr, seeds: &[SocketAddr]) -> ClusterConfig {
    ClusterConfig {
        node_id: node_id.to_owned(),
        listen,
        advertise: listen,
        seeds: seeds.iter().map(ToString::to_string).collect(),
        cluster_id: "unit".to_owned(),
        gossip_interval: Duration::from_millis(100),
        dead_node_grace: Duration::from_secs(60),
        secrets: vec![SECRET.to_owned()],
    }
}

pub(crate) async fn join(node_id: &str, seeds: &[SocketAddr]) -> (Cluster, SocketAddr) {
    let listen = free_udp_addr();
    let http: SocketAddr = ([127, 0, 0, 1], 1).into();
    let cluster = Cluster::join(&config(node_id, listen, seeds), 1, http)
        .await
        .unwrap();
    (cluster, listen)
}

#[tokio::test]
async fn a_node_joining_a_cluster_with_over_a_megabyte_of_state_catches_up() {
    let (big, big_addr) = join("big", &[]).await;
    // 20,000 entries of ~70 bytes, values of random 7-bit text that zstd
    // cannot shrink much: 1.4 MB, some twenty-five full gossip messages.
    let entries = 20_000;
    let mut random = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next_char = move || {
        random ^= random << 13;
        random ^= random >> 7;
        random ^= random << 17;
        char::from(b' ' + (random % 95) as u8)
    };
    let changes = (0..entries)
        .map(|index| Change::Set {
            section: Section::Counters,
            key: format!("big:1:calls:provider/model-{index:06}"),
            value: (0..40).map(|_| next_char()).collect(),
        })
        .collect();
    big.publish(changes).await;
    let state_bytes = {
        let chitchat = big.chitchat.chitchat();
        let chitchat = chitchat.lock().await;
        state_size(&chitchat).2
    };
    assert!(state_bytes > 1_000_000, "{state_bytes} bytes");

    let started = Instant::now();
    let (joiner, _) = join("joiner", &[big_addr]).await;
    let mut seen = HashSet::new();
    while seen.len() < entries {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "caught up on {} of {entries} entries",
            seen.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        for observed in joiner.read().await.changes {
            if observed.publisher.node_id == "big" {
                seen.insert(observed.key);
            }
        }
    }
    assert_eq!(joiner.counters.dropped(), 0);
    println!(
        "a cold join took {} ms for {state_bytes} bytes of state in {entries} entries \
         ({} messages fragmented)",
        started.elapsed().as_millis(),
        big.counters.fragmented_sent.load(Ordering::Relaxed)
    );
}

#[tokio::test]
async fn gossip_liveness_follows_chitchats_loop() {
    let (node, _) = join("alone", &[]).await;
    assert!(node.is_gossiping());
    node.leave();
    let deadline = Instant::now() + Duration::from_secs(5);
    while node.is_gossiping() {
        assert!(Instant::now() < deadline, "gossip never stopped");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn chitchat_keeps_no_copy_of_the_states_in_its_live_nodes_watch() {
    let (a, a_addr) = join("a", &[]).await;
    let (b, _) = join("b", &[a_addr]).await;
    a.publish(vec![Change::Set {
        section: Section::Counters,
        key: "a:1:p/m".into(),
        value: "0=0,1,0".into(),
    }])
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let chitchat = b.chitchat.chitchat();
        let chitchat = chitchat.lock().await;
        if chitchat.live_nodes().count() == 2 {
            assert!(
                chitchat.live_nodes_watcher().borrow().is_empty(),
                "a copy of every live node's state, made each round"
            );
            break;
        }
        drop(chitchat);
        assert!(Instant::now() < deadline, "b never saw a alive");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(a);
}
