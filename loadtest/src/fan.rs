//! What every scenario needs: settings from the environment, access tokens
//! minted with the shared secret, and the concert under load.

use serde::Serialize;
use std::time::{SystemTime, UNIX_EPOCH};

pub const DEV_SECRET: &str = "boxoffice-dev-secret-do-not-use-in-production";

pub fn env(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

pub fn env_i64(name: &str) -> Option<i64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[derive(Serialize)]
struct Claims {
    sub: String,
    exp: u64,
}

/// A `Bearer …` header value for a new platform user (id below 10^15).
pub fn mint() -> (i64, String) {
    let id = fastrand::i64(1..1_000_000_000_000_000);
    (id, bearer(id))
}

pub fn bearer(user_id: i64) -> String {
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
        + 6 * 3600;
    let secret = env("BO_AUTH_SECRET", DEV_SECRET);
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &Claims {
            sub: user_id.to_string(),
            exp,
        },
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("HS256 signing");
    format!("Bearer {token}")
}

/// The concert and schedule under load.
#[derive(Clone, Copy, Debug)]
pub struct Target {
    pub concert: i64,
    pub schedule: i64,
    pub seats: i64,
}

/// Uses `BO_CONCERT`/`BO_SCHEDULE`, or creates a concert with one schedule of
/// `BO_SEATS` seats through the admin API.
pub async fn target(client: &reqwest::Client, host: &str) -> Result<Target, String> {
    let seats = env_i64("BO_SEATS").unwrap_or(50_000);
    if let (Some(concert), Some(schedule)) = (env_i64("BO_CONCERT"), env_i64("BO_SCHEDULE")) {
        return Ok(Target {
            concert,
            schedule,
            seats,
        });
    }
    let (concert, schedule) =
        new_concert(client, host, seats, env_i64("BO_PRICE").unwrap_or(1000)).await?;
    Ok(Target {
        concert,
        schedule,
        seats,
    })
}

/// Sends a request and reads its JSON answer.
pub async fn json(request: reqwest::RequestBuilder) -> Result<serde_json::Value, String> {
    request
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())
}

/// A new concert with one schedule: (concert id, schedule id).
pub async fn new_concert(
    client: &reqwest::Client,
    host: &str,
    seats: i64,
    price: i64,
) -> Result<(i64, i64), String> {
    let admin = env("BO_ADMIN_KEY", "dev-admin-key");
    let concert = json(
        client
            .post(format!("{host}/admin/concerts"))
            .header("x-admin-key", &admin)
            .json(&serde_json::json!({"title": "Load test", "artist": "boxoffice-load"})),
    )
    .await?;
    let concert = concert["id"]
        .as_i64()
        .ok_or(format!("concert not created (admin key?): {concert}"))?;
    let schedule =
        new_schedule(client, host, concert, "2027-06-01T19:00:00Z", seats, price).await?;
    Ok((concert, schedule))
}

/// Another schedule of `concert`: its id.
pub async fn new_schedule(
    client: &reqwest::Client,
    host: &str,
    concert: i64,
    start_at: &str,
    seats: i64,
    price: i64,
) -> Result<i64, String> {
    let admin = env("BO_ADMIN_KEY", "dev-admin-key");
    let schedule = json(
        client
            .post(format!("{host}/admin/concerts/{concert}/schedules"))
            .header("x-admin-key", &admin)
            .json(&serde_json::json!({"start_at": start_at, "seat_count": seats, "price": price})),
    )
    .await?;
    schedule["id"]
        .as_i64()
        .ok_or(format!("schedule not created: {schedule}"))
}
