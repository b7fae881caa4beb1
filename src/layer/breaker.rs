//! Middleware that stops calling an agent that keeps failing (a circuit breaker).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;
use tower::{BoxError, Layer, Service};

/// The error of a call refused because the circuit is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("circuit open: the agent failed repeatedly and is resting")]
pub struct CircuitOpen;

/// Opens after `threshold` consecutive failures; while open, calls fail at once with
/// [`CircuitOpen`]; after `cooldown` one probe call goes through (half-open): its success
/// closes the circuit, its failure opens it again.
#[derive(Debug, Clone, Copy)]
pub struct CircuitBreakerLayer {
    threshold: u32,
    cooldown: Duration,
}

impl CircuitBreakerLayer {
    /// A breaker opening after `threshold` consecutive failures, for `cooldown`.
    pub const fn new(threshold: u32, cooldown: Duration) -> Self {
        Self {
            threshold,
            cooldown,
        }
    }
}

impl<S> Layer<S> for CircuitBreakerLayer {
    type Service = CircuitBreaker<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreaker {
            inner,
            config: *self,
            state: Arc::new(Mutex::new(State::default())),
        }
    }
}

#[derive(Debug, Default)]
struct State {
    failures: u32,
    open_until: Option<Instant>,
    probing: bool,
}

/// The breaker service. Clones share one circuit.
#[derive(Debug, Clone)]
pub struct CircuitBreaker<S> {
    inner: S,
    config: CircuitBreakerLayer,
    state: Arc<Mutex<State>>,
}

impl<S> CircuitBreaker<S> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S, Req> Service<Req> for CircuitBreaker<S>
where
    S: Service<Req, Error = BoxError> + Clone + Send + 'static,
    S::Future: Send,
    S::Response: Send,
    Req: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let now = Instant::now();
        let admitted = match self.state.lock() {
            Ok(mut s) => match s.open_until {
                Some(until) if now < until => false,
                Some(_) if s.probing => false,
                Some(_) => {
                    s.probing = true;
                    true
                }
                None => true,
            },
            Err(_) => true,
        };
        if !admitted {
            return Box::pin(async { Err(Box::new(CircuitOpen) as BoxError) });
        }
        let fut = self.inner.call(req);
        let state = self.state.clone();
        let config = self.config;
        // A call dropped before it ends (the decision was certain, or out of time) gives no
        // evidence: a probe dropped so releases the half-open state, and the next probe may go
        // after another cooldown (else the circuit would stay open for good).
        let guard = ProbeGuard {
            state: state.clone(),
            cooldown: config.cooldown,
            armed: true,
        };
        Box::pin(async move {
            // The whole guard moves into the future (not just the field it sets).
            let mut guard = guard;
            let result = fut.await;
            guard.armed = false;
            if let Ok(mut s) = state.lock() {
                s.probing = false;
                if result.is_ok() {
                    s.failures = 0;
                    s.open_until = None;
                } else {
                    s.failures += 1;
                    if s.failures >= config.threshold || s.open_until.is_some() {
                        s.open_until = Some(Instant::now() + config.cooldown);
                        tracing::warn!(failures = s.failures, "circuit opened");
                    }
                }
            }
            result
        })
    }
}

/// Releases a dropped call's hold on the half-open state.
struct ProbeGuard {
    state: Arc<Mutex<State>>,
    cooldown: Duration,
    armed: bool,
}

impl Drop for ProbeGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Ok(mut s) = self.state.lock()
            && s.probing
        {
            s.probing = false;
            s.open_until = Some(Instant::now() + self.cooldown);
        }
    }
}
