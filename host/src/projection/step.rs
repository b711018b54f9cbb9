//! [`Step`]: what one event contributes to the projection, read from the
//! event's payload without building a JSON tree.
//!
//! A long scan makes the steps on its decoding threads, straight from each
//! line's payload text ([`crate::ledger::scan::scan_map`]); the fold then
//! applies them in ledger order. The payload is read leniently, exactly as
//! the projection always read it: a member that is missing or of another
//! type reads as absent (text), 0 (counts) or no change, never as an error.

use crate::ledger::event::{ChainHash, Payload};
use crate::ledger::{EventKind, EventRef};
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, de::value::MapAccessDeserializer};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

/// One event, as the fold needs it.
#[derive(Debug)]
pub struct Step {
    pub seq: u64,
    pub hash: ChainHash,
    /// `None` for a kind this build does not know.
    pub kind: Option<EventKind>,
    pub tick: String,
    pub subject: String,
    pub change: Change,
}

/// The kind-specific part of a [`Step`].
#[derive(Debug, Default)]
pub enum Change {
    /// Nothing beyond the kind itself.
    #[default]
    None,
    CycleStarted {
        time: String,
    },
    CycleFinished {
        time: String,
        decision_hash: Option<String>,
        counts: BTreeMap<String, u64>,
    },
    Probed(Probe),
    Planned(Plan),
    Outcome(Outcome),
    RolledBack {
        ok: bool,
        to: Option<String>,
    },
    Lease(Lease),
    Released {
        fencing_token: u64,
    },
    RemoteHealth {
        remote: Option<String>,
        health: Value,
    },
    Gate {
        ok: Option<bool>,
    },
    PluginCalled {
        kind: Option<String>,
        outcome: Option<String>,
        fuel_used: u64,
    },
}

impl Step {
    /// The step of `event`.
    pub fn of(event: EventRef<'_>) -> Step {
        let kind = EventKind::parse(event.kind);
        let payload = &event.payload;
        let change = match kind {
            Some(EventKind::CycleStarted) => Change::CycleStarted { time: event.time.to_owned() },
            Some(EventKind::CycleFinished) => {
                let p: CycleFinished = parse(payload);
                Change::CycleFinished {
                    time: event.time.to_owned(),
                    decision_hash: p.decision_hash.text(),
                    counts: p.counts.0,
                }
            }
            Some(EventKind::RepoProbed) => Change::Probed(parse::<Probed>(payload).probe.0),
            Some(EventKind::PlanMade) => Change::Planned(parse(payload)),
            Some(EventKind::RepoUpgraded | EventKind::RepoDeferred | EventKind::RepoBlocked | EventKind::RepoNoop) => {
                Change::Outcome(parse(payload))
            }
            Some(EventKind::RolledBack) => {
                let p: RolledBack = parse(payload);
                Change::RolledBack { ok: p.ok.flag() == Some(true), to: p.to.text() }
            }
            Some(EventKind::LeaseGranted | EventKind::LeaseTakeover | EventKind::LeaseRenewed) => {
                Change::Lease(parse::<Leased>(payload).lease.0)
            }
            Some(EventKind::LeaseReleased) => {
                Change::Released { fencing_token: parse::<Released>(payload).fencing_token.count().unwrap_or(0) }
            }
            Some(EventKind::RemoteHealthChanged) => {
                let health: Value = payload.parse().unwrap_or_default();
                let remote = health.get("remote").and_then(Value::as_str).map(str::to_owned);
                Change::RemoteHealth { remote, health }
            }
            Some(EventKind::GateChecked) => Change::Gate { ok: parse::<Gate>(payload).ok.flag() },
            Some(EventKind::PluginCalled) => {
                let p: PluginCalled = parse(payload);
                Change::PluginCalled {
                    kind: p.kind.text(),
                    outcome: p.outcome.text(),
                    fuel_used: p.fuel_used.count().unwrap_or(0),
                }
            }
            _ => Change::None,
        };
        Step {
            seq: event.seq,
            hash: ChainHash::parse(event.hash),
            kind,
            tick: event.tick.to_owned(),
            subject: event.subject.to_owned(),
            change,
        }
    }
}

/// The payload read leniently as `T` (all defaults when it is not an object).
fn parse<T: Default + for<'de> Deserialize<'de>>(payload: &Payload<'_>) -> T {
    payload.parse::<Lenient<T>>().map(|l| l.0).unwrap_or_default()
}

/// `repo-probed`: the probe's facts.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Probed {
    probe: Lenient<Probe>,
}

/// The probe facts the projection keeps.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Probe {
    pub branch: Scalar,
    pub head: Scalar,
    pub upstream_head: Scalar,
    pub ahead: Scalar,
    pub behind: Scalar,
    pub remote: Scalar,
    /// Remotes the fetch fell over from (names, or objects with `remote`).
    pub failed_over: List<RemoteName>,
}

/// `plan-made`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Plan {
    pub decision_hash: Scalar,
    pub decisions: List<Lenient<Decision>>,
}

/// One decision of a plan.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Decision {
    pub repo: Scalar,
    pub recommendation: Scalar,
    pub risk: Scalar,
    pub reason_code: Scalar,
    pub depends_on: List<Scalar>,
}

