//! `herald` subcommands.

use clap::{Parser, Subcommand};

use crate::{
    config::{DatabaseArgs, ServeArgs, Settings},
    startup::{Application, install_crypto_provider},
    store::Db,
};

#[derive(Debug, Parser)]
#[command(name = "herald", version, about = "A WebSub / PubSubHubbub hub")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the hub: the hub URL and the queue workers.
    Serve(Box<ServeArgs>),
    /// Create or upgrade the database schema, then exit.
    Migrate(DatabaseArgs),
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => {
            let settings = Settings::try_from(*args).map_err(anyhow::Error::msg)?;
            Application::build(settings).await?.run_until_signal().await
        }
        Command::Migrate(args) => {
            install_crypto_provider();
            let db = Db::connect(&args.database_url).await?;
            db.migrate().await?;
            println!("{} schema is up to date", db.engine());
            Ok(())
        }
    }
}
