//! One request's attempt plan: the stages of [`super`] for each attempt,
//! with what the request has tried so far.

use std::sync::Arc;
use std::time::Duration;

use fastrand::Rng;

use chorus_proto::ChatRequest;

use super::affinity;
use super::candidate::{Candidate, Need, Target};
use super::fallback::{FallbackKind, Fallbacks};
use super::retry::Failure;
use crate::clock::millis;
use crate::deployment::DeploymentHandle;
use crate::provider::{Fit, ProviderError};
use crate::routes::AliasRoute;

/// A 429 without `retry-after` cools its deployment down this long.
const DEFAULT_COOLDOWN: Duration = Duration::from_secs(1);
/// What a client is told to wait when no deployment is usable and none
/// says when it will be (all over their quotas).
const DEFAULT_UNAVAILABLE_WAIT_MS: u64 = 1_000;

/// The next call to make.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub deployment: DeploymentHandle,
    /// How long to wait before making it: zero unless it retries a
    /// deployment already tried, when no other was usable.
    pub wait: Duration,
}

/// No deployment of the alias could take the request now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unavailable {
    pub alias: String,
    /// When one should be usable again, as far as anyone knows.
    pub retry_after_ms: u64,
}

pub struct AttemptPlan {
    route: Arc<AliasRoute>,
    need: Need,
    /// Only deployments whose provider meets it are chosen.
    fit: Fit,
    /// Indices into the current route's targets, in the order tried.
    tried: Vec<usize>,
    /// Calls made for the request, on every alias.
    attempts: u32,
    /// Retries made on the current alias.
    retries_here: u32,
    fallbacks: Fallbacks,
    /// The aliases the request has already been on and fallen back from.
    visited: Vec<String>,
    /// The request's deadline, if it has one.
    deadline_ms: Option<u64>,
    /// The request's prompt-cache identity, read once an alias with
    /// `cache_affinity` needs it.
    identity: Option<[u8; 32]>,
    rng: Rng,
}

impl AttemptPlan {
    pub fn new(route: Arc<AliasRoute>, request: &ChatRequest, fallbacks: Fallbacks) -> Self {
        AttemptPlan {
            need: route.need(request),
            fit: Fit::of(request),
            visited: Vec::new(),
            identity: route
                .cache_affinity
                .then(|| request.cache_identity())
                .flatten(),
            route,
            tried: Vec::with_capacity(1),
            attempts: 0,
            retries_here: 0,
            fallbacks,
            deadline_ms: None,
            rng: Rng::new(),
        }
    }

    /// The alias the request is on now: its own, or a fallback.
    pub fn route(&self) -> &Arc<AliasRoute> {
        &self.route
    }

    /// Calls made or about to be made.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The first attempt's deployment: on the request's alias, or on its
    /// first fallback with a usable deployment.
    pub fn first(&mut self, request: &ChatRequest, now_ms: u64) -> Result<Attempt, Unavailable> {
        let unavailable = self.unavailable(now_ms);
        loop {
            if let Some(deployment) = self.choose(now_ms, now_ms, true) {
                return Ok(Attempt {
                    deployment,
                    wait: Duration::ZERO,
                });
            }
            if !self.fall_back(FallbackKind::General, request) {
                return Err(unavailable);
            }
        }
    }

    /// The call on `deployment` answered: its breaker hears so.
    pub fn succeeded(&self, deployment: &DeploymentHandle, now_ms: u64) {
        deployment.breaker().on_success(now_ms);
    }

    /// The call's stream broke after content reached the client: too late
    /// for another attempt, but its breaker counts it.
    pub fn broke_after_content(&self, deployment: &DeploymentHandle, now_ms: u64) {
        deployment.breaker().on_failure(now_ms);
    }

    /// No attempt is made, nor waited for, past `deadline_ms`.
    pub fn with_deadline(self, deadline_ms: Option<u64>) -> Self {
        AttemptPlan {
            deadline_ms,
            ..self
        }
    }

