//! Fuzz target (bolero) for the config parser: whatever a config file
//! holds, [`parse`](super::parse) gives a config or problems naming their
//! fields — never a panic. Random bytes rarely get past TOML's syntax, so
//! the input is also read as a recipe for a file made of the sections,
//! fields and kinds of values a config has. See `proto/src/fuzz.rs` for
//! how the targets run.

use std::path::Path;

use bolero::check;

const SECTIONS: [&str; 9] = [
    "[server]",
    "[[providers]]",
    "[[models]]",
    "[[keys]]",
    "[cluster]",
    "[storage]",
    "[cache]",
    "[responses]",
    "[routing]",
];

const FIELDS: [&str; 28] = [
    "name",
    "format",
    "base_url",
    "api_key",
    "alias",
    "deployments",
    "provider",
    "model",
    "listen",
    "seeds",
    "secret",
    "secrets",
    "node_id",
    "path",
    "admin_token",
    "ttl_s",
    "max_mb",
    "rpm",
    "tpm",
    "weight",
    "strategy",
    "fallbacks",
    "timeout_ms",
    "client_idle_timeout_ms",
    "key",
    "sha256",
    "output_tokens",
    "token_delay_ms",
];

const VALUES: [&str; 18] = [
    "\"mock\"",
    "\"openai\"",
    "\"anthropic\"",
    "\"http://127.0.0.1:1/v1\"",
    "\"${FUZZ_SET}\"",
    "\"${FUZZ_UNSET}\"",
    "\"127.0.0.1:0\"",
    "\"\"",
    "0",
    "-1",
    "18446744073709551615",
    "1.5",
    "true",
    "[]",
    "[\"a\", \"b\"]",
    "[{ provider = \"p\", model = \"m\", weight = 0 }]",
    "{}",
    "\"latency-based\"",
];

/// A config file from `recipe`: one byte picks a section header, a field
/// with a value, or a raw line of the next bytes.
fn file(recipe: &[u8]) -> String {
    let mut bytes = recipe.iter().copied();
    let mut text = String::new();
    while let Some(choice) = bytes.next() {
        let mut next = || usize::from(bytes.next().unwrap_or(0));
        match choice % 4 {
            0 => text.push_str(SECTIONS[next() % SECTIONS.len()]),
            1 | 2 => {
                let (field, value) = (next() % FIELDS.len(), next() % VALUES.len());
                text.push_str(&format!("{} = {}", FIELDS[field], VALUES[value]));
            }
            _ => {
                let raw: Vec<u8> = (0..next() % 16).map(|_| next() as u8).collect();
                text.push_str(&String::from_utf8_lossy(&raw));
            }
        }
        text.push('\n');
    }
    text
}

#[test]
fn config_files() {
    let lookup = |name: &str| (name == "FUZZ_SET").then(|| "set".to_owned());
    check!().for_each(|input: &[u8]| {
        let path = Path::new("fuzz.toml");
        let _ = super::parse(&String::from_utf8_lossy(input), path, &lookup);
        if let Err(error) = super::parse(&file(input), path, &lookup) {
            assert!(!error.problems.is_empty());
        }
    });
}
