//! Builds the guest plugins in `../plugins` (their own cargo workspace, for
//! `wasm32-wasip2`) and copies the default ones into `OUT_DIR`, so that
//! `cargo build` and `cargo install` give a binary that carries them. Also
//! records the wasmtime version from `Cargo.lock`.
//!
//! The plugins are built into `<workspace>/target/wasm` (shared with the
//! host's target dir, never outside the checkout). Every crate of the
//! plugins workspace is built, test plugins included; the tests find them
//! through `HERMES_PLUGIN_DIR`.

use std::path::{Path, PathBuf};
use std::process::Command;

const DEFAULT_PLUGINS: [&str; 3] = ["baseline_probe", "baseline_scorer", "baseline_selector"];

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let root = manifest_dir.parent().expect("host/ has a parent").to_owned();
    let plugins = root.join("plugins");
    for watched in [
        "Cargo.toml",
        "Cargo.lock",
        ".cargo",
        "sdk",
        "scorer-logic",
        "baseline-probe",
        "baseline-scorer",
        "baseline-selector",
        "template",
        "test-plugins",
    ] {
        println!("cargo:rerun-if-changed={}", plugins.join(watched).display());
    }
    println!("cargo:rerun-if-changed={}", root.join("wit").display());
    println!("cargo:rerun-if-changed={}", root.join("Cargo.lock").display());
    println!("cargo:rustc-env=HERMES_WASMTIME_VERSION={}", locked_version(&root.join("Cargo.lock"), "wasmtime"));

    let target_dir = root.join("target").join("wasm");
    let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cargo.current_dir(&plugins).args(["build", "--release", "--locked", "--workspace", "--target", "wasm32-wasip2"]);
    // Settings meant for the host build must not leak into the guest build.
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        let leaks = key.starts_with("CARGO_")
            && !matches!(
                key.as_str(),
                "CARGO_HOME" | "CARGO_MAKEFLAGS" | "CARGO_NET_OFFLINE" | "CARGO_REGISTRIES_CRATES_IO_PROTOCOL"
            );
        if leaks
            || matches!(
                key.as_str(),
                "RUSTFLAGS"
                    | "RUSTC"
                    | "RUSTDOC"
                    | "RUSTC_WRAPPER"
                    | "RUSTC_WORKSPACE_WRAPPER"
                    | "TARGET"
                    | "HOST"
                    | "OUT_DIR"
                    | "OPT_LEVEL"
                    | "PROFILE"
                    | "DEBUG"
                    | "NUM_JOBS"
            )
        {
            cargo.env_remove(&key);
        }
    }
    cargo.env("CARGO_TARGET_DIR", &target_dir);
    let status = cargo.status().expect("cannot run cargo to build the plugins");
    assert!(status.success(), "building the plugins in {} failed", plugins.display());

    let release = target_dir.join("wasm32-wasip2").join("release");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    for name in DEFAULT_PLUGINS {
        let file = format!("{name}.wasm");
        std::fs::copy(release.join(&file), out_dir.join(&file)).unwrap_or_else(|e| panic!("copying {file}: {e}"));
    }
    println!("cargo:rustc-env=HERMES_PLUGIN_DIR={}", release.display());
}

/// The version of `package` in a Cargo.lock.
fn locked_version(lock: &Path, package: &str) -> String {
    let text = std::fs::read_to_string(lock).unwrap_or_default();
    let needle = format!("name = \"{package}\"\nversion = \"");
    text.find(&needle).and_then(|at| text[at + needle.len()..].split('"').next()).unwrap_or("unknown").to_owned()
}
