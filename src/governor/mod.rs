//! The Governor: one policy's pool of agents as a `Service<Decision, Response = Verdict>`.
//!
//! For each decision it selects and orders the admitted agents, asks them in waves (the
//! first wave independent, no agent sees another's answer), tallies after every wave with the
//! policy's rule and trust weights, and stops as soon as the outcome is certain:
//! **certified** when the weight not yet cast cannot change the winner, or **confident** when
//! the probability that the full pool would elect the current leader reaches 1 − δ (the
//! policy's early-stop risk). Budgets are projected before every call and never exceeded; a
//! deadline bounds the whole decision. A failed, slow or malformed agent is an abstention
//! with its reason, never an error of the decision.
//!
//! Below the arbitration threshold the policy's arbiter rules within its own time budget (an
//! overrun goes to the human hook); below the human threshold, or without quorum, the
//! [`Escalation`] hook receives the verdict.
//!
//! A supervisor watches execution only (failures and timeouts, not answers) and halts a
//! failure storm.
//!
//! Latency: a call still running past the usual latency (the 90th percentile of recent
//! answered calls) is a *straggler*: it is no longer waited for, and the next wave is asked
//! in its place (a hedge). The next wave is also asked at once when the calls in flight could
//! not settle the vote whatever they answer. An agent whose last three calls were late is
//! *known to be late*: it is still asked (its answer counts if it comes in time, and a
//! recovery shows), but it does not count towards its wave and is not waited for. With nobody
//! left to ask and the quorum in, the decision does not wait for stragglers or late agents.
//!
//! Every agent call runs in a `tracing` span `chat` (GenAI conventions; agent, model, latency, tokens,
//! outcome); every decision ends with an event `decision governed` (outcome, stop, calls,
//! waves, tokens, cost, consensus, latency) for a metrics layer to count.

mod builder;
mod certify;
mod confidence;
mod deliberate;
pub mod director;
mod router;
pub use crate::spend;

pub use builder::{GovernorBuildError, GovernorBuilder};
pub use deliberate::{RoundRecord, overturned};
pub use director::{Directives, Director, MemoryOrderBook, Order, OrderBook, OrdersError};
pub use router::PolicyRouter;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::time::Instant;
use tower::{Service, ServiceExt};

use crate::agent::{AgentReply, AgentRequest, AgentService};
use crate::aggregate::{Kind, Rule, TallyInput, consensus, tally};
use crate::audit::{AuditLog, Entry};
use crate::ballot::{Abstention, Answer, Ballot, Cause, CauseKind};
use crate::decision::{Cast, Decision, Outcome, Stop, Verdict};
use crate::policy::{AgentSpec, Policy, Provisional};
use crate::trust::store::TrustSnapshot;
use crate::trust::{Status, TrustState, WeightScheme};

/// Why a decision could not be governed at all (failures of agents are not errors).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GovernorError {
    /// The policy does not cover this decision (deny by default).
    #[error("refused: policy \"{policy}\" does not govern {kind} decisions in domain \"{domain}\"")]
    Refused {
        /// The policy.
        policy: String,
        /// The decision's domain.
        domain: String,
        /// The decision's kind.
        kind: String,
    },
    /// No policy governs the decision (deny by default; from a [`PolicyRouter`]).
    #[error(transparent)]
    NoPolicy(#[from] crate::policy::Refused),
    /// The decision itself is malformed (no options for a choice, …).
    #[error("invalid decision: {0}")]
    Invalid(String),
    /// The verdict could not be recorded.
    #[error("the verdict could not be recorded: {0}")]
    Audit(#[from] crate::audit::AuditError),
    /// Something the decision needs besides the agents failed (the budget account): no
    /// verdict was reached or recorded; the decision may be asked again.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

/// What happens to a decision that needs a human: a hook the application implements (a
/// ticket, a page, a review queue). It receives the verdict and returns it, possibly changed.
pub trait Escalation: Send + Sync {
    /// Handles one escalated verdict.
    fn escalate<'a>(
        &'a self,
        decision: &'a Decision,
        verdict: Verdict,
    ) -> Pin<Box<dyn Future<Output = Verdict> + Send + 'a>>;
}

/// An escalation hook from a closure: it gets the decision and the verdict, and returns the
/// verdict, possibly changed (an override, a ticket number in the reason…).
///
/// ```
/// use std::sync::Arc;
/// use conclave::{Decision, EscalateWith, Escalation, Verdict};
///
/// // A ticket for every decision a person must look at.
/// let hook: Arc<dyn Escalation> = Arc::new(EscalateWith(|d: Decision, v: Verdict| async move {
///     println!("ticket: decision {} needs a person", d.id);
///     v
/// }));
/// # let _ = hook;
/// ```
#[derive(Debug, Clone, Copy)]
pub struct EscalateWith<F>(pub F);

impl<F, Fut> Escalation for EscalateWith<F>
where
    F: Fn(Decision, Verdict) -> Fut + Send + Sync,
    Fut: Future<Output = Verdict> + Send + 'static,
{
    fn escalate<'a>(
        &'a self,
        decision: &'a Decision,
        verdict: Verdict,
    ) -> Pin<Box<dyn Future<Output = Verdict> + Send + 'a>> {
        Box::pin((self.0)(decision.clone(), verdict))
    }
}

/// The default escalation: the verdict is returned (and recorded) as escalated to a human,
/// unchanged; the application reads `Outcome::Human` and acts.
#[derive(Debug, Clone, Copy, Default)]
pub struct RecordEscalation;

impl Escalation for RecordEscalation {
    fn escalate<'a>(
        &'a self,
        _decision: &'a Decision,
        verdict: Verdict,
    ) -> Pin<Box<dyn Future<Output = Verdict> + Send + 'a>> {
        tracing::info!(decision = %verdict.decision, "escalated to a human");
        Box::pin(async move { verdict })
    }
}

/// One agent of the pool with what the Governor knows about it.
#[derive(Debug, Clone)]
struct Member {
    spec: AgentSpec,
    service: AgentService,
}

struct Inner {
    policy: Policy,
    members: Vec<Member>,
    /// The policy's arbiter, if it was among the agents given.
    arbiter: Option<Member>,
    /// What happens to a decision that needs a human.
    escalation: Arc<dyn Escalation>,
    /// The trust weights come from: fixed, or the latest snapshot sent on the channel.
    trust: Arc<TrustSnapshot>,
    updates: Option<tokio::sync::watch::Receiver<Arc<TrustSnapshot>>>,
    /// Per domain: groups of agents whose errors coincide (from the error ledger); a
    /// group's combined weight is capped at its strongest member's.
    clusters: BTreeMap<String, Vec<Vec<String>>>,
    /// Per domain: the agents of the error ledger and their pairwise error correlation,
    /// for the effective number of independent voters (the `n_eff` quorum).
    correlation: BTreeMap<String, (Vec<String>, ndarray::Array2<f64>)>,
    /// Per domain: the pool's record (verdict monitor, agreement of wrong numbers), and
    /// whether the monitor is over its limit.
    pools: BTreeMap<String, crate::trust::ledger::PoolRecord>,
    audit: Option<Arc<dyn AuditLog + Send + Sync>>,
    wave_size: usize,
    supervisor: Supervisor,
    /// The human Director's orders (reweights, suspensions), if any.
    director: Option<Director>,
    /// The accounts of `[budget.total]`.
    spend: Arc<dyn spend::SpendAccount>,
    /// Latencies of recent answered calls (all agents), for the hedging delay.
    recent: std::sync::Mutex<std::collections::VecDeque<Duration>>,
    /// The usual latency (their 90th percentile), refreshed every 128 calls: (calls counted
    /// then, value).
    usual: std::sync::Mutex<(u64, Option<Duration>)>,
    /// Answered calls recorded so far.
    recorded: std::sync::atomic::AtomicU64,
    /// Admitted agents per domain at one trust version (see `seating`).
    admitted: std::sync::Mutex<Seated>,
    /// Per member: whether its recent calls ran past the pool's usual latency (see `Lateness`).
    lateness: Vec<Lateness>,
}

/// Whether an agent's recent calls ran past twice the usual latency of the pool's answered
/// calls: the last eight such observations (1 = late) and how many there are (at most 8). A
/// call counts as late when it answered or timed out past that, or was still out past it
/// when the decision ended; as on time when it answered within it. An agent whose last
/// three observations were late is *known to be late*: it is still asked (so that a recovery
/// shows), but not waited for (see `decide`).
#[derive(Debug, Default)]
struct Lateness(std::sync::atomic::AtomicU32);

impl Lateness {
    /// Whether a call that ran `elapsed` is late, the usual latency being `usual`: past twice
    /// that (an agent is not late for being a little slower than the rest).
    fn is_late(elapsed: Duration, usual: Duration) -> bool {
        elapsed >= 2 * usual
    }

    fn observe(&self, late: bool) {
        let _ = self.0.fetch_update(
            std::sync::atomic::Ordering::Relaxed,
            std::sync::atomic::Ordering::Relaxed,
            |v| {
                let (history, count) = (v & 0xff, v >> 8);
                Some((((history << 1) | u32::from(late)) & 0xff) | ((count + 1).min(8) << 8))
            },
        );
    }

    fn known_late(&self) -> bool {
        let v = self.0.load(std::sync::atomic::Ordering::Relaxed);
        v >> 8 >= 3 && v & 0b111 == 0b111
    }

    fn copy(&self) -> Self {
        Self(std::sync::atomic::AtomicU32::new(
            self.0.load(std::sync::atomic::Ordering::Relaxed),
        ))
    }
}

