//! One request's attempt plan: the stages of [`super`] for each attempt,
//! with what the request has tried so far.

use std::sync::Arc;
use std::time::Duration;

use fastrand::Rng;

use super::candidate::{Candidate, Need, Target};
use super::retry::Failure;
use crate::deployment::DeploymentHandle;
use crate::provider::ProviderError;
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
    /// Indices into the route's targets, in the order they were tried.
    tried: Vec<usize>,
    rng: Rng,
}

impl AttemptPlan {
    pub fn new(route: Arc<AliasRoute>, need: Need) -> Self {
        AttemptPlan {
            route,
            need,
            tried: Vec::with_capacity(1),
            rng: Rng::new(),
        }
    }

    pub fn route(&self) -> &Arc<AliasRoute> {
        &self.route
    }

    /// Calls made or about to be made.
    pub fn attempts(&self) -> u32 {
        u32::try_from(self.tried.len()).unwrap_or(u32::MAX)
    }

    /// The first attempt's deployment.
    pub fn first(&mut self, now_ms: u64) -> Result<Attempt, Unavailable> {
        match self.choose(now_ms, now_ms, true) {
            Some(deployment) => Ok(Attempt {
                deployment,
                wait: Duration::ZERO,
            }),
            None => Err(self.unavailable(now_ms)),
        }
    }

    /// The call on `deployment` answered: its breaker hears so.
    pub fn succeeded(&self, deployment: &DeploymentHandle, now_ms: u64) {
        deployment.breaker().on_success(now_ms);
    }

    /// The call on `failed` failed with `cause`: the breaker and cooldown
    /// hear of it, and the next attempt comes back, or `None` when the
    /// failure is the request's answer — not retryable, retries or the
    /// deployment's retry budget used up, or nothing usable to retry on.
    pub fn after_failure(
        &mut self,
        failed: &DeploymentHandle,
        cause: &ProviderError,
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
            // The deployment answered; the request was at fault.
            Failure::Final => failed.breaker().on_success(now_ms),
        }
        let retry = self.attempts();
        if !failure.is_retryable() || retry > self.route.retry.max_retries {
            return None;
        }
        if !failed.retry_budget().spend(now_ms) {
            tracing::warn!(deployment = %failed.name(), "retry budget used up: not retrying");
            return None;
        }
        if let Some(deployment) = self.choose(now_ms, now_ms, true) {
            return Some(Attempt {
                deployment,
                wait: Duration::ZERO,
            });
        }
        // Every usable deployment was tried: one of them again, later.
        let wait = self
            .route
            .retry
            .wait_on_same(retry, failure, self.rng.f64())?;
        let at_ms = now_ms.saturating_add(millis(wait));
        let deployment = self.choose(now_ms, at_ms, false)?;
        Some(Attempt { deployment, wait })
    }

    /// The balancer's pick among the targets usable at `at_ms`, left out
    /// those tried when `untried` is set, and recorded as tried. A pick for
    /// now claims its breaker's way through; a half-open probe another
    /// request took first drops that target and picks again.
    fn choose(&mut self, now_ms: u64, at_ms: u64, untried: bool) -> Option<DeploymentHandle> {
        let route = Arc::clone(&self.route);
        let mut indices: Vec<usize> = (0..route.targets.len())
            .filter(|index| !(untried && self.tried.contains(index)))
            .filter(|&index| usable(&route.targets[index], at_ms, &self.need))
            .collect();
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
            let deployment = &route.targets[index].deployment;
            if at_ms > now_ms || deployment.breaker().claim(now_ms) {
                self.tried.push(index);
                return Some(deployment.clone());
            }
            indices.remove(position);
        }
        None
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

