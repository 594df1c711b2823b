//! The chitchat keys each node writes about itself. Values are strings,
//! kept small: a value that does not fit one gossip packet stalls the node.

use chorus_proto::codec;
use chorus_proto::gossip::DeploymentReport;

/// `host:port` of the node's HTTP API.
pub const HTTP_ADDR: &str = "http_addr";
/// The `chorus` version the node runs.
pub const VERSION: &str = "version";
/// When the node started, in ms since the Unix epoch.
pub const STARTED_MS: &str = "started_ms";

/// Prefix of a counter contribution: `c:<contributing node>:<counter>`.
/// Node ids cannot contain `:` (config validation sees to it).
const COUNTER_PREFIX: &str = "c:";

pub fn counter_key(contributor: &str, counter: &str) -> String {
    format!("{COUNTER_PREFIX}{contributor}:{counter}")
}

/// (contributing node, counter) of a counter key.
pub fn counter_of(key: &str) -> Option<(&str, &str)> {
    key.strip_prefix(COUNTER_PREFIX)?.split_once(':')
}

/// Prefix of a node's report on one deployment: `deployment:<provider/model>`.
const DEPLOYMENT_PREFIX: &str = "deployment:";

pub fn deployment_key(deployment: &str) -> String {
    format!("{DEPLOYMENT_PREFIX}{deployment}")
}

/// The deployment a key reports on, if it is a deployment key.
pub fn deployment_of(key: &str) -> Option<&str> {
    key.strip_prefix(DEPLOYMENT_PREFIX)
}

/// Reports travel as hex of their bincode encoding: chitchat values are strings.
pub fn encode_report(report: &DeploymentReport) -> String {
    codec::encode(report).map(hex::encode).unwrap_or_default()
}

/// `None` for a value that is not a report (an older or newer node's format).
pub fn decode_report(value: &str) -> Option<DeploymentReport> {
    codec::decode(&hex::decode(value).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_round_trip_and_garbage_is_ignored() {
        let report = DeploymentReport {
            in_flight: 3,
            finished: 1 << 40,
            latency_ms: Some(12.5),
            ..DeploymentReport::default()
        };
        assert_eq!(decode_report(&encode_report(&report)), Some(report));
        assert_eq!(decode_report("zz"), None);
        assert_eq!(decode_report("00"), None);
        assert_eq!(deployment_of(&deployment_key("p/m")), Some("p/m"));
        assert_eq!(deployment_of(HTTP_ADDR), None);
        assert_eq!(
            counter_of(&counter_key("node-1", "calls/p/m:x")),
            Some(("node-1", "calls/p/m:x"))
        );
        assert_eq!(counter_of(&deployment_key("p/m")), None);
    }
}
