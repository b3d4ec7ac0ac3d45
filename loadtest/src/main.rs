//! boxoffice's load scenarios (goose) and the data set-up of the comparison
//! runner.
//!
//!   boxoffice-load --host http://127.0.0.1:8080 --scenarios holdrandom -u 50 -t 30s --report-file r.md
//!   boxoffice-load prepare <out-dir>        (used by compare.sh; see its header)
//!
//! Every goose flag works (`--help`). What the scenarios need from the service
//! comes from the environment:
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `BO_AUTH_SECRET` | the service's dev secret | the shared `AUTH_SECRET`: access tokens are minted with it |
//! | `BO_ADMIN_KEY` | `dev-admin-key` | to create the concert when `BO_CONCERT` is unset |
//! | `BO_CONCERT`, `BO_SCHEDULE` | unset: a new concert is made | the concert and schedule to load |
//! | `BO_SEATS` / `BO_PRICE` | `50000` / `1000` | seats and price of that new schedule |
//! | `BO_RESULTS` | unset | journey: where each paid sale is written (`payment reservation user`) |
//! | `BO_WAIT_SECS` | `600` | journey: how long a fan waits to be admitted before giving up |
//!
//! Users are platform users: ids drawn at random below 10^15, tokens signed
//! with the shared secret (API.md: a well-signed token of an unseen user is
//! accepted). The journey creates its users through `POST /users` instead.

mod fan;
mod prepare;
mod scenarios;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let outcome = match args.get(1).map(String::as_str) {
        Some("prepare") => runtime.block_on(prepare::run(&args[2..])),
        _ => runtime.block_on(scenarios::run()),
    };
    if let Err(e) = outcome {
        eprintln!("boxoffice-load: {e}");
        std::process::exit(1);
    }
}