    /// The call on `failed` failed with `cause`: the breaker and cooldown
    /// hear of it, and the next attempt comes back — a retry on this alias
    /// while it has retries and the deployment retry budget, then the
    /// fallback chain for the failure — or `None` when the failure is the
    /// request's answer.
    pub fn after_failure(
        &mut self,
        failed: &DeploymentHandle,
        cause: &ProviderError,
        request: &ChatRequest,
        now_ms: u64,
    ) -> Option<Attempt> {
        let failure = Failure::of(cause);
        match failure {
            Failure::Upstream => failed.breaker().on_failure(now_ms),
            Failure::RateLimited { retry_after } => {
                let cooldown = retry_after.unwrap_or(DEFAULT_COOLDOWN);
                failed
                    .breaker()
                    .cool_down(now_ms.saturating_add(millis(cooldown)));
            }
            // The request was at fault, not the deployment.
            Failure::Final => {}
        }
        if self.deadline_ms.is_some_and(|deadline| now_ms >= deadline) {
            return None;
        }
        if failure.is_retryable() && self.retries_here < self.route.retry.max_retries {
            if !failed.retry_budget().has_retry(now_ms) {
                tracing::warn!(deployment = %failed.name(), "retry budget used up: not retrying");
            } else if let Some(attempt) = self.retry(failure, now_ms) {
                failed.retry_budget().spend(now_ms);
                self.retries_here += 1;
                return Some(attempt);
            }
        }
        let kind = if failure.is_retryable() {
            FallbackKind::General
        } else {
            FallbackKind::of_request_error(cause)?
        };
        while self.fall_back(kind, request) {
            if let Some(deployment) = self.choose(now_ms, now_ms, true) {
                return Some(Attempt {
                    deployment,
                    wait: Duration::ZERO,
                });
            }
        }
        None
    }

    /// A retry on this alias: another deployment at once, or one already
    /// tried after a backoff when no other is usable.
    fn retry(&mut self, failure: Failure, now_ms: u64) -> Option<Attempt> {
        if let Some(deployment) = self.choose(now_ms, now_ms, true) {
            return Some(Attempt {
                deployment,
                wait: Duration::ZERO,
            });
        }
        let wait = self
            .route
            .retry
            .wait_on_same(self.retries_here + 1, failure, self.rng.f64())?;
        let at_ms = now_ms.saturating_add(millis(wait));
        if self.deadline_ms.is_some_and(|deadline| at_ms >= deadline) {
            return None;
        }
        let deployment = self.choose(now_ms, at_ms, false)?;
        Some(Attempt { deployment, wait })
    }

    /// Moves the request to the next alias of the `kind` chain; `false`
    /// when the chain is used up.
    fn fall_back(&mut self, kind: FallbackKind, request: &ChatRequest) -> bool {
        self.visited.push(self.route.alias.clone());
        let Some(route) = self.fallbacks.next(kind, &self.visited) else {
            return false;
        };
        tracing::debug!(from = %self.route.alias, to = %route.alias, ?kind, "falling back");
        self.need = route.need(request);
        if route.cache_affinity && self.identity.is_none() {
            self.identity = request.cache_identity();
        }
        self.route = route;
        self.tried.clear();
        self.retries_here = 0;
        true
    }

