//! The chitchat keys each node writes about itself. Values are strings,
//! kept small: a value that does not fit one gossip packet stalls the node.

/// `host:port` of the node's HTTP API.
pub const HTTP_ADDR: &str = "http_addr";
/// The `chorus` version the node runs.
pub const VERSION: &str = "version";
/// When the node started, in ms since the Unix epoch.
pub const STARTED_MS: &str = "started_ms";
