//! Test doubles shared by the actors' unit tests.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;

use crate::deployment::{DeploymentHandle, DeploymentSpec};
use crate::ledger::Ledger;
use crate::provider::{Provider, ProviderError, UpstreamCall, UpstreamReply};

/// Answers every call at once with a fixed completion of model `upstream`.
pub struct Canned;

impl Provider for Canned {
    fn send(&self, _: UpstreamCall) -> BoxFuture<'static, Result<UpstreamReply, ProviderError>> {
        let body = br#"{"model":"upstream","usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}"#;
        Box::pin(async { Ok(UpstreamReply::Complete(Bytes::from_static(body))) })
    }
}

/// A deployment named `name` on the [`Canned`] provider, counting into `ledger`.
pub fn deployment(name: &str, ledger: Ledger) -> DeploymentHandle {
    let spec = DeploymentSpec {
        name: name.into(),
        provider: "canned".into(),
        upstream_model: "upstream".into(),
        input_per_mtok: 0.0,
        output_per_mtok: 0.0,
        timeout: Duration::from_secs(5),
    };
    DeploymentHandle::new(spec, Arc::new(Canned), ledger)
}
