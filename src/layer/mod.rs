//! Tower middleware for the per-agent stack, one module per layer (tower's own layout).
//!
//! The Governor builds, for every agent: its timeout → a concurrency limit → [`retry`] →
//! [`rate`] limit (if the agent file sets one) → [`breaker`] → the agent. Exactly one layer
//! retries: async-openai's own retries are off.

pub mod breaker;
pub mod limit;
pub mod rate;
pub mod retry;

pub use breaker::{CircuitBreaker, CircuitBreakerLayer, CircuitOpen};
pub use limit::{ConcurrencyLimit, ConcurrencyLimitLayer};
pub use rate::{RateLimit, RateLimitLayer};
pub use retry::{Retry, RetryAfter, RetryLayer};

use std::time::Duration;

use tower::util::BoxCloneSyncService;

use crate::agent::AgentService;
use crate::policy::AgentSpec;

/// The per-agent stack the Governor wraps around every agent (its timeout is the Governor's):
/// a concurrency limit (`max_concurrency`) → one retry with backoff and jitter, never waiting
/// past the agent's timeout (the only retry owner) → a rate limit (`rate_per_minute`, if set)
/// → a circuit breaker (open after 5 consecutive failures or timeouts, half-open probe after
/// 30 s; a probe cut short releases the half-open state) → the agent's timeout → the agent.
pub fn stack(spec: &AgentSpec, agent: AgentService) -> AgentService {
    BoxCloneSyncService::new(
        tower::ServiceBuilder::new()
            .layer(ConcurrencyLimitLayer::new(spec.max_concurrency as usize))
            .layer(
                RetryLayer::new(1, Duration::from_millis(200))
                    .with_max_wait(Duration::from_millis(spec.timeout_ms)),
            )
            .option_layer(spec.rate_per_minute.map(RateLimitLayer::per_minute))
            .layer(CircuitBreakerLayer::new(5, Duration::from_secs(30)))
            // Inside the breaker, so that a timeout counts as a failure.
            .layer(tower::timeout::TimeoutLayer::new(Duration::from_millis(
                spec.timeout_ms.max(1),
            )))
            .service(agent),
    )
}
