//! New gateway keys and admin ids, from the operating system's random
//! source. A key is 256 random bits: it is kept only as its SHA-256, which
//! is safe for keys this long (see `http/auth.rs`).

use crate::config::sha256;

/// A new gateway key, `ck-` and 64 hex digits, and its SHA-256.
pub fn new_key() -> Result<(String, [u8; 32]), getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    let key = format!("ck-{}", hex::encode(bytes));
    let hash = sha256(&key);
    Ok((key, hash))
}

/// A new id for a `kind` of register: `key_` or `team_` and 16 hex digits.
/// 64 random bits: ids never repeat, so a deletion can win over any write.
pub fn new_id(kind: &str) -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes)?;
    Ok(format!("{kind}_{}", hex::encode(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_ids_are_fresh_and_shaped() {
        let (key, hash) = new_key().unwrap();
        let (other, _) = new_key().unwrap();
        assert!(key.starts_with("ck-") && key.len() == 67, "{key}");
        assert_ne!(key, other);
        assert_eq!(hash, sha256(&key));
        let id = new_id("team").unwrap();
        assert!(id.starts_with("team_") && id.len() == 21, "{id}");
    }
}
