//! `[[keys]]`: bootstrap gateway keys, hashed with SHA-256 as they are read.

use std::collections::HashSet;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::checker::Checker;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKey {
    /// A label for logs; never the key itself.
    pub name: String,
    /// The key clients send as `Authorization: Bearer`. `${VAR}` allowed.
    pub key: String,
}

#[derive(Debug, Clone)]
pub struct KeyConfig {
    pub name: String,
    pub sha256: [u8; 32],
}

pub fn sha256(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

pub fn check(raw: &[RawKey], checker: &mut Checker) -> Vec<KeyConfig> {
    let mut keys = Vec::with_capacity(raw.len());
    let mut hashes = HashSet::new();
    for (index, key) in raw.iter().enumerate() {
        let field = format!("keys[{index}].key");
        let Some(clear) = checker.expand(&field, &key.key) else {
            continue;
        };
        if clear.is_empty() {
            checker.problem(field, "must not be empty");
            continue;
        }
        let sha256 = sha256(&clear);
        if !hashes.insert(sha256) {
            checker.problem(
                field,
                format!("key `{}` has the same value as an earlier key", key.name),
            );
            continue;
        }
        keys.push(KeyConfig {
            name: key.name.clone(),
            sha256,
        });
    }
    keys
}
