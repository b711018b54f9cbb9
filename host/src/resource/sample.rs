//! Sampling the host through `sysinfo`, and the telemetry override file.

use super::{ResourceError, ResourcePolicy, Telemetry};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use sysinfo::{CpuRefreshKind, DiskRefreshKind, Disks, MemoryRefreshKind, RefreshKind, System};

const MIB: u64 = 1024 * 1024;

/// The telemetry override file: any subset of the telemetry fields.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Override {
    #[serde(rename = "$comment", default)]
    _comment: Option<serde_json::Value>,
    load_milli_per_core: Option<u32>,
    cores: Option<u32>,
    mem_free_mib: Option<u64>,
    mem_total_mib: Option<u64>,
    disk_free_mib: Option<u64>,
    disk_path: Option<String>,
}

/// Samples the host, then applies the policy's telemetry override file (if
/// any). `home` is HERMES_HOME: the disk sampled is the one holding it, and
/// a relative override path is resolved against it.
///
/// A metric that cannot be sampled is an error unless the override file
/// supplies it; a missing or invalid override file is an error naming the
/// file (and the field at fault).
pub fn sample(home: &Path, policy: &ResourcePolicy) -> Result<Telemetry, ResourceError> {
    let ov = match policy.telemetry_override.as_deref() {
        Some(path) => read_override(&home.join(path))?,
        None => Override::default(),
    };
    let system = System::new_with_specifics(
        RefreshKind::nothing().with_memory(MemoryRefreshKind::nothing().with_ram()).with_cpu(CpuRefreshKind::nothing()),
    )
    .map_err(|e| format!("sysinfo: {e}"));
    let real_cores = system.as_ref().map_err(Clone::clone).and_then(cores);
    let memory = system.as_ref().map_err(Clone::clone).map(memory);
    let mut overridden = Vec::new();

    let load_milli_per_core =
        pick("load_milli_per_core", ov.load_milli_per_core, || load_per_core(real_cores.clone()?), &mut overridden)?;
    let cores = pick("cores", ov.cores, || real_cores.clone(), &mut overridden)?;
    let mem_free_mib = pick("mem_free_mib", ov.mem_free_mib, || memory.clone().map(|m| m.0), &mut overridden)?;
    let mem_total_mib = pick("mem_total_mib", ov.mem_total_mib, || memory.clone().map(|m| m.1), &mut overridden)?;
    let disk = if ov.disk_free_mib.is_some() && ov.disk_path.is_some() {
        Err("not sampled".to_owned()) // both fields come from the override
    } else {
        disk(home)
    };
    let disk_free_mib = pick("disk_free_mib", ov.disk_free_mib, || disk.clone().map(|d| d.0), &mut overridden)?;
    let disk_path = pick("disk_path", ov.disk_path, || disk.clone().map(|d| d.1), &mut overridden)?;
    Ok(Telemetry { load_milli_per_core, cores, mem_free_mib, mem_total_mib, disk_free_mib, disk_path, overridden })
}

/// Reads and validates the policy's telemetry override file, when it names
/// one (what `hermes policy check` runs).
pub fn check_override(home: &Path, policy: &ResourcePolicy) -> Result<(), ResourceError> {
    match policy.telemetry_override.as_deref() {
        Some(path) => read_override(&home.join(path)).map(drop),
        None => Ok(()),
    }
}

/// The override value when there is one (and its name noted), else the
/// sampled one.
fn pick<T>(
    field: &'static str,
    overridden_value: Option<T>,
    sampled: impl FnOnce() -> Result<T, String>,
    overridden: &mut Vec<String>,
) -> Result<T, ResourceError> {
    match overridden_value {
        Some(value) => {
            overridden.push(field.to_owned());
            Ok(value)
        }
        None => sampled().map_err(|detail| ResourceError::Sample { field, detail }),
    }
}

fn read_override(path: &Path) -> Result<Override, ResourceError> {
    let bytes = std::fs::read(path).map_err(|source| ResourceError::OverrideRead { path: path.to_owned(), source })?;
    let invalid =
        |field: String, problem: String| ResourceError::OverrideInvalid { path: path.to_owned(), field, problem };
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(invalid(".".to_owned(), "not a JSON object; expected an object of telemetry fields".to_owned()));
    }
    let mut de = serde_json::Deserializer::from_slice(&bytes);
    let parsed: Override = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let problem = e.inner().to_string();
        // An unknown member is reported at the object itself; name it.
        let field = match e.path().to_string() {
            root if root == "." => unknown_field(&problem).unwrap_or(root),
            field => field,
        };
        invalid(field, problem)
    })?;
    de.end().map_err(|e| invalid(".".to_owned(), e.to_string()))?;
    Ok(parsed)
}

/// The name in serde's "unknown field `x`, expected ..." message.
fn unknown_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    rest.split_once('`').map(|(name, _)| name.to_owned())
}

/// Logical cores as sysinfo lists them (consistent with the host-wide load
/// average), else what the standard library reports.
fn cores(system: &System) -> Result<u32, String> {
    let listed = system.cpus().len();
    let n = if listed > 0 {
        listed
    } else {
        std::thread::available_parallelism().map_err(|e| format!("no CPUs listed: {e}"))?.get()
    };
    Ok(u32::try_from(n).unwrap_or(u32::MAX))
}

/// The 1-minute load average per core in thousandths, rounded.
fn load_per_core(cores: u32) -> Result<u32, String> {
    let load = System::load_average().map_err(|e| format!("load average: {e}"))?;
    let per_core = load.one * 1000.0 / f64::from(cores.max(1));
    // `as` saturates (and maps NaN to 0); nothing fractional is kept.
    Ok(per_core.round() as u32)
}

