//! Middleware that retries a failed call with exponential backoff and jitter.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tower::{BoxError, Layer, Service, ServiceExt};

use super::breaker::CircuitOpen;

/// Retries failed calls: attempt `k` (from 0) waits `base·2ᵏ` plus a jitter of up to `base`
/// before trying again, at most `max_retries` times — or longer, when the error is a
/// [`RetryAfter`] asking for more. An open circuit is not retried, nor a typed
/// [`Cause`](crate::ballot::Cause) that says trying again cannot help (a 4xx other than 408
/// and 429, a redirect, an oversized or unreadable reply).
#[derive(Debug, Clone, Copy)]
pub struct RetryLayer {
    max_retries: u32,
    base: Duration,
    max_wait: Option<Duration>,
}

impl RetryLayer {
    /// Up to `max_retries` retries, the first after about `base`.
    pub const fn new(max_retries: u32, base: Duration) -> Self {
        Self {
            max_retries,
            base,
            max_wait: None,
        }
    }

    /// Gives up at once instead of waiting longer than `max_wait` (a server asking for more
    /// than the call's own time budget).
    #[must_use]
    pub const fn with_max_wait(mut self, max_wait: Duration) -> Self {
        self.max_wait = Some(max_wait);
        self
    }
}

impl<S> Layer<S> for RetryLayer {
    type Service = Retry<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Retry {
            inner,
            config: *self,
            calls: Arc::new(AtomicU64::new(0)),
        }
    }
}

pub use crate::agent::RetryAfter;

/// The retrying service.
#[derive(Debug, Clone)]
pub struct Retry<S> {
    inner: S,
    config: RetryLayer,
    calls: Arc<AtomicU64>,
}

impl<S> Retry<S> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S, Req> Service<Req> for Retry<S>
where
    S: Service<Req, Error = BoxError> + Clone + Send + 'static,
    S::Future: Send,
    S::Response: Send,
    Req: Clone + Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        // Take the service `poll_ready` readied and leave a clone in its place (tower's
        // idiom): one clone per call, not one per attempt.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let config = self.config;
        let n = self.calls.fetch_add(1, Ordering::Relaxed);
        Box::pin(async move {
            let mut attempt = 0u32;
            loop {
                let result = if attempt == 0 {
                    inner.call(req.clone()).await
                } else {
                    match inner.ready().await {
                        Ok(ready) => ready.call(req.clone()).await,
                        Err(e) => Err(e),
                    }
                };
                match result {
                    Ok(r) => return Ok(r),
                    Err(e)
                        if attempt >= config.max_retries
                            || e.is::<CircuitOpen>()
                            || e.downcast_ref::<crate::ballot::Cause>()
                                .is_some_and(|c| !c.retryable()) =>
                    {
                        return Err(e);
                    }
                    Err(e) => {
                        // The server's own advice, when it gave one.
                        let asked = e.downcast_ref::<RetryAfter>().map(|r| r.after);
                        if let (Some(asked), Some(max)) = (asked, config.max_wait)
                            && asked > max
                        {
                            return Err(e);
                        }
                        // Deterministic jitter: the same call sequence waits the same.
                        let mut rng =
                            crate::rng::Rng::new(&[&n.to_le_bytes(), &attempt.to_le_bytes()]);
                        let backoff = config.base * 2u32.saturating_pow(attempt);
                        let jitter = config.base.mul_f64(rng.unit());
                        let wait = (backoff + jitter).max(asked.unwrap_or_default());
                        tracing::debug!(attempt, wait_ms = wait.as_millis() as u64, "retrying");
                        tokio::time::sleep(wait).await;
                        attempt += 1;
                    }
                }
            }
        })
    }
}
