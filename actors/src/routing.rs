//! Routing a request: which deployment each attempt goes to, and whether a
//! failed attempt gets another. The stages, in the order
//! [`AttemptPlan`] runs them for every attempt:
//!
//! ```text
//! the alias's targets
//!   → not yet tried by this request            (retries go elsewhere first)
//!   → usable: breaker closed or probing, not cooling down after a 429,
//!     under the deployment's rpm/tpm quota      (breaker.rs, candidate.rs)
//!   → with `cache_affinity`, the deployment the request's prompt-cache
//!     identity ranks first, if it is usable      (affinity.rs)
//!   → else the alias's balancer picks one       (balance/*.rs)
//!   → its breaker lets the call through         (one half-open probe)
//! after a failure:
//!   → the breaker counts it, a 429 cools the deployment down
//!   → retryable? retries left? retry budget left? (retry.rs, budget.rs)
//!   → the next attempt: another deployment at once, or the same after a
//!     backoff when no other is usable
//!   → retries used up, or nothing usable: the fallback chain for what
//!     went wrong (general, context window, content policy), alias by
//!     alias, each starting again at the top      (fallback.rs)
//! ```
//!
//! The [`crate::RequestActor`] drives the plan; everything read here is
//! shared state, so choosing never waits on a mailbox.

mod affinity;
pub mod balance;
pub mod breaker;
pub mod budget;
mod candidate;
pub mod fallback;
mod plan;
pub mod retry;

pub use candidate::{Candidate, Need, Target};
pub use fallback::{FallbackNames, Fallbacks};
pub use plan::{Attempt, AttemptPlan, Unavailable};
pub use retry::RetryPolicy;
