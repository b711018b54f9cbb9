//! The `hermes` binary: see [`hermes::cli`].

fn main() -> std::process::ExitCode {
    hermes::cli::main()
}
