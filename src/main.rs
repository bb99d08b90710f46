use std::io::Write;

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // An optional .env next to the process; real environment variables win.
    let _ = dotenvy::dotenv();
    herald::telemetry::init();
    let cli = herald::cli::Cli::parse();
    match herald::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            // Written with `let _`: a closed standard error must not turn into a panic.
            let _ = writeln!(
                std::io::stderr(),
                "herald: {}",
                herald::telemetry::Chain(error.as_ref())
            );
            std::process::ExitCode::from(herald::cli::exit_code(&error))
        }
    }
}