/// The agents of one domain's decisions: admitted, best first, at most `pool_max` and at most
/// `max_per_family` per family, with each one's estimated competence (for certification).
#[derive(Debug)]
struct Seating {
    seats: Vec<Seat>,
    competence: BTreeMap<String, f64>,
    /// Members of the pool in this domain.
    members: usize,
    /// Of those, quarantined, ejected or below the trust floor: not seated.
    lost: usize,
    /// The members not seated or without a say, and why (for the verdict and its record).
    left_out: Vec<crate::decision::LeftOut>,
    /// The trust version it was seated by.
    trust_version: u64,
    /// The Director's reweights active in the domain when it was seated.
    reweights: usize,
}

/// The seating of each domain, at one trust version.
type Seated = (Option<(u64, u64)>, BTreeMap<String, Arc<Seating>>);

/// Recent latencies kept for hedging.
const RECENT: usize = 512;

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Governor")
            .field("policy", &self.policy.id)
            .field(
                "members",
                &self
                    .members
                    .iter()
                    .map(|m| m.spec.id.as_str())
                    .collect::<Vec<_>>(),
            )
            .field("trust_version", &self.current_trust().version)
            .finish_non_exhaustive()
    }
}

/// The pool service of one policy. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Governor {
    inner: Arc<Inner>,
}

/// An agent chosen for one decision, with its weight and estimated competence.
#[derive(Debug, Clone)]
struct Seat {
    member: usize,
    weight: f64,
    competence: f64,
    /// Being measured (provisional, or under test: see `TrustState::under_test`), and the
    /// policy measures such agents: asked on every decision and waited for.
    measure: bool,
    /// Doubted (see `TrustState::doubted`), and the policy measures: a call already in flight
    /// is waited for rather than cancelled.
    finish: bool,
}

impl Governor {
    /// A Governor for `policy` over `agents` (each with its definition and its service),
    /// weighting by `trust`. Agents the policy's pool does not name are ignored.
    pub fn new(
        policy: Policy,
        agents: Vec<(AgentSpec, AgentService)>,
        trust: TrustSnapshot,
    ) -> Self {
        let arbiter = policy.arbiter.as_ref().and_then(|id| {
            agents
                .iter()
                .find(|(s, _)| &s.id == id)
                .map(|(spec, service)| Member {
                    spec: spec.clone(),
                    service: service.clone(),
                })
        });
        let members = agents
            .into_iter()
            .filter(|(spec, _)| policy.pool.contains(&spec.id))
            .map(|(spec, service)| {
                let service = crate::layer::stack(&spec, service);
                Member { spec, service }
            })
            .collect::<Vec<Member>>();
        let lateness = members.iter().map(|_| Lateness::default()).collect();
        Self {
            inner: Arc::new(Inner {
                policy,
                members,
                arbiter,
                escalation: Arc::new(RecordEscalation),
                trust: Arc::new(trust),
                updates: None,
                clusters: BTreeMap::new(),
                correlation: BTreeMap::new(),
                pools: BTreeMap::new(),
                audit: None,
                wave_size: 2,
                supervisor: Supervisor::default(),
                director: None,
                spend: Arc::new(spend::MemorySpend::new()),
                recent: std::sync::Mutex::new(std::collections::VecDeque::with_capacity(RECENT)),
                usual: std::sync::Mutex::new((0, None)),
                recorded: std::sync::atomic::AtomicU64::new(0),
                admitted: std::sync::Mutex::new((None, BTreeMap::new())),
                lateness,
            }),
        }
    }

    /// Keeps the policy's `[budget.total]` in `account` (default: an account of this
    /// Governor's own; give replicas one they share, such as `PgSpend`).
    #[must_use]
    pub fn with_spend(self, account: Arc<dyn spend::SpendAccount>) -> Self {
        self.configure(|inner| inner.spend = account)
    }

    /// Records every verdict in `log`.
    #[must_use]
    pub fn with_audit(self, log: Arc<dyn AuditLog + Send + Sync>) -> Self {
        self.configure(|inner| inner.audit = Some(log))
    }

    /// What happens to decisions that need a human (default: [`RecordEscalation`]).
    #[must_use]
    pub fn with_escalation(self, hook: Arc<dyn Escalation>) -> Self {
        self.configure(|inner| inner.escalation = hook)
    }

    /// Weights from `trust` from now on (an evaluation run learns trust as it goes).
    #[must_use]
    pub fn with_trust(self, trust: TrustSnapshot) -> Self {
        self.configure(|inner| {
            inner.trust = Arc::new(trust);
            inner.updates = None;
            inner.admitted = std::sync::Mutex::new((None, BTreeMap::new()));
        })
    }

    /// What the error ledger knows, per domain (from
    /// [`ErrorLedger::independence`](crate::trust::ledger::ErrorLedger::independence)):
    /// each group of agents that fail together has its combined weight capped at its
    /// strongest member's (Sybil clones and colluders count once; not under the log-odds
    /// rule, whose weights are competences), and the policy's `n_eff` quorum counts the
    /// ballots as `n / (1 + (n−1)ρ̄)` over their pairwise error correlation, which also
    /// tempers the verdict's confidence. The pool's record gives the numeric confidence the
    /// agreement chance of wrong answers, and its verdict monitor escalates decisions under a
    /// policy that sets `escalation.verdict_alarm`.
    #[must_use]
    pub fn with_independence(
        self,
        independence: BTreeMap<String, crate::trust::ledger::Independence>,
    ) -> Self {
        self.configure(|inner| {
            inner.clusters = independence
                .iter()
                .map(|(d, i)| (d.clone(), i.clusters.clone()))
                .collect();
            inner.pools = independence
                .iter()
                .map(|(d, i)| (d.clone(), i.pool))
                .collect();
            inner.correlation = independence
                .into_iter()
                .map(|(d, i)| (d, (i.agents, i.correlation)))
                .collect();
            inner.admitted = std::sync::Mutex::new((None, BTreeMap::new()));
        })
    }

    /// Agents added per wave after the first (default 2).
    #[must_use]
    pub fn with_wave_size(self, n: usize) -> Self {
        self.configure(|inner| inner.wave_size = n.max(1))
    }

    /// When the supervisor halts a failing decision (default: at least 4 failed calls,
    /// more than half of those made).
    #[must_use]
    pub fn with_supervisor(self, supervisor: Supervisor) -> Self {
        self.configure(|inner| inner.supervisor = supervisor)
    }

    /// Follows the Director's orders: its reweights apply to the weights, a suspended
    /// domain's decisions go to a human, and every hand-over to a human is reported to it
    /// (the ratchet).
    #[must_use]
    pub fn with_director(self, director: Director) -> Self {
        self.configure(|inner| {
            inner.director = Some(director);
            inner.admitted = std::sync::Mutex::new((None, BTreeMap::new()));
        })
    }

    /// Changes a setting: in place when this is the only handle, else on a copy.
    fn configure(self, f: impl FnOnce(&mut Inner)) -> Self {
        let mut inner = Arc::try_unwrap(self.inner).unwrap_or_else(|a| a.clone_inner());
        f(&mut inner);
        Self {
            inner: Arc::new(inner),
        }
    }

    /// The governing policy.
    pub fn policy(&self) -> &Policy {
        &self.inner.policy
    }

    /// Governs one decision.
    ///
    /// # Errors
    /// A decision the policy does not cover, a malformed decision, or an audit failure.
    pub async fn decide(&self, decision: Decision) -> Result<Verdict, GovernorError> {
        // OpenTelemetry GenAI conventions: the decision is an `invoke_workflow` span; its
        // agent calls are `chat` spans under it; the verdict's confidence is an evaluation
        // result event.
        let policy = self.inner.policy.id();
        let span = tracing::info_span!(
            "invoke_workflow",
            otel.name = %format_args!("invoke_workflow {policy}"),
            gen_ai.operation.name = "invoke_workflow",
            gen_ai.workflow.name = policy,
            conclave.decision.id = %decision.id,
            conclave.domain = %decision.domain,
            conclave.outcome = tracing::field::Empty,
            gen_ai.usage.input_tokens = tracing::field::Empty,
            error.type = tracing::field::Empty,
        );
        let result =
            tracing::Instrument::instrument(self.inner.decide(decision), span.clone()).await;
        if !span.is_disabled() {
            match &result {
                Ok(v) => {
                    span.record("conclave.outcome", v.outcome.as_str());
                    span.in_scope(|| {
                        tracing::info!(
                            event.name = "gen_ai.evaluation.result",
                            gen_ai.evaluation.name = "conclave.confidence",
                            gen_ai.evaluation.score.value = v.confidence,
                            gen_ai.evaluation.score.label = v.outcome.as_str(),
                            gen_ai.evaluation.explanation = %format_args!("consensus {:.3}, {} calls", v.consensus, v.calls),
                        );
                    });
                }
                Err(e) => {
                    span.record("error.type", e.to_string().as_str());
                }
            }
        }
        result
    }
}

impl Inner {
    fn clone_inner(&self) -> Self {
        Self {
            policy: self.policy.clone(),
            members: self.members.clone(),
            arbiter: self.arbiter.clone(),
            escalation: self.escalation.clone(),
            trust: self.trust.clone(),
            updates: self.updates.clone(),
            clusters: self.clusters.clone(),
            correlation: self.correlation.clone(),
            pools: self.pools.clone(),
            audit: self.audit.clone(),
            wave_size: self.wave_size,
            supervisor: self.supervisor,
            director: self.director.clone(),
            spend: self.spend.clone(),
            recent: std::sync::Mutex::new(self.recent_latencies().into()),
            usual: std::sync::Mutex::new((0, None)),
            recorded: std::sync::atomic::AtomicU64::new(0),
            admitted: std::sync::Mutex::new((None, BTreeMap::new())),
            lateness: self.lateness.iter().map(Lateness::copy).collect(),
        }
    }

