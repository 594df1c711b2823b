//! The supervised actors of a Chorus node and the state they share.
//!
//! ```text
//! NodeSupervisor
//!  ├─ DeploymentActor   one per provider deployment: in-flight, latency EWMAs, errors
//!  └─ RequestActor      one per request: choose deployment → call provider → report → log
//! ```
//!
//! Nothing here knows HTTP: providers are reached through the [`Provider`]
//! trait, which the `node` crate implements with reqwest and the built-in mock.

pub mod balance;
pub mod counter;
pub mod deployment;
pub mod error;
pub mod ewma;
pub mod provider;
pub mod request;
pub mod routes;
pub mod supervisor;

pub use deployment::{DeploymentHandle, DeploymentSpec, DeploymentStats};
pub use error::CallError;
pub use provider::{EventStream, Provider, ProviderError, UpstreamCall, UpstreamReply};
pub use request::{Reply, ReplyBody, RequestActor, RequestArgs};
pub use routes::{AliasRoute, Routes};
pub use supervisor::{NodeSupervisor, SupervisorHandle};
