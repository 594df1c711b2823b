//! Fuzz target (bolero) for the gossip intake: whatever datagrams arrive,
//! sealed right or wrong, fragmented consistently or not, replayed, late or
//! from the wrong address, [`Intake::accept`] answers with a message or a
//! counted drop: never a panic, and never more held than its budgets.
//! Random bytes would almost never open, so the input is a recipe: one
//! byte picks what each datagram is, the next ones its header fields and
//! payload. See `proto/src/fuzz.rs` for how the targets run.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bolero::check;

use super::fragments::MAX_FRAGMENTS;
use super::intake::Intake;
use super::seal::{Header, Sealer};
use super::{GossipCounters, MAX_PIECE};

const NOW_MS: u64 = 1_800_000_000_000;

fn sealer(secret: &str, cluster: &str) -> Sealer {
    Sealer::new(&[secret.to_owned()], cluster).expect("a test secret keys HMAC")
}

#[test]
fn datagrams() {
    let us: SocketAddr = "127.0.0.1:7000".parse().expect("an address");
    let peer: SocketAddr = "127.0.0.1:7001".parse().expect("an address");
    let stranger: SocketAddr = "[::1]:7002".parse().expect("an address");
    let ours = sealer("fuzz-cluster-secret-0123456789", "fuzz");
    let theirs = sealer("another-cluster-secret-987654", "fuzz");
    check!().for_each(|input: &[u8]| {
        let counters = Arc::new(GossipCounters::default());
        let mut intake = Intake::new(ours.clone(), vec![us], counters.clone());
        let mut bytes = input.iter().copied();
        let mut next = || bytes.next().unwrap_or(0);
        let mut now = NOW_MS;
        let (mut sent, mut delivered) = (0, 0);
        while sent < 64 {
            let kind = next();
            if kind == 0 && sent > 0 {
                break;
            }
            sent += 1;
            now += u64::from(next()) * 100;
            let header = Header {
                sender: if next() % 4 == 0 { stranger } else { peer },
                sent_at_ms: (now + u64::from(next()) * 1_000).saturating_sub(60_000),
                sequence: u64::from(next() % 32),
                fragment: next() % (MAX_FRAGMENTS as u8 + 2),
                fragments: next() % (MAX_FRAGMENTS as u8 + 2),
            };
            let payload: Vec<u8> = (0..next() % 64).map(|_| next()).collect();
            let from = if next() % 8 == 0 {
                stranger
            } else {
                header.sender
            };
            let datagram = match kind % 5 {
                0..=2 => ours.seal(&header, us, &payload),
                3 => theirs.seal(&header, us, &payload),
                _ => {
                    let mut sealed = ours.seal(&header, us, &payload);
                    let at = usize::from(next()) % sealed.len();
                    sealed[at] ^= next() | 1;
                    sealed
                }
            };
            if let Some(message) = intake.accept(&datagram, from, now) {
                assert!(message.len() <= MAX_FRAGMENTS * MAX_PIECE);
                delivered += 1;
            }
        }
        // Each datagram is delivered, waits, or is dropped once.
        let dropped = counters.dropped() - counters.incomplete.load(Ordering::Relaxed);
        assert!(
            dropped + delivered <= sent,
            "{dropped} dropped, {delivered} delivered of {sent}"
        );
    });
}
