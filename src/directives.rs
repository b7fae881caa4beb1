//! The human Cognitive Director's standing orders as data (digest A.16, F.7): agents
//! reweighted for a while, domains whose autonomy is suspended, the ratchet that suspends a
//! domain by itself when decisions keep being handed over to a human, the orders a person
//! gives, and the [`OrderBook`] a store keeps them in. The live holder the Governors read,
//! `Director`, is in the governor (`conclave::governor::Director`).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::audit::DirectiveRecord;

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
    /// A name or reason that cannot be recorded (empty, too long, control characters).
    #[error("{0}")]
    Invalid(String),
}

/// An order of the Director, as the CLI's `review` and the HTTP `/v1/orders` route give it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "action", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Order {
    /// Every decision in `domain` goes to a human until resumed.
    Suspend {
        /// The domain.
        domain: String,
        /// Why (recorded).
        reason: String,
    },
    /// Re-authorises a suspended domain (also after the ratchet).
    Resume {
        /// The domain.
        domain: String,
    },
    /// Multiplies `agent`'s weight in `domain` by `factor` for `seconds`.
    Reweight {
        /// The agent.
        agent: String,
        /// The domain.
        domain: String,
        /// The factor, in `[0, 10]`.
        factor: f64,
        /// For how long.
        seconds: u64,
    },
}

/// A name given in an order or recorded with it: 1–128 printable characters.
fn check_name(what: &str, name: &str) -> Result<(), DirectorError> {
    let n = name.chars().count();
    if n == 0 || n > 128 || name.chars().any(char::is_control) || name.trim() != name {
        return Err(DirectorError::Invalid(format!(
            "{what} has 1 to 128 printable characters, without spaces around (not {:?})",
            crate::ballot::printable(name, 40)
        )));
    }
    Ok(())
}

impl Order {
    /// The domain the order concerns.
    pub fn domain(&self) -> &str {
        match self {
            Self::Suspend { domain, .. }
            | Self::Resume { domain }
            | Self::Reweight { domain, .. } => domain,
        }
    }

    /// The order given by `by` at `now`, as a change of the orders with its audit record.
    ///
    /// # Errors
    /// A name that cannot be recorded (empty, over 128 characters, control characters), a
    /// reason over 2,000 characters.
    pub fn change(self, by: &str, now: u64) -> Result<Change, DirectorError> {
        check_name("who gives an order", by)?;
        check_name("a domain", self.domain())?;
        if let Self::Reweight { agent, .. } = &self {
            check_name("an agent", agent)?;
        }
        if let Self::Suspend { reason, .. } = &self
            && (reason.chars().count() > 2000 || reason.trim().is_empty())
        {
            return Err(DirectorError::Invalid(
                "a reason has 1 to 2,000 characters".to_owned(),
            ));
        }
        let by = by.to_owned();
        Ok(Arc::new(move |o: &mut Directives| {
            let record = |action: &str, agent: Option<&String>, detail: String| DirectiveRecord {
                action: action.to_owned(),
                domain: self.domain().to_owned(),
                agent: agent.cloned(),
                detail,
                by: by.clone(),
                at: now,
            };
            Ok(Some(match &self {
                Self::Suspend { domain, reason } => {
                    o.suspend(domain, &by, reason, now);
                    record("suspend", None, reason.clone())
                }
                Self::Resume { domain } => {
                    let was = o.resume(domain)?;
                    record(
                        "resume",
                        None,
                        format!("re-authorised (suspended by {}: {})", was.by, was.reason),
                    )
                }
                Self::Reweight {
                    agent,
                    domain,
                    factor,
                    seconds,
                } => {
                    o.reweight(agent, domain, *factor, *seconds, &by, now)?;
                    record(
                        "reweight",
                        Some(agent),
                        format!("weight x{factor} for {seconds} s"),
                    )
                }
            }))
        }))
    }
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
        // Only whether the count passed the limit matters: the newest few are kept.
        if times.len() > KEPT_HANDOVERS {
            times.drain(..times.len() - KEPT_HANDOVERS);
        }
        let count = times.len();
        self.version += 1;
        if count > RATCHET_HANDOVERS && !self.suspended.contains_key(domain) {
            self.suspend(
                domain,
                RATCHET,
                &format!(
                    "more than {RATCHET_HANDOVERS} decisions went to a human within 72 h; re-authorise with `conclave review resume --domain {domain}`"
                ),
                now,
            );
            return self.suspended.get(domain).cloned();
        }
        None
    }
}

