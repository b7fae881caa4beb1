//! `GET /metrics`: Prometheus text exposition (prometheus-client) of what this replica
//! governed: decisions by policy and outcome, agent calls by agent and cause, decision
//! latency, tokens and dollars by policy, and the agents quarantined or ejected now.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::ballot::Answer;
use crate::decision::Verdict;
use crate::trust::Status;
use crate::trust::store::TrustSnapshot;

type Labels = Vec<(&'static str, String)>;

fn latency_histogram() -> Histogram {
    // 1 ms to about 33 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// The replica's metrics.
pub(super) struct Metrics {
    registry: Registry,
    decisions: Family<Labels, Counter>,
    calls: Family<Labels, Counter>,
    latency: Family<Labels, Histogram, fn() -> Histogram>,
    tokens: Family<Labels, Counter>,
    cost: Family<Labels, Counter<f64, std::sync::atomic::AtomicU64>>,
    escalations: Family<Labels, Counter>,
    standing: Family<Labels, Gauge>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    pub(super) fn new() -> Self {
        let mut registry = Registry::with_prefix("conclave");
        let decisions = Family::<Labels, Counter>::default();
        registry.register(
            "decisions",
            "Governed decisions, by policy and outcome",
            decisions.clone(),
        );
        let calls = Family::<Labels, Counter>::default();
        registry.register(
            "agent_calls",
            "Agent calls of the independent vote, by agent and cause (answered, timeout, error, ...)",
            calls.clone(),
        );
        let latency = Family::<Labels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        registry.register(
            "decision_duration_seconds",
            "Time to govern a decision, by policy",
            latency.clone(),
        );
        let tokens = Family::<Labels, Counter>::default();
        registry.register("tokens", "Tokens spent, by policy", tokens.clone());
        let cost = Family::<Labels, Counter<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register("cost_usd", "Dollars spent, by policy", cost.clone());
        let escalations = Family::<Labels, Counter>::default();
        registry.register(
            "escalations",
            "Decisions handed to the arbiter or a person, by policy and outcome",
            escalations.clone(),
        );
        let standing = Family::<Labels, Gauge>::default();
        registry.register(
            "agents",
            "Agent trust records by standing (provisional, trusted, quarantined, ejected), now",
            standing.clone(),
        );
        Self {
            registry,
            decisions,
            calls,
            latency,
            tokens,
            cost,
            escalations,
            standing,
        }
    }

    /// Counts one governed decision.
    pub(super) fn decided(&self, v: &Verdict, seconds: f64) {
        let policy = || vec![("policy", v.policy.clone())];
        let mut by_outcome = policy();
        by_outcome.push(("outcome", v.outcome.as_str().to_owned()));
        self.decisions.get_or_create(&by_outcome).inc();
        if !matches!(v.outcome, crate::decision::Outcome::Decided { .. }) {
            self.escalations.get_or_create(&by_outcome).inc();
        }
        self.latency.get_or_create(&policy()).observe(seconds);
        self.tokens.get_or_create(&policy()).inc_by(v.tokens);
        self.cost.get_or_create(&policy()).inc_by(v.cost_usd);
        for c in &v.ballots {
            let cause = match &c.ballot.answer {
                Answer::Abstain(a) => a.as_str().to_owned(),
                _ => "answered".to_owned(),
            };
            self.calls
                .get_or_create(&vec![("agent", c.ballot.agent.clone()), ("cause", cause)])
                .inc();
        }
    }

    /// The exposition text, with the standing of every trust record in `trust`.
    pub(super) fn render(&self, trust: &TrustSnapshot) -> Result<String, std::fmt::Error> {
        self.standing.clear();
        for status in [
            Status::Provisional,
            Status::Trusted,
            Status::Quarantined,
            Status::Ejected,
        ] {
            let n = trust
                .states
                .keys()
                .filter(|(agent, domain)| {
                    domain != crate::trust::model::ALL_DOMAINS
                        && trust.standing(agent, domain) == status
                })
                .count();
            self.standing
                .get_or_create(&vec![("standing", status.as_str().to_owned())])
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        let mut out = String::new();
        encode(&mut out, &self.registry)?;
        Ok(out)
    }
}
