//! Wall-clock time for events and state views, injectable for tests.
//!
//! `HERMES_NOW` (RFC 3339) pins the clock; simulations and tests use it so
//! their ledgers are reproducible. Nothing that is hashed into a decision
//! reads the clock.

use chrono::{DateTime, SecondsFormat, Utc};

/// The environment variable that pins [`Clock::now`].
pub const NOW_ENV: &str = "HERMES_NOW";

/// Source of wall-clock time.
#[derive(Debug, Clone, Copy)]
pub enum Clock {
    /// The system clock.
    System,
    /// A fixed instant.
    Fixed(DateTime<Utc>),
}

impl Clock {
    /// The clock named by `HERMES_NOW`, or the system clock when unset.
    pub fn from_env() -> Result<Self, String> {
        match std::env::var(NOW_ENV) {
            Ok(text) => DateTime::parse_from_rfc3339(&text)
                .map(|t| Clock::Fixed(t.with_timezone(&Utc)))
                .map_err(|e| format!("{NOW_ENV}={text:?} is not an RFC 3339 time: {e}")),
            Err(_) => Ok(Clock::System),
        }
    }

    /// Current time.
    pub fn now(&self) -> DateTime<Utc> {
        match self {
            Clock::System => Utc::now(),
            Clock::Fixed(t) => *t,
        }
    }

    /// Current time as RFC 3339 with millisecond precision, `Z` suffix.
    pub fn now_rfc3339(&self) -> String {
        self.now().to_rfc3339_opts(SecondsFormat::Millis, true)
    }
}
