//! How nodes prove to each other over HTTP that a call comes from a
//! member of the cluster: the `x-chorus-peer` header carries the calling
//! node's id, its clock and an HMAC-SHA256, with the cluster secret, over
//! both and the call itself (method, path and query, SHA-256 of the body).
//! No client key or admin token ever travels between nodes.
//!
//! The seal binds the request, not the connection: a captured call can be
//! sent again within [`MAX_SKEW`] and to the same path only, where peer
//! calls are idempotent (a stored item written twice is the same item).

use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// The header a peer call carries: `<node id> <ms> <hex MAC>`.
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

impl PeerAuth {
    pub fn new(node_id: String, secrets: &[String]) -> anyhow::Result<Self> {
        let keys = secrets
            .iter()
            .map(|secret| HmacSha256::new_from_slice(secret.as_bytes()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| anyhow::anyhow!("a cluster secret cannot key HMAC-SHA256"))?;
        Ok(PeerAuth { node_id, keys })
    }

    /// The header value for a call of `method` to `path_and_query` with
    /// `body`, made at `now_ms`.
    pub fn sign(&self, method: &str, path_and_query: &str, body: &[u8], now_ms: u64) -> String {
        let mac = self.keys.first().map_or_else(String::new, |key| {
            let mut mac = key.clone();
            feed(
                &mut mac,
                &self.node_id,
                now_ms,
                method,
                path_and_query,
                body,
            );
            hex::encode(mac.finalize().into_bytes())
        });
        format!("{} {now_ms} {mac}", self.node_id)
    }

    /// The calling node's id when `header` seals this call with an
    /// accepted secret within [`MAX_SKEW`] of `now_ms`.
    pub fn verify(
        &self,
        header: &str,
        method: &str,
        path_and_query: &str,
        body: &[u8],
        now_ms: u64,
    ) -> Option<String> {
        let mut parts = header.split(' ');
        let (node_id, sent_ms, tag) = (parts.next()?, parts.next()?, parts.next()?);
        let sent_ms: u64 = sent_ms.parse().ok()?;
        if parts.next().is_some() || now_ms.abs_diff(sent_ms) > MAX_SKEW.as_millis() as u64 {
            return None;
        }
        let tag = hex::decode(tag).ok()?;
        self.keys
            .iter()
            .any(|key| {
                let mut expected = key.clone();
                feed(
                    &mut expected,
                    node_id,
                    sent_ms,
                    method,
                    path_and_query,
                    body,
                );
                expected.verify_slice(&tag).is_ok()
            })
            .then(|| node_id.to_owned())
    }
}

fn feed(
    mac: &mut HmacSha256,
    node_id: &str,
    sent_ms: u64,
    method: &str,
    path_and_query: &str,
    body: &[u8],
) {
    let body_hash = Sha256::digest(body);
    for part in [
        b"chorus-peer".as_slice(),
        node_id.as_bytes(),
        sent_ms.to_string().as_bytes(),
        method.as_bytes(),
        path_and_query.as_bytes(),
        &body_hash,
    ] {
        mac.update(&(part.len() as u64).to_be_bytes());
        mac.update(part);
    }
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
        let header = a.sign("PUT", "/peer/items", b"body", 100_000);
        let check = |header: &str, method, path, body: &[u8], now| {
            b.verify(header, method, path, body, now)
        };
        assert_eq!(
            check(&header, "PUT", "/peer/items", b"body", 101_000).as_deref(),
            Some("node-a"),
            "an accepted secret"
        );
        assert_eq!(check(&header, "GET", "/peer/items", b"body", 100_000), None);
        assert_eq!(check(&header, "PUT", "/peer/other", b"body", 100_000), None);
        assert_eq!(check(&header, "PUT", "/peer/items", b"bodY", 100_000), None);
        assert_eq!(
            check(&header, "PUT", "/peer/items", b"body", 131_001),
            None,
            "too old"
        );
        let renamed = header.replacen("node-a", "node-c", 1);
        assert_eq!(
            check(&renamed, "PUT", "/peer/items", b"body", 100_000),
            None
        );
        let stranger = auth("node-x", &["another-secret-99"]);
        let forged = stranger.sign("PUT", "/peer/items", b"body", 100_000);
        assert_eq!(check(&forged, "PUT", "/peer/items", b"body", 100_000), None);
        assert_eq!(check("garbage", "PUT", "/peer/items", b"body", 0), None);
    }
}
