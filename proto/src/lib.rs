//! Wire formats of Chorus, with no I/O: what clients and upstreams send and
//! receive, so the actors and the HTTP layer agree on one definition.

pub mod admin;
pub mod affinity;
pub mod anthropic;
pub mod cache;
pub mod chat;
pub mod codec;
pub mod counter;
pub mod endpoint;
pub mod error;
pub mod format;
#[cfg(test)]
mod fuzz;
pub mod gossip;
pub mod mock;
pub mod responses;
pub mod rewrite;
pub mod sse;
pub mod usage;

pub use chat::{ChatRequest, RequestError, UpstreamBody};
pub use endpoint::Endpoint;
pub use error::{ErrorBody, ErrorDetail, ErrorType};
pub use format::ApiFormat;
pub use usage::{CacheRates, Price, Usage};
