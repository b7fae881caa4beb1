#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

pub mod agent;
pub mod aggregate;
pub mod audit;
pub mod ballot;
pub mod decision;
pub mod eval;
pub mod governor;
pub mod layer;
pub mod policy;
pub mod store;
pub mod trust;
