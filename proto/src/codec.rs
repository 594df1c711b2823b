//! The one binary codec of Chorus: bincode 2 over serde, for gossip payloads
//! and stored state. Decoding is bounded, so a garbage or hostile payload
//! fails with an error instead of allocating without limit.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Largest payload `decode` accepts. Gossip values stay far below this.
pub const MAX_DECODED_BYTES: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("cannot encode: {0}")]
    Encode(#[from] bincode::error::EncodeError),
    #[error("cannot decode: {0}")]
    Decode(#[from] bincode::error::DecodeError),
    #[error("{0} trailing bytes after the value")]
    TrailingBytes(usize),
}

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_DECODED_BYTES>()
}

pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    Ok(bincode::serde::encode_to_vec(value, config())?)
}

/// Decodes exactly one value: trailing bytes are an error too, since they
/// mean the payload is not what the sender encoded.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (value, read) = bincode::serde::decode_from_slice(bytes, config())?;
    match bytes.len() - read {
        0 => Ok(value),
        extra => Err(CodecError::TrailingBytes(extra)),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn round_trips() {
        let value: BTreeMap<String, u64> =
            [("node-a".to_owned(), 7), ("node-b".to_owned(), 1 << 40)].into();
        let bytes = encode(&value).unwrap();
        assert_eq!(decode::<BTreeMap<String, u64>>(&bytes).unwrap(), value);
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(
            decode::<BTreeMap<String, u64>>(&longer),
            Err(CodecError::TrailingBytes(1))
        ));
    }

    proptest! {
        #[test]
        fn garbage_is_an_error_not_a_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode::<BTreeMap<String, u64>>(&bytes);
            let _ = decode::<Vec<(String, Vec<u8>)>>(&bytes);
        }
    }
}
