//! [`GovernorBuilder`]: a Governor assembled step by step, checked when built.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::watch;

use super::{Director, EscalateWith, Escalation, Governor, Supervisor};
use crate::agent::{AgentService, BuildError};
use crate::audit::AuditLog;
use crate::policy::{AgentSpec, Catalog, Policy};
use crate::trust::TrustParams;
use crate::trust::ledger::Independence;
use crate::trust::store::TrustSnapshot;

/// Why a Governor cannot be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GovernorBuildError {
    /// A pool member or the arbiter has no service.
    #[error("policy \"{policy}\" names agent \"{agent}\", and no service was given for it")]
    MissingAgent {
        /// The policy.
        policy: String,
        /// The agent.
        agent: String,
    },
    /// An agent's service could not be built from its definition.
    #[error(transparent)]
    Agent(#[from] BuildError),
}

/// Assembles a [`Governor`]: the policy, a service per agent, where trust comes from, and
/// optionally an audit log, an escalation hook, the error ledger's independence and the
/// wave size.
///
/// ```
/// # use conclave::{Catalog, Governor, SourceFile};
/// # let agents = SourceFile::new("a.toml", "[[agent]]\nid = \"econ\"\nkind = \"scripted\"\nscripted = { competence = { default = 0.8 } }\n");
/// # let policy = SourceFile::new("p.toml", "id = \"p\"\ndescription = \"d\"\napplies = { domains = [\"finance\"], kinds = [\"choice\"] }\npool = { agents = [\"econ\"] }\nrule = { name = \"plurality\" }\nquorum = { ballots = 1 }\n");
/// # let catalog = Catalog::load(&[agents], &[policy]).map_err(|d| format!("{d:?}"))?;
/// let policy = catalog.policy("p").ok_or("no policy")?.clone();
/// let governor = Governor::builder(policy).agents_from(&catalog)?.build()?;
/// assert_eq!(governor.policy().id(), "p");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use]
pub struct GovernorBuilder {
    policy: Policy,
    agents: Vec<(AgentSpec, AgentService)>,
    trust: Option<TrustSnapshot>,
    updates: Option<watch::Receiver<Arc<TrustSnapshot>>>,
    independence: Option<BTreeMap<String, Independence>>,
    audit: Option<Arc<dyn AuditLog + Send + Sync>>,
    escalation: Option<Arc<dyn Escalation>>,
    wave_size: Option<usize>,
    supervisor: Option<Supervisor>,
    director: Option<Director>,
    spend: Option<Arc<dyn super::spend::SpendAccount>>,
}

