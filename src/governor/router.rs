//! [`PolicyRouter`]: one service for every policy. A decision goes to the Governor of the
//! first policy that covers its domain and kind; a decision no policy covers is refused
//! (deny by default).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tower::Service;

use super::builder::{GovernorBuildError, GovernorBuilder};
use super::{Governor, GovernorError};
use crate::decision::{Decision, Verdict};
use crate::policy::{Catalog, Refused};

/// Routes decisions to the Governor of the policy that governs them. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct PolicyRouter {
    governors: Vec<Governor>,
}

impl PolicyRouter {
    /// A router over these Governors, tried in order.
    pub fn new(governors: impl IntoIterator<Item = Governor>) -> Self {
        Self {
            governors: governors.into_iter().collect(),
        }
    }

    /// A Governor for every policy of `catalog`, with agents built from their definitions;
    /// `configure` sets up each one's builder (trust, audit log, escalation hook…).
    ///
    /// # Errors
    /// An agent that cannot be built.
    pub fn from_catalog(
        catalog: &Catalog,
        mut configure: impl FnMut(GovernorBuilder) -> GovernorBuilder,
    ) -> Result<Self, GovernorBuildError> {
        let governors = catalog
            .policies
            .iter()
            .map(|p| configure(Governor::builder(p.clone()).agents_from(catalog)?).build())
            .collect::<Result<_, _>>()?;
        Ok(Self { governors })
    }

    /// The Governor that would govern a decision of this domain and kind.
    ///
    /// # Errors
    /// [`Refused`] when no policy covers it.
    pub fn route(&self, domain: &str, kind: crate::aggregate::Kind) -> Result<&Governor, Refused> {
        self.governors
            .iter()
            .find(|g| g.policy().covers(domain, kind))
            .ok_or_else(|| Refused {
                domain: domain.to_owned(),
                kind: kind.as_str().to_owned(),
            })
    }

    /// Governs one decision under the policy that covers it.
    ///
    /// # Errors
    /// [`GovernorError::NoPolicy`] when no policy covers it; else as [`Governor::decide`].
    pub async fn decide(&self, decision: Decision) -> Result<Verdict, GovernorError> {
        let governor = self.route(&decision.domain, decision.kind)?.clone();
        governor.decide(decision).await
    }
}

impl Service<Decision> for PolicyRouter {
    type Response = Verdict;
    type Error = GovernorError;
    type Future = Pin<Box<dyn Future<Output = Result<Verdict, GovernorError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), GovernorError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, decision: Decision) -> Self::Future {
        let routed = self.route(&decision.domain, decision.kind).cloned();
        Box::pin(async move { routed?.decide(decision).await })
    }
}
