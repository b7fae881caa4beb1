//! conclave's integration tests: one binary, one module per area.

/// Reference cases computed by pref_voting, crowd-kit and scipy, run through the library and
/// through the `conclave` binary.
mod fixtures;
/// Bad input to the CLI: exit code 2, one line naming the problem, never a panic.
mod cli_errors;
/// Property tests (proptest) of the voting invariants.
mod properties;
/// Shared helpers.
mod support;
