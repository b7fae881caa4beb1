//! Middleware that spaces an agent's calls to a rate (a per-agent rate limit).
//!
//! Endpoints limit requests per minute; a pool that fans out fast hits the limit and turns
//! its own burst into 429s. This layer spaces calls evenly: each call takes the next free
//! slot (one every `60 s / per_minute`) and waits for it, so no more than `per_minute` calls
//! start in any minute. Clones share the slots.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;
use tower::{BoxError, Layer, Service};

/// Spaces calls to at most `per_minute` a minute.
#[derive(Debug, Clone, Copy)]
pub struct RateLimitLayer {
    interval: Duration,
}

impl RateLimitLayer {
    /// At most `per_minute` calls started per minute (at least one).
    pub fn per_minute(per_minute: u32) -> Self {
        Self {
            interval: Duration::from_secs(60) / per_minute.max(1),
        }
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit {
            inner,
            interval: self.interval,
            next: Arc::new(Mutex::new(None)),
        }
    }
}

/// The rate-limited service.
#[derive(Debug, Clone)]
pub struct RateLimit<S> {
    inner: S,
    interval: Duration,
    /// The next free slot, shared by clones.
    next: Arc<Mutex<Option<Instant>>>,
}

impl<S, Req> Service<Req> for RateLimit<S>
where
    S: Service<Req, Error = BoxError> + Clone + Send + 'static,
    S::Future: Send,
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
        let slot = match self.next.lock() {
            Ok(mut next) => {
                let slot = next.map_or(now, |n| n.max(now));
                *next = Some(slot + self.interval);
                slot
            }
            // A poisoned lock only loses the spacing, never the call.
            Err(_) => now,
        };
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            tokio::time::sleep_until(slot).await;
            inner.call(req).await
        })
    }
}
