//! The layout of a node's chitchat state: a few plain keys about the node,
//! and one prefix per gossip [`Section`], under which each section keeps
//! its own keys. Values are strings, kept small: a value that does not fit
//! one gossip packet stalls the node.

use chorus_actors::gossip::Section;

/// `host:port` of the node's HTTP API.
pub const HTTP_ADDR: &str = "http_addr";
/// The `chorus` version the node runs.
pub const VERSION: &str = "version";
/// When the node started, in ms since the Unix epoch.
pub const STARTED_MS: &str = "started_ms";

pub const SECTIONS: [Section; 4] = [
    Section::Deployments,
    Section::Counters,
    Section::Admin,
    Section::Load,
];

/// The prefix of a section's keys.
pub fn prefix(section: Section) -> &'static str {
    match section {
        Section::Deployments => "d:",
        Section::Counters => "c:",
        Section::Admin => "a:",
        Section::Load => "l:",
    }
}

pub fn key(section: Section, key: &str) -> String {
    format!("{}{key}", prefix(section))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_have_distinct_prefixes_that_plain_keys_do_not_use() {
        for section in SECTIONS {
            for plain in [HTTP_ADDR, VERSION, STARTED_MS] {
                assert!(!plain.starts_with(prefix(section)));
            }
            for other in SECTIONS {
                assert!(section == other || !prefix(section).starts_with(prefix(other)));
            }
        }
        assert_eq!(key(Section::Counters, "n:1:p/m"), "c:n:1:p/m");
    }
}
