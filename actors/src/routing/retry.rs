//! Whether a failed attempt is worth another, and how long to wait first.
//!
//! Retried: 429, 5xx, no connection, a timeout, a stream that broke before
//! anything reached the client. Not retried: the client's own mistakes
//! (400, 401, 403, 404, 422, any other 4xx), which another attempt would
//! only repeat. A retry goes at once to another deployment when there is
//! one; to the same one, after an exponential backoff with jitter, or the
//! upstream's `retry-after` when that is longer and within the cap.

use std::time::Duration;

use crate::provider::ProviderError;

/// An alias's retry settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Attempts after the first.
    pub max_retries: u32,
    /// The first backoff; each further retry on the same deployment doubles it.
    pub backoff: Duration,
    /// The longest wait before a retry; a `retry-after` beyond it is not
    /// waited for: the request moves on to its fallbacks, if any.
    pub max_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 2,
            backoff: Duration::from_millis(100),
            max_wait: Duration::from_secs(5),
        }
    }
}

/// What a failure says about trying again.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Failure {
    /// The deployment failed: the breaker counts it, another attempt may work.
    Upstream,
    /// The upstream asked to be left alone for this long (a 429).
    RateLimited { retry_after: Option<Duration> },
    /// The request itself was refused; another attempt would be too.
    Final,
}

impl Failure {
    pub fn of(cause: &ProviderError) -> Self {
        match cause {
            ProviderError::Status {
                status: 429,
                retry_after,
                ..
            } => Failure::RateLimited {
                retry_after: retry_after.as_deref().and_then(parse_retry_after),
            },
            ProviderError::Status { status, .. } if (500..=599).contains(status) => {
                Failure::Upstream
            }
            ProviderError::Status { .. } | ProviderError::Refused(_) => Failure::Final,
            ProviderError::Unreachable(_)
            | ProviderError::Timeout(_)
            | ProviderError::Malformed(_)
            | ProviderError::Reported(_)
            | ProviderError::Broken(_) => Failure::Upstream,
        }
    }

    pub fn is_retryable(self) -> bool {
        self != Failure::Final
    }
}

/// `retry-after` as seconds (`2`, `0.5`); an HTTP date is not worth the
/// parser here, and is treated as absent.
fn parse_retry_after(value: &str) -> Option<Duration> {
    let seconds: f64 = value.trim().parse().ok()?;
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds.min(86_400.0)))
}

impl RetryPolicy {
    /// The wait before retry number `retry` (1 for the first) on the
    /// deployment that just failed, `None` when the upstream's
    /// `retry-after` is longer than the policy waits. `jitter` is a draw
    /// from [0, 1): the backoff is spread over its upper half, so clients
    /// that failed together do not come back together.
    pub fn wait_on_same(&self, retry: u32, failure: Failure, jitter: f64) -> Option<Duration> {
        let doubled = self
            .backoff
            .saturating_mul(1u32 << retry.saturating_sub(1).min(16))
            .min(self.max_wait);
        let backoff = doubled.mul_f64(0.5 + jitter.clamp(0.0, 1.0) / 2.0);
        let wait = match failure {
            Failure::RateLimited {
                retry_after: Some(asked),
            } => {
                if asked > self.max_wait {
                    return None;
                }
                asked.max(backoff)
            }
            _ => backoff,
        };
        Some(wait.min(self.max_wait))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn status(code: u16, retry_after: Option<&str>) -> ProviderError {
        ProviderError::Status {
            status: code,
            body: Bytes::new(),
            retry_after: retry_after.map(str::to_owned),
        }
    }

    #[test]
    fn server_errors_and_broken_connections_are_retried_client_errors_not() {
        for code in [500, 502, 503, 504, 529] {
            assert_eq!(
                Failure::of(&status(code, None)),
                Failure::Upstream,
                "{code}"
            );
        }
        for code in [400, 401, 403, 404, 422] {
            assert!(!Failure::of(&status(code, None)).is_retryable(), "{code}");
        }
        assert!(Failure::of(&ProviderError::Unreachable("reset".into())).is_retryable());
        assert!(Failure::of(&ProviderError::Timeout(Duration::from_secs(1))).is_retryable());
        assert_eq!(
            Failure::of(&status(429, Some("2"))),
            Failure::RateLimited {
                retry_after: Some(Duration::from_secs(2))
            }
        );
        assert_eq!(
            Failure::of(&status(429, Some("Wed, 21 Oct 2015 07:28:00 GMT"))),
            Failure::RateLimited { retry_after: None }
        );
    }

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let policy = RetryPolicy::default();
        let wait = |retry, jitter| policy.wait_on_same(retry, Failure::Upstream, jitter);
        assert_eq!(wait(1, 0.0), Some(Duration::from_millis(50)));
        assert_eq!(wait(1, 0.999_999).map(|w| w.as_millis()), Some(99));
        assert_eq!(wait(2, 0.0), Some(Duration::from_millis(100)));
        assert_eq!(wait(3, 0.0), Some(Duration::from_millis(200)));
        assert_eq!(wait(30, 1.0), Some(Duration::from_secs(5)));
        let huge = RetryPolicy {
            backoff: Duration::MAX,
            ..policy
        };
        assert_eq!(
            huge.wait_on_same(20, Failure::Upstream, 0.0),
            Some(Duration::from_millis(2_500))
        );
    }

    #[test]
    fn retry_after_is_honoured_up_to_the_cap() {
        let policy = RetryPolicy::default();
        let limited = |seconds| Failure::RateLimited {
            retry_after: Some(Duration::from_secs(seconds)),
        };
        assert_eq!(
            policy.wait_on_same(1, limited(2), 0.0),
            Some(Duration::from_secs(2))
        );
        assert_eq!(policy.wait_on_same(1, limited(60), 0.0), None);
        assert_eq!(
            policy.wait_on_same(1, Failure::RateLimited { retry_after: None }, 0.0),
            Some(Duration::from_millis(50))
        );
    }
}
