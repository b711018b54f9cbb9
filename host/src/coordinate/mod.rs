//! AgentCoordinator: reservations, leases with fencing tokens, per-remote
//! budgets (single host; persisted in `state/coordination_leases.json`).
