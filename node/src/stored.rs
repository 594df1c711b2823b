//! Stored responses and conversations, cluster-wide: the Responses API's
//! server-side memory (`store`, `previous_response_id`, conversations).
//!
//! An item is a JSON body with its owner (the key that made it) and its
//! expiry, under a text key. Each is written to the [`COPIES`] nodes that
//! rank first for its *place* (the response's or conversation's id) by
//! rendezvous hashing over the live members, before the client's answer
//! ends, so it outlives any one node. A node that does not hold an item
//! asks the ranked holders over the authenticated peer API
//! (`POST /peer/items`). Membership comes from gossip; the bodies never
//! travel in it, they are far too large.
//!
//! Items are written once and then only deleted. A deletion is itself an
//! item (no body) kept as long as the item would have been, and wins over
//! a copy that missed it, so a holder that was away cannot bring a
//! deleted item back.

pub mod placement;
pub mod records;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chorus_actors::clock::unix_millis;
use chorus_actors::StoreError;
use futures::future::join_all;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::cluster::Cluster;
use crate::peer_auth::{PeerAuth, PEER_HEADER};
use crate::storage::ItemStore;
use placement::{ranked, Holder};

/// Nodes that hold each item.
pub const COPIES: usize = 2;
/// Peers a read asks at once: one more than the holders, for a member
/// that joined since the write.
const READ_FANOUT: usize = COPIES + 1;
/// How long a peer has to answer.
const PEER_TIMEOUT: Duration = Duration::from_secs(2);
/// The peer API's path.
pub const PEER_PATH: &str = "/peer/items";

/// A stored response, conversation or conversation turn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    /// Who may read and delete it: [`crate::http::Caller::owner`].
    pub owner: String,
    /// Ms since the Unix epoch.
    pub expires_ms: u64,
    /// `None` once deleted.
    pub body: Option<Value>,
}

/// A call of the peer API.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum PeerCall {
    Put { key: String, item: Item },
    Get { key: String },
    Scan { prefix: String },
}

/// What the peer API answers: the item asked for, or those scanned.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct PeerAnswer {
    #[serde(default)]
    pub item: Option<Item>,
    #[serde(default)]
    pub items: Vec<(String, Item)>,
}

/// How this node reaches the others.
pub struct Peers {
    pub cluster: Arc<Cluster>,
    pub client: reqwest::Client,
    pub auth: PeerAuth,
}

pub struct Stored {
    items: ItemStore,
    ttl: Duration,
    /// `None` when the node runs alone: it holds everything itself.
    peers: Option<Peers>,
    /// Held while a copy is merged into the store.
    writing: Mutex<()>,
}

impl Stored {
    pub fn new(items: ItemStore, ttl: Duration, peers: Option<Peers>) -> Self {
        Stored {
            items,
            ttl,
            peers,
            writing: Mutex::new(()),
        }
    }

    /// When an item made now expires.
    pub fn expires_ms(&self) -> u64 {
        unix_millis().saturating_add(self.ttl.as_millis() as u64)
    }

    /// What checks peers' calls; `None` when the node runs alone.
    pub fn auth(&self) -> Option<&PeerAuth> {
        self.peers.as_ref().map(|peers| &peers.auth)
    }

    /// Writes `item` under `key` to the holders of `place`. Succeeds when
    /// at least one copy is written; one that could not be is logged.
    pub async fn put(&self, place: &str, key: &str, item: &Item) -> anyhow::Result<()> {
        let holders: Vec<Holder> = self.members(place).into_iter().take(COPIES).collect();
        let writes = holders.iter().map(|holder| async move {
            let written = match &holder.http_addr {
                None => self.put_local(key, item).map_err(anyhow::Error::from),
                Some(_) => self
                    .ask(
                        holder,
                        &PeerCall::Put {
                            key: key.to_owned(),
                            item: item.clone(),
                        },
                    )
                    .await
                    .map(drop),
            };
            if let Err(error) = &written {
                tracing::warn!(node_id = %holder.node_id, %error, "a stored item's copy was not written");
            }
            written.is_ok()
        });
        let written = join_all(writes).await.into_iter().filter(|ok| *ok).count();
        if written > 0 {
            return Ok(());
        }
        let held_here = holders.iter().any(|holder| holder.http_addr.is_none());
        if held_here {
            anyhow::bail!("no copy of the item could be written");
        }
        // Better here than nowhere: reads ask this node too once it ranks.
        tracing::warn!("no holder took a stored item; keeping it on this node");
        Ok(self.put_local(key, item)?)
    }