    /// The balancer's pick among the targets usable at `at_ms`, left out
    /// those tried when `untried` is set, and counted as an attempt. A
    /// pick for now claims its breaker's way through; a half-open probe
    /// another request took first drops that target and picks again.
    fn choose(&mut self, now_ms: u64, at_ms: u64, untried: bool) -> Option<DeploymentHandle> {
        let route = Arc::clone(&self.route);
        if let [only] = route.targets.as_slice() {
            // The common alias of one deployment: nothing to rank.
            if !(untried && self.tried.contains(&0))
                && usable(only, at_ms, &self.need, self.fit)
                && (at_ms > now_ms || only.deployment.breaker().claim(now_ms))
            {
                return Some(self.take(&route, 0));
            }
            return None;
        }
        let mut indices: Vec<usize> = (0..route.targets.len())
            .filter(|index| !(untried && self.tried.contains(index)))
            .filter(|&index| usable(&route.targets[index], at_ms, &self.need, self.fit))
            .collect();
        let affine = self
            .identity
            .filter(|_| route.cache_affinity)
            .and_then(|identity| affinity::preferred(&route.targets, &identity));
        if let Some(position) = affine.and_then(|index| indices.iter().position(|i| *i == index)) {
            let index = indices[position];
            if at_ms > now_ms || route.targets[index].deployment.breaker().claim(now_ms) {
                return Some(self.take(&route, index));
            }
            // Its breaker's probe went to another request: the balancer
            // decides among the rest.
            indices.remove(position);
        }
        while !indices.is_empty() {
            let position = if indices.len() == 1 {
                0
            } else {
                let candidates: Vec<Candidate<'_>> = indices
                    .iter()
                    .map(|&index| Candidate {
                        target: &route.targets[index],
                        now_ms: at_ms,
                    })
                    .collect();
                route
                    .balancer()
                    .pick(&candidates, &self.need, &mut self.rng)
            };
            let index = indices[position];
            if at_ms > now_ms || route.targets[index].deployment.breaker().claim(now_ms) {
                return Some(self.take(&route, index));
            }
            indices.remove(position);
        }
        None
    }

    /// Target `index` of `route` is the next attempt's.
    fn take(&mut self, route: &AliasRoute, index: usize) -> DeploymentHandle {
        self.tried.push(index);
        self.attempts += 1;
        route.targets[index].deployment.clone()
    }

    fn unavailable(&self, now_ms: u64) -> Unavailable {
        let soonest = self
            .route
            .targets
            .iter()
            .map(|target| target.deployment.breaker().usable_at_ms(now_ms))
            .filter(|at| *at > now_ms)
            .min();
        Unavailable {
            alias: self.route.alias.clone(),
            retry_after_ms: soonest.map_or(DEFAULT_UNAVAILABLE_WAIT_MS, |at| at - now_ms),
        }
    }
}