/// `repo-upgraded`, `-deferred`, `-blocked`, `-noop`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Outcome {
    pub head_after: Scalar,
    pub outcome: Scalar,
    pub reason_code: Scalar,
    pub reason: Scalar,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct CycleFinished {
    decision_hash: Scalar,
    counts: Counts,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RolledBack {
    ok: Scalar,
    to: Scalar,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Leased {
    lease: Lenient<Lease>,
}

/// A lease as grants, takeovers and renewals record it.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Lease {
    pub key: Scalar,
    pub holder: Lenient<Holder>,
    pub fencing_token: Scalar,
    pub expires_at: Scalar,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Holder {
    pub tick: Scalar,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Released {
    fencing_token: Scalar,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Gate {
    ok: Scalar,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct PluginCalled {
    kind: Scalar,
    outcome: Scalar,
    fuel_used: Scalar,
}

/// A JSON value read as a string, an unsigned integer or a boolean; any
/// other value (negative, fractional, null, array, object) is `Other`.
#[derive(Debug, Default, Clone, PartialEq)]
pub enum Scalar {
    Text(String),
    Count(u64),
    Flag(bool),
    #[default]
    Other,
}

impl Scalar {
    pub fn text(&self) -> Option<String> {
        match self {
            Scalar::Text(text) => Some(text.clone()),
            _ => None,
        }
    }

    pub fn count(&self) -> Option<u64> {
        match self {
            Scalar::Count(n) => Some(*n),
            _ => None,
        }
    }

    pub fn flag(&self) -> Option<bool> {
        match self {
            Scalar::Flag(b) => Some(*b),
            _ => None,
        }
    }
}

/// A reader that takes any JSON value: each shape it does not take reads
/// as its default (arrays and objects are skipped).
trait Shape<'de>: Default {
    fn scalar(_value: Scalar) -> Self {
        Self::default()
    }

    fn map<A: MapAccess<'de>>(mut map: A) -> Result<Self, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Self::default())
    }

    fn seq<A: SeqAccess<'de>>(mut seq: A) -> Result<Self, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Self::default())
    }
}

/// The serde visitor of a [`Shape`].
struct ShapeVisitor<T>(PhantomData<T>);

impl<'de, T: Shape<'de>> Visitor<'de> for ShapeVisitor<T> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        Ok(T::scalar(Scalar::Text(v.to_owned())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<T, E> {
        Ok(T::scalar(Scalar::Text(v)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        Ok(T::scalar(Scalar::Count(v)))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        Ok(T::scalar(u64::try_from(v).map_or(Scalar::Other, Scalar::Count)))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<T, E> {
        Ok(T::scalar(Scalar::Other))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<T, E> {
        Ok(T::scalar(Scalar::Flag(v)))
    }
    fn visit_unit<E: de::Error>(self) -> Result<T, E> {
        Ok(T::scalar(Scalar::Other))
    }
    fn visit_none<E: de::Error>(self) -> Result<T, E> {
        Ok(T::scalar(Scalar::Other))
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<T, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<T, A::Error> {
        T::seq(seq)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        T::map(map)
    }
}

/// Implements `Deserialize` for a [`Shape`].
macro_rules! deserialize_shape {
    ($($ty:ty $(where $param:ident)?),*) => {$(
        impl<'de $(, $param: Default + Deserialize<'de>)?> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                deserializer.deserialize_any(ShapeVisitor(PhantomData))
            }
        }
    )*};
}

deserialize_shape!(Scalar, Lenient<T> where T, List<T> where T, RemoteName, Counts);

impl Shape<'_> for Scalar {
    fn scalar(value: Scalar) -> Self {
        value
    }
}

/// An object read as `T`; any other JSON value reads as `T::default()`.
#[derive(Debug, Default)]
pub struct Lenient<T>(pub T);

impl<'de, T: Default + Deserialize<'de>> Shape<'de> for Lenient<T> {
    fn map<A: MapAccess<'de>>(map: A) -> Result<Self, A::Error> {
        T::deserialize(MapAccessDeserializer::new(map)).map(Lenient)
    }
}

/// An array read item by item; any other JSON value reads as empty.
#[derive(Debug, Default)]
pub struct List<T>(pub Vec<T>);

impl<'de, T: Default + Deserialize<'de>> Shape<'de> for List<T> {
    fn seq<A: SeqAccess<'de>>(mut seq: A) -> Result<Self, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(List(items))
    }
}

/// A remote named by a string, or by an object's `remote` member.
#[derive(Debug, Default)]
pub struct RemoteName(pub Option<String>);

impl<'de> Shape<'de> for RemoteName {
    fn scalar(value: Scalar) -> Self {
        RemoteName(value.text())
    }

    fn map<A: MapAccess<'de>>(map: A) -> Result<Self, A::Error> {
        #[derive(Default, Deserialize)]
        #[serde(default)]
        struct Member {
            remote: Scalar,
        }
        Ok(RemoteName(Member::deserialize(MapAccessDeserializer::new(map))?.remote.text()))
    }
}

/// `cycle-finished`'s counts: every member a count, or none at all.
#[derive(Debug, Default)]
struct Counts(BTreeMap<String, u64>);

impl<'de> Shape<'de> for Counts {
    fn map<A: MapAccess<'de>>(mut map: A) -> Result<Self, A::Error> {
        let mut counts = BTreeMap::new();
        let mut all_counts = true;
        while let Some((key, value)) = map.next_entry::<String, Scalar>()? {
            match value.count() {
                Some(n) => {
                    counts.insert(key, n);
                }
                None => all_counts = false,
            }
        }
        Ok(Counts(if all_counts { counts } else { BTreeMap::new() }))
    }
}
