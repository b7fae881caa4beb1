//! Trust: how far each agent can be relied upon, measured from outcomes.
//!
//! For now this holds the pure reliability estimators ([`estimate`]); the trust model and
//! its store build on them.

pub mod estimate;
