//! conclave's integration tests: one binary, one module per area.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

/// The audit log and the store through the CLI, tampering, bad stores, SIGKILL.
mod audit;
/// Bad input to the CLI: exit code 2, one line naming the problem, never a panic.
mod cli_errors;
/// The library as an embedder uses it: builders, the policy router, trust updates.
mod embedding;
/// The evaluation harness: shipped suites, reproducibility, recalibration, bad suites.
mod eval;
/// Reference cases computed by pref_voting, crowd-kit and scipy, run through the library and
/// through the `conclave` binary.
mod fixtures;
/// The Governor with simulated agents.
mod governor;
/// What probing the service found: admission bounds, ids and keys, the ratchet, slow
/// clients, maximal requests, the shutdown deadline.
mod hardening;
/// The per-agent middleware (retry, circuit breaker).
mod layers;
/// The OpenAI-compatible agent against mock servers on 127.0.0.1.
mod openai;
/// Policies and agent definitions: checks, diagnostics, explanations, routing, fuzzing.
mod policy;
/// The PostgreSQL backend against a real PostgreSQL server.
mod postgres;
/// Property tests (proptest) of the voting invariants.
mod properties;
/// The README's commands and examples, run as written.
mod readme;
/// The Cognitive Director: review queue, overrides, reweights, suspensions, the ratchet.
mod review;
/// `conclave serve`: the HTTP API and the OpenAI-compatible alias on 127.0.0.1.
mod serve;
/// Shared helpers.
mod support;
/// The trust model and the correlation ledger.
mod trust;
/// The trust stores (memory and sled).
mod trust_store;
