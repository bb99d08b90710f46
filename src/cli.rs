//! `herald` subcommands.

use clap::{Parser, Subcommand};

use crate::{
    admin,
    app::Application,
    config::{DatabaseArgs, ServeArgs, Settings},
    outbound::install_crypto_provider,
    runtime,
    store::Db,
};

#[derive(Debug, Parser)]
#[command(name = "herald", version = crate::build_info::LONG_VERSION, about = "A WebSub / PubSubHubbub hub")]
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
    /// Inspect, expire and delete subscriptions.
    Subscriptions {
        #[command(flatten)]
        db: DatabaseArgs,
        #[command(subcommand)]
        command: admin::subscriptions::Command,
    },
    /// Inspect topics.
    Topics {
        #[command(flatten)]
        db: DatabaseArgs,
        #[command(subcommand)]
        command: admin::topics::Command,
    },
    /// Inspect deliveries and replay failed ones.
    Deliveries {
        #[command(flatten)]
        db: DatabaseArgs,
        #[command(subcommand)]
        command: admin::deliveries::Command,
    },
    /// What happened to the producer's subscribers and topics (docs/events.md).
    Events {
        #[command(flatten)]
        db: DatabaseArgs,
        #[command(flatten)]
        args: admin::events::EventsArgs,
    },
    /// Callback hosts whose circuit breaker is open: their deliveries are paused.
    Hosts {
        #[command(flatten)]
        db: DatabaseArgs,
        /// Also hosts whose breaker closed again.
        #[arg(long)]
        all: bool,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Ping topics as a publisher would (the running hub fetches and distributes them).
    Publish {
        #[command(flatten)]
        db: DatabaseArgs,
        #[arg(required = true)]
        topics: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// Check the configuration (environment, .env and the flags of serve, which it takes too)
    /// and the database, without starting anything or creating the database.
    CheckConfig {
        #[command(flatten)]
        serve: Box<ServeArgs>,
        /// The report, or the error, as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the OpenAPI document of the producer and admin APIs (as served at
    /// /api/v1/openapi.json and kept in docs/openapi.json).
    Openapi,
    /// Copy a SQLite database consistently while the hub runs (`VACUUM INTO`); never
    /// overwrites a file. PostgreSQL: use pg_dump (docs/deploy.md).
    Backup {
        #[command(flatten)]
        db: DatabaseArgs,
        /// Where the copy goes: a new file.
        path: std::path::PathBuf,
    },
    /// Print a shell completion script (the Debian package installs them).
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page, in roff (`herald man | man -l -`).
    Man,
}

async fn database(args: &DatabaseArgs) -> anyhow::Result<Db> {
    install_crypto_provider();
    let url = args.url()?;
    let db = Db::connect_existing(url.expose()).await?;
    // Operator commands never change the schema (a hub of another version may own it); they
    // only need it to exist.
    if !db.has_schema().await {
        anyhow::bail!(
            "{url} has no Herald schema yet: run `herald migrate` (or start `herald serve`) first"
        );
    }
    Ok(db)
}

/// The exit status for an error (docs/operations.md, "The admin CLI"): 3 something named does
/// not exist (a subscription, a topic, the database), 4 refused (invalid settings, a selection
/// that would choose too much), 5 the database is unavailable, 1 anything else; clap exits 2 on
/// a usage error before any of this runs.
pub fn exit_code(error: &anyhow::Error) -> u8 {
    for cause in error.chain() {
        if cause.downcast_ref::<admin::NotFound>().is_some() {
            return 3;
        }
        if cause.downcast_ref::<admin::Refused>().is_some()
            || cause.downcast_ref::<crate::config::ConfigError>().is_some()
            || cause
                .downcast_ref::<crate::admin::actions::SelectionError>()
                .is_some()
        {
            return 4;
        }
        if let Some(store) = cause.downcast_ref::<crate::store::StoreError>() {
            if matches!(store, crate::store::StoreError::NoDatabase(_)) {
                return 3;
            }
            if store.is_unavailable()
                || matches!(store, crate::store::StoreError::FileUnusable { .. })
            {
                return 5;
            }
        }
        if cause.downcast_ref::<sqlx::Error>().is_some_and(|e| {
            matches!(
                e,
                sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed
            )
        }) {
            return 5;
        }
    }
    1
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => {
            let settings = Settings::try_from(*args)?;
            Application::build(settings).await?.run_until_signal().await
        }
        Command::Subscriptions { db, command } => {
            admin::subscriptions::run(&database(&db).await?, command).await
        }
        Command::Topics { db, command } => admin::topics::run(&database(&db).await?, command).await,
        Command::Deliveries { db, command } => {
            admin::deliveries::run(&database(&db).await?, command).await
        }
        Command::Events { db, args } => admin::events::run(&database(&db).await?, args).await,
        Command::Hosts { db, all, json } => {
            admin::hosts::run(&database(&db).await?, all, json).await
        }
        Command::Publish { db, topics, json } => {
            admin::system::publish(&database(&db).await?, &topics, json).await
        }
        Command::CheckConfig { serve, json } => {
            install_crypto_provider();
            admin::system::check_config(Settings::try_from(*serve), json).await
        }
        Command::Openapi => {
            println!("{}", crate::http::openapi::document());
            Ok(())
        }
        Command::Backup { db, path } => admin::system::backup(&database(&db).await?, &path).await,
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "herald", &mut std::io::stdout());
            Ok(())
        }
        Command::Man => {
            let command = <Cli as clap::CommandFactory>::command();
            clap_mangen::Man::new(command).render(&mut std::io::stdout())?;
            Ok(())
        }
        Command::Migrate(args) => {
            install_crypto_provider();
            let url = args.url()?;
            crate::store::writable(url.expose())?;
            let db = Db::connect(url.expose()).await?;
            runtime::migrate(&db).await?;
            println!("{} schema is up to date", db.engine());
            Ok(())
        }
    }
}
