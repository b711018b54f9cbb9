//! Test plugin `memory-bomb-scorer`: `score` allocates (and fills) 1 MiB chunks
//! without bound. The host's memory cap must stop it (memory.grow fails, the
//! allocator aborts, or the host traps the grow) and defer the repository.
use hermes_plugin_sdk::{RiskScorer, ScoreInput, ScoreOutput};

struct MemoryBombScorer;

const CHUNK: usize = 1 << 20;

impl RiskScorer for MemoryBombScorer {
    const NAME: &'static str = "memory-bomb-scorer";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "Test plugin: allocates 1 MiB chunks without bound (memory cap)";

    fn score(_input: ScoreInput) -> Result<ScoreOutput, String> {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            let mut chunk = Vec::with_capacity(CHUNK);
            chunk.resize(CHUNK, 0xA5u8);
            hoard.push(core::hint::black_box(chunk));
            core::hint::black_box(&hoard);
        }
    }
}

hermes_plugin_sdk::export_risk_scorer!(MemoryBombScorer);
