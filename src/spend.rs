//! Budgets shared by every decision of a policy (`[budget.total]`): each agent call reserves
//! its projected cost before it is made and settles what it spent when it is done.
//!
//! The account is a trait so that replicas can share one: [`MemorySpend`] holds the accounts
//! of one process, `PgSpend` (feature `postgres`) those of every replica on a database. A
//! call is made only when its reservation fits under the cap with every other reservation and
//! every settled spend, so the total never passes the cap as long as calls spend no more than
//! projected (a call's projection is its prompt estimate plus its `max_tokens`). A call that
//! ends with no reply (timed out, cancelled, failed) is charged its whole reservation: what
//! it cost at the provider is unknown, and the cap errs on the side of spending less.

use std::collections::HashMap;
use std::sync::Mutex;

/// Tokens and dollars.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Charge {
    /// Tokens, prompt and completion together.
    pub tokens: u64,
    /// US dollars.
    pub usd: f64,
}

/// The account could not be read or written.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the budget account failed: {0}")]
pub struct SpendError(pub String);

/// Budget accounts, by scope (a policy, and the window it is in).
pub trait SpendAccount: std::fmt::Debug + Send + Sync {
    /// Reserves `charge` in `scope` if reserved and spent together stay within `cap`;
    /// `false` (and nothing reserved) otherwise.
    ///
    /// # Errors
    /// The account cannot be written; the call must then not be made.
    fn reserve(&self, scope: &str, charge: Charge, cap: Charge) -> Result<bool, SpendError>;

    /// Releases a reservation and charges what was spent.
    ///
    /// # Errors
    /// The account cannot be written.
    fn settle(&self, scope: &str, reserved: Charge, spent: Charge) -> Result<(), SpendError>;

    /// What `scope` has reserved and spent.
    ///
    /// # Errors
    /// The account cannot be read.
    fn totals(&self, scope: &str) -> Result<(Charge, Charge), SpendError>;
}

/// Accounts held in this process.
#[derive(Debug, Default)]
pub struct MemorySpend {
    accounts: Mutex<HashMap<String, (Charge, Charge)>>,
}

impl MemorySpend {
    /// No spending yet.
    pub fn new() -> Self {
        Self::default()
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut HashMap<String, (Charge, Charge)>) -> T,
    ) -> Result<T, SpendError> {
        let mut accounts = self
            .accounts
            .lock()
            .map_err(|_| SpendError("the accounts' lock is poisoned".to_owned()))?;
        Ok(f(&mut accounts))
    }
}

impl SpendAccount for MemorySpend {
    fn reserve(&self, scope: &str, charge: Charge, cap: Charge) -> Result<bool, SpendError> {
        self.with(|a| {
            let (reserved, spent) = a.entry(scope.to_owned()).or_default();
            let fits = spent.tokens + reserved.tokens + charge.tokens <= cap.tokens
                && spent.usd + reserved.usd + charge.usd <= cap.usd + 1e-9;
            if fits {
                reserved.tokens += charge.tokens;
                reserved.usd += charge.usd;
            }
            fits
        })
    }

    fn settle(&self, scope: &str, reserved: Charge, spent: Charge) -> Result<(), SpendError> {
        self.with(|a| {
            let (r, s) = a.entry(scope.to_owned()).or_default();
            r.tokens = r.tokens.saturating_sub(reserved.tokens);
            r.usd = (r.usd - reserved.usd).max(0.0);
            s.tokens += spent.tokens;
            s.usd += spent.usd;
        })
    }

    fn totals(&self, scope: &str) -> Result<(Charge, Charge), SpendError> {
        self.with(|a| a.get(scope).copied().unwrap_or_default())
    }
}

/// The account scope of `policy` at `now` (seconds since the epoch): the policy id, and the
/// start of its window when the limits start again.
pub fn scope(policy: &str, window_s: Option<u64>, now: u64) -> String {
    match window_s {
        Some(w) if w > 0 => format!("{policy}@{}", now - now % w),
        _ => policy.to_owned(),
    }
}

/// One call's reservation. Settled with what the call spent when it answers; dropped
/// unsettled (the call failed, timed out or was cancelled), it charges the whole reservation.
pub(crate) struct Hold {
    account: std::sync::Arc<dyn SpendAccount>,
    scope: String,
    charge: Charge,
    settled: bool,
}

impl std::fmt::Debug for Hold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hold")
            .field("scope", &self.scope)
            .field("charge", &self.charge)
            .finish_non_exhaustive()
    }
}

impl Hold {
    /// Reserves `charge` in `scope` under `cap`: `Ok(None)` when it does not fit (then the
    /// call is not made).
    ///
    /// # Errors
    /// The account failed (nor is the call made then).
    pub(crate) fn take(
        account: &std::sync::Arc<dyn SpendAccount>,
        scope: String,
        charge: Charge,
        cap: Charge,
    ) -> Result<Option<Self>, SpendError> {
        match account.reserve(&scope, charge, cap) {
            Ok(true) => Ok(Some(Self {
                account: account.clone(),
                scope,
                charge,
                settled: false,
            })),
            Ok(false) => Ok(None),
            Err(e) => {
                tracing::warn!(scope, error = %e, "no call made: the budget account failed");
                Err(e)
            }
        }
    }

    /// Settles the reservation with what the call spent.
    pub(crate) fn settle(mut self, spent: Charge) {
        self.settled = true;
        self.close(spent);
    }

    fn close(&self, spent: Charge) {
        if let Err(e) = self.account.settle(&self.scope, self.charge, spent) {
            tracing::warn!(scope = %self.scope, error = %e, "a budget reservation was not settled; it stays reserved");
        }
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        if !self.settled {
            self.close(self.charge);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_never_pass_the_cap_and_settle_to_what_was_spent() {
        let a = MemorySpend::new();
        let cap = Charge {
            tokens: 1000,
            usd: f64::INFINITY,
        };
        let call = Charge {
            tokens: 300,
            usd: 0.0,
        };
        assert!(a.reserve("p", call, cap).unwrap());
        assert!(a.reserve("p", call, cap).unwrap());
        assert!(a.reserve("p", call, cap).unwrap());
        assert!(!a.reserve("p", call, cap).unwrap(), "1,200 > 1,000");
        // One call spent 100 of its 300: there is room again.
        a.settle(
            "p",
            call,
            Charge {
                tokens: 100,
                usd: 0.0,
            },
        )
        .unwrap();
        assert!(a.reserve("p", call, cap).unwrap());
        let (reserved, spent) = a.totals("p").unwrap();
        assert_eq!((reserved.tokens, spent.tokens), (900, 100));
        // Another scope has its own account.
        assert!(a.reserve("q", call, cap).unwrap());
    }

    #[test]
    fn a_window_starts_the_account_again() {
        assert_eq!(scope("p", None, 90_000), "p");
        assert_eq!(scope("p", Some(86_400), 90_000), "p@86400");
        assert_eq!(scope("p", Some(86_400), 86_399), "p@0");
    }
}
