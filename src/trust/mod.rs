//! Trust: how far each agent can be relied upon, measured from graded outcomes.
//!
//! - [`model`]: the per-agent, per-domain Beta posterior with forgetting, asymmetric losses,
//!   the suspicion counter and the status (pure);
//! - [`ledger`]: pairwise error correlation, effective number of independent agents, and
//!   clusters whose combined weight is capped (pure);
//! - [`estimate`]: reliability without ground truth (Dawid–Skene and friends, pure).

pub mod estimate;
pub mod ledger;
pub mod model;
pub mod store;

pub use model::{Status, Suspicion, TrustParams, TrustState, WeightScheme, standing};
