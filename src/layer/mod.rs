//! Tower middleware for the per-agent stack, one module per layer (tower's own layout).
//!
//! The Governor builds, for every agent: its timeout → a concurrency limit → [`retry`] →
//! [`breaker`] → the agent. Exactly one layer retries: async-openai's own retries are off.

pub mod breaker;
pub mod retry;

pub use breaker::{CircuitBreaker, CircuitBreakerLayer, CircuitOpen};
pub use retry::{Retry, RetryLayer};
