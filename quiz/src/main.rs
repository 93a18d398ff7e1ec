use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// The quiz service: a JSON API of multiple-choice questions; answers are stored in SQLite, or in
/// PostgreSQL with --database-url.
#[derive(Parser)]
#[command(name = "quiz", version)]
struct Cli {
    #[command(flatten)]
    server: kit::ServerConfig,
    #[command(flatten)]
    identity: kit::IdentityArgs,
    /// SQLite database file, created with its directory if missing
    #[arg(
        long = "db",
        env = "DB_PATH",
        value_name = "PATH",
        default_value = "data/quiz.db"
    )]
    db_path: PathBuf,
    /// PostgreSQL instead of SQLite (postgres://user:password@host:port/database); the password
    /// is never printed
    #[arg(
        long,
        env = "DATABASE_URL",
        value_name = "URL",
        hide_env_values = true,
        conflicts_with = "db_path"
    )]
    database_url: Option<String>,
    /// Read the PostgreSQL password from this file (a mounted Secret) instead of the URL
    #[arg(
        long,
        env = "DATABASE_PASSWORD_FILE",
        value_name = "PATH",
        requires = "database_url"
    )]
    database_password_file: Option<PathBuf>,
    /// Replace the bundled questions with this file (JSON if it ends in .json, else YAML)
    #[arg(long, env = "QUESTIONS_FILE", value_name = "PATH")]
    questions_file: Option<PathBuf>,
}

#[global_allocator]
static ALLOCATOR: kit::Allocator = kit::Allocator;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let _logs = kit::telemetry::init(cli.server.log_format);
    kit::main_with(async {
        let database = match cli.database_url {
            Some(url) => {
                let mut url = quiz::PostgresUrl::parse(&url)?;
                if let Some(file) = &cli.database_password_file {
                    url = url.with_password_file(file)?;
                }
                quiz::Database::Postgres(url)
            }
            None => quiz::Database::Sqlite(cli.db_path),
        };
        let config = quiz::Config {
            server: cli.server,
            identity: cli.identity.resolve(),
            database,
            questions_file: cli.questions_file,
        };
        quiz::build(config).await
    })
    .await
}