/// Whether `target` could take a call at `at_ms`: the request's fit, then
/// breaker and cooldown, then quota.
fn usable(target: &Target, at_ms: u64, need: &Need, fit: Fit) -> bool {
    let deployment = &target.deployment;
    fit.met_by(deployment.provider().as_ref())
        && deployment.breaker().is_usable(at_ms)
        && deployment.quota_allows(need.tokens(), at_ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deployment::Quota;
    use crate::routes::{RouteOptions, Routes};
    use crate::routing::fallback::FallbackNames;
    use crate::testing::{deployment, ledger, with_quota};
    use bytes::Bytes;

    fn route_named(
        alias: &str,
        deployments: Vec<DeploymentHandle>,
        strategy: &'static str,
    ) -> AliasRoute {
        let targets = deployments.into_iter().map(Target::from).collect();
        let options = RouteOptions {
            strategy,
            ..RouteOptions::default()
        };
        AliasRoute::new(alias.into(), targets, options).expect("a known strategy")
    }

    fn route(deployments: Vec<DeploymentHandle>, strategy: &'static str) -> Arc<AliasRoute> {
        Arc::new(route_named("a", deployments, strategy))
    }

    fn request(max_tokens: u64) -> ChatRequest {
        let body = serde_json::json!({
            "model": "a",
            "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": "hi"}],
        });
        ChatRequest::parse(body.to_string().as_bytes()).unwrap()
    }

    fn plan(route: &Arc<AliasRoute>) -> AttemptPlan {
        AttemptPlan::new(Arc::clone(route), &request(16), Fallbacks::default())
    }

    fn status(code: u16, retry_after: Option<&str>) -> ProviderError {
        ProviderError::Status {
            status: code,
            body: Bytes::new(),
            retry_after: retry_after.map(str::to_owned),
        }
    }

    fn failed(
        plan: &mut AttemptPlan,
        on: &DeploymentHandle,
        cause: ProviderError,
        now: u64,
    ) -> Option<Attempt> {
        plan.after_failure(on, &cause, &request(16), now)
    }

    #[test]
    fn cache_affinity_keeps_an_identity_on_its_deployment_until_it_is_unusable() {
        let ledger = ledger("n");
        let deployments = vec![deployment("a", &ledger), deployment("b", &ledger)];
        let keyed = |key: &str| {
            let body = serde_json::json!({"model": "a", "prompt_cache_key": key,
                "messages": [{"role": "user", "content": "hi"}]});
            ChatRequest::parse(body.to_string().as_bytes()).unwrap()
        };
        let pick = |route: &Arc<AliasRoute>, key: &str, now_ms: u64| {
            let request = keyed(key);
            let mut plan = AttemptPlan::new(Arc::clone(route), &request, Fallbacks::default());
            plan.first(&request, now_ms)
                .unwrap()
                .deployment
                .name()
                .to_owned()
        };
        let affine = Arc::new(
            AliasRoute::new(
                "a".into(),
                deployments.iter().cloned().map(Target::from).collect(),
                RouteOptions {
                    strategy: "round-robin",
                    cache_affinity: true,
                    ..RouteOptions::default()
                },
            )
            .unwrap(),
        );
        let keys: Vec<String> = (0..20).map(|n| format!("session-{n}")).collect();
        let homes: Vec<String> = keys.iter().map(|key| pick(&affine, key, 0)).collect();
        for (key, home) in keys.iter().zip(&homes) {
            for _ in 0..3 {
                assert_eq!(&pick(&affine, key, 0), home, "{key}");
            }
        }
        assert!(homes.iter().any(|home| home == "a") && homes.iter().any(|home| home == "b"));
        // Without affinity, round-robin alternates whatever the key.
        let plain = route(deployments.clone(), "round-robin");
        let spread: Vec<String> = (0..4).map(|_| pick(&plain, &keys[0], 0)).collect();
        assert_ne!(spread[0], spread[1]);
        // Its deployment's breaker open: the balancer places it elsewhere.
        let home = &homes[0];
        let down = deployments.iter().find(|d| d.name() == home).unwrap();
        down.breaker().open_until(60_000, 0);
        assert_ne!(&pick(&affine, &keys[0], 1), home);
    }

    #[test]
    fn a_retry_goes_to_another_deployment_at_once() {
        let ledger = ledger("n");
        let route = route(
            vec![deployment("a", &ledger), deployment("b", &ledger)],
            "round-robin",
        );
        let mut plan = plan(&route);
        let first = plan.first(&request(16), 0).unwrap();
        let second = failed(&mut plan, &first.deployment, status(500, None), 0).unwrap();
        assert_eq!(second.wait, Duration::ZERO);
        assert_ne!(first.deployment.name(), second.deployment.name());
        assert_eq!(plan.attempts(), 2);
    }

    #[test]
    fn client_errors_are_not_retried_and_retries_run_out() {
        let ledger = ledger("n");
        let only = deployment("a", &ledger);
        let route = route(vec![only.clone()], "weighted");
        let mut first = plan(&route);
        first.first(&request(16), 0).unwrap();
        assert!(failed(&mut first, &only, status(400, None), 0).is_none());

        let mut plan = plan(&route);
        plan.first(&request(16), 0).unwrap();
        // The only deployment, again after a backoff; twice, then no more.
        let retry = failed(&mut plan, &only, status(503, None), 0).unwrap();
        assert!(
            (50..=100).contains(&retry.wait.as_millis()),
            "{:?}",
            retry.wait
        );
        let retry = failed(&mut plan, &only, status(503, None), 100).unwrap();
        assert!(
            (100..=200).contains(&retry.wait.as_millis()),
            "{:?}",
            retry.wait
        );
        assert!(failed(&mut plan, &only, status(503, None), 300).is_none());
        assert_eq!(plan.attempts(), 3);
    }

    #[test]
    fn a_429_cools_the_deployment_down_and_its_retry_after_is_waited_out() {
        let ledger = ledger("n");
        let only = deployment("a", &ledger);
        let route = route(vec![only.clone()], "weighted");
        let mut limited = plan(&route);
        limited.first(&request(16), 0).unwrap();
        let retry = failed(&mut limited, &only, status(429, Some("2")), 0).unwrap();
        assert_eq!(retry.wait, Duration::from_secs(2));
        // Meanwhile other requests find nothing usable, and are told when.
        assert_eq!(
            plan(&route).first(&request(16), 500).unwrap_err(),
            Unavailable {
                alias: "a".into(),
                retry_after_ms: 1_500
            }
        );
        assert!(plan(&route).first(&request(16), 2_000).is_ok());
        // A retry-after beyond the policy's wait is the answer.
        let mut limited = plan(&route);
        limited.first(&request(16), 10_000).unwrap();
        assert!(failed(&mut limited, &only, status(429, Some("60")), 10_000).is_none());
    }

    #[test]
    fn an_open_breaker_is_skipped_by_every_strategy_until_it_probes() {
        let ledger = ledger("n");
        let (bad, good) = (deployment("bad", &ledger), deployment("good", &ledger));
        for _ in 0..5 {
            bad.breaker().on_failure(0);
        }
        for (strategy, _) in crate::routing::balance::STRATEGIES {
            let route = route(vec![bad.clone(), good.clone()], strategy);
            for _ in 0..20 {
                let picked = plan(&route).first(&request(16), 1).unwrap();
                assert_eq!(picked.deployment.name(), "good", "{strategy}");
            }
        }
        // Half-open after 10 s: one probe may go to `bad`.
        let route = route(vec![bad.clone()], "weighted");
        assert!(plan(&route).first(&request(16), 10_000).is_ok());
        assert!(plan(&route).first(&request(16), 10_001).is_err());
    }

    #[test]
    fn an_over_quota_deployment_is_skipped() {
        let full = with_quota(
            "full",
            Quota {
                rpm: Some(2),
                tpm: None,
            },
            &ledger("test"),
        );
        let spare = with_quota(
            "spare",
            Quota {
                rpm: None,
                tpm: Some(1_000),
            },
            &ledger("test"),
        );
        drop((full.start_call(0), full.start_call(0)));
        let route = route(vec![full, spare], "round-robin");
        for _ in 0..4 {
            let picked = plan(&route).first(&request(16), 0).unwrap();
            assert_eq!(picked.deployment.name(), "spare");
        }
        // A request bigger than what is left of `spare`'s tpm fits nowhere.
        let big = request(2_000);
        let mut plan = AttemptPlan::new(route, &big, Fallbacks::default());
        assert!(plan.first(&big, 0).is_err());
    }

    #[test]
    fn no_attempt_starts_or_is_waited_for_past_the_deadline() {
        let ledger = ledger("n");
        let only = deployment("a", &ledger);
        let route = route(vec![only.clone()], "weighted");
        let mut late = plan(&route).with_deadline(Some(1_000));
        late.first(&request(16), 0).unwrap();
        // The backoff (50–100 ms) would end past the deadline.
        assert!(failed(&mut late, &only, status(503, None), 960).is_none());
        let mut over = plan(&route).with_deadline(Some(1_000));
        over.first(&request(16), 0).unwrap();
        assert!(failed(&mut over, &only, status(503, None), 1_000).is_none());
        let mut early = plan(&route).with_deadline(Some(1_000));
        early.first(&request(16), 0).unwrap();
        assert!(failed(&mut early, &only, status(503, None), 100).is_some());
    }

    #[test]
    fn a_deployment_quota_is_shared_with_the_other_live_nodes_between_exchanges() {
        let ledger = ledger("n");
        ledger.set_live_peers(1);
        let rpm = Quota {
            rpm: Some(10),
            tpm: None,
        };
        let capped = with_quota("capped", rpm, &ledger);
        let route = route(vec![capped.clone()], "weighted");
        let mut calls = 0;
        while calls < 10 && plan(&route).first(&request(16), 0).is_ok() {
            drop(capped.start_call(0));
            calls += 1;
        }
        // Nothing heard from the other node yet: this one takes half of 10.
        assert_eq!(calls, 5);
    }

    #[test]
    fn no_retry_once_the_deployments_retry_budget_is_spent() {
        let ledger = ledger("n");
        let (a, b) = (deployment("a", &ledger), deployment("b", &ledger));
        while a.retry_budget().spend(0) {}
        let mut plan = plan(&route(vec![a.clone(), b], "weighted"));
        plan.first(&request(16), 0).unwrap();
        assert!(failed(&mut plan, &a, status(500, None), 0).is_none());
    }

    /// `main` over one deployment with no retries, falling back to
    /// `backup` in general, `long` for context windows, `lenient` for
    /// content filters; each alias its own deployment.
    fn with_fallbacks() -> (Arc<AliasRoute>, Routes) {
        let ledger = ledger("n");
        let names = ["main", "backup", "long", "lenient"];
        let deployments: Vec<DeploymentHandle> =
            names.iter().map(|name| deployment(name, &ledger)).collect();
        let mut main = route_named("main", vec![deployments[0].clone()], "weighted");
        main.retry.max_retries = 0;
        main.fallbacks = FallbackNames {
            general: vec!["backup".into(), "main".into()],
            context_window: vec!["long".into()],
            content_policy: vec!["lenient".into()],
        };
        let mut routes = vec![main];
        for (name, deployment) in names.iter().zip(&deployments).skip(1) {
            routes.push(route_named(name, vec![deployment.clone()], "weighted"));
        }
        let routes = Routes::new(routes, deployments);
        (Arc::clone(routes.get("main").unwrap()), routes)
    }

    fn error_body(code: &str) -> ProviderError {
        ProviderError::Status {
            status: 400,
            body: Bytes::from(format!(r#"{{"error":{{"message":"no","code":"{code}"}}}}"#)),
            retry_after: None,
        }
    }

    #[test]
    fn each_kind_of_failure_follows_its_own_fallback_chain() {
        let (main, routes) = with_fallbacks();
        let cases = [
            (status(503, None), Some("backup")),
            (error_body("context_length_exceeded"), Some("long")),
            (error_body("content_filter"), Some("lenient")),
            (status(400, None), None),
        ];
        for (cause, expected) in cases {
            let mut plan = AttemptPlan::new(
                Arc::clone(&main),
                &request(16),
                Fallbacks::resolve(&main, &routes, |_| true),
            );
            let first = plan.first(&request(16), 0).unwrap();
            let next = plan.after_failure(&first.deployment, &cause, &request(16), 0);
            assert_eq!(
                next.map(|next| next.deployment.name().to_owned())
                    .as_deref(),
                expected
            );
            if expected.is_some() {
                assert_eq!(plan.route().alias, expected.unwrap_or_default());
                assert_eq!(plan.attempts(), 2);
            }
            // Reset the breaker the 503 counted against.
            first.deployment.breaker().on_success(0);
        }
    }

    #[test]
    fn a_fallback_chain_ends_without_looping_and_skips_what_the_key_may_not_use() {
        let (main, routes) = with_fallbacks();
        let mut plan = AttemptPlan::new(
            Arc::clone(&main),
            &request(16),
            Fallbacks::resolve(&main, &routes, |_| true),
        );
        let first = plan.first(&request(16), 0).unwrap();
        let backup = plan
            .after_failure(&first.deployment, &status(500, None), &request(16), 0)
            .unwrap();
        // `backup` fails too (its retries are to itself: make it final).
        let last = plan.after_failure(&backup.deployment, &status(400, None), &request(16), 0);
        assert!(last.is_none(), "`main` is not tried again");

        let mut plan = AttemptPlan::new(
            Arc::clone(&main),
            &request(16),
            Fallbacks::resolve(&main, &routes, |alias| alias != "backup"),
        );
        let first = plan.first(&request(16), 0).unwrap();
        assert!(plan
            .after_failure(&first.deployment, &status(500, None), &request(16), 0)
            .is_none());
    }

    #[test]
    fn an_alias_with_nothing_usable_falls_back_at_once() {
        let (main, routes) = with_fallbacks();
        for _ in 0..5 {
            main.targets[0].deployment.breaker().on_failure(0);
        }
        let mut plan = AttemptPlan::new(
            Arc::clone(&main),
            &request(16),
            Fallbacks::resolve(&main, &routes, |_| true),
        );
        let first = plan.first(&request(16), 1).unwrap();
        assert_eq!(first.deployment.name(), "backup");
        assert_eq!(plan.attempts(), 1);
    }
}