    fn recent_latencies(&self) -> Vec<Duration> {
        self.recent
            .lock()
            .map(|r| r.iter().copied().collect())
            .unwrap_or_default()
    }

    fn record_latency(&self, d: Duration) {
        self.recorded
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Ok(mut r) = self.recent.lock() {
            if r.len() == RECENT {
                r.pop_front();
            }
            r.push_back(d);
        }
    }

    /// The usual latency: the 90th percentile of recent answered calls, once 20 are known
    /// (read once per decision).
    fn recent_usual(&self) -> Option<Duration> {
        let Ok(mut cached) = self.usual.lock() else {
            return None;
        };
        let count = self.recorded.load(std::sync::atomic::Ordering::Relaxed);
        if count >= cached.0 + 128 || (cached.1.is_none() && count >= 20) {
            let mut recent = self.recent_latencies();
            *cached = (count, None);
            if recent.len() >= 20 {
                let k = recent.len() * 90 / 100;
                let (_, usual, _) = recent.select_nth_unstable(k);
                cached.1 = Some((*usual).max(Duration::from_millis(1)));
            }
        }
        cached.1
    }

    /// The trust weights come from now.
    fn current_trust(&self) -> Arc<TrustSnapshot> {
        match &self.updates {
            Some(rx) => rx.borrow().clone(),
            None => self.trust.clone(),
        }
    }

    /// The admitted agents of a domain with their weights and selection scores, best first:
    /// computed once per domain and trust version.
    fn seating(&self, domain: &str) -> Arc<Seating> {
        let trust = self.current_trust();
        let orders = self.director.as_ref().map(Director::current);
        let now = crate::time::now();
        let key = (trust.version, orders.as_ref().map_or(0, |o| o.version));
        let reweights = orders.as_ref().map_or(0, |o| o.active_in(domain, now));
        if let Ok(mut cache) = self.admitted.lock() {
            if cache.0 != Some(key) {
                *cache = (Some(key), BTreeMap::new());
            }
            if let Some(a) = cache.1.get(domain)
                && a.reweights == reweights
            {
                return a.clone();
            }
        }
        let p = &self.policy;
        let params = &trust.params;
        let (w_expertise, w_trust) = p.selection;
        let mut scored: Vec<(f64, Seat)> = Vec::new();
        let mut lost = 0;
        let mut left_out = Vec::new();
        let leave = |out: &mut Vec<crate::decision::LeftOut>, id: &str, reason: String| {
            out.push(crate::decision::LeftOut {
                agent: id.to_owned(),
                reason,
            });
        };
        for (i, m) in self.members.iter().enumerate() {
            // Evidence that the agent has turned travels: a streak against its record in any
            // domain turns it here too (see `TrustState::travelled`).
            let state = trust
                .get(&m.spec.id, domain)
                .cloned()
                .unwrap_or_else(|| TrustState::new(params))
                .travelled(trust.get(&m.spec.id, crate::trust::model::ALL_DOMAINS));
            let status = trust.standing(&m.spec.id, domain);
            if matches!(status, Status::Quarantined | Status::Ejected) {
                lost += 1;
                leave(&mut left_out, &m.spec.id, status.as_str().to_owned());
                continue;
            }
            // The floor applies once the evidence is in: two early misses must not shut an
            // agent out for good (it would never be graded again); nor does it apply while a
            // quarantine test is deciding about the agent (the test needs its answers).
            let under_test = p.measure_provisional && state.under_test(params);
            if status != Status::Provisional && state.trust() < p.trust_floor && !under_test {
                lost += 1;
                leave(
                    &mut left_out,
                    &m.spec.id,
                    format!(
                        "below the trust floor (trust {:.2} < {:.2})",
                        state.trust(),
                        p.trust_floor
                    ),
                );
                continue;
            }
            // What the vote counts on: trust, unless the agent has likely turned (see
            // `TrustState::effective_competence`); one more likely turned than not is asked
            // (its answers are evidence) but has no say.
            let effective = state.effective_competence(params);
            // Lost to the vote as a quarantined agent is, though still asked.
            let turned = state.turned(params);
            lost += usize::from(turned);
            // The Director's reweight, while it lasts.
            let factor = orders
                .as_ref()
                .map_or(1.0, |o| o.factor(&m.spec.id, domain, now));
            let weight = self.seat_weight(&state, params, status, turned, factor);
            if turned {
                leave(
                    &mut left_out,
                    &m.spec.id,
                    "asked, without a say: it has likely turned (a streak against its own record)"
                        .to_owned(),
                );
            } else if factor == 0.0 {
                leave(
                    &mut left_out,
                    &m.spec.id,
                    "asked, without a say: reweighted to 0 by the Director".to_owned(),
                );
            }
            let expertise = if m.spec.domains.iter().any(|d| d == domain) {
                1.0
            } else {
                0.0
            };
            let score = w_expertise * expertise + w_trust * state.trust();
            scored.push((
                score,
                Seat {
                    member: i,
                    weight,
                    competence: effective.clamp(0.05, 0.95),
                    measure: p.measure_provisional
                        && (status == Status::Provisional || under_test || turned),
                    finish: p.measure_provisional && state.doubted(),
                },
            ));
        }
        if !matches!(p.rule, Rule::LogOdds { .. })
            && let Some(groups) = self.clusters.get(domain)
        {
            let mut weights: Vec<(String, f64)> = scored
                .iter()
                .map(|(_, s)| (self.members[s.member].spec.id.clone(), s.weight))
                .collect();
            crate::trust::ledger::cap_clusters(&mut weights, groups);
            for ((_, seat), (_, w)) in scored.iter_mut().zip(weights) {
                seat.weight = w;
            }
        }
        scored.sort_by(|a, b| {
            b.0.total_cmp(&a.0).then_with(|| {
                self.members[a.1.member]
                    .spec
                    .id
                    .cmp(&self.members[b.1.member].spec.id)
            })
        });
        // At most N per family, at most pool_max in all.
        let mut per_family: BTreeMap<String, u32> = BTreeMap::new();
        let mut seats = Vec::new();
        for (_, seat) in scored {
            let spec = &self.members[seat.member].spec;
            if seats.len() >= p.pool_max as usize {
                leave(
                    &mut left_out,
                    &spec.id,
                    format!("not seated: the pool takes at most {}", p.pool_max),
                );
                continue;
            }
            if let Some(limit) = p.max_per_family {
                let family = spec.family.clone().unwrap_or_else(|| spec.id.clone());
                let n = per_family.entry(family.clone()).or_default();
                if *n >= limit {
                    leave(
                        &mut left_out,
                        &spec.id,
                        format!("not seated: at most {limit} of family {family}"),
                    );
                    continue;
                }
                *n += 1;
            }
            seats.push(seat);
        }
        // Agents still being measured go first: every decision asks them (see `decide`).
        seats.sort_by_key(|s: &Seat| !s.measure);
        let competence = seats
            .iter()
            .map(|s| (self.members[s.member].spec.id.clone(), s.competence))
            .collect();
        let seating = Arc::new(Seating {
            seats,
            competence,
            members: self.members.len(),
            lost,
            left_out,
            trust_version: trust.version,
            reweights,
        });
        if let Ok(mut cache) = self.admitted.lock()
            && cache.0 == Some(key)
        {
            cache.1.insert(domain.to_owned(), seating.clone());
        }
        seating
    }

    /// An admitted agent's weight: WBFT from its trust (its competence under the log-odds
    /// rule), none if it has likely turned, as the policy says for provisional agents, times
    /// the Director's factor (a competence stays a probability).
    fn seat_weight(
        &self,
        state: &TrustState,
        params: &crate::trust::TrustParams,
        status: Status,
        turned: bool,
        factor: f64,
    ) -> f64 {
        let p = &self.policy;
        let scheme = WeightScheme::Wbft {
            alpha: p.alpha,
            quality: 1.0,
        };
        let log_odds = matches!(p.rule, Rule::LogOdds { .. });
        let effective = state.effective_competence(params);
        let mut weight = state.vote_weight(params, scheme);
        if log_odds {
            // The log-odds rule takes each agent's competence as its weight (at or below
            // chance, no weight).
            weight = if turned {
                0.01
            } else {
                effective.clamp(0.01, 0.99)
            };
        } else if turned {
            weight = 0.0;
        } else if status == Status::Provisional {
            weight = match p.provisional {
                Provisional::Reduced => weight,
                Provisional::Advisory => 0.0,
                Provisional::Full => crate::aggregate::weights::wbft(effective, 1.0, p.alpha),
            };
        }
        if factor == 1.0 {
            weight
        } else if log_odds {
            (weight * factor).clamp(0.01, 0.99)
        } else {
            weight * factor
        }
    }

