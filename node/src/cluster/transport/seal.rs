//! The sealed datagram: a fixed header, then (a fragment of) a chitchat
//! message.
//!
//! ```text
//! magic      4  "CHG2"
//! cluster    8  first bytes of SHA-256 of the cluster id
//! sender    18  the sender's gossip address: IPv6 (IPv4 mapped) + port
//! sent at    8  the sender's clock, ms since the Unix epoch
//! sequence   8  per sender, increasing, never reused across restarts
//! fragment   2  index, count
//! MAC       32  HMAC-SHA256 over all of the above, the receiver's
//!               gossip address (18 bytes, as the sender's; not sent)
//!               and the payload
//! ```
//!
//! The MAC binds the payload to the sender, the receiver, the time and the
//! sequence, so a captured packet cannot be replayed from elsewhere (the
//! sender must be where the packet comes from), to another node (only the
//! node it was sent to opens it), later (the time must be recent) or twice
//! (each sequence number is taken once). Several secrets may be accepted
//! at once, the first one signing, so a secret can be rotated without a
//! partition.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

const MAGIC: [u8; 4] = *b"CHG2";
const TAG_LEN: usize = 8;
const SENDER_LEN: usize = 18;
const MAC_LEN: usize = 32;
/// Bytes before the MAC, all covered by it.
const SIGNED_HEADER_LEN: usize = MAGIC.len() + TAG_LEN + SENDER_LEN + 8 + 8 + 2;
pub const HEADER_LEN: usize = SIGNED_HEADER_LEN + MAC_LEN;

/// The facts a sealed datagram carries besides its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub sender: SocketAddr,
    pub sent_at_ms: u64,
    pub sequence: u64,
    pub fragment: u8,
    pub fragments: u8,
}

/// Why a datagram did not open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Too short, or not ours.
    Malformed,
    /// Tagged for another cluster id.
    OtherCluster,
    /// The right cluster, a MAC no accepted secret makes.
    AuthFailure,
}

/// The keys every datagram of one cluster is sealed and checked with.
#[derive(Clone)]
pub struct Sealer {
    /// The first signs; all are accepted.
    keys: Vec<HmacSha256>,
    cluster_tag: [u8; TAG_LEN],
}

impl Sealer {
    pub fn new(secrets: &[String], cluster_id: &str) -> anyhow::Result<Self> {
        anyhow::ensure!(!secrets.is_empty(), "a cluster needs a secret");
        let keys = secrets
            .iter()
            .map(|secret| HmacSha256::new_from_slice(secret.as_bytes()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| anyhow::anyhow!("a cluster secret cannot key HMAC-SHA256"))?;
        let digest = Sha256::digest(cluster_id.as_bytes());
        let mut cluster_tag = [0; TAG_LEN];
        cluster_tag.copy_from_slice(&digest[..TAG_LEN]);
        Ok(Sealer { keys, cluster_tag })
    }

    /// `payload` sealed with `header`, for the node at `receiver` alone.
    pub fn seal(&self, header: &Header, receiver: SocketAddr, payload: &[u8]) -> Vec<u8> {
        let mut datagram = Vec::with_capacity(HEADER_LEN + payload.len());
        datagram.extend_from_slice(&MAGIC);
        datagram.extend_from_slice(&self.cluster_tag);
        datagram.extend_from_slice(&address_bytes(header.sender));
        datagram.extend_from_slice(&header.sent_at_ms.to_be_bytes());
        datagram.extend_from_slice(&header.sequence.to_be_bytes());
        datagram.extend_from_slice(&[header.fragment, header.fragments]);
        let mut mac = self.keys[0].clone();
        mac.update(&datagram);
        mac.update(&address_bytes(receiver));
        mac.update(payload);
        datagram.extend_from_slice(&mac.finalize().into_bytes());
        datagram.extend_from_slice(payload);
        datagram
    }

    /// The header and payload of an authentic datagram sent to one of
    /// `receivers`, this node's own gossip addresses.
    pub fn open<'a>(
        &self,
        datagram: &'a [u8],
        receivers: &[SocketAddr],
    ) -> Result<(Header, &'a [u8]), Refused> {
        if datagram.len() < HEADER_LEN || datagram[..MAGIC.len()] != MAGIC {
            return Err(Refused::Malformed);
        }
        let (signed, rest) = datagram.split_at(SIGNED_HEADER_LEN);
        if signed[MAGIC.len()..MAGIC.len() + TAG_LEN] != self.cluster_tag {
            return Err(Refused::OtherCluster);
        }
        let (mac, payload) = rest.split_at(MAC_LEN);
        let authentic = self.keys.iter().any(|key| {
            receivers.iter().any(|receiver| {
                let mut expected = key.clone();
                expected.update(signed);
                expected.update(&address_bytes(*receiver));
                expected.update(payload);
                // `verify_slice` compares in constant time.
                expected.verify_slice(mac).is_ok()
            })
        });
        if !authentic {
            return Err(Refused::AuthFailure);
        }
        let field = |at: usize, len: usize| &signed[at..at + len];
        let number = |at: usize| {
            let mut bytes = [0; 8];
            bytes.copy_from_slice(field(at, 8));
            u64::from_be_bytes(bytes)
        };
        let sender_at = MAGIC.len() + TAG_LEN;
        let mut ip = [0; 16];
        ip.copy_from_slice(field(sender_at, 16));
        let port = u16::from_be_bytes([signed[sender_at + 16], signed[sender_at + 17]]);
        let header = Header {
            sender: SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)).to_canonical(), port),
            sent_at_ms: number(sender_at + SENDER_LEN),
            sequence: number(sender_at + SENDER_LEN + 8),
            fragment: signed[SIGNED_HEADER_LEN - 2],
            fragments: signed[SIGNED_HEADER_LEN - 1],
        };
        Ok((header, payload))
    }
}