    /// The item under `key`: this node's copy merged with those of the
    /// first [`READ_FANOUT`] members ranked for `place`, asked at once, so
    /// a deletion any of them saw wins.
    pub async fn get(&self, place: &str, key: &str) -> Option<Item> {
        let call = PeerCall::Get {
            key: key.to_owned(),
        };
        let holders: Vec<Holder> = self.remote_members(place).take(READ_FANOUT).collect();
        let answers = join_all(holders.iter().map(|holder| self.ask(holder, &call))).await;
        let remote = answers.into_iter().filter_map(|answer| answer.ok()?.item);
        self.get_local(key).into_iter().chain(remote).reduce(newest)
    }

    /// Every item whose key starts with `prefix`, from this node and the
    /// first [`READ_FANOUT`] members ranked for `place`, in key order: the
    /// union of their copies, where a deletion wins.
    pub async fn scan(&self, place: &str, prefix: &str) -> Vec<(String, Item)> {
        let call = PeerCall::Scan {
            prefix: prefix.to_owned(),
        };
        let holders: Vec<Holder> = self.remote_members(place).take(READ_FANOUT).collect();
        let answers = join_all(holders.iter().map(|holder| self.ask(holder, &call))).await;
        let remote = answers
            .into_iter()
            .filter_map(Result::ok)
            .flat_map(|answer| answer.items);
        let mut merged: BTreeMap<String, Item> = BTreeMap::new();
        for (key, item) in self.scan_local(prefix).into_iter().chain(remote) {
            let kept = match merged.remove(&key) {
                Some(held) => newest(held, item),
                None => item,
            };
            merged.insert(key, kept);
        }
        merged.into_iter().collect()
    }

    /// What this node answers a peer.
    pub fn answer(&self, call: PeerCall) -> Result<PeerAnswer, StoreError> {
        Ok(match call {
            PeerCall::Put { key, item } => {
                self.put_local(&key, &item)?;
                PeerAnswer::default()
            }
            PeerCall::Get { key } => PeerAnswer {
                item: self.get_local(&key),
                ..PeerAnswer::default()
            },
            PeerCall::Scan { prefix } => PeerAnswer {
                items: self.scan_local(&prefix),
                ..PeerAnswer::default()
            },
        })
    }

    fn put_local(&self, key: &str, item: &Item) -> Result<(), StoreError> {
        // Read, merge and write as one, or a write could undo a deletion.
        let _writing = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        let item = match self.get_local(key) {
            // An id is its maker's: nobody else's write replaces it.
            Some(held) if held.owner != item.owner => return Ok(()),
            Some(held) => newest(held, item.clone()),
            None => item.clone(),
        };
        let body = serde_json::to_vec(&item).map_err(|e| StoreError {
            action: "encode a stored item for",
            source: Box::new(e),
        })?;
        self.items.put(key, &body, item.expires_ms, unix_millis())
    }

    fn get_local(&self, key: &str) -> Option<Item> {
        match self.items.get(key, unix_millis()) {
            Ok(found) => found.and_then(|bytes| serde_json::from_slice(&bytes).ok()),
            Err(error) => {
                tracing::warn!(%error, "a stored item could not be read");
                None
            }
        }
    }

    fn scan_local(&self, prefix: &str) -> Vec<(String, Item)> {
        match self.items.scan(prefix, unix_millis()) {
            Ok(found) => found
                .into_iter()
                .filter_map(|(key, bytes)| Some((key, serde_json::from_slice(&bytes).ok()?)))
                .collect(),
            Err(error) => {
                tracing::warn!(%error, "stored items could not be read");
                Vec::new()
            }
        }
    }