    /// Effective number of independent voters among `agents` in `domain`: pairs the ledger
    /// has not measured count as independent.
    fn n_eff<'a>(&self, domain: &str, agents: impl Iterator<Item = &'a str>) -> f64 {
        let Some((known, corr)) = self.correlation.get(domain) else {
            return agents.count() as f64;
        };
        let agents: Vec<&str> = agents.collect();
        let n = agents.len();
        let index: Vec<Option<usize>> = agents
            .iter()
            .map(|a| known.iter().position(|k| k == a))
            .collect();
        let sub = ndarray::Array2::from_shape_fn((n, n), |(i, j)| {
            if i == j {
                return 1.0;
            }
            match (index[i], index[j]) {
                (Some(a), Some(b)) => corr[[a, b]],
                _ => 0.0,
            }
        });
        consensus::n_eff_mean_correlation(sub.view())
    }

    /// The ballots a decision needs: the policy's quorum, or every seated agent able to answer
    /// this decision when fewer are. Agents quarantined or ejected are not seated, and agents
    /// that cannot answer this decision (`unreachable`: their call timed out, failed or met an
    /// open circuit, or they are known to be late and still out) leave the quorum too. A
    /// verdict from fewer ballots still needs the confidence the thresholds ask for; the
    /// supervisor halts failure storms; and the lost-majority bound escalates once trust has
    /// taken too many agents out.
    fn ballots_needed(&self, seats: usize, unreachable: usize) -> usize {
        (self.policy.quorum_ballots as usize)
            .min(seats.saturating_sub(unreachable))
            .max(1)
    }

    /// How far the counted ballots among `casts` go towards the quorum (`total_weight`: the
    /// weight of every seat of the decision; `need`: the ballots needed).
    fn quorum(&self, domain: &str, casts: &[Cast], total_weight: f64, need: usize) -> Quorum {
        let counted = || casts.iter().filter(|c| !c.ballot.is_abstention());
        let p = &self.policy;
        let ballots = counted().count();
        let weight: f64 = counted().map(|c| c.weight).sum();
        // Agents that could not answer this decision leave the denominator as they leave the
        // ballot quorum.
        let gone: f64 = casts
            .iter()
            .filter(|c| {
                matches!(&c.ballot.answer, Answer::Abstain(a)
                    if a.class() == crate::ballot::AbstentionClass::Infrastructure)
            })
            .map(|c| c.weight)
            .sum();
        let total_weight = (total_weight - gone).max(0.0);
        let share = if total_weight > 0.0 {
            weight / total_weight
        } else {
            0.0
        };
        let n_eff = self.n_eff(domain, counted().map(|c| c.ballot.agent.as_str()));
        Quorum {
            met: ballots >= need
                && (total_weight <= 0.0 || share >= p.quorum_weight_share - 1e-12)
                && n_eff >= p.quorum_n_eff - 1e-9,
            ballots,
            share,
            n_eff,
        }
    }

    /// The rule for this decision: the robust one when the policy's switch is on and it
    /// can count this kind.
    fn rule_for(&self, decision: &Decision) -> Rule {
        let high = decision.stakes == Some(crate::policy::Stakes::High);
        match &self.policy.robust {
            Some(r) if (r.active() || high) && r.rule.counts(decision.kind) => r.rule,
            _ => self.policy.rule,
        }
    }

    /// The decision is one this policy governs, and well formed.
    fn admit(&self, decision: &Decision) -> Result<(), GovernorError> {
        let p = &self.policy;
        if !p.covers(&decision.domain, decision.kind) {
            return Err(GovernorError::Refused {
                policy: p.id.clone(),
                domain: decision.domain.clone(),
                kind: decision.kind.as_str().to_owned(),
            });
        }
        decision.check(&p.limits).map_err(GovernorError::Invalid)
    }

    /// Governs one decision: seat the agents, fly the calls, count, classify, conclude.
    async fn decide(&self, decision: Decision) -> Result<Verdict, GovernorError> {
        self.admit(&decision)?;
        let p = &self.policy;
        let rule = self.rule_for(&decision);
        let seating = self.seating(&decision.domain);
        // What graded decisions say about this domain's pool.
        let pool = self.pools.get(&decision.domain);
        let agreement = pool.map_or(0.5, crate::trust::ledger::PoolRecord::agreement_chance);
        let decision = Arc::new(decision);
        let started = Instant::now();
        let mut f = self.flight(&seating, &decision, started);
        let stop = self.fly(&mut f, rule, agreement).await;
        let late_cut = self.cancel_rest(&mut f, stop);
        let mut casts = std::mem::take(&mut f.casts);
        let mut counted = self.count(&decision, &mut casts, rule, &seating.competence, agreement);
        // Weak consensus under a deliberating policy: rounds in which the agents see each
        // other's answers; the last round's count is the verdict's.
        let mut rounds = Vec::new();
        if let Some(d) = p.deliberation
            && matches!(stop, Stop::Certified | Stop::Confident | Stop::Exhausted)
            && counted.result.is_some()
            // Time enough for rounds, or straight to the arbiter.
            && f.deadline.is_none_or(|t| {
                t.saturating_duration_since(Instant::now()) >= Duration::from_millis(d.min_time_ms)
            })
            && deliberate::round_consensus(decision.kind, &counted, &casts, d.epsilon) < d.tau
        {
            let done = self
                .deliberate(&decision, &seating, d, &casts, counted, f.deadline)
                .await;
            f.tokens += done.tokens;
            f.tokens_in += done.tokens_in;
            f.cost += done.cost;
            counted = done.counted;
            rounds = done.rounds;
        }
        let need = self.ballots_needed(seating.seats.len(), unreachable(&casts) + late_cut);
        let quorum = self.quorum(&decision.domain, &casts, f.total_weight, need);
        let suspended = self
            .director
            .as_ref()
            .and_then(|d| d.current().suspension(&decision.domain).cloned());
        let Classified { outcome, own } = classify(&Classify {
            policy: p,
            suspended: suspended.as_ref(),
            stop,
            calls: casts.len(),
            failed: failures(&casts),
            starved: f.budget_blocked || f.out_of_time,
            members: seating.members,
            lost: seating.lost,
            alarm: pool.map(|r| r.alarm),
            counted: &counted,
            quorum,
            need,
        });
        let verdict = Verdict {
            decision: decision.id.clone(),
            policy: p.id.clone(),
            policy_hash: p.hash.clone(),
            trust_version: seating.trust_version,
            outcome,
            rule,
            tally: counted.result,
            consensus: counted.consensus,
            confidence: counted.confidence,
            calls: casts.len(),
            ballots: casts,
            waves: f.waves,
            stop,
            tokens: f.tokens,
            prompt_tokens: f.tokens_in,
            cost_usd: f.cost,
            ruling: None,
            rounds,
            left_out: seating.left_out.clone(),
        };
        // A decision that reached no verdict because the budget account failed is not
        // recorded as a hand-over: the caller is told to try again.
        if let Some(e) = &f.account_failed
            && matches!(
                verdict.outcome,
                Outcome::Human { .. } | Outcome::Refused { .. }
            )
        {
            return Err(GovernorError::Unavailable(format!(
                "the budget account failed: {e}"
            )));
        }
        let (verdict, own) = self.conclude(&decision, verdict, own).await;
        // The decision's metrics, one event (a metrics layer of `tracing` can count them).
        tracing::info!(
            decision = %verdict.decision,
            policy = %p.id,
            outcome = verdict.outcome.as_str(),
            stop = ?verdict.stop,
            calls = verdict.calls,
            waves = verdict.waves,
            tokens = verdict.tokens,
            cost_usd = verdict.cost_usd,
            consensus = verdict.consensus,
            latency_ms = started.elapsed().as_millis() as u64,
            "decision governed"
        );
        if let Some(log) = &self.audit {
            let log = log.clone();
            let mut record = verdict.record(&decision);
            if p.audit == crate::policy::AuditLevel::Summary {
                record = record.summarised();
            }
            let entry = Entry::Decision(Box::new(record));
            append_off_worker(log, entry).await?;
        }
        // Only a recorded hand-over for the decision's own reasons counts towards the ratchet.
        if own
            && matches!(verdict.outcome, Outcome::Human { .. })
            && let Some(d) = &self.director
        {
            match d.hand_over(&decision.domain, crate::time::now()) {
                Ok(Some(s)) => {
                    tracing::warn!(domain = %decision.domain, reason = %s.reason, "autonomy suspended by the ratchet");
                }
                Ok(None) => {}
                // The verdict stands and is recorded; the count misses one hand-over.
                Err(e) => {
                    tracing::warn!(domain = %decision.domain, error = %e, "a hand-over could not be counted");
                }
            }
        }
        Ok(verdict)
    }

    /// The state of one decision's calls, before the first is launched.
    fn flight(&self, seating: &Arc<Seating>, decision: &Arc<Decision>, started: Instant) -> Flight {
        let p = &self.policy;
        let seats = &seating.seats;
        // The evidence the seated agents carry (for certificates; the verdict's confidence
        // tempers by the agents that answered).
        let seating_temper = temper(
            self.n_eff(
                &decision.domain,
                seats
                    .iter()
                    .map(|s| self.members[s.member].spec.id.as_str()),
            ),
            seats.len(),
        );
        let recent_usual = self.recent_usual();
        Flight {
            seating: seating.clone(),
            decision: decision.clone(),
            deadline: p
                .budget
                .decision_ms
                .map(|ms| started + Duration::from_millis(ms)),
            started,
            prompt_tokens: self.prompt_tokens(),
            set: FuturesUnordered::new(),
            in_flight: BTreeMap::new(),
            next: 0,
            waves: 0,
            reserved_tokens: 0,
            reserved_cost: 0.0,
            budget_blocked: false,
            account_failed: None,
            out_of_time: false,
            casts: Vec::new(),
            tokens: 0,
            tokens_in: 0,
            cost: 0.0,
            latencies: Vec::new(),
            recent_usual,
            // How long a call may run before it counts as a straggler: the usual latency,
            // else (until enough calls are known) twice this decision's median.
            straggler_after: recent_usual,
            total_weight: seats.iter().map(|s| s.weight).sum(),
            seating_temper,
        }
    }

    /// Asks the agents in waves until the outcome is certain, the quorum is in and nobody
    /// awaited is left, the supervisor halts, the budget or the deadline ends it.
    async fn fly(&self, f: &mut Flight, rule: Rule, agreement: f64) -> Stop {
        let seats = f.seating.seats.len();
        // Without a deadline, a time that never comes (for the `select!` below).
        let deadline_at = f
            .deadline
            .unwrap_or(f.started + Duration::from_secs(86_400 * 365));
        // The first wave: the quorum, and the agents being measured (each must be asked: in
        // one round rather than after the vote has settled), at most twice the quorum so that
        // the supervisor can still halt a failure storm before every agent is called.
        let need = self.ballots_needed(seats, 0);
        let measured = f.seating.seats.iter().filter(|s| s.measure).count();
        self.launch(f, measured.clamp(need, 2 * need));
        loop {
            // Nothing awaited in flight (neither agents known to be late nor stragglers are
            // awaited): the next wave, or, with nobody left to ask, the end.
            if f.awaited() == 0 {
                match self.when_idle(f) {
                    Idle::Stop(stop) => return stop,
                    Idle::Asked => continue,
                    Idle::Wait => {}
                }
            }
            // Hedge: when the oldest awaited call becomes a straggler, ask more agents.
            let hedge = f.straggler_after.and_then(|d| f.next_straggler(d));
            tokio::select! {
                // Fixed branch order: a run under simulated time is reproducible.
                biased;
                joined = f.set.next() => {
                    let Some((i, reply, latency)) = joined else { continue };
                    self.on_reply(f, i, reply, latency);
                    if let Some(stop) = self.after_reply(f, rule, agreement) {
                        return stop;
                    }
                }
                () = tokio::time::sleep_until(hedge.unwrap_or(deadline_at)), if hedge.is_some() => {
                    self.on_stragglers(f);
                }
                () = tokio::time::sleep_until(deadline_at), if f.deadline.is_some() => {
                    return Stop::Deadline;
                }
            }
        }
    }

    /// Nothing awaited is in flight: ask the next wave, end, or wait for the late calls.
    fn when_idle(&self, f: &mut Flight) -> Idle {
        let seats = f.seating.seats.len();
        if f.next < seats && !f.budget_blocked && !f.out_of_time {
            self.launch(f, self.wave_size);
            if !f.in_flight.is_empty() {
                return Idle::Asked;
            }
        }
        if f.in_flight.is_empty() {
            return Idle::Stop(if f.out_of_time {
                Stop::Deadline
            } else if f.budget_blocked {
                Stop::Budget
            } else {
                Stop::Exhausted
            });
        }
        // Only late calls are still out: decide without them if the quorum is in.
        let late = f.in_flight.values().filter(|c| c.late).count();
        let need = self.ballots_needed(seats, unreachable(&f.casts) + late);
        if self
            .quorum(&f.decision.domain, &f.casts, f.total_weight, need)
            .met
        {
            return Idle::Stop(Stop::Exhausted);
        }
        Idle::Wait
    }

    /// One call came back: its ballot (or abstention) is cast, its tokens and latency counted.
    fn on_reply(
        &self,
        f: &mut Flight,
        i: usize,
        reply: Result<AgentReply, Failed>,
        latency: Duration,
    ) {
        let wave = f.in_flight.remove(&i).map_or(f.waves, |c| c.wave);
        let seating = f.seating.clone();
        let seat = &seating.seats[i];
        let spec = &self.members[seat.member].spec;
        let call_tokens = u64::from(f.prompt_tokens) + u64::from(spec.max_tokens);
        f.reserved_tokens = f.reserved_tokens.saturating_sub(call_tokens);
        f.reserved_cost = (f.reserved_cost - spec.call_cost(f.prompt_tokens)).max(0.0);
        if let Some(usual) = f.straggler_after
            && !matches!(
                &reply,
                Err(Failed {
                    reason: Abstention::Error | Abstention::CircuitOpen,
                    ..
                })
            )
        {
            self.lateness[seat.member].observe(Lateness::is_late(latency, usual));
        }
        let (ballot, t, c) = match reply {
            Ok(r) => {
                if f.recent_usual.is_none() {
                    f.latencies.push(latency);
                }
                self.record_latency(latency);
                let t = u64::from(r.tokens_in) + u64::from(r.tokens_out);
                f.tokens_in += u64::from(r.tokens_in);
                (
                    sanitize(spec, &f.decision, self.policy.limits.dimensions, r.ballot),
                    t,
                    r.cost_usd,
                )
            }
            Err(Failed { reason, cause }) => {
                let mut b = Ballot::abstain(spec.id.clone(), reason);
                b.cause = cause;
                (b, 0, 0.0)
            }
        };
        f.tokens += t;
        f.cost += c;
        f.casts.push(Cast {
            ballot,
            weight: seat.weight,
            latency_ms: latency.as_millis() as u64,
            tokens: t,
            cost_usd: c,
            wave,
        });
        if f.recent_usual.is_none() {
            f.straggler_after =
                median(&mut f.latencies).map(|m| (2 * m).max(Duration::from_millis(1)));
        }
    }

    /// After a reply: the supervisor, the certificate, and the next wave if the vote cannot
    /// settle on the calls awaited. `Some` ends the decision.
    fn after_reply(&self, f: &mut Flight, rule: Rule, agreement: f64) -> Option<Stop> {
        let p = &self.policy;
        let seating = f.seating.clone();
        let seats = &seating.seats;
        // The supervisor watches execution only: when most calls fail or time out, asking
        // more agents feeds a storm; halt and escalate.
        let failed = failures(&f.casts);
        if self.supervisor.halts(failed, f.casts.len()) {
            tracing::warn!(decision = %f.decision.id, failed, calls = f.casts.len(), "supervisor halted the decision");
            return Some(Stop::Halted);
        }
        let (decision, seating_temper) = (f.decision.clone(), f.seating_temper);
        let vote = |need| certify::Vote {
            policy: p,
            rule,
            decision: &decision,
            competence: &seating.competence,
            need,
            agreement,
            temper: seating_temper,
        };
        // Certify (once the ballot quorum is in), counting calls still in flight as weight
        // not yet cast (the certificate checks the weight share itself, against the weight
        // still to come).
        let need = self.ballots_needed(seats.len(), unreachable(&f.casts));
        let q = self.quorum(&f.decision.domain, &f.casts, f.total_weight, need);
        if q.ballots >= need && q.n_eff >= p.quorum_n_eff - 1e-9 {
            let mut pending: Vec<&Seat> = f.in_flight.keys().map(|&k| &seats[k]).collect();
            pending.extend(seats[f.next..].iter());
            if let Some(s) = certify::check(&vote(need), &f.casts, &pending) {
                // Provisional agents are measured: the decision stops only once each has
                // answered (or is known to be late, or running late).
                let unmeasured = seats[f.next..].iter().filter(|s| s.measure).count();
                let out = f.in_flight.values().any(|c| c.waited && c.measure);
                if unmeasured == 0 && !out {
                    return Some(s);
                }
                if unmeasured > 0 && !f.budget_blocked {
                    self.launch(f, unmeasured);
                }
            }
        }
        // Whatever the awaited calls answer, the vote stays open: ask the next wave now
        // rather than after them.
        if f.awaited() > 0 && f.next < seats.len() && !f.budget_blocked && !f.out_of_time {
            let awaited: Vec<(&str, &Seat)> = f
                .in_flight
                .iter()
                .filter(|(_, c)| c.waited)
                .map(|(&k, _)| (self.members[seats[k].member].spec.id.as_str(), &seats[k]))
                .collect();
            let mut rest: Vec<&Seat> = f
                .in_flight
                .iter()
                .filter(|(_, c)| !c.waited)
                .map(|(&k, _)| &seats[k])
                .collect();
            rest.extend(seats[f.next..].iter());
            let need = self.ballots_needed(seats.len(), unreachable(&f.casts));
            if !certify::settleable(&vote(need), &f.casts, &awaited, &rest) {
                self.launch(f, self.wave_size);
            }
        }
        None
    }

    /// The oldest awaited calls became stragglers: no longer awaited; more agents are asked
    /// in their place (with nobody left to ask, the decision goes on without them once the
    /// quorum is in).
    fn on_stragglers(&self, f: &mut Flight) {
        let now = Instant::now();
        if let Some(d) = f.straggler_after {
            for c in f.in_flight.values_mut() {
                if c.waited && c.straggler_at(d) <= now {
                    c.waited = false;
                }
            }
        }
        if f.awaited() > 0 && f.next < f.seating.seats.len() && !f.budget_blocked && !f.out_of_time
        {
            self.launch(f, self.wave_size);
        }
    }

    /// Calls still in flight are not needed (or out of time): cancelled, each cast as an
    /// abstention. The number of them that went to agents known to be late (they leave the
    /// quorum).
    fn cancel_rest(&self, f: &mut Flight, stop: Stop) -> usize {
        drop(std::mem::take(&mut f.set));
        let reason = if stop == Stop::Deadline {
            Abstention::Timeout
        } else {
            Abstention::Cancelled
        };
        let now = Instant::now();
        let late_cut = f.in_flight.values().filter(|c| c.late).count();
        for (&i, call) in &f.in_flight {
            let seat = &f.seating.seats[i];
            // Still out when the decision ended: late if past it already (else no evidence).
            if let Some(usual) = f.straggler_after
                && Lateness::is_late(now - call.at, usual)
            {
                self.lateness[seat.member].observe(true);
            }
            f.casts.push(Cast {
                ballot: Ballot::abstain(self.members[seat.member].spec.id.clone(), reason.clone()),
                weight: seat.weight,
                latency_ms: 0,
                tokens: 0,
                cost_usd: 0.0,
                wave: call.wave,
            });
        }
        late_cut
    }

    /// The tally of the cast ballots, its consensus and the verdict's confidence.
    fn count(
        &self,
        decision: &Decision,
        casts: &mut [Cast],
        rule: Rule,
        competence: &BTreeMap<String, f64>,
        agreement: f64,
    ) -> Counted {
        // The ballots move into the tally's input and back: copied only for the audit record.
        let input = tally_input(decision, casts);
        let tallied = tally(&input, &rule);
        for (c, b) in casts.iter_mut().zip(input.ballots) {
            c.ballot = b;
        }
        let counted = casts.iter().filter(|c| !c.ballot.is_abstention()).count();
        let (result, tally_error) = match tallied {
            Ok(r) => (Some(r), None),
            // Nothing to count is a missing quorum, said by `classify`; anything else is a
            // fault of the tally, said as such.
            Err(_) if counted == 0 => (None, None),
            Err(e) => (None, Some(e.to_string())),
        };
        let consensus = result
            .as_ref()
            .map_or(0.0, |r| consensus_of(decision.kind, r, casts));
        // The probability that the verdict is right: what the thresholds apply to.
        let confidence = match &result {
            Some(r) => match (r.winner.as_deref(), r.value, r.vector.as_deref()) {
                (Some(w), _, _) => self.posterior(
                    decision,
                    casts,
                    competence,
                    agreement,
                    &Answer::Choice(w.to_owned()),
                ),
                (_, Some(v), _) => {
                    self.posterior(decision, casts, competence, agreement, &Answer::Score(v))
                }
                (_, _, Some(v)) => self.posterior(
                    decision,
                    casts,
                    competence,
                    agreement,
                    &Answer::Vector(v.to_vec()),
                ),
                _ => 0.0,
            },
            None => 0.0,
        };
        Counted {
            result,
            tally_error,
            consensus,
            confidence,
        }
    }

    /// The probability that `answer` is right given the counted `casts` and each voter's
    /// measured competence, the evidence tempered by the counted voters' effective number
    /// (options: the Nitzan–Paroush posterior of its option or first choice; numbers and
    /// vectors: agreement within the policy's tolerance).
    fn posterior(
        &self,
        decision: &Decision,
        casts: &[Cast],
        competence: &BTreeMap<String, f64>,
        agreement: f64,
        answer: &Answer,
    ) -> f64 {
        let counted_agents = || {
            casts
                .iter()
                .filter(|c| !c.ballot.is_abstention())
                .map(|c| c.ballot.agent.as_str())
        };
        let temper = temper(
            self.n_eff(&decision.domain, counted_agents()),
            counted_agents().count(),
        );
        let tolerance = self.policy.thresholds.tolerance;
        match answer {
            Answer::Choice(o) => {
                confidence::of_option(&decision.options, casts, competence, o, temper)
            }
            Answer::Ranking(r) => r.first().map_or(0.0, |o| {
                confidence::of_option(&decision.options, casts, competence, o, temper)
            }),
            Answer::Score(v) => {
                confidence::of_point(casts, competence, &[*v], tolerance, agreement, temper)
            }
            Answer::Vector(v) => {
                confidence::of_point(casts, competence, v, tolerance, agreement, temper)
            }
            Answer::Abstain(_) => 0.0,
        }
    }

    /// Arbitration and escalation: an arbitrated verdict gets the arbiter's ruling (or goes
    /// to a human), a human one goes through the escalation hook. With the verdict, whether
    /// a hand-over is for the decision's own reasons (an arbiter that could not rule is not).
    async fn conclude(
        &self,
        decision: &Arc<Decision>,
        mut verdict: Verdict,
        mut own: bool,
    ) -> (Verdict, bool) {
        if let Outcome::Arbitrated { arbiter, .. } = &verdict.outcome {
            let arbiter = arbiter.clone();
            let ruling = self.arbitrate(decision, &verdict).await;
            let words = ruling.as_ref().and_then(|b| match &b.answer {
                Answer::Choice(c) => Some(c.clone()),
                Answer::Ranking(r) => r.first().cloned(),
                Answer::Score(v) => Some(v.to_string()),
                _ => None,
            });
            verdict.ruling = ruling;
            verdict.outcome = match words {
                Some(ruling) => Outcome::Arbitrated { arbiter, ruling },
                None => {
                    own = false;
                    Outcome::Human {
                        reason: format!("the arbiter {arbiter} could not rule in its time"),
                    }
                }
            };
        }
        if matches!(verdict.outcome, Outcome::Human { .. }) {
            verdict = self.escalation.escalate(decision, verdict).await;
        }
        (verdict, own)
    }

    /// Asks the arbiter within the arbitration budget; its ruling, or `None` if it failed,
    /// abstained or ran out of time.
    async fn arbitrate(&self, decision: &Arc<Decision>, verdict: &Verdict) -> Option<Ballot> {
        let arbiter = self.arbiter.as_ref()?;
        let budget = Duration::from_millis(
            self.policy
                .budget
                .arbitration_ms
                .unwrap_or(arbiter.spec.timeout_ms)
                .max(1),
        );
        // The arbiter reads the case: the counted ballots with their weights and reasons, and
        // what the vote made of them.
        let tally = verdict
            .winner()
            .map(str::to_owned)
            .or_else(|| verdict.value().map(|v| format!("{v}")));
        let case = crate::agent::Case::new(
            verdict.ballots.iter().map(|c| (c.ballot.clone(), c.weight)),
            tally,
            verdict.consensus,
            verdict.confidence,
        );
        let request = AgentRequest::arbitration(decision.clone(), Arc::new(case));
        let hold = self.hold(&arbiter.spec, self.prompt_tokens()).ok()?;
        let reply = tokio::time::timeout(budget, arbiter.service.clone().oneshot(request))
            .await
            .ok()?
            .ok()?;
        if let Some(hold) = hold {
            hold.settle(spend::Charge {
                tokens: u64::from(reply.tokens_in) + u64::from(reply.tokens_out),
                usd: reply.cost_usd,
            });
        }
        let mut ruling = sanitize(
            &arbiter.spec,
            decision,
            self.policy.limits.dimensions,
            reply.ballot,
        );
        match &mut ruling.answer {
            Answer::Choice(_) | Answer::Ranking(_) => Some(ruling),
            // The arbiter rules between the positions given: a number outside the ballots'
            // range is brought back to its nearest end.
            Answer::Score(v) => {
                let values = verdict
                    .ballots
                    .iter()
                    .filter_map(|c| match c.ballot.answer {
                        Answer::Score(x) => Some(x),
                        _ => None,
                    });
                let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| {
                    (lo.min(x), hi.max(x))
                });
                if lo <= hi {
                    *v = v.clamp(lo, hi);
                }
                Some(ruling)
            }
            _ => None,
        }
    }

    /// The projected prompt size of a call, tokens.
    fn prompt_tokens(&self) -> u32 {
        self.policy
            .budget
            .prompt_tokens
            .unwrap_or(DEFAULT_PROMPT_TOKENS)
    }

    /// Reserves one call of `spec` in the policy's `[budget.total]`: `Ok(None)` when the
    /// policy has none, `Err` when the call does not fit or the account failed.
    fn hold(&self, spec: &AgentSpec, prompt_tokens: u32) -> Result<Option<spend::Hold>, Short> {
        let Some(total) = self.policy.budget.total else {
            return Ok(None);
        };
        let charge = spend::Charge {
            tokens: u64::from(prompt_tokens) + u64::from(spec.max_tokens),
            usd: spec.call_cost(prompt_tokens),
        };
        let scope = spend::scope(self.policy.id(), total.window_s, crate::time::now());
        match spend::Hold::take(&self.spend, scope, charge, spend_cap(&total)) {
            Ok(Some(hold)) => Ok(Some(hold)),
            Ok(None) => Err(Short::Budget),
            Err(e) => Err(Short::Account(e.to_string())),
        }
    }

    /// Launches up to `n` more seats as one wave, projecting the budget (`spent` so far plus
    /// what the calls in flight reserve) before each call; how many were launched.
    fn launch(&self, f: &mut Flight, n: usize) -> usize {
        let spent = (f.tokens, f.cost);
        let budget = &self.policy.budget;
        let seating = f.seating.clone();
        let mut launched = 0;
        let mut wave_started = false;
        let now = Instant::now();
        // No call is asked with no time left: it could only time out.
        if f.deadline.is_some_and(|d| now >= d) {
            f.out_of_time = true;
            return 0;
        }
        while launched < n && f.next < seating.seats.len() {
            let seat = &seating.seats[f.next];
            let spec = &self.members[seat.member].spec;
            let call_tokens = u64::from(f.prompt_tokens) + u64::from(spec.max_tokens);
            let call_cost = spec.call_cost(f.prompt_tokens);
            let over_tokens = budget
                .tokens
                .is_some_and(|b| spent.0 + f.reserved_tokens + call_tokens > b);
            let over_money = budget
                .money_usd
                .is_some_and(|b| spent.1 + f.reserved_cost + call_cost > b + 1e-12);
            if over_tokens || over_money {
                f.budget_blocked = true;
                break;
            }
            let hold = match self.hold(spec, f.prompt_tokens) {
                Ok(hold) => hold,
                Err(short) => {
                    f.budget_blocked = true;
                    if let Short::Account(e) = short {
                        f.account_failed = Some(e);
                    }
                    break;
                }
            };
            if !wave_started {
                f.waves += 1;
                wave_started = true;
            }
            f.reserved_tokens += call_tokens;
            f.reserved_cost += call_cost;
            // An agent known to be late is asked, but neither counts towards the wave nor is
            // waited for.
            let waited = !self.lateness[seat.member].known_late();
            f.in_flight.insert(
                f.next,
                InFlight {
                    wave: f.waves,
                    at: now,
                    waited,
                    late: !waited,
                    measure: seat.measure || seat.finish,
                },
            );
            f.set
                .push(self.call(f.next, seat, &f.decision, f.deadline, now, hold));
            f.next += 1;
            launched += usize::from(waited);
        }
        launched
    }

    /// One agent call launched `now`: its reply (or the reason it failed) and its latency.
    /// Calls are polled by the decision itself (no task per call): dropping one cancels it.
    fn call(
        &self,
        index: usize,
        seat: &Seat,
        decision: &Arc<Decision>,
        deadline: Option<Instant>,
        now: Instant,
        hold: Option<spend::Hold>,
    ) -> Call {
        let member = &self.members[seat.member];
        let mut until = now + Duration::from_millis(member.spec.timeout_ms.max(1));
        if let Some(d) = deadline {
            until = until.min(d);
        }
        let service = member.service.clone();
        let request = AgentRequest::new(decision.clone());
        // One span per call: agent, model, and once it ends, latency, tokens and outcome.
        // OpenTelemetry GenAI conventions: a `chat {model}` span (`otel.name`) with `gen_ai.*`
        // attributes, under the decision's `invoke_workflow` span.
        let model = member.spec.model.as_deref().unwrap_or("-");
        let span = tracing::info_span!(
            "chat",
            otel.name = %format_args!("chat {model}"),
            otel.kind = "client",
            gen_ai.operation.name = "chat",
            gen_ai.request.model = model,
            gen_ai.request.max_tokens = member.spec.max_tokens,
            gen_ai.agent.id = %member.spec.id,
            gen_ai.usage.input_tokens = tracing::field::Empty,
            gen_ai.usage.output_tokens = tracing::field::Empty,
            error.type = tracing::field::Empty,
            agent = %member.spec.id,
            model,
            latency_ms = tracing::field::Empty,
            tokens = tracing::field::Empty,
            outcome = tracing::field::Empty,
        );
        Box::pin(tracing::Instrument::instrument(
            async move {
                let reply = match tokio::time::timeout_at(until, service.oneshot(request)).await {
                    Ok(Ok(r)) => Ok(r),
                    Ok(Err(e)) => Err(Failed::of(&*e)),
                    Err(_) => Err(Failed {
                        reason: Abstention::Timeout,
                        cause: Some(Cause::new(
                            CauseKind::Timeout,
                            format!("no answer within {} ms", (until - now).as_millis()),
                        )),
                    }),
                };
                let latency = now.elapsed();
                if let (Some(hold), Ok(r)) = (hold, &reply) {
                    hold.settle(spend::Charge {
                        tokens: u64::from(r.tokens_in) + u64::from(r.tokens_out),
                        usd: r.cost_usd,
                    });
                }
                let span = tracing::Span::current();
                if !span.is_disabled() {
                    span.record("latency_ms", latency.as_millis() as u64);
                    match &reply {
                        Ok(r) => {
                            span.record("tokens", u64::from(r.tokens_in) + u64::from(r.tokens_out));
                            span.record("gen_ai.usage.input_tokens", r.tokens_in);
                            span.record("gen_ai.usage.output_tokens", r.tokens_out);
                            span.record("outcome", "answered");
                        }
                        Err(failed) => {
                            span.record("outcome", failed.reason.as_str());
                            span.record("error.type", failed.reason.as_str());
                            if let Some(cause) = &failed.cause {
                                tracing::debug!(cause = %cause, "agent call failed");
                            }
                        }
                    }
                }
                (index, reply, latency)
            },
            span,
        ))
    }
}

