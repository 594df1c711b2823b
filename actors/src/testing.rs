//! Test doubles shared by the actors' unit tests.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chorus_proto::Price;
use futures::future::BoxFuture;

use crate::deployment::{DeploymentHandle, DeploymentSpec, Quota};
use crate::ledger::{Ledger, RunId};
use crate::provider::{Provider, ProviderError, UpstreamCall, UpstreamReply};
use crate::routing::breaker::BreakerPolicy;

/// Answers every call at once with a fixed completion of model `upstream`.
pub struct Canned;

impl Provider for Canned {
    fn send(&self, _: UpstreamCall) -> BoxFuture<'static, Result<UpstreamReply, ProviderError>> {
        let body = br#"{"model":"upstream","usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}"#;
        Box::pin(async { Ok(UpstreamReply::Complete(Bytes::from_static(body))) })
    }
}

/// A ledger for run 1 of `node_id`, with nothing stored.
pub fn ledger(node_id: &str) -> Ledger {
    Ledger::new(
        RunId {
            node_id: node_id.into(),
            generation: 1,
        },
        Vec::new(),
    )
}

/// A deployment named `name` on the [`Canned`] provider, counting into `ledger`.
pub fn deployment(name: &str, ledger: &Ledger) -> DeploymentHandle {
    DeploymentHandle::new(spec(name), Arc::new(Canned), ledger)
}

/// A deployment at these prices, in micro-dollars per million tokens.
pub fn priced(name: &str, input: u64, output: u64) -> DeploymentHandle {
    let spec = DeploymentSpec {
        price: Price {
            input_micros_per_mtok: input,
            output_micros_per_mtok: output,
            ..Price::default()
        },
        ..spec(name)
    };
    DeploymentHandle::new(spec, Arc::new(Canned), &ledger("test"))
}

/// A deployment under these quotas, counting into `ledger`.
pub fn with_quota(name: &str, quota: Quota, ledger: &Ledger) -> DeploymentHandle {
    let spec = DeploymentSpec {
        quota,
        ..spec(name)
    };
    DeploymentHandle::new(spec, Arc::new(Canned), ledger)
}

fn spec(name: &str) -> DeploymentSpec {
    DeploymentSpec {
        name: name.into(),
        provider: "canned".into(),
        upstream_model: "upstream".into(),
        price: Price::default(),
        timeout: Duration::from_secs(5),
        quota: Quota::default(),
        breaker: BreakerPolicy::default(),
    }
}
