//! Runtime intelligence: per-repository outcome statistics folded from the
//! ledger's outcome events (persisted in `state/runtime_intelligence.json`).