impl std::fmt::Debug for GovernorBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GovernorBuilder")
            .field("policy", &self.policy.id())
            .field(
                "agents",
                &self.agents.iter().map(|(s, _)| &s.id).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Governor {
    /// A builder for a Governor of `policy`.
    pub fn builder(policy: Policy) -> GovernorBuilder {
        GovernorBuilder {
            policy,
            agents: Vec::new(),
            trust: None,
            updates: None,
            independence: None,
            audit: None,
            escalation: None,
            wave_size: None,
            supervisor: None,
            director: None,
            spend: None,
        }
    }
}

impl GovernorBuilder {
    /// One agent: its definition and its (bare) service; the Governor stacks its layers.
    pub fn agent(mut self, spec: AgentSpec, service: AgentService) -> Self {
        self.agents.push((spec, service));
        self
    }

    /// Several agents at once.
    pub fn agents(mut self, agents: impl IntoIterator<Item = (AgentSpec, AgentService)>) -> Self {
        self.agents.extend(agents);
        self
    }

    /// The policy's pool and arbiter, each built from its definition in `catalog`
    /// ([`crate::agent::build`]), but for `external` agents, whose services the application
    /// gives with [`GovernorBuilder::agent`] (before or after this call).
    ///
    /// # Errors
    /// An agent that cannot be built.
    pub fn agents_from(self, catalog: &Catalog) -> Result<Self, GovernorBuildError> {
        let mut agents = Vec::new();
        for id in self
            .policy
            .pool()
            .iter()
            .chain(self.policy.arbiter().map(str::to_owned).iter())
        {
            let spec = catalog
                .agents
                .get(id)
                .ok_or_else(|| crate::agent::BuildError::Unknown(id.clone()))?;
            // External agents come with `agent`: only their definitions are in the files.
            if spec.kind != crate::policy::AgentKind::External {
                agents.push((spec.clone(), crate::agent::build(spec)?));
            }
        }
        Ok(self.agents(agents))
    }

    /// Weights from this snapshot (default: every agent at the prior of the default
    /// parameters).
    pub fn trust(mut self, trust: TrustSnapshot) -> Self {
        self.trust = Some(trust);
        self.updates = None;
        self
    }

    /// Weights from the latest snapshot sent on this channel: a recalibration elsewhere
    /// (an eval run, an outcome back-fill) reaches the Governor without rebuilding it. Each
    /// decision reads the snapshot once, and records its version.
    pub fn trust_updates(mut self, updates: watch::Receiver<Arc<TrustSnapshot>>) -> Self {
        self.updates = Some(updates);
        self
    }

    /// What the error ledger knows, per domain (see [`Governor::with_independence`]).
    pub fn independence(mut self, independence: BTreeMap<String, Independence>) -> Self {
        self.independence = Some(independence);
        self
    }

    /// Records every verdict in `log`.
    pub fn audit(mut self, log: Arc<dyn AuditLog + Send + Sync>) -> Self {
        self.audit = Some(log);
        self
    }

    /// What happens to decisions that need a human (default: recorded as escalated).
    pub fn escalation(mut self, hook: Arc<dyn Escalation>) -> Self {
        self.escalation = Some(hook);
        self
    }

    /// Agents added per wave after the first (default 2).
    pub fn wave_size(mut self, n: usize) -> Self {
        self.wave_size = Some(n);
        self
    }

    /// The escalation hook as a closure over the decision and the verdict.
    pub fn escalate_with<F, Fut>(self, f: F) -> Self
    where
        F: Fn(crate::decision::Decision, crate::decision::Verdict) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = crate::decision::Verdict> + Send + 'static,
    {
        self.escalation(Arc::new(EscalateWith(f)))
    }

    /// Follows the Director's orders (reweights, suspensions) and reports hand-overs to it.
    pub fn director(mut self, director: Director) -> Self {
        self.director = Some(director);
        self
    }

    /// Keeps the policy's `[budget.total]` in `account` (default: an account of this
    /// Governor's own; replicas share one, such as `PgSpend`).
    pub fn spend(mut self, account: Arc<dyn super::spend::SpendAccount>) -> Self {
        self.spend = Some(account);
        self
    }

    /// When the supervisor halts a failing decision (default: [`Supervisor::default`]).
    pub fn supervisor(mut self, supervisor: Supervisor) -> Self {
        self.supervisor = Some(supervisor);
        self
    }

    /// The Governor.
    ///
    /// # Errors
    /// A pool member or the arbiter without a service.
    pub fn build(self) -> Result<Governor, GovernorBuildError> {
        let policy = &self.policy;
        if let Some(missing) = policy
            .pool()
            .iter()
            .chain(policy.arbiter().map(str::to_owned).iter())
            .find(|id| !self.agents.iter().any(|(s, _)| &s.id == *id))
        {
            return Err(GovernorBuildError::MissingAgent {
                policy: policy.id().to_owned(),
                agent: missing.clone(),
            });
        }
        let trust = self.trust.unwrap_or_else(|| TrustSnapshot {
            version: 0,
            params: TrustParams::default(),
            states: BTreeMap::new(),
        });
        let mut g = Governor::new(self.policy, self.agents, trust);
        if let Some(rx) = self.updates {
            g = g.configure(|inner| {
                inner.updates = Some(rx);
                inner.admitted = std::sync::Mutex::new((None, BTreeMap::new()));
            });
        }
        if let Some(i) = self.independence {
            g = g.with_independence(i);
        }
        if let Some(log) = self.audit {
            g = g.with_audit(log);
        }
        if let Some(hook) = self.escalation {
            g = g.with_escalation(hook);
        }
        if let Some(n) = self.wave_size {
            g = g.with_wave_size(n);
        }
        if let Some(s) = self.supervisor {
            g = g.with_supervisor(s);
        }
        if let Some(d) = self.director {
            g = g.with_director(d);
        }
        if let Some(a) = self.spend {
            g = g.with_spend(a);
        }
        Ok(g)
    }
}