/// One agent call in flight: (seat, reply or why there is none, latency).
type Call = Pin<Box<dyn Future<Output = (usize, Result<AgentReply, Failed>, Duration)> + Send>>;

/// Why a call gave no reply: the abstention it makes, and what went wrong when that is known.
#[derive(Debug, Clone)]
struct Failed {
    reason: Abstention,
    cause: Option<Cause>,
}

impl Failed {
    /// The abstention and cause of an error from the agent's stack: a typed [`Cause`] where
    /// the agent gave one, an open circuit, else an error in the error's own words.
    fn of(e: &(dyn std::error::Error + Send + Sync + 'static)) -> Self {
        if e.is::<crate::layer::CircuitOpen>() {
            return Self {
                reason: Abstention::CircuitOpen,
                cause: None,
            };
        }
        if e.is::<tower::timeout::error::Elapsed>() {
            return Self {
                reason: Abstention::Timeout,
                cause: Some(Cause::new(
                    CauseKind::Timeout,
                    "no answer within the agent's timeout",
                )),
            };
        }
        if let Some(c) = e.downcast_ref::<Cause>() {
            return Self {
                reason: c.abstention(),
                cause: Some(c.clone()),
            };
        }
        if let Some(r) = e.downcast_ref::<crate::layer::RetryAfter>() {
            return Self {
                reason: Abstention::Error,
                cause: Some(Cause::new(CauseKind::Http, &r.message)),
            };
        }
        Self {
            reason: Abstention::Error,
            cause: Some(Cause::new(CauseKind::Other, e.to_string())),
        }
    }
}

/// The calls of one decision: the seats still to ask, the calls in flight, and what they
/// reserve of the budget.
struct Flight {
    seating: Arc<Seating>,
    decision: Arc<Decision>,
    deadline: Option<Instant>,
    started: Instant,
    prompt_tokens: u32,
    set: FuturesUnordered<Call>,
    /// Seat → its call.
    in_flight: BTreeMap<usize, InFlight>,
    /// The next seat to ask.
    next: usize,
    waves: u32,
    reserved_tokens: u64,
    reserved_cost: f64,
    /// The next call would have exceeded the budget.
    budget_blocked: bool,
    /// The budget account could not be used (its error): an infrastructure failure, not a
    /// spent budget.
    account_failed: Option<String>,
    /// The decision's deadline has passed: nobody more is asked.
    out_of_time: bool,
    /// Every ballot so far, in the order they arrived.
    casts: Vec<Cast>,
    /// Tokens and dollars spent so far.
    tokens: u64,
    /// Of `tokens`, prompt tokens.
    tokens_in: u64,
    cost: f64,
    /// This decision's latencies, while the usual latency is not yet known.
    latencies: Vec<Duration>,
    /// The usual latency when the decision started, if known.
    recent_usual: Option<Duration>,
    /// How long a call may run before it is a straggler.
    straggler_after: Option<Duration>,
    /// The seated agents' total weight.
    total_weight: f64,
    /// The seated agents' evidence tempered by their effective number.
    seating_temper: f64,
}

/// What a decision with nothing awaited in flight does next.
enum Idle {
    /// It ends.
    Stop(Stop),
    /// More agents were asked.
    Asked,
    /// Only late calls are out and the quorum is not in: wait for them.
    Wait,
}

/// The count of one decision's ballots.
#[derive(Clone)]
struct Counted {
    result: Option<crate::aggregate::TallyResult>,
    /// A fault of the tally (not a missing quorum).
    tally_error: Option<String>,
    consensus: f64,
    confidence: f64,
}

/// Why a call could not be reserved in `[budget.total]`.
enum Short {
    /// It does not fit in what is left.
    Budget,
    /// The account failed (its error).
    Account(String),
}

/// An outcome, and whether a hand-over to a human is for the decision's own reasons (weak
/// consensus, a quorum missed by the agents that answered, a lost majority, an alarmed
/// monitor) and so counts towards the Director's ratchet. Hand-overs caused by the
/// infrastructure (failed or timed-out calls, a spent budget or a failed account, a failed
/// tally, a suspended domain) do not: they say nothing about the pool's judgement.
struct Classified {
    outcome: Outcome,
    own: bool,
}

/// Everything the outcome of a decision depends on.
struct Classify<'a> {
    policy: &'a Policy,
    /// The domain's autonomy is suspended by the Director.
    suspended: Option<&'a director::Suspension>,
    stop: Stop,
    calls: usize,
    failed: usize,
    /// Seats were left unasked for want of budget or time.
    starved: bool,
    /// Pool members in the domain, and how many of them are lost (quarantined, ejected,
    /// below the floor, likely turned).
    members: usize,
    lost: usize,
    /// The domain's verdict monitor, if the ledger knows the pool.
    alarm: Option<f64>,
    counted: &'a Counted,
    quorum: Quorum,
    need: usize,
}

