//! The per-agent middleware: retry with backoff, circuit breaker (simulated time).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use conclave::layer::{CircuitBreakerLayer, CircuitOpen, RetryLayer};
use tower::{BoxError, Service, ServiceBuilder, ServiceExt, service_fn};

/// A service that fails its first `fail` calls, counting every call.
fn flaky(
    fail: u32,
    calls: Arc<AtomicU32>,
) -> impl Service<u32, Response = u32, Error = BoxError, Future: Send> + Clone + Send + 'static {
    service_fn(move |x: u32| {
        let n = calls.fetch_add(1, Ordering::SeqCst);
        async move {
            if n < fail {
                Err::<u32, BoxError>("down".into())
            } else {
                Ok(x)
            }
        }
    })
}

#[tokio::test(start_paused = true)]
async fn retry_recovers_a_transient_failure_and_gives_up_after_its_budget() {
    let calls = Arc::new(AtomicU32::new(0));
    let svc = ServiceBuilder::new()
        .layer(RetryLayer::new(2, Duration::from_millis(100)))
        .service(flaky(2, calls.clone()));
    let start = tokio::time::Instant::now();
    assert_eq!(
        svc.clone()
            .oneshot(7)
            .await
            .expect("third attempt succeeds"),
        7
    );
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    // Backoff 100 ms then 200 ms, plus up to 100 ms of jitter each.
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(300) && waited <= Duration::from_millis(500),
        "{waited:?}"
    );
    let calls = Arc::new(AtomicU32::new(0));
    let svc = ServiceBuilder::new()
        .layer(RetryLayer::new(1, Duration::from_millis(100)))
        .service(flaky(10, calls.clone()));
    assert!(svc.oneshot(1).await.is_err());
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "one try and one retry, no more"
    );
}

#[tokio::test(start_paused = true)]
async fn the_breaker_opens_rests_and_probes() {
    let calls = Arc::new(AtomicU32::new(0));
    let mut svc = ServiceBuilder::new()
        .layer(CircuitBreakerLayer::new(3, Duration::from_secs(30)))
        .service(flaky(4, calls.clone()));
    for _ in 0..3 {
        assert!(svc.ready().await.expect("ready").call(1).await.is_err());
    }
    // Open: refused at once, without calling the agent.
    let e = svc
        .ready()
        .await
        .expect("ready")
        .call(1)
        .await
        .expect_err("open");
    assert!(e.is::<CircuitOpen>());
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    // After the cooldown one probe goes through; it fails (4th failure), so the circuit opens again.
    tokio::time::advance(Duration::from_secs(31)).await;
    assert!(
        !svc.ready()
            .await
            .expect("ready")
            .call(1)
            .await
            .expect_err("probe fails")
            .is::<CircuitOpen>()
    );
    assert!(
        svc.ready()
            .await
            .expect("ready")
            .call(1)
            .await
            .expect_err("open again")
            .is::<CircuitOpen>()
    );
    // Next probe succeeds and closes it.
    tokio::time::advance(Duration::from_secs(31)).await;
    assert_eq!(
        svc.ready()
            .await
            .expect("ready")
            .call(5)
            .await
            .expect("probe succeeds"),
        5
    );
    assert_eq!(
        svc.ready()
            .await
            .expect("ready")
            .call(6)
            .await
            .expect("closed"),
        6
    );
    assert_eq!(calls.load(Ordering::SeqCst), 6);
}

