#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod agent;
pub mod aggregate;
pub mod audit;
pub mod ballot;
pub mod decision;
#[cfg(feature = "eval")]
pub mod eval;
pub mod governor;
pub mod layer;
pub mod policy;
#[cfg(feature = "sled")]
pub mod store;
pub mod trust;