/// The outcome of a counted decision, in order of precedence: a halted decision, a lost
/// majority, an alarmed monitor, a failed tally, a missing quorum, no supermajority, too
/// little confidence for anyone but a human, for the vote alone, or firm enough.
fn classify(c: &Classify<'_>) -> Classified {
    let p = c.policy;
    let t = &p.thresholds;
    let confidence = c.counted.confidence;
    let escalate = |own: bool, reason: String| Classified {
        outcome: if p.human {
            Outcome::Human { reason }
        } else {
            Outcome::Refused { reason }
        },
        own,
    };
    if let Some(s) = c.suspended {
        // Suspended autonomy goes to a person even under a policy that would refuse.
        return Classified {
            outcome: Outcome::Human {
                reason: format!(
                    "autonomy is suspended in this domain by {}: {}",
                    s.by, s.reason
                ),
            },
            own: false,
        };
    }
    if c.stop == Stop::Halted {
        return escalate(
            false,
            format!(
                "supervisor halted the decision: {} of {} calls failed or timed out",
                c.failed, c.calls
            ),
        );
    }
    if c.members > 0 && c.lost as f64 > p.lost_majority * c.members as f64 + 1e-9 {
        return escalate(
            true,
            format!(
                "the pool has lost its majority: {} of {} agents are quarantined, ejected or likely turned (bound {:.0}%)",
                c.lost,
                c.members,
                100.0 * p.lost_majority
            ),
        );
    }
    if let (Some(limit), Some(alarm)) = (p.verdict_alarm, c.alarm)
        && alarm >= limit
    {
        return escalate(
            true,
            format!(
                "recent verdicts in this domain were wrong far more often than their confidence said (monitor {alarm:.1}, limit {limit}): the pool's trust no longer describes it"
            ),
        );
    }
    if let Some(e) = &c.counted.tally_error {
        return escalate(false, format!("the tally failed: {e}"));
    }
    let q = &c.quorum;
    let Some(result) = c.counted.result.as_ref().filter(|_| q.met) else {
        // A quorum the answering agents missed is the decision's own; one missed because
        // calls failed or seats went unasked for want of budget or time is not.
        return escalate(
            c.failed == 0 && !c.starved,
            format!(
                "no quorum: {} of {} required ballots (weight share {} of {}, {} of {} effective voters)",
                q.ballots,
                c.need,
                crate::ballot::fixed(q.share, 2),
                crate::ballot::fixed(p.quorum_weight_share, 2),
                crate::ballot::fixed(q.n_eff, 2),
                crate::ballot::fixed(p.quorum_n_eff, 2)
            ),
        );
    };
    if result.winners.as_ref().is_some_and(Vec::is_empty) {
        return escalate(
            true,
            "no option reached the required supermajority".to_owned(),
        );
    }
    if confidence < t.human {
        return escalate(
            true,
            format!(
                "confidence {confidence:.2} below the human threshold {}",
                t.human
            ),
        );
    }
    if confidence < t.arbitrate {
        return match &p.arbiter {
            Some(a) => Classified {
                outcome: Outcome::Arbitrated {
                    arbiter: a.clone(),
                    ruling: String::new(),
                },
                own: true,
            },
            None => escalate(
                true,
                format!(
                    "confidence {confidence:.2} below the arbitration threshold {} and no arbiter",
                    t.arbitrate
                ),
            ),
        };
    }
    Classified {
        outcome: Outcome::Decided {
            weak: confidence < t.accept,
        },
        own: false,
    }
}