#[tokio::test(start_paused = true)]
async fn an_open_circuit_is_not_retried() {
    let calls = Arc::new(AtomicU32::new(0));
    let mut svc = ServiceBuilder::new()
        .layer(RetryLayer::new(3, Duration::from_millis(10)))
        .layer(CircuitBreakerLayer::new(2, Duration::from_secs(60)))
        .service(flaky(100, calls.clone()));
    // The first call: try + retry both fail and open the circuit; the next retries meet it open.
    let e = svc
        .ready()
        .await
        .expect("ready")
        .call(1)
        .await
        .expect_err("fails");
    assert!(e.is::<CircuitOpen>(), "{e}");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn the_rate_limit_spaces_calls_across_clones() {
    use conclave::layer::RateLimitLayer;
    let started = Arc::new(std::sync::Mutex::new(Vec::new()));
    let origin = tokio::time::Instant::now();
    let log = started.clone();
    let svc = ServiceBuilder::new()
        .layer(RateLimitLayer::per_minute(60))
        .service(service_fn(move |x: u32| {
            if let Ok(mut l) = log.lock() {
                l.push(origin.elapsed());
            }
            async move { Ok::<u32, BoxError>(x) }
        }));
    // Four calls at once through clones of the service: one a second.
    let (a, b, c, d) = tokio::join!(
        svc.clone().oneshot(0),
        svc.clone().oneshot(1),
        svc.clone().oneshot(2),
        svc.clone().oneshot(3)
    );
    for r in [a, b, c, d] {
        r.expect("call");
    }
    let mut at: Vec<u64> = started
        .lock()
        .expect("lock")
        .iter()
        .map(|d| d.as_secs())
        .collect();
    at.sort_unstable();
    assert_eq!(at, [0, 1, 2, 3]);
    // After a quiet spell the next call goes at once.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let before = origin.elapsed();
    svc.clone().oneshot(9).await.expect("call");
    assert_eq!(origin.elapsed(), before);
}

#[tokio::test(start_paused = true)]
async fn retry_waits_as_long_as_the_server_asks_within_its_budget() {
    use conclave::layer::RetryAfter;
    let hinted = |calls: Arc<AtomicU32>| {
        service_fn(move |x: u32| {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            async move {
                if n == 0 {
                    Err::<u32, BoxError>(Box::new(RetryAfter {
                        after: Duration::from_secs(3),
                        message: "429".into(),
                    }))
                } else {
                    Ok(x)
                }
            }
        })
    };
    let calls = Arc::new(AtomicU32::new(0));
    let svc = ServiceBuilder::new()
        .layer(RetryLayer::new(1, Duration::from_millis(100)).with_max_wait(Duration::from_secs(5)))
        .service(hinted(calls.clone()));
    let start = tokio::time::Instant::now();
    assert_eq!(svc.oneshot(4).await.expect("second attempt"), 4);
    assert!(
        start.elapsed() >= Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    // Asked for more than the budget: give up at once.
    let calls = Arc::new(AtomicU32::new(0));
    let svc = ServiceBuilder::new()
        .layer(RetryLayer::new(1, Duration::from_millis(100)).with_max_wait(Duration::from_secs(1)))
        .service(hinted(calls.clone()));
    let start = tokio::time::Instant::now();
    let err = svc.oneshot(4).await.expect_err("no retry");
    assert!(err.is::<RetryAfter>());
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_probe_does_not_leave_the_circuit_open_for_good() {
    // Fails once (opens the circuit), then hangs once (the probe, cancelled), then answers.
    let calls = Arc::new(AtomicU32::new(0));
    let counter = calls.clone();
    let inner = service_fn(move |x: u32| {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        async move {
            match n {
                0 => Err::<u32, BoxError>("down".into()),
                1 => {
                    std::future::pending::<()>().await;
                    Ok(x)
                }
                _ => Ok(x),
            }
        }
    });
    let svc = ServiceBuilder::new()
        .layer(CircuitBreakerLayer::new(1, Duration::from_secs(1)))
        .service(inner);
    assert!(svc.clone().oneshot(1).await.is_err());
    tokio::time::advance(Duration::from_millis(1100)).await;
    // The probe: cut short by a caller's timeout (the Governor's, or an early stop).
    let probe = tokio::time::timeout(Duration::from_millis(200), svc.clone().oneshot(2)).await;
    assert!(probe.is_err(), "the probe hangs and is cancelled");
    // Right after, still resting; after another cooldown a new probe goes and closes it.
    let refused = svc.clone().oneshot(3).await.expect_err("resting");
    assert!(refused.is::<CircuitOpen>());
    tokio::time::advance(Duration::from_millis(1100)).await;
    assert_eq!(svc.clone().oneshot(4).await.expect("probe answers"), 4);
    assert_eq!(svc.clone().oneshot(5).await.expect("closed"), 5);
}

#[tokio::test(start_paused = true)]
async fn timeouts_count_towards_opening_the_circuit() {
    use conclave::agent::{AgentReply, AgentRequest};
    use conclave::decision::Decision;
    // An agent that never answers, in the Governor's per-agent stack (timeout 100 ms).
    let calls = Arc::new(AtomicU32::new(0));
    let counter = calls.clone();
    let agent = tower::util::BoxCloneSyncService::new(service_fn(move |_req: AgentRequest| {
        counter.fetch_add(1, Ordering::SeqCst);
        async move {
            std::future::pending::<()>().await;
            Ok::<AgentReply, BoxError>(AgentReply::new(conclave::ballot::Ballot::choice("x", "a")))
        }
    }));
    let catalog = conclave::policy::Catalog::load(
        &[conclave::policy::SourceFile::new(
            "a.toml",
            "[[agent]]\nid = \"x\"\nkind = \"scripted\"\ntimeout_ms = 100\nscripted = { competence = { default = 0.9 } }\n",
        )],
        &[],
    )
    .expect("catalog");
    let spec = catalog.agents.get("x").expect("spec").clone();
    let svc = conclave::layer::stack(&spec, agent);
    let request = || AgentRequest::new(Arc::new(Decision::choice("d", "x", "?", ["a", "b"])));
    // Each call times out (with one retry inside the stack); after five timed-out attempts
    // the circuit opens, and then nobody is called.
    let mut opened_after = None;
    for k in 1..=10 {
        let e = svc.clone().oneshot(request()).await.expect_err("fails");
        if e.is::<CircuitOpen>() {
            opened_after = Some(k);
            break;
        }
        assert!(e.is::<tower::timeout::error::Elapsed>(), "{e}");
    }
    assert!(opened_after.is_some(), "timeouts never opened the circuit");
    assert_eq!(calls.load(Ordering::SeqCst), 5, "five timed-out attempts");
    let e = svc.clone().oneshot(request()).await.expect_err("open");
    assert!(e.is::<CircuitOpen>(), "{e}");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        5,
        "an open circuit calls nobody"
    );
}
