//! `hermes plugin inspect COMPONENT`.

use super::{engine, read_component};
use crate::cli::{CliError, ErrorKind, ExitStatus, print_json};
use crate::workspace::Workspace;
use serde_json::json;
use std::path::PathBuf;

/// Show a component's world, WIT version, imports, exports, metadata and
/// SHA-256 (the digest a policy pins).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The component (.wasm)
    component: PathBuf,
    /// Print as JSON
    #[arg(long)]
    json: bool,
}

pub fn run(workspace: &Workspace, args: Args) -> Result<ExitStatus, CliError> {
    let bytes = read_component(&args.component)?;
    let engine = engine(workspace)?;
    let source = args.component.display().to_string();
    let plugin = engine.load(&bytes, &source).map_err(|e| {
        CliError::new(ErrorKind::Config, e.to_string()).hint("`hermes plugin test` reports every check")
    })?;
    if args.json {
        print_json(&json!({
            "component": source,
            "digest": plugin.digest,
            "world": plugin.kind,
            "wit_version": plugin.wit_version,
            "metadata": plugin.metadata,
            "imports": plugin.imports,
            "exports": plugin.exports,
        }))?;
    } else {
        let m = &plugin.metadata;
        println!("component   {source}");
        println!("sha256      {}", plugin.digest);
        println!("world       hermes:plugin/{}@{}", plugin.kind.as_str(), plugin.wit_version);
        println!("metadata    {} {}: {}", m.name, m.version, m.description);
        println!("exports     {}", plugin.exports.join(", "));
        println!("imports");
        for import in &plugin.imports {
            println!("  {import}");
        }
    }
    Ok(ExitStatus::Success)
}
