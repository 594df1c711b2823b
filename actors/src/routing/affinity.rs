//! Prompt-cache affinity: an alias with `cache_affinity` sends requests of
//! one cache identity (see [`chorus_proto::affinity`]) to the same
//! deployment, so the provider's prompt cache that the first one filled
//! serves the rest. The deployment is the identity's first by rendezvous
//! hashing over the alias's deployments: every node picks the same one
//! with nothing shared, and a deployment added or removed moves only the
//! identities that ranked it first.

use sha2::{Digest, Sha256};

use super::candidate::Target;

/// The index of the target that `identity` ranks first; `None` for no
/// targets.
pub fn preferred(targets: &[Target], identity: &[u8; 32]) -> Option<usize> {
    (0..targets.len()).max_by_key(|&index| {
        let mut hash = Sha256::new();
        hash.update(identity);
        hash.update(targets[index].deployment.name().as_bytes());
        <[u8; 32]>::from(hash.finalize())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{deployment, ledger};

    fn targets(names: &[&str]) -> Vec<Target> {
        let ledger = ledger("n");
        names
            .iter()
            .map(|name| Target::from(deployment(name, &ledger)))
            .collect()
    }

    #[test]
    fn an_identity_keeps_its_deployment_and_identities_spread() {
        let two = targets(&["p/a", "p/b"]);
        let mut firsts = [0; 2];
        for n in 0..400u32 {
            let identity: [u8; 32] = Sha256::digest(n.to_be_bytes()).into();
            let first = preferred(&two, &identity).unwrap();
            assert_eq!(preferred(&two, &identity), Some(first), "stable");
            // The same names in another order rank the same.
            let swapped = targets(&["p/b", "p/a"]);
            let again = preferred(&swapped, &identity).unwrap();
            assert_eq!(
                swapped[again].deployment.name(),
                two[first].deployment.name()
            );
            firsts[first] += 1;
        }
        assert!(
            firsts.iter().all(|count| (150..250).contains(count)),
            "{firsts:?}"
        );
        assert_eq!(preferred(&[], &[0; 32]), None);
    }
}
