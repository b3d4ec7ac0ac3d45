//! Data for the comparison runner's wrk scripts (compare.sh), made through the
//! public API and the shared secret, never by writing behind the service.
//!
//!   BO_HOST=… boxoffice-load prepare <dir> booking   # fans ACTIVE on a fast-admitting server
//!   BO_HOST=… boxoffice-load prepare <dir> waiting   # fans WAITING on a server that admits nobody
//!   BO_HOST=… WAITING_CONCERT=… boxoffice-load prepare <dir> tail   # more of them, at the queue's tail
//!
//! `booking` writes `booking.env` (CONCERT, HOLD_SCHEDULE of 100 000 seats,
//! MAP_SCHEDULE of 50 000 seats) and `active.txt` (`<bearer>\t<token>` per
//! fan). `waiting` writes `waiting.env`, `waiting.txt` (the same, WAITING) and
//! `jwts.txt` (fresh identities, one join each). `tail` joins 5 000 new fans to
//! the queue of `WAITING_CONCERT` and writes their `waiting.txt`: `make scale`
//! polls them once the queue is long (a place far back costs more to count than
//! one at the head).

use crate::fan;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

const ACTIVE_FANS: usize = 200;
const WAITING_FANS: usize = 5_000;
/// Fresh identities for the join run (`BO_IDENTITIES`): more than it can use.
const FRESH_IDENTITIES: usize = 400_000;

pub async fn run(args: &[String]) -> Result<(), String> {
    let [dir, kind] = args else {
        return Err("usage: boxoffice-load prepare <dir> booking|waiting|tail".into());
    };
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let host = fan::env("BO_HOST", "http://127.0.0.1:8080");
    let client = reqwest::Client::new();
    match kind.as_str() {
        "booking" => {
            let (concert, hold) = fan::new_concert(&client, &host, 100_000, 1000).await?;
            let map = fan::new_schedule(
                &client,
                &host,
                concert,
                "2027-06-02T19:00:00Z",
                50_000,
                1000,
            )
            .await?;
            let fans = join_many(&client, &host, concert, ACTIVE_FANS).await?;
            wait_all_active(&client, &host, &fans).await?;
            write(
                dir,
                "booking.env",
                &format!("CONCERT={concert}\nHOLD_SCHEDULE={hold}\nMAP_SCHEDULE={map}\n"),
            )?;
            write(dir, "active.txt", &lines(&fans))?;
        }
        "waiting" => {
            let (concert, _) = fan::new_concert(&client, &host, 10, 1000).await?;
            let fans = join_many(&client, &host, concert, WAITING_FANS).await?;
            write(dir, "waiting.env", &format!("WAITING_CONCERT={concert}\n"))?;
            write(dir, "waiting.txt", &lines(&fans))?;
            let n = fan::env_i64("BO_IDENTITIES").map_or(FRESH_IDENTITIES, |n| n as usize);
            let mut jwts = String::with_capacity(n * 200);
            for _ in 0..n {
                let _ = writeln!(jwts, "{}", fan::mint().1);
            }
            write(dir, "jwts.txt", &jwts)?;
        }
        "tail" => {
            let concert = fan::env_i64("WAITING_CONCERT").ok_or("tail needs WAITING_CONCERT")?;
            let fans = join_many(&client, &host, concert, WAITING_FANS).await?;
            write(dir, "waiting.txt", &lines(&fans))?;
        }
        other => return Err(format!("unknown kind {other:?}")),
    }
    Ok(())
}

fn write(dir: &str, name: &str, text: &str) -> Result<(), String> {
    std::fs::write(format!("{dir}/{name}"), text).map_err(|e| format!("{dir}/{name}: {e}"))
}

fn lines(fans: &[(String, String)]) -> String {
    fans.iter().map(|(a, t)| format!("{a}\t{t}\n")).collect()
}

/// `n` new fans join `concert`, 100 at a time: (bearer, token).
async fn join_many(
    client: &reqwest::Client,
    host: &str,
    concert: i64,
    n: usize,
) -> Result<Vec<(String, String)>, String> {
    let mut fans = Vec::with_capacity(n);
    while fans.len() < n {
        let mut joins = tokio::task::JoinSet::new();
        for _ in 0..(n - fans.len()).min(100) {
            let (client, url) = (client.clone(), format!("{host}/queue/tokens"));
            joins.spawn(async move {
                let (_, auth) = fan::mint();
                let body = fan::json(
                    client
                        .post(url)
                        .header("authorization", &auth)
                        .json(&serde_json::json!({"concert_id": concert})),
                )
                .await?;
                let token = body["token"]
                    .as_str()
                    .ok_or(format!("join failed: {body}"))?;
                Ok::<_, String>((auth, token.to_owned()))
            });
        }
        while let Some(joined) = joins.join_next().await {
            fans.push(joined.map_err(|e| e.to_string())??);
        }
    }
    Ok(fans)
}

async fn wait_all_active(
    client: &reqwest::Client,
    host: &str,
    fans: &[(String, String)],
) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(120);
    for (auth, token) in fans {
        loop {
            let body = fan::json(
                client
                    .get(format!("{host}/queue/tokens/{token}"))
                    .header("authorization", auth),
            )
            .await?;
            if body["status"] == "ACTIVE" {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!("fan never admitted: {body}"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}
