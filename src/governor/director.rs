//! The human Cognitive Director's standing orders (digest A.16, F.7): agents reweighted for a
//! while, domains whose autonomy is suspended, and the ratchet that suspends a domain by
//! itself when decisions keep being handed over to a human.
//!
//! A [`Director`] holds the orders and shares them with every Governor built with it (they read
//! the current orders once per decision, and report each hand-over to a human). The CLI keeps
//! them in the store between commands (`conclave review …`).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// More hand-overs than this within [`RATCHET_WINDOW_SECS`] suspend a domain.
pub const RATCHET_HANDOVERS: usize = 3;

/// The ratchet's window: 72 hours.
pub const RATCHET_WINDOW_SECS: u64 = 72 * 3600;

/// Who suspends a domain when the ratchet trips.
pub const RATCHET: &str = "ratchet";

/// The Director's orders at one version.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Directives {
    /// Incremented by every change.
    pub version: u64,
    /// Domains whose decisions all go to a human, with who suspended them and why.
    pub suspended: BTreeMap<String, Suspension>,
    /// Weights multiplied for a while.
    pub reweights: Vec<Reweight>,
    /// Per domain: when decisions went to a human (seconds since the epoch), within the
    /// ratchet's window.
    pub handovers: BTreeMap<String, Vec<u64>>,
}

/// A suspended domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Suspension {
    /// Who: a person, or [`RATCHET`].
    pub by: String,
    /// Why.
    pub reason: String,
    /// Since when, seconds since the epoch.
    pub since: u64,
}

/// An agent's weight in a domain multiplied by `factor` until `until`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reweight {
    /// The agent.
    pub agent: String,
    /// The domain.
    pub domain: String,
    /// The factor, in `[0, 10]` (0 silences the agent).
    pub factor: f64,
    /// Until when, seconds since the epoch.
    pub until: u64,
    /// Who ordered it.
    pub by: String,
}

/// An order that cannot be given.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum DirectorError {
    /// A factor outside `[0, 10]` or not a number.
    #[error("a reweight factor must be a number in [0, 10], not {0}")]
    Factor(f64),
    /// A reweight that would end before it starts.
    #[error("a reweight needs a duration of at least one second")]
    Duration,
    /// The domain is not suspended.
    #[error("domain \"{0}\" is not suspended")]
    NotSuspended(String),
}

impl Directives {
    /// The product of the active reweights of `agent` in `domain` at `now`.
    pub fn factor(&self, agent: &str, domain: &str, now: u64) -> f64 {
        self.reweights
            .iter()
            .filter(|r| r.agent == agent && r.domain == domain && r.until > now)
            .map(|r| r.factor)
            .product()
    }

    /// How many reweights in `domain` are active at `now`.
    pub fn active_in(&self, domain: &str, now: u64) -> usize {
        self.reweights
            .iter()
            .filter(|r| r.domain == domain && r.until > now)
            .count()
    }

    /// Whether `domain` is suspended, and by whom.
    pub fn suspension(&self, domain: &str) -> Option<&Suspension> {
        self.suspended.get(domain)
    }

    /// Suspends autonomy in `domain`: its decisions go to a human until resumed.
    pub fn suspend(&mut self, domain: &str, by: &str, reason: &str, now: u64) {
        self.suspended.insert(
            domain.to_owned(),
            Suspension {
                by: by.to_owned(),
                reason: reason.to_owned(),
                since: now,
            },
        );
        self.version += 1;
    }

    /// Re-authorises `domain` (also after the ratchet): its hand-over count starts again.
    ///
    /// # Errors
    /// The domain is not suspended.
    pub fn resume(&mut self, domain: &str) -> Result<Suspension, DirectorError> {
        let s = self
            .suspended
            .remove(domain)
            .ok_or_else(|| DirectorError::NotSuspended(domain.to_owned()))?;
        self.handovers.remove(domain);
        self.version += 1;
        Ok(s)
    }

    /// Multiplies `agent`'s weight in `domain` by `factor` for `seconds` from `now`.
    ///
    /// # Errors
    /// A factor outside `[0, 10]`, or no duration.
    pub fn reweight(
        &mut self,
        agent: &str,
        domain: &str,
        factor: f64,
        seconds: u64,
        by: &str,
        now: u64,
    ) -> Result<(), DirectorError> {
        if !(factor.is_finite() && (0.0..=10.0).contains(&factor)) {
            return Err(DirectorError::Factor(factor));
        }
        if seconds == 0 {
            return Err(DirectorError::Duration);
        }
        self.reweights.retain(|r| r.until > now);
        self.reweights.push(Reweight {
            agent: agent.to_owned(),
            domain: domain.to_owned(),
            factor,
            until: now.saturating_add(seconds),
            by: by.to_owned(),
        });
        self.version += 1;
        Ok(())
    }

    /// A decision in `domain` went to a human at `now`. More than [`RATCHET_HANDOVERS`]
    /// within [`RATCHET_WINDOW_SECS`] suspend the domain until it is re-authorised; the
    /// suspension, when this one tripped it.
    pub fn handover(&mut self, domain: &str, now: u64) -> Option<Suspension> {
        let times = self.handovers.entry(domain.to_owned()).or_default();
        times.retain(|&t| t.saturating_add(RATCHET_WINDOW_SECS) > now);
        times.push(now);
        let count = times.len();
        self.version += 1;
        if count > RATCHET_HANDOVERS && !self.suspended.contains_key(domain) {
            self.suspend(
                domain,
                RATCHET,
                &format!(
                    "{count} decisions went to a human within 72 h (more than {RATCHET_HANDOVERS}); re-authorise with `conclave review resume --domain {domain}`"
                ),
                now,
            );
            return self.suspended.get(domain).cloned();
        }
        None
    }
}

/// The Director's orders, shared with the Governors built with it. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Director {
    orders: Arc<watch::Sender<Arc<Directives>>>,
    /// Serialises changes (read, change, publish).
    changing: Arc<std::sync::Mutex<()>>,
}

impl Default for Director {
    fn default() -> Self {
        Self::new(Directives::default())
    }
}

impl Director {
    /// A Director starting from these orders.
    pub fn new(directives: Directives) -> Self {
        Self {
            orders: Arc::new(watch::Sender::new(Arc::new(directives))),
            changing: Arc::default(),
        }
    }

    /// The current orders.
    pub fn current(&self) -> Arc<Directives> {
        self.orders.borrow().clone()
    }

    /// Changes the orders (every Governor sees the change from its next decision on).
    pub fn change<T>(&self, f: impl FnOnce(&mut Directives) -> T) -> T {
        // A poisoned lock only means an earlier change panicked: the orders are whole.
        let _guard = self
            .changing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut next = (*self.current()).clone();
        let out = f(&mut next);
        self.orders.send_replace(Arc::new(next));
        out
    }
}

/// The audit entry for what a decision did to the orders, if anything: a hand-over that
/// tripped the ratchet in `domain` suspended it, and that suspension is an order.
pub fn ratchet_entry(
    before: &Directives,
    after: &Directives,
    domain: &str,
) -> Option<crate::audit::DirectiveRecord> {
    match (before.suspension(domain), after.suspension(domain)) {
        (None, Some(s)) => Some(crate::audit::DirectiveRecord {
            action: "ratchet".to_owned(),
            domain: domain.to_owned(),
            agent: None,
            detail: s.reason.clone(),
            by: s.by.clone(),
            at: s.since,
        }),
        _ => None,
    }
}