/// An address as a seal carries it: the IP as IPv6 (IPv4 mapped), then
/// the port.
fn address_bytes(address: SocketAddr) -> [u8; SENDER_LEN] {
    let ip = match address.ip() {
        IpAddr::V4(ip) => ip.to_ipv6_mapped(),
        IpAddr::V6(ip) => ip,
    };
    let mut bytes = [0; SENDER_LEN];
    bytes[..16].copy_from_slice(&ip.octets());
    bytes[16..].copy_from_slice(&address.port().to_be_bytes());
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealer(secrets: &[&str]) -> Sealer {
        let secrets: Vec<String> = secrets.iter().map(|s| (*s).to_owned()).collect();
        Sealer::new(&secrets, "prod").unwrap()
    }

    fn receiver() -> SocketAddr {
        "10.0.0.8:7946".parse().unwrap()
    }

    fn header() -> Header {
        Header {
            sender: "10.0.0.7:7946".parse().unwrap(),
            sent_at_ms: 1_700_000_000_123,
            sequence: 42 << 20,
            fragment: 1,
            fragments: 2,
        }
    }

    #[test]
    fn sealed_datagrams_open_with_their_header() {
        let sealed = sealer(&["s3cret"]).seal(&header(), receiver(), b"hello");
        assert_eq!(sealed.len(), HEADER_LEN + 5);
        assert_eq!(
            sealer(&["s3cret"]).open(&sealed, &[receiver()]),
            Ok((header(), &b"hello"[..]))
        );
        let v6 = Header {
            sender: "[2001:db8::1]:7946".parse().unwrap(),
            ..header()
        };
        let sealed = sealer(&["s3cret"]).seal(&v6, receiver(), b"");
        assert_eq!(
            sealer(&["s3cret"]).open(&sealed, &[receiver()]).unwrap().0,
            v6
        );
    }

    #[test]
    fn only_the_node_it_was_sent_to_opens_a_datagram() {
        let sealed = sealer(&["s3cret"]).seal(&header(), receiver(), b"hello");
        let elsewhere: SocketAddr = "10.0.0.9:7946".parse().unwrap();
        assert_eq!(
            sealer(&["s3cret"]).open(&sealed, &[elsewhere]),
            Err(Refused::AuthFailure),
            "relayed to another node"
        );
        assert!(sealer(&["s3cret"])
            .open(&sealed, &[elsewhere, receiver()])
            .is_ok());
    }

    #[test]
    fn any_change_or_another_key_is_refused() {
        let sealed = sealer(&["s3cret"]).seal(&header(), receiver(), b"hello");
        for at in [20, 40, 45, 50, sealed.len() - 1] {
            let mut tampered = sealed.clone();
            tampered[at] ^= 1;
            assert_eq!(
                sealer(&["s3cret"]).open(&tampered, &[receiver()]),
                Err(Refused::AuthFailure),
                "byte {at}"
            );
        }
        assert_eq!(
            sealer(&["guess"]).open(&sealed, &[receiver()]),
            Err(Refused::AuthFailure)
        );
        let other = Sealer::new(&["s3cret".to_owned()], "staging")
            .unwrap()
            .seal(&header(), receiver(), b"hello");
        assert_eq!(
            sealer(&["s3cret"]).open(&other, &[receiver()]),
            Err(Refused::OtherCluster)
        );
        for garbage in [&b""[..], b"CHG2", &[0u8; 100][..]] {
            assert_eq!(
                sealer(&["s3cret"]).open(garbage, &[receiver()]),
                Err(Refused::Malformed)
            );
        }
    }

    #[test]
    fn during_a_rotation_both_secrets_open_and_the_first_signs() {
        let old = sealer(&["old-secret"]).seal(&header(), receiver(), b"x");
        let new = sealer(&["new-secret"]).seal(&header(), receiver(), b"x");
        let rotating = sealer(&["new-secret", "old-secret"]);
        assert!(rotating.open(&old, &[receiver()]).is_ok());
        assert!(rotating.open(&new, &[receiver()]).is_ok());
        assert!(sealer(&["old-secret"])
            .open(&rotating.seal(&header(), receiver(), b"x"), &[receiver()])
            .is_err());
        assert!(sealer(&["new-secret"]).open(&old, &[receiver()]).is_err());
    }
}
