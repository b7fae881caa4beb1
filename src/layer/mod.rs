//! Tower middleware for the per-agent stack, one module per layer (tower's own layout).
//!
//! The Governor builds, for every agent: its timeout → a concurrency limit → [`retry`] →
//! [`rate`] limit (if the agent file sets one) → [`breaker`] → the agent. Exactly one layer
//! retries: async-openai's own retries are off.

pub mod breaker;
pub mod rate;
pub mod retry;

pub use breaker::{CircuitBreaker, CircuitBreakerLayer, CircuitOpen};
pub use rate::{RateLimit, RateLimitLayer};
pub use retry::{Retry, RetryAfter, RetryLayer};
