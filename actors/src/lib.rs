//! The supervised actors of a Chorus node and the state they share.
//!
//! ```text
//! NodeSupervisor
//!  ├─ DeploymentActor   one per provider deployment: latency EWMAs, failure run;
//!  │                    restarted from its last published figures if it fails
//!  ├─ LedgerActor       with storage: flushes the counters' changes in batches
//!  └─ GossipActor       in a cluster: merges what every node publishes into the
//!                       ledger, the cluster views and the admin registry,
//!                       publishes this node's
//! RequestActor          one per request: choose deployment → call provider →
//!                       record → answer → log
//! ```
//!
//! Shared state outside the actors, read by the request path without a
//! message hop: the [`Ledger`] (cluster counters) and the [`AdminRegistry`]
//! (virtual keys and teams, last-writer-wins registers).
//!
//! Request actors are not linked to the supervisor: each lives exactly as
//! long as its request, and a failure ends only that request (its client
//! gets a 503, its in-flight guard is dropped). Linking them would add two
//! supervision messages per request to one actor for no recovery to make.
//! A [`RequestTracker`] counts them instead, so shutdown can wait for the
//! last one to record its call.
//!
//! Nothing here knows HTTP, chitchat or RocksDB: providers are reached
//! through the [`Provider`] trait, gossip through [`GossipBus`] and storage
//! through [`LedgerStore`] and [`AdminStore`], which the `node` crate
//! implements.

pub mod admin;
pub mod clock;
pub mod cluster_view;
pub mod deployment;
pub mod error;
pub mod estimate;
pub mod ewma;
pub mod gossip;
pub mod ledger;
pub mod limits;
pub mod observe;
pub mod provider;
pub mod request;
pub mod routes;
pub mod routing;
pub mod stats;
pub mod supervisor;
#[cfg(test)]
mod testing;
pub mod tracker;

pub use admin::{AdminError, AdminRegistry, AdminStore, KeyEntry, TeamEntry};
pub use cluster_view::NodeReport;
pub use deployment::{CallEnded, CallOutcome, DeploymentHandle, DeploymentSpec, Quota};
pub use error::{CallError, RequestError};
pub use gossip::{GossipArgs, GossipBus, GossipRead};
pub use ledger::{Contribution, Ledger, LedgerArgs, LedgerStore, RunId, StoreChange, StoreError};
pub use limits::{Admission, Holder, Limiter, Refusal, Reservation};
pub use observe::{FinishedRequest, RequestObserver, Unobserved};
pub use provider::{EventStream, Fit, Provider, ProviderError, UpstreamCall, UpstreamReply};
pub use request::{Reply, ReplyBody, RequestActor, RequestArgs, UsageChunk};
pub use routes::{AliasRoute, RouteOptions, Routes};
pub use stats::{ClusterDeploymentStats, DeploymentStats, Health};
pub use supervisor::{NodeSupervisor, SupervisorArgs, SupervisorHandle};
pub use tracker::RequestTracker;
