//! The `boxoffice` binary: `serve` (the default), `migrate`, `seed-demo`.

use boxoffice::config::Config;
use boxoffice::{App, seed, store, telemetry};
use std::process::ExitCode;

const USAGE: &str = "usage: boxoffice [serve | migrate | seed-demo]

  serve      create the database if needed, migrate, and serve HTTP (default)
  migrate    create the database if needed and apply pending migrations
  seed-demo  add a demo concert (two schedules, 50 seats each) if there is none

Configuration comes from the environment; see README.md.";

#[tokio::main]
async fn main() -> ExitCode {
    let command = std::env::args().nth(1).unwrap_or_else(|| "serve".into());
    if matches!(command.as_str(), "-h" | "--help" | "help") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    telemetry::init_tracing();
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("boxoffice: {e}");
            return ExitCode::from(2);
        }
    };
    let outcome = match command.as_str() {
        "serve" => serve(config).await,
        "migrate" => store::postgres::prepare(&config.database_url)
            .await
            .map(|()| println!("migrations applied"))
            .map_err(|e| e.to_string()),
        "seed-demo" => seed_demo(config).await,
        other => Err(format!("unknown command {other:?}\n\n{USAGE}")),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("boxoffice: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> Result<(), String> {
    let app = App::build(config).await.map_err(|e| e.to_string())?;
    app.serve_on_config_addr(boxoffice::shutdown_signal())
        .await
        .map_err(|e| e.to_string())
}

async fn seed_demo(config: Config) -> Result<(), String> {
    store::postgres::prepare(&config.database_url)
        .await
        .map_err(|e| e.to_string())?;
    let pg = store::postgres::pool(&config.database_url).map_err(|e| e.to_string())?;
    match seed::seed_demo(&pg).await.map_err(|e| e.to_string())? {
        seed::Seeded::Created {
            concert_id,
            schedule_ids,
        } => println!("seeded demo concert {concert_id} with schedules {schedule_ids:?}"),
        seed::Seeded::AlreadyHadConcerts => println!("concerts exist; demo seed skipped"),
    }
    Ok(())
}
