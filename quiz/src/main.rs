use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// The quiz service: a JSON API of multiple-choice questions; answers are stored in SQLite.
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
    let config = quiz::Config {
        server: cli.server,
        identity: cli.identity.resolve(),
        db_path: cli.db_path,
        questions_file: cli.questions_file,
    };
    kit::main_with(quiz::build(config)).await
}