    /// The live members, this node among them, ranked for `place`.
    fn members(&self, place: &str) -> Vec<Holder> {
        let this = Holder {
            node_id: String::new(),
            http_addr: None,
        };
        let Some(peers) = &self.peers else {
            return vec![this];
        };
        let view = peers.cluster.view();
        let mut members: Vec<Holder> = view
            .members
            .iter()
            .filter(|member| member.alive && !member.is_self)
            .filter_map(|member| {
                Some(Holder {
                    node_id: member.node_id.clone(),
                    http_addr: Some(member.http_addr.clone()?),
                })
            })
            .collect();
        members.push(Holder {
            node_id: peers.cluster.self_node_id().to_owned(),
            ..this
        });
        ranked(place, members)
    }

    /// The other live members, ranked for `place`.
    fn remote_members(&self, place: &str) -> impl Iterator<Item = Holder> {
        self.members(place)
            .into_iter()
            .filter(|holder| holder.http_addr.is_some())
    }

    async fn ask(&self, holder: &Holder, call: &PeerCall) -> anyhow::Result<PeerAnswer> {
        let (Some(peers), Some(address)) = (&self.peers, &holder.http_addr) else {
            anyhow::bail!("no peer to ask");
        };
        let body = serde_json::to_vec(call)?;
        let seal = peers
            .auth
            .sign(&holder.node_id, "POST", PEER_PATH, &body, unix_millis());
        let response = peers
            .client
            .post(format!("http://{address}{PEER_PATH}"))
            .timeout(PEER_TIMEOUT)
            .header(PEER_HEADER, seal)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await?
            .error_for_status()?;
        Ok(response.json().await?)
    }
}

/// Of two copies of one item, the one to keep: a deletion over the item,
/// else the later expiry.
fn newest(held: Item, other: Item) -> Item {
    match (&held.body, &other.body) {
        (None, Some(_)) => held,
        (Some(_), None) => other,
        _ if other.expires_ms > held.expires_ms => other,
        _ => held,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(body: Option<Value>, expires_ms: u64) -> Item {
        Item {
            owner: "key:k".into(),
            expires_ms,
            body,
        }
    }

    #[test]
    fn a_deletion_wins_over_any_copy_of_the_item() {
        let live = item(Some(serde_json::json!({"id": "resp_1"})), 9_000);
        let deleted = item(None, 5_000);
        assert_eq!(newest(live.clone(), deleted.clone()), deleted);
        assert_eq!(newest(deleted.clone(), live.clone()), deleted);
        assert_eq!(
            newest(live.clone(), item(live.body.clone(), 10_000)).expires_ms,
            10_000
        );
    }

    #[tokio::test]
    async fn a_lone_node_holds_what_it_stores_deletions_stick_and_ids_stay_their_makers() {
        let dir = crate::testing::scratch_dir("stored");
        let storage = Arc::new(crate::storage::Storage::open(&dir).unwrap());
        let stored = Stored::new(ItemStore::new(storage), Duration::from_secs(60), None);
        let live = item(Some(serde_json::json!({"n": 1})), stored.expires_ms());
        stored
            .put("conv_1", "conversation.conv_1.turn.1", &live)
            .await
            .unwrap();
        stored
            .put("conv_1", "conversation.conv_1.turn.2", &live)
            .await
            .unwrap();
        assert_eq!(
            stored.get("conv_1", "conversation.conv_1.turn.1").await,
            Some(live.clone())
        );
        let deleted = item(None, stored.expires_ms());
        stored
            .put("conv_1", "conversation.conv_1.turn.1", &deleted)
            .await
            .unwrap();
        stored
            .put("conv_1", "conversation.conv_1.turn.1", &live)
            .await
            .unwrap();
        let taken = Item {
            owner: "key:someone-else".into(),
            ..item(Some(serde_json::json!({"n": 2})), stored.expires_ms())
        };
        stored
            .put("conv_1", "conversation.conv_1.turn.2", &taken)
            .await
            .unwrap();
        let scanned = stored.scan("conv_1", "conversation.conv_1.turn.").await;
        assert_eq!(
            scanned,
            [
                ("conversation.conv_1.turn.1".to_owned(), deleted),
                ("conversation.conv_1.turn.2".to_owned(), live)
            ]
        );
    }
}