/// (available, total) memory in MiB, clamped to the root cgroup's limit when
/// that is tighter than the machine's (a container).
fn memory(system: &System) -> (u64, u64) {
    let mut total = system.total_memory();
    let mut free = system.available_memory();
    if let Some(limits) = system.cgroup_limits()
        && limits.total_memory > 0
        && limits.total_memory < total
    {
        total = limits.total_memory;
        free = free.min(limits.free_memory);
    }
    (free / MIB, total / MIB)
}

/// (free MiB, mount point) of the disk whose mount point is the longest
/// prefix of the canonicalized `home`.
fn disk(home: &Path) -> Result<(u64, String), String> {
    let canonical: PathBuf =
        std::fs::canonicalize(home).map_err(|e| format!("cannot canonicalize {}: {e}", home.display()))?;
    let disks = Disks::new_with_refreshed_list_specifics(DiskRefreshKind::nothing().with_storage())
        .map_err(|e| format!("sysinfo disks: {e}"))?;
    disks
        .iter()
        .filter(|d| canonical.starts_with(d.mount_point()))
        .max_by_key(|d| d.mount_point().components().count())
        .map(|d| (d.available_space() / MIB, d.mount_point().display().to_string()))
        .ok_or_else(|| format!("no mounted disk holds {}", canonical.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::{PressureLevel, assess};

    fn with_override(home: &Path, text: &str) -> ResourcePolicy {
        std::fs::create_dir_all(home.join("sim")).unwrap();
        std::fs::write(home.join("sim/telemetry.json"), text).unwrap();
        ResourcePolicy { telemetry_override: Some("sim/telemetry.json".to_owned()), ..ResourcePolicy::default() }
    }

    #[test]
    fn real_sample_is_sane() {
        let home = tempfile::tempdir().unwrap();
        let t = sample(home.path(), &ResourcePolicy::default()).unwrap();
        eprintln!("sampled: {t:?}");
        assert!(t.cores > 0, "{t:?}");
        assert!(t.mem_total_mib > 0, "{t:?}");
        assert!(t.mem_free_mib <= t.mem_total_mib, "{t:?}");
        assert!(!t.disk_path.is_empty(), "{t:?}");
        let canonical = std::fs::canonicalize(home.path()).unwrap();
        assert!(canonical.starts_with(&t.disk_path), "{} not under {}", canonical.display(), t.disk_path);
        assert!(t.overridden.is_empty());
    }

    #[test]
    fn override_replaces_fields_and_names_them() {
        let home = tempfile::tempdir().unwrap();
        let policy = with_override(
            home.path(),
            r#"{ "$comment": "disk nearly full", "disk_free_mib": 100, "load_milli_per_core": 2500, "disk_path": "/sim" }"#,
        );
        let t = sample(home.path(), &policy).unwrap();
        assert_eq!(t.load_milli_per_core, 2500);
        assert_eq!(t.disk_free_mib, 100);
        assert_eq!(t.disk_path, "/sim");
        assert!(t.cores > 0 && t.mem_total_mib > 0, "the rest is sampled: {t:?}");
        assert_eq!(t.overridden, vec!["load_milli_per_core", "disk_free_mib", "disk_path"]);
        let p = assess(&t, &policy);
        assert_eq!(p.level, PressureLevel::Critical);
        assert_eq!(p.lanes, 0);
    }

    #[test]
    fn override_of_every_field_is_the_whole_sample() {
        let home = tempfile::tempdir().unwrap();
        let policy = with_override(
            home.path(),
            r#"{"load_milli_per_core":1,"cores":3,"mem_free_mib":4,"mem_total_mib":5,"disk_free_mib":6,"disk_path":"/x"}"#,
        );
        let t = sample(home.path(), &policy).unwrap();
        assert_eq!(
            t,
            Telemetry {
                load_milli_per_core: 1,
                cores: 3,
                mem_free_mib: 4,
                mem_total_mib: 5,
                disk_free_mib: 6,
                disk_path: "/x".into(),
                overridden: [
                    "load_milli_per_core",
                    "cores",
                    "mem_free_mib",
                    "mem_total_mib",
                    "disk_free_mib",
                    "disk_path"
                ]
                .map(String::from)
                .to_vec(),
            }
        );
    }

    #[test]
    fn missing_override_names_the_file() {
        let home = tempfile::tempdir().unwrap();
        let policy = ResourcePolicy { telemetry_override: Some("nope.json".into()), ..ResourcePolicy::default() };
        let err = sample(home.path(), &policy).unwrap_err();
        assert!(matches!(err, ResourceError::OverrideRead { .. }), "{err:?}");
        assert!(err.to_string().contains("nope.json"), "{err}");
    }

    #[test]
    fn invalid_override_names_the_file_and_field() {
        let home = tempfile::tempdir().unwrap();
        for (text, field) in [
            (r#"{"mem_free_mib": "lots"}"#, "mem_free_mib"),
            (r#"{"load_milli_per_core": -1}"#, "load_milli_per_core"),
            (r#"{"load_milli_per_core": 1.5}"#, "load_milli_per_core"),
            (r#"{"disk_free": 1}"#, "disk_free"),
            (r#"[1, 2]"#, "."),
            (r#"{"cores": 2} trailing"#, "."),
            ("", "."),
        ] {
            let policy = with_override(home.path(), text);
            let err = sample(home.path(), &policy).unwrap_err();
            let ResourceError::OverrideInvalid { path, field: got, problem } = &err else {
                panic!("{text}: {err:?}");
            };
            assert!(path.ends_with("sim/telemetry.json"), "{text}: {}", path.display());
            assert_eq!(got, field, "{text}: {problem}");
            let message = err.to_string();
            assert!(message.contains("sim/telemetry.json") && message.contains(field), "{message}");
        }
    }
}