/// Consensus as the articles define it (reported): the winner's weight share for options,
/// CQ = 1/(1 + σ/(μ + ε)) with ε = 0.05 for numbers and vectors.
fn consensus_of(kind: Kind, result: &crate::aggregate::TallyResult, casts: &[Cast]) -> f64 {
    match kind {
        Kind::Choice | Kind::Ranking => result.support.unwrap_or(0.0),
        Kind::Score => {
            let values: Vec<f64> = casts
                .iter()
                .filter_map(|c| match c.ballot.answer {
                    Answer::Score(v) => Some(v),
                    _ => None,
                })
                .collect();
            consensus::consensus_quality(&values, 0.05)
        }
        Kind::Vector => {
            let vectors: Vec<&[f64]> = casts
                .iter()
                .filter_map(|c| match &c.ballot.answer {
                    Answer::Vector(v) => Some(v.as_slice()),
                    _ => None,
                })
                .collect();
            consensus::vector_consensus(&vectors, 0.05)
        }
    }
}

/// Appends the decision's record: on the blocking pool when the log writes to disk.
async fn append_off_worker(
    log: Arc<dyn AuditLog + Send + Sync>,
    entry: Entry,
) -> Result<(), GovernorError> {
    if !log.blocks() {
        log.append(&entry)?;
        return Ok(());
    }
    match tokio::task::spawn_blocking(move || log.append(&entry)).await {
        Ok(appended) => appended.map(|_| ()).map_err(GovernorError::from),
        Err(e) => Err(GovernorError::Invalid(format!(
            "the audit append did not finish: {e}"
        ))),
    }
}

