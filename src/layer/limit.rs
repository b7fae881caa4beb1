//! Middleware that bounds how many of an agent's calls are in flight at once.
//!
//! A call waits for one of `max` permits, then for the agent to be ready, and holds the permit
//! until it ends or is dropped (a cancelled call frees its permit). Clones share the permits,
//! so the bound holds across every decision using the agent.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::Semaphore;
use tower::{BoxError, Layer, Service, ServiceExt};

/// At most `max` calls in flight (at least one).
#[derive(Debug, Clone, Copy)]
pub struct ConcurrencyLimitLayer {
    max: usize,
}

impl ConcurrencyLimitLayer {
    /// At most `max` calls in flight; 0 is taken as 1.
    pub fn new(max: usize) -> Self {
        Self { max: max.max(1) }
    }
}

impl<S> Layer<S> for ConcurrencyLimitLayer {
    type Service = ConcurrencyLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ConcurrencyLimit {
            inner,
            permits: Arc::new(Semaphore::new(self.max)),
        }
    }
}

/// The concurrency-limited service.
#[derive(Debug, Clone)]
pub struct ConcurrencyLimit<S> {
    inner: S,
    /// Shared by clones.
    permits: Arc<Semaphore>,
}

impl<S, Req> Service<Req> for ConcurrencyLimit<S>
where
    S: Service<Req, Error = BoxError> + Clone + Send + 'static,
    S::Future: Send,
    Req: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // Readiness is awaited per call, after its permit: waiting here would hold the
        // caller's clone without a permit.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let mut inner = self.inner.clone();
        let permits = Arc::clone(&self.permits);
        Box::pin(async move {
            let _permit = permits.acquire_owned().await?;
            inner.ready().await?.call(req).await
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use tower::service_fn;

    use super::*;

    struct Out(Arc<AtomicUsize>);

    impl Drop for Out {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::SeqCst);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn never_more_than_max_in_flight_and_a_dropped_call_frees_its_permit() {
        let now = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let (n, m) = (Arc::clone(&now), Arc::clone(&most));
        let svc = service_fn(move |d: u64| {
            let (n, m) = (Arc::clone(&n), Arc::clone(&m));
            async move {
                let k = n.fetch_add(1, Ordering::SeqCst) + 1;
                m.fetch_max(k, Ordering::SeqCst);
                // Counted out when the call ends or is dropped.
                let _out = Out(n);
                tokio::time::sleep(Duration::from_millis(d)).await;
                Ok::<_, BoxError>(d)
            }
        });
        let limited = ConcurrencyLimitLayer::new(2).layer(svc);
        // A call cancelled while it holds a permit must give it back.
        let mut first = limited.clone();
        let cancelled = tokio::time::timeout(Duration::from_millis(5), first.call(1_000)).await;
        assert!(cancelled.is_err());
        let calls = (0..10u64).map(|i| {
            let mut s = limited.clone();
            async move { s.call(10 + i).await }
        });
        let out = futures_util::future::join_all(calls).await;
        assert_eq!(out.into_iter().filter(Result::is_ok).count(), 10);
        assert_eq!(most.load(Ordering::SeqCst), 2);
    }
}
