//! The baseline selector's logic (pure).
//!
//! Candidates whose circuit is `open` are not usable and are skipped. The
//! usable ones are ranked by, in order:
//! 1. role: primary, origin, mirror, cache, fallback;
//! 2. circuit: `closed` before `half-open` (of the same role);
//! 3. success-rate-ppm, higher first;
//! 4. latency-ms, lower first;
//! 5. name, ascending (byte order);
//! 6. position in the input (only for duplicate names).
//!
//! The first is chosen. With no usable candidate the result is an error.
//! `consecutive-failures` is not used for ranking (the circuit state already
//! reflects it).

use hermes_plugin_sdk::{CircuitState, RemoteCandidate, RemoteRole, SelectInput, SelectOutput};

/// Rank of a role (lower is preferred).
pub fn role_rank(role: RemoteRole) -> u8 {
    match role {
        RemoteRole::Primary => 0,
        RemoteRole::Origin => 1,
        RemoteRole::Mirror => 2,
        RemoteRole::Cache => 3,
        RemoteRole::Fallback => 4,
    }
}

/// WIT name of a role.
pub fn role_name(role: RemoteRole) -> &'static str {
    match role {
        RemoteRole::Primary => "primary",
        RemoteRole::Origin => "origin",
        RemoteRole::Mirror => "mirror",
        RemoteRole::Cache => "cache",
        RemoteRole::Fallback => "fallback",
    }
}

/// WIT name of a circuit state.
pub fn circuit_name(c: CircuitState) -> &'static str {
    match c {
        CircuitState::Closed => "closed",
        CircuitState::Open => "open",
        CircuitState::HalfOpen => "half-open",
    }
}

/// Select a remote; see the module documentation.
pub fn select(input: &SelectInput) -> Result<SelectOutput, String> {
    let mut usable: Vec<(usize, &RemoteCandidate)> =
        input.candidates.iter().enumerate().filter(|(_, c)| c.circuit != CircuitState::Open).collect();
    let skipped: Vec<&str> =
        input.candidates.iter().filter(|c| c.circuit == CircuitState::Open).map(|c| c.name.as_str()).collect();

    if usable.is_empty() {
        return Err(if input.candidates.is_empty() {
            format!("no remote candidates for repo {}", input.repo)
        } else {
            format!(
                "no usable remote for repo {}: all {} candidates have an open circuit ({})",
                input.repo,
                input.candidates.len(),
                skipped.join(", ")
            )
        });
    }

    usable.sort_by(|(ia, a), (ib, b)| {
        role_rank(a.role)
            .cmp(&role_rank(b.role))
            .then((a.circuit == CircuitState::HalfOpen).cmp(&(b.circuit == CircuitState::HalfOpen)))
            .then(b.success_rate_ppm.cmp(&a.success_rate_ppm))
            .then(a.latency_ms.cmp(&b.latency_ms))
            .then(a.name.cmp(&b.name))
            .then(ia.cmp(ib))
    });

    let best = usable[0].1;
    let mut reason = format!(
        "chose {} (role {}, circuit {}, success-rate-ppm {}, latency-ms {}) of {} usable",
        best.name,
        role_name(best.role),
        circuit_name(best.circuit),
        best.success_rate_ppm,
        best.latency_ms,
        usable.len()
    );
    if !skipped.is_empty() {
        reason.push_str(&format!("; skipped open circuit: {}", skipped.join(", ")));
    }

    Ok(SelectOutput {
        chosen: best.name.clone(),
        ranking: usable.iter().map(|(_, c)| c.name.clone()).collect(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(name: &str, role: RemoteRole, ppm: u32, ms: u32, circuit: CircuitState) -> RemoteCandidate {
        RemoteCandidate {
            name: name.into(),
            role,
            success_rate_ppm: ppm,
            latency_ms: ms,
            consecutive_failures: 0,
            circuit,
        }
    }

    fn input(candidates: Vec<RemoteCandidate>) -> SelectInput {
        SelectInput { repo: "r".into(), candidates, logical_time: 0 }
    }

    #[test]
    fn ranks_by_role_circuit_rate_latency_name() {
        use CircuitState::*;
        use RemoteRole::*;
        let out = select(&input(vec![
            c("fb", Fallback, 1_000_000, 1, Closed),
            c("m2", Mirror, 900_000, 50, Closed),
            c("m1", Mirror, 900_000, 50, Closed),
            c("m0", Mirror, 900_000, 10, Closed),
            c("m-half", Mirror, 1_000_000, 1, HalfOpen),
            c("m-best", Mirror, 990_000, 500, Closed),
            c("p", Primary, 100_000, 9000, Open),
            c("o", Origin, 500_000, 100, HalfOpen),
        ]))
        .unwrap();
        assert_eq!(out.chosen, "o");
        assert_eq!(out.ranking, vec!["o", "m-best", "m0", "m1", "m2", "m-half", "fb"]);
        assert_eq!(
            out.reason,
            "chose o (role origin, circuit half-open, success-rate-ppm 500000, latency-ms 100) of 7 usable; skipped open circuit: p"
        );
    }

    #[test]
    fn errors_without_usable_candidate() {
        assert_eq!(select(&input(vec![])).unwrap_err(), "no remote candidates for repo r");
        let err = select(&input(vec![c("a", RemoteRole::Primary, 0, 0, CircuitState::Open)])).unwrap_err();
        assert_eq!(err, "no usable remote for repo r: all 1 candidates have an open circuit (a)");
    }
}
