//! How nodes prove to each other over HTTP that a call comes from a
//! member of the cluster: the `x-chorus-peer` header carries the calling
//! node's id, its clock, the SHA-256 of the body and an HMAC-SHA256, with
//! the cluster secret, over those, the node called and the call (method,
//! path). No client key or admin token ever travels between nodes.
//!
//! The header is checked before the body is read, so a stranger cannot
//! make a node take in a large body; the body is then checked against its
//! hash. The seal binds the call to its receiver and to [`MAX_SKEW`] of
//! its time, not to a connection: a captured call can be sent again to
//! the same node within that time, where peer calls are idempotent (a
//! stored item written twice is the same item). Calls are not encrypted.

use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// The header a peer call carries: `<node id> <ms> <hex body SHA-256>
/// <hex MAC>`.
pub const PEER_HEADER: &str = "x-chorus-peer";

/// How far a peer's clock, plus the call's time in flight, may be from
/// this node's.
pub const MAX_SKEW: Duration = Duration::from_secs(30);

/// Signs this node's peer calls and checks its peers'.
#[derive(Clone)]
pub struct PeerAuth {
    node_id: String,
    /// Keyed with the cluster secrets: the first one signs; all are
    /// accepted, as for gossip.
    keys: Vec<HmacSha256>,
}

/// Hand-written so the secrets never reach a log.
impl std::fmt::Debug for PeerAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerAuth")
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

/// A call whose seal checked out: who made it, and the hash its body must
/// have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub from: String,
    body_sha256: [u8; 32],
}

impl Sealed {
    /// Whether `body` is the one the call was sealed with.
    pub fn carries(&self, body: &[u8]) -> bool {
        <[u8; 32]>::from(Sha256::digest(body)) == self.body_sha256
    }
}

/// What a seal covers besides the secret.
struct Covered<'a> {
    from: &'a str,
    to: &'a str,
    sent_ms: u64,
    method: &'a str,
    path: &'a str,
    body_sha256: &'a [u8; 32],
}

impl PeerAuth {
    pub fn new(node_id: String, secrets: &[String]) -> anyhow::Result<Self> {
        let keys = secrets
            .iter()
            .map(|secret| HmacSha256::new_from_slice(secret.as_bytes()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| anyhow::anyhow!("a cluster secret cannot key HMAC-SHA256"))?;
        Ok(PeerAuth { node_id, keys })
    }

    /// The header value for a call to node `to` of `method` on `path` with
    /// `body`, made at `now_ms`.
    pub fn sign(&self, to: &str, method: &str, path: &str, body: &[u8], now_ms: u64) -> String {
        let body_sha256: [u8; 32] = Sha256::digest(body).into();
        let covered = Covered {
            from: &self.node_id,
            to,
            sent_ms: now_ms,
            method,
            path,
            body_sha256: &body_sha256,
        };
        let mac = self.keys.first().map_or_else(String::new, |key| {
            hex::encode(mac(key, &covered).finalize().into_bytes())
        });
        format!(
            "{} {now_ms} {} {mac}",
            self.node_id,
            hex::encode(body_sha256)
        )
    }

    /// The call `header` seals, when it was made to this node, for
    /// `method` on `path`, with an accepted secret, within [`MAX_SKEW`] of
    /// `now_ms`. Its body is still to be checked with [`Sealed::carries`].
    pub fn verify(&self, header: &str, method: &str, path: &str, now_ms: u64) -> Option<Sealed> {
        let mut parts = header.split(' ');
        let (from, sent_ms, body_sha256, tag) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let sent_ms: u64 = sent_ms.parse().ok()?;
        if parts.next().is_some() || now_ms.abs_diff(sent_ms) > MAX_SKEW.as_millis() as u64 {
            return None;
        }
        let body_sha256: [u8; 32] = hex::decode(body_sha256).ok()?.try_into().ok()?;
        let tag = hex::decode(tag).ok()?;
        let covered = Covered {
            from,
            to: &self.node_id,
            sent_ms,
            method,
            path,
            body_sha256: &body_sha256,
        };
        self.keys
            .iter()
            .any(|key| mac(key, &covered).verify_slice(&tag).is_ok())
            .then(|| Sealed {
                from: from.to_owned(),
                body_sha256,
            })
    }
}

/// The MAC of `covered` under `key`, each part length-prefixed so no two
/// calls feed the same bytes.
fn mac(key: &HmacSha256, covered: &Covered<'_>) -> HmacSha256 {
    let mut mac = key.clone();
    for part in [
        b"chorus-peer".as_slice(),
        covered.from.as_bytes(),
        covered.to.as_bytes(),
        covered.sent_ms.to_string().as_bytes(),
        covered.method.as_bytes(),
        covered.path.as_bytes(),
        covered.body_sha256,
    ] {
        mac.update(&(part.len() as u64).to_be_bytes());
        mac.update(part);
    }
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(node_id: &str, secrets: &[&str]) -> PeerAuth {
        let secrets: Vec<String> = secrets.iter().map(|s| (*s).to_owned()).collect();
        PeerAuth::new(node_id.into(), &secrets).unwrap()
    }

    #[test]
    fn a_signed_call_verifies_only_as_it_was_made() {
        let a = auth("node-a", &["secret-one-0123456"]);
        let b = auth("node-b", &["secret-two-0123456", "secret-one-0123456"]);
        let c = auth("node-c", &["secret-one-0123456"]);
        let header = a.sign("node-b", "POST", "/peer/items", b"body", 100_000);
        let sealed = b
            .verify(&header, "POST", "/peer/items", 101_000)
            .expect("an accepted secret");
        assert_eq!(sealed.from, "node-a");
        assert!(sealed.carries(b"body"));
        assert!(!sealed.carries(b"bodY"), "another body");
        assert_eq!(b.verify(&header, "GET", "/peer/items", 100_000), None);
        assert_eq!(b.verify(&header, "POST", "/peer/other", 100_000), None);
        assert_eq!(
            b.verify(&header, "POST", "/peer/items", 130_001),
            None,
            "too old"
        );
        assert_eq!(
            c.verify(&header, "POST", "/peer/items", 100_000),
            None,
            "made to another node"
        );
        let renamed = header.replacen("node-a", "node-c", 1);
        assert_eq!(b.verify(&renamed, "POST", "/peer/items", 100_000), None);
        let parts: Vec<&str> = header.split(' ').collect();
        let other_hash = hex::encode(Sha256::digest(b"other"));
        let swapped = [parts[0], parts[1], &other_hash, parts[3]].join(" ");
        assert_eq!(
            b.verify(&swapped, "POST", "/peer/items", 100_000),
            None,
            "another body's hash under this MAC"
        );
        let stranger = auth("node-x", &["another-secret-99"]);
        let forged = stranger.sign("node-b", "POST", "/peer/items", b"body", 100_000);
        assert_eq!(b.verify(&forged, "POST", "/peer/items", 100_000), None);
        assert_eq!(b.verify("garbage", "POST", "/peer/items", 0), None);
    }
}