/// The supervisor: it watches execution only, and halts a decision whose calls mostly fail
/// or time out (asking more agents would feed the storm); the decision escalates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Supervisor {
    /// Fewest failed calls before it may halt (default 4).
    pub min_failures: usize,
    /// Share of the calls made that must have failed (default ½: more than half).
    pub failed_share: f64,
}

impl Default for Supervisor {
    fn default() -> Self {
        Self {
            min_failures: 4,
            failed_share: 0.5,
        }
    }
}

impl Supervisor {
    /// Whether `failed` failures among `calls` calls halt the decision.
    pub fn halts(&self, failed: usize, calls: usize) -> bool {
        failed >= self.min_failures && failed as f64 > self.failed_share * calls as f64
    }
}

/// Prompt tokens reserved per call when the policy's budget does not say (the digest's
/// projection before each call).
pub const DEFAULT_PROMPT_TOKENS: u32 = 1000;

impl Flight {
    /// Calls in flight that the decision waits for.
    fn awaited(&self) -> usize {
        self.in_flight.values().filter(|c| c.waited).count()
    }

    /// When the next awaited call becomes a straggler (`usual`: how long a call may run).
    fn next_straggler(&self, usual: Duration) -> Option<Instant> {
        self.in_flight
            .values()
            .filter(|c| c.waited)
            .map(|c| c.straggler_at(usual))
            .min()
    }
}

/// The counted ballots against the policy's quorum.
#[derive(Debug, Clone, Copy)]
struct Quorum {
    met: bool,
    ballots: usize,
    /// Their share of the decision's total weight.
    share: f64,
    /// Their effective number of independent voters.
    n_eff: f64,
}

/// A call in flight.
#[derive(Debug, Clone, Copy)]
struct InFlight {
    wave: u32,
    /// When it was launched.
    at: Instant,
    /// Waited for: not from an agent known to be late, and not yet a straggler (running past
    /// the usual latency, replaced by a hedge).
    waited: bool,
    /// Launched to an agent known to be late: it leaves the quorum (a straggler does not).
    late: bool,
    /// To an agent being measured or doubted: waited for longer than others (its answer is
    /// evidence), though not past `MEASURE_PATIENCE` times the usual latency: an agent that
    /// never answers gives no evidence, and the decision must not wait for it to its deadline.
    measure: bool,
}

/// How many times the usual latency a call to an agent being measured is waited for.
const MEASURE_PATIENCE: u32 = 4;

impl InFlight {
    /// When this call becomes a straggler, no longer waited for.
    fn straggler_at(&self, usual: Duration) -> Instant {
        self.at
            + if self.measure {
                usual * MEASURE_PATIENCE
            } else {
                usual
            }
    }
}

/// Casts that failed for infrastructure reasons (timed out, failed, met an open circuit):
/// agents that could not answer this decision.
fn unreachable(casts: &[Cast]) -> usize {
    casts
        .iter()
        .filter(|c| {
            matches!(&c.ballot.answer, Answer::Abstain(a)
                if a.class() == crate::ballot::AbstentionClass::Infrastructure)
        })
        .count()
}

/// Calls that failed, timed out or met an open circuit: what the supervisor watches.
fn failures(casts: &[Cast]) -> usize {
    casts
        .iter()
        .filter(|c| {
            matches!(
                c.ballot.answer,
                Answer::Abstain(Abstention::Error | Abstention::Timeout | Abstention::CircuitOpen)
            )
        })
        .count()
}

/// The share of their evidence that `n` voters carry when they count as `n_eff` independent
/// ones (1 for independent voters).
fn temper(n_eff: f64, n: usize) -> f64 {
    if n == 0 || !n_eff.is_finite() {
        1.0
    } else {
        (n_eff / n as f64).clamp(0.0, 1.0)
    }
}

fn median(xs: &mut [Duration]) -> Option<Duration> {
    if xs.is_empty() {
        return None;
    }
    xs.sort_unstable();
    Some(xs[xs.len() / 2])
}

/// A reply counts only as what it claims to be: the agent id is the seat's, and an answer
/// that does not fit the decision becomes an abstention (`malformed`), never a vote.
fn sanitize(
    spec: &AgentSpec,
    decision: &Decision,
    dimensions: usize,
    mut ballot: Ballot,
) -> Ballot {
    ballot.agent.clone_from(&spec.id);
    let fits = match (&ballot.answer, decision.kind) {
        (Answer::Abstain(_), _) => true,
        (Answer::Choice(c), Kind::Choice | Kind::Ranking) => decision.options.contains(c),
        (Answer::Ranking(r), Kind::Choice | Kind::Ranking) => {
            !r.is_empty()
                && r.iter().all(|o| decision.options.contains(o))
                && r.iter().collect::<std::collections::BTreeSet<_>>().len() == r.len()
        }
        (Answer::Score(v), Kind::Score) => decision.on_scale(*v),
        (Answer::Vector(v), Kind::Vector) => {
            !v.is_empty() && v.len() <= dimensions && v.iter().all(|x| x.is_finite())
        }
        _ => false,
    };
    if fits {
        return ballot;
    }
    let malformed = Ballot::abstain(spec.id.clone(), Abstention::Malformed);
    match (&ballot.answer, decision.scale) {
        // Said in the record: the number was fine but for the decision's scale.
        (Answer::Score(v), Some([lo, hi])) if v.is_finite() => {
            malformed.with_cause(crate::ballot::Cause {
                kind: crate::ballot::CauseKind::Unparsable,
                status: None,
                detail: format!("{v} is off the decision's scale [{lo}, {hi}]"),
            })
        }
        _ => malformed,
    }
}

/// The tally's input, taking the ballots out of `casts` (put them back after the tally).
fn tally_input(decision: &Decision, casts: &mut [Cast]) -> TallyInput {
    TallyInput {
        kind: decision.kind,
        options: decision.options.clone(),
        weights: casts
            .iter()
            .map(|c| (c.ballot.agent.clone(), c.weight))
            .collect(),
        ballots: casts
            .iter_mut()
            .map(|c| std::mem::replace(&mut c.ballot, Ballot::abstain("", Abstention::Cancelled)))
            .collect(),
    }
}

impl Service<Decision> for Governor {
    type Response = Verdict;
    type Error = GovernorError;
    type Future = Pin<Box<dyn Future<Output = Result<Verdict, GovernorError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), GovernorError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, decision: Decision) -> Self::Future {
        let inner = self.inner.clone();
        Box::pin(async move { inner.decide(decision).await })
    }
}

/// The cap of a total budget: a missing limit is no limit.
fn spend_cap(total: &crate::policy::TotalBudget) -> spend::Charge {
    spend::Charge {
        tokens: total.tokens.unwrap_or(u64::MAX),
        usd: total.money_usd.unwrap_or(f64::INFINITY),
    }
}