/// Whether `target` could take a call at `at_ms`: breaker and cooldown,
/// then quota.
fn usable(target: &Target, at_ms: u64, need: &Need) -> bool {
    let deployment = &target.deployment;
    deployment.breaker().is_usable(at_ms) && deployment.quota_use(at_ms).fits(need.tokens())
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deployment::Quota;
    use crate::routes::RouteOptions;
    use crate::testing::{deployment, ledger, with_quota};
    use bytes::Bytes;

    fn route(deployments: Vec<DeploymentHandle>, strategy: &'static str) -> Arc<AliasRoute> {
        let targets = deployments
            .into_iter()
            .map(|deployment| Target {
                deployment,
                weight: 1,
            })
            .collect();
        let options = RouteOptions {
            strategy,
            ..RouteOptions::default()
        };
        Arc::new(AliasRoute::new("a".into(), targets, options).expect("a known strategy"))
    }

    fn status(code: u16, retry_after: Option<&str>) -> ProviderError {
        ProviderError::Status {
            status: code,
            body: Bytes::new(),
            retry_after: retry_after.map(str::to_owned),
        }
    }

    fn names(deployments: &[DeploymentHandle]) -> Vec<&str> {
        deployments.iter().map(DeploymentHandle::name).collect()
    }

    #[test]
    fn a_retry_goes_to_another_deployment_at_once() {
        let ledger = ledger("n");
        let route = route(
            vec![deployment("a", &ledger), deployment("b", &ledger)],
            "round-robin",
        );
        let mut plan = AttemptPlan::new(route, Need::default());
        let first = plan.first(0).unwrap();
        let second = plan
            .after_failure(&first.deployment, &status(500, None), 0)
            .unwrap();
        assert_eq!(second.wait, Duration::ZERO);
        assert_ne!(first.deployment.name(), second.deployment.name());
        assert_eq!(plan.attempts(), 2);
    }

    #[test]
    fn client_errors_are_not_retried_and_retries_run_out() {
        let ledger = ledger("n");
        let only = deployment("a", &ledger);
        let mut plan = AttemptPlan::new(route(vec![only.clone()], "weighted"), Need::default());
        plan.first(0).unwrap();
        assert!(plan.after_failure(&only, &status(400, None), 0).is_none());

        let mut plan = AttemptPlan::new(route(vec![only.clone()], "weighted"), Need::default());
        plan.first(0).unwrap();
        // The only deployment, again after a backoff; twice, then no more.
        let retry = plan.after_failure(&only, &status(503, None), 0).unwrap();
        assert!(
            (50..=100).contains(&retry.wait.as_millis()),
            "{:?}",
            retry.wait
        );
        let retry = plan.after_failure(&only, &status(503, None), 100).unwrap();
        assert!(
            (100..=200).contains(&retry.wait.as_millis()),
            "{:?}",
            retry.wait
        );
        assert!(plan.after_failure(&only, &status(503, None), 300).is_none());
        assert_eq!(plan.attempts(), 3);
    }

    #[test]
    fn a_429_cools_the_deployment_down_and_its_retry_after_is_waited_out() {
        let ledger = ledger("n");
        let only = deployment("a", &ledger);
        let route = route(vec![only.clone()], "weighted");
        let mut plan = AttemptPlan::new(route.clone(), Need::default());
        plan.first(0).unwrap();
        let retry = plan
            .after_failure(&only, &status(429, Some("2")), 0)
            .unwrap();
        assert_eq!(retry.wait, Duration::from_secs(2));
        // Meanwhile other requests find nothing usable, and are told when.
        let mut other = AttemptPlan::new(route, Need::default());
        assert_eq!(
            other.first(500).unwrap_err(),
            Unavailable {
                alias: "a".into(),
                retry_after_ms: 1_500
            }
        );
        assert!(other.first(2_000).is_ok());
        // A retry-after beyond the policy's wait is the answer.
        let mut plan =
            AttemptPlan::new(self::route(vec![only.clone()], "weighted"), Need::default());
        plan.first(10_000).unwrap();
        assert!(plan
            .after_failure(&only, &status(429, Some("60")), 10_000)
            .is_none());
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
            let picks: Vec<DeploymentHandle> = (0..20)
                .map(|_| {
                    AttemptPlan::new(route.clone(), Need::default())
                        .first(1)
                        .unwrap()
                        .deployment
                })
                .collect();
            assert!(
                names(&picks).iter().all(|name| *name == "good"),
                "{strategy}"
            );
        }
        // Half-open after 10 s: one probe may go to `bad`.
        let route = route(vec![bad.clone()], "weighted");
        assert!(AttemptPlan::new(route.clone(), Need::default())
            .first(10_000)
            .is_ok());
        assert!(AttemptPlan::new(route, Need::default())
            .first(10_001)
            .is_err());
    }

    #[test]
    fn an_over_quota_deployment_is_skipped() {
        let full = with_quota(
            "full",
            Quota {
                rpm: Some(2),
                tpm: None,
            },
        );
        let spare = with_quota(
            "spare",
            Quota {
                rpm: None,
                tpm: Some(1_000),
            },
        );
        drop((full.start_call(0), full.start_call(0)));
        let route = route(vec![full, spare.clone()], "round-robin");
        for _ in 0..4 {
            let picked = AttemptPlan::new(route.clone(), Need::default())
                .first(0)
                .unwrap();
            assert_eq!(picked.deployment.name(), "spare");
        }
        // A request bigger than what is left of `spare`'s tpm fits nowhere.
        let big = Need {
            stream: false,
            prompt_tokens: 900,
            max_output_tokens: 200,
        };
        assert!(AttemptPlan::new(route, big).first(0).is_err());
    }

    #[test]
    fn no_retry_once_the_deployments_retry_budget_is_spent() {
        let ledger = ledger("n");
        let (a, b) = (deployment("a", &ledger), deployment("b", &ledger));
        while a.retry_budget().spend(0) {}
        let mut plan = AttemptPlan::new(route(vec![a.clone(), b], "weighted"), Need::default());
        plan.first(0).unwrap();
        assert!(plan.after_failure(&a, &status(500, None), 0).is_none());
    }
}
