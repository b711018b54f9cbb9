//! Test plugin `socket-scorer`: tries to open a TCP connection, so the
//! component imports `wasi:sockets/*`. The host must reject it at load time,
//! naming the import.
use hermes_plugin_sdk::{Recommendation, RiskScorer, ScoreInput, ScoreOutput};

struct SocketScorer;

impl RiskScorer for SocketScorer {
    const NAME: &'static str = "socket-scorer";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "Test plugin: opens a TCP socket (imports wasi:sockets)";

    fn score(_input: ScoreInput) -> Result<ScoreOutput, String> {
        let outcome = match std::net::TcpStream::connect("127.0.0.1:80") {
            Ok(_) => "connected".to_string(),
            Err(e) => format!("connect failed: {e}"),
        };
        Ok(ScoreOutput { risk: 0, recommendation: Recommendation::Noop, priority: 1000, reasons: vec![outcome] })
    }
}

hermes_plugin_sdk::export_risk_scorer!(SocketScorer);
