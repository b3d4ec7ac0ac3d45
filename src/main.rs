//! The `boxoffice` binary: `serve` (the default), `migrate`, `seed-demo`, `lua`.

use boxoffice::config::Config;
use boxoffice::{App, seed, store, telemetry};
use std::process::ExitCode;

/// mimalloc instead of glibc's malloc: a request's small allocations (header
/// maps, key strings, reply frames) come and go on two worker threads and
/// fred's, and glibc's arenas spent about a sixth of the poll path's CPU in
/// malloc, free and their consolidation (perf, `make bench` poll under wrk).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const USAGE: &str = "usage: boxoffice [serve | migrate | seed-demo | lua FILE]

  serve      create the database if needed, migrate, and serve HTTP (default)
  migrate    create the database if needed and apply pending migrations
  seed-demo  add a demo concert (two schedules, 50 seats each) if there is none
  lua FILE   print the whole text Redis runs for lua/FILE (generated prelude,
             lib.lua, the file), e.g. to SCRIPT LOAD it in a benchmark

Configuration comes from the environment; see README.md.";

#[tokio::main]
async fn main() -> ExitCode {
    let command = std::env::args().nth(1).unwrap_or_else(|| "serve".into());
    if matches!(command.as_str(), "-h" | "--help" | "help") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    if command == "lua" {
        return print_script(std::env::args().nth(2).as_deref());
    }
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("boxoffice: {e}");
            return ExitCode::from(2);
        }
    };
    telemetry::init_tracing(config.log_format);
    let outcome = match command.as_str() {
        "serve" => serve(config).await,
        "migrate" => store::postgres::prepare(&config.database_url)
            .await
            .map(|()| println!("migrations applied"))
            .map_err(|e| e.to_string()),
        "seed-demo" => seed_demo(config).await,
        other => Err(format!("unknown command {other:?}\n\n{USAGE}")),
    };
    telemetry::flush_logs();
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

/// `boxoffice lua hold.lua`: the script as the service sends it to Redis.
fn print_script(file: Option<&str>) -> ExitCode {
    let scripts = store::scripts::all();
    match scripts.iter().find(|lua| Some(lua.file) == file) {
        Some(lua) => {
            use std::io::Write;
            let text = store::scripts::full_text(lua.own_text);
            // A closed pipe (`| head`) is the reader's choice, not an error.
            let _ = std::io::stdout().write_all(text.as_bytes());
            ExitCode::SUCCESS
        }
        None => {
            let names: Vec<&str> = scripts.iter().map(|lua| lua.file).collect();
            eprintln!("boxoffice: lua takes one of: {}", names.join(", "));
            ExitCode::from(2)
        }
    }
}
