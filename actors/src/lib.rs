//! The supervised actors of a Chorus node and the state they share.
//!
//! ```text
//! NodeSupervisor
//!  ├─ DeploymentActor   one per provider deployment: latency EWMAs, outcome counts;
//!  │                    restarted from its last published figures if it fails
//!  ├─ LedgerActor       with storage: flushes the durable counters in batches
//!  └─ GossipActor       in a cluster: publishes this node's figures and counts,
//!                       merges every node's into the ledger and cluster views
//! RequestActor          one per request: choose deployment → call provider → report → log
//! ```
//!
//! Request actors are not linked to the supervisor: each lives exactly as
//! long as its request, and a failure ends only that request (its client
//! gets a 503, its in-flight guard is dropped). Linking them would add two
//! supervision messages per request to one actor for no recovery to make.
//!
//! Nothing here knows HTTP: providers are reached through the [`Provider`]
//! trait, which the `node` crate implements with reqwest and the built-in mock.

pub mod balance;
pub mod cluster_view;
pub mod counter;
pub mod deployment;
pub mod error;
pub mod ewma;
pub mod gossip;
pub mod ledger;
pub mod provider;
pub mod request;
pub mod routes;
pub mod supervisor;
#[cfg(test)]
mod testing;

pub use cluster_view::{ClusterDeploymentStats, NodeReport};
pub use deployment::{DeploymentHandle, DeploymentSpec, DeploymentStats, Health};
pub use error::CallError;
pub use gossip::{GossipArgs, GossipBus, GossipRead};
pub use ledger::{Contribution, ContributorId, Ledger, LedgerArgs, LedgerStore};
pub use provider::{EventStream, Provider, ProviderError, UpstreamCall, UpstreamReply};
pub use request::{Reply, ReplyBody, RequestActor, RequestArgs};
pub use routes::{AliasRoute, Routes};
pub use supervisor::{NodeSupervisor, SupervisorArgs, SupervisorHandle};