/// Why the Director's orders could not be changed or kept.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OrdersError {
    /// The order cannot be given (a bad factor, a domain not suspended…).
    #[error(transparent)]
    Order(#[from] DirectorError),
    /// The store or database holding the orders failed; nothing changed.
    #[error("the Director's orders cannot be kept: {0}")]
    Book(String),
}

/// A change of the orders: it changes them in place and returns the audit record of the
/// order it gives (`None` for a change that is no order, such as counting a hand-over).
pub type Change =
    Arc<dyn Fn(&mut Directives) -> Result<Option<DirectiveRecord>, DirectorError> + Send + Sync>;

/// Where the orders are kept: one state shared by every process and replica on the store or
/// database, changed together with the audit record of each order (the audit logs of the
/// sled store and PostgreSQL keep them, so an order is in effect exactly when it is recorded).
pub trait OrderBook: std::fmt::Debug + Send + Sync {
    /// The orders kept.
    ///
    /// # Errors
    /// The store cannot be read, or holds unreadable orders.
    fn orders(&self) -> Result<Directives, OrdersError>;

    /// Reads the orders, applies `change` and, if it changed them, keeps the result and
    /// appends the record it returns, in one atomic step (a concurrent change by another
    /// replica is not lost: the change runs again on its result). The orders after, and the
    /// appended record.
    ///
    /// # Errors
    /// The order cannot be given, or the store failed (then nothing changed).
    fn change(
        &self,
        change: Change,
    ) -> Result<(Directives, Option<crate::audit::AuditRecord>), OrdersError>;
}

/// What `change` does to `before`: `None` when it changed nothing (nothing to keep or
/// record), else the orders after it and the record of the order it gave. Every book keeps
/// orders through this, so that they agree on what counts as a change.
pub(crate) fn applied(
    before: &Directives,
    change: &Change,
) -> Result<Option<(Directives, Option<DirectiveRecord>)>, DirectorError> {
    let mut after = before.clone();
    let entry = change(&mut after)?;
    Ok((after != *before).then_some((after, entry)))
}

/// Most hand-over times kept per domain: the ratchet only needs to know whether more than
/// [`RATCHET_HANDOVERS`] fell in its window, so the orders stay small however many
/// decisions go to a human.
const KEPT_HANDOVERS: usize = RATCHET_HANDOVERS + 1;

/// The audit record of a suspension by the ratchet.
pub(crate) fn ratchet_record(domain: &str, s: &Suspension) -> DirectiveRecord {
    DirectiveRecord {
        action: "ratchet".to_owned(),
        domain: domain.to_owned(),
        agent: None,
        detail: s.reason.clone(),
        by: s.by.clone(),
        at: s.since,
    }
}

/// Orders kept in this process beside a [`MemoryAuditLog`](crate::audit::MemoryAuditLog)
/// (tests, embedding): the same contract as the stores' books.
#[derive(Debug)]
pub struct MemoryOrderBook {
    orders: std::sync::Mutex<Directives>,
    log: Arc<crate::audit::MemoryAuditLog>,
}

impl MemoryOrderBook {
    /// A book starting from `orders`, recording orders in `log`.
    pub fn new(orders: Directives, log: Arc<crate::audit::MemoryAuditLog>) -> Self {
        Self {
            orders: std::sync::Mutex::new(orders),
            log,
        }
    }
}

impl OrderBook for MemoryOrderBook {
    fn orders(&self) -> Result<Directives, OrdersError> {
        Ok(self
            .orders
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone())
    }

    fn change(
        &self,
        change: Change,
    ) -> Result<(Directives, Option<crate::audit::AuditRecord>), OrdersError> {
        use crate::audit::AuditLog as _;
        let mut orders = self
            .orders
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some((next, entry)) = applied(&orders, &change)? else {
            return Ok((orders.clone(), None));
        };
        let record = match entry {
            Some(e) => Some(
                self.log
                    .append(&crate::audit::Entry::Directive(e))
                    .map_err(|e| OrdersError::Book(e.to_string()))?,
            ),
            None => None,
        };
        *orders = next.clone();
        Ok((next, record))
    }
}
