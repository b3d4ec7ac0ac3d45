//! Every environment variable boxoffice reads, parsed and validated in one place.
//!
//! A bad value stops the process at start with one line naming the variable, so a
//! typo in a deployment is found before the first fan arrives, not during the sale.

use std::net::SocketAddr;
use std::time::Duration;

/// The secret used when `AUTH_SECRET` is unset. Good for a laptop, fatal in production:
/// anyone who reads this file can mint tokens, which is why start-up warns loudly.
pub const DEV_AUTH_SECRET: &str = "boxoffice-dev-secret-do-not-use-in-production";

/// A request still running after this long is answered `503`. (Not set from
/// the environment: payments and idempotency claims are sized from it.)
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How the HTTP server treats connections: how long one may sit idle or take
/// to send a request's head or body, and how many may be open at once.
#[derive(Clone, Debug)]
pub struct HttpLimits {
    /// Once a request's first byte has arrived, the rest of its head must
    /// arrive within this (a slowloris is closed).
    pub header_timeout: Duration,
    /// A connection with no request under way is closed after this.
    pub idle_timeout: Duration,
    /// A request body still incomplete after this is answered `408`; below
    /// [`REQUEST_TIMEOUT`], so a stalled body is the client's fault, not a `503`.
    pub body_timeout: Duration,
    /// Connections open at once; past it a new one gets a fast `503` and is
    /// closed. (Lowered at start to fit the process's file limit.)
    pub max_connections: u32,
}

/// The whole configuration of one `boxoffice serve` process. Its `Debug` form
/// hides the secrets, so a configuration can be logged.
#[derive(Clone)]
pub struct Config {
    pub http_addr: SocketAddr,
    pub redis_url: String,
    pub database_url: String,
    pub auth_secret: String,
    /// True when `AUTH_SECRET` was unset and [`DEV_AUTH_SECRET`] is in use.
    pub auth_secret_is_default: bool,
    /// `None` switches the admin endpoints off (they answer 404).
    pub admin_key: Option<String>,
    pub admission_rate: u32,
    /// 0 means no cap.
    pub max_active: u32,
    pub active_ttl: Duration,
    pub hold_ttl: Duration,
    pub max_holds_per_user: u32,
    pub waiting_idle: Duration,
    /// How often sales are re-marked SOLD in Redis from Postgres (the catch-up
    /// of `booking::recovery`).
    pub sold_catch_up: Duration,
    pub redis_prefix: String,
    /// The rate limits and the trusted proxies (`crate::limits`).
    pub limits: crate::limits::Limits,
    pub log_format: crate::telemetry::LogFormat,
    pub http: HttpLimits,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const HIDDEN: &str = "<hidden>";
        f.debug_struct("Config")
            .field("http_addr", &self.http_addr)
            .field("redis_url", &redacted_url(&self.redis_url))
            .field("database_url", &redacted_url(&self.database_url))
            .field("auth_secret", &HIDDEN)
            .field("auth_secret_is_default", &self.auth_secret_is_default)
            .field("admin_key", &self.admin_key.as_ref().map(|_| HIDDEN))
            .field("admission_rate", &self.admission_rate)
            .field("max_active", &self.max_active)
            .field("active_ttl", &self.active_ttl)
            .field("hold_ttl", &self.hold_ttl)
            .field("max_holds_per_user", &self.max_holds_per_user)
            .field("waiting_idle", &self.waiting_idle)
            .field("sold_catch_up", &self.sold_catch_up)
            .field("redis_prefix", &self.redis_prefix)
            .field("limits", &self.limits)
            .field("log_format", &self.log_format)
            .field("http", &self.http)
            .finish()
    }
}

/// A variable that is present but unusable.
#[derive(Debug, thiserror::Error)]
#[error("invalid {var}={value:?}: {reason}")]
pub struct ConfigError {
    pub var: &'static str,
    pub value: String,
    pub reason: String,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads configuration through `lookup`, so tests can pass a map instead of
    /// mutating the process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |var: &'static str| lookup(var).filter(|v| !v.is_empty());
        let auth_secret = get("AUTH_SECRET");
        let auth_secret_is_default = auth_secret.is_none();
        let auth_secret = auth_secret.unwrap_or_else(|| DEV_AUTH_SECRET.to_owned());
        if auth_secret.len() < 16 {
            return Err(ConfigError {
                var: "AUTH_SECRET",
                value: "<hidden>".into(),
                reason: "must be at least 16 bytes long".into(),
            });
        }
        let redis_prefix = get("REDIS_PREFIX").unwrap_or_else(|| "bo".into());
        if !redis_prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
            || redis_prefix.len() > 64
        {
            return Err(ConfigError {
                var: "REDIS_PREFIX",
                value: redis_prefix,
                reason: "use 1 to 64 characters of A-Z a-z 0-9 - _ . :".into(),
            });
        }
        let limits = limits(&get)?;
        Ok(Config {
            http_addr: parse(&get, "HTTP_ADDR", "127.0.0.1:8080", |v| {
                v.parse::<SocketAddr>().map_err(|e| e.to_string())
            })?,
            redis_url: parse(&get, "REDIS_URL", "redis://127.0.0.1:6379", |v| {
                // fred's URL forms: one server, or a Redis Cluster given by
                // seed nodes (`redis-cluster://h:7000?node=h:7001&node=h:7002`).
                let schemes = [
                    "redis://",
                    "rediss://",
                    "redis-cluster://",
                    "rediss-cluster://",
                ];
                if schemes.iter().any(|s| v.starts_with(s)) {
                    Ok(v.to_owned())
                } else {
                    Err("must start with redis://, rediss:// or redis-cluster://".into())
                }
            })?,
            database_url: parse(
                &get,
                "DATABASE_URL",
                "postgres://postgres@127.0.0.1:5432/boxoffice",
                |v| {
                    if v.starts_with("postgres://") || v.starts_with("postgresql://") {
                        Ok(v.to_owned())
                    } else {
                        Err("must start with postgres://".into())
                    }
                },
            )?,
            auth_secret,
            auth_secret_is_default,
            admin_key: get("ADMIN_KEY"),
            admission_rate: parse(&get, "ADMISSION_RATE", "100", |v| int_in(v, 1, 1_000_000))?,
            max_active: parse(&get, "MAX_ACTIVE", "1000", |v| int_in(v, 0, 100_000_000))?,
            active_ttl: parse(&get, "ACTIVE_TTL_SECS", "600", secs)?,
            hold_ttl: parse(&get, "HOLD_TTL_SECS", "300", secs)?,
            max_holds_per_user: parse(&get, "MAX_HOLDS_PER_USER", "4", |v| int_in(v, 1, 1000))?,
            waiting_idle: parse(&get, "WAITING_IDLE_SECS", "300", secs)?,
            sold_catch_up: parse(&get, "SOLD_CATCH_UP_SECS", "30", secs)?,
            redis_prefix,
            http: HttpLimits {
                header_timeout: parse(&get, "HTTP_HEADER_TIMEOUT_SECS", "10", |v| {
                    secs_in(v, 1, 3600)
                })?,
                idle_timeout: parse(&get, "HTTP_IDLE_TIMEOUT_SECS", "75", |v| {
                    secs_in(v, 1, 3600)
                })?,
                body_timeout: parse(&get, "HTTP_BODY_TIMEOUT_SECS", "10", |v| {
                    // A whole second below the request timeout, so a stalled body
                    // is always a 408 and never the timeout's 503.
                    secs_in(v, 1, (REQUEST_TIMEOUT.as_secs() - 1) as u32)
                })?,
                max_connections: parse(&get, "MAX_CONNECTIONS", "10000", |v| {
                    int_in(v, 1, 1_000_000)
                })?,
            },
            limits,
            log_format: match get("LOG_FORMAT").as_deref().map(str::trim) {
                None => crate::telemetry::LogFormat::default_for_stderr(),
                Some("json") => crate::telemetry::LogFormat::Json,
                Some("pretty") => crate::telemetry::LogFormat::Pretty,
                Some(other) => {
                    return Err(ConfigError {
                        var: "LOG_FORMAT",
                        value: other.to_owned(),
                        reason: "must be json or pretty".into(),
                    });
                }
            },
        })
    }
}

fn parse<T>(
    get: &impl Fn(&'static str) -> Option<String>,
    var: &'static str,
    default: &str,
    f: impl Fn(&str) -> Result<T, String>,
) -> Result<T, ConfigError> {
    let value = get(var).unwrap_or_else(|| default.to_owned());
    f(value.trim()).map_err(|reason| ConfigError {
        var,
        // A URL's password never reaches a log or a terminal.
        value: if var.ends_with("_URL") {
            redacted_url(&value)
        } else {
            value
        },
        reason,
    })
}

/// `url` with the password of its user part (`scheme://user:password@host`)
/// replaced by `***`; anything else unchanged.
pub fn redacted_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
            let hidden = if userinfo.contains(':') { ":***" } else { "" };
            format!("{scheme}://{user}{hidden}@{host}{path}")
        }
        None => url.to_owned(),
    }
}

/// `RATE_LIMITS` (`on`, or `off` for every limit), each limit's two variables
/// (`crate::limits::Limit::vars`: per minute, 0 = off; burst) and
/// `TRUSTED_PROXIES` (CIDR blocks, separated by commas or spaces).
fn limits(
    get: &impl Fn(&'static str) -> Option<String>,
) -> Result<crate::limits::Limits, ConfigError> {
    use crate::limits::{Limit, Limits, Rate};
    let mut limits = Limits::default();
    for limit in Limit::ALL {
        let (rate_var, burst_var) = limit.vars();
        let default = limit.default_rate();
        let rate = Rate {
            per_minute: parse(get, rate_var, &default.per_minute.to_string(), |v| {
                int_in(v, 0, 60_000)
            })?,
            burst: parse(get, burst_var, &default.burst.to_string(), |v| {
                int_in(v, 1, 1_000_000)
            })?,
        };
        limits.set(limit, rate);
    }
    match get("RATE_LIMITS").as_deref().map(str::trim) {
        None | Some("on") => {}
        Some("off") => limits.all_off(),
        Some(other) => {
            return Err(ConfigError {
                var: "RATE_LIMITS",
                value: other.to_owned(),
                reason: "must be on or off".into(),
            });
        }
    }
    limits.trusted_proxies = parse(get, "TRUSTED_PROXIES", "", |v| {
        v.split(|c: char| c == ',' || c.is_whitespace())
            .filter(|c| !c.is_empty())
            .map(str::parse)
            .collect()
    })?;
    Ok(limits)
}

fn int_in(v: &str, min: u32, max: u32) -> Result<u32, String> {
    match v.parse::<u32>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(format!("must be a whole number from {min} to {max}")),
    }
}

/// A duration in whole seconds, 1 second to 1 week.
fn secs(v: &str) -> Result<Duration, String> {
    secs_in(v, 1, 7 * 24 * 3600)
}

/// A duration in whole seconds, from `min` to `max`.
fn secs_in(v: &str, min: u32, max: u32) -> Result<Duration, String> {
    int_in(v, min, max).map(|n| Duration::from_secs(n.into()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn url_passwords_are_hidden() {
        use super::redacted_url;
        assert_eq!(
            redacted_url("postgres://app:s3cr%40t@db:5432/boxoffice?sslmode=require"),
            "postgres://app:***@db:5432/boxoffice?sslmode=require"
        );
        assert_eq!(redacted_url("redis://:pw@r:6379"), "redis://:***@r:6379");
        assert_eq!(
            redacted_url("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
        assert_eq!(redacted_url("postgres://app@db/x"), "postgres://app@db/x");
        assert_eq!(redacted_url("not a url"), "not a url");
        let err = super::Config::from_lookup(|v| {
            (v == "DATABASE_URL").then(|| "mysql://u:hunter2@h/db".to_owned())
        })
        .unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
        let c = super::Config::from_lookup(|v| {
            (v == "REDIS_URL").then(|| "redis://u:hunter2@h:6379".to_owned())
        })
        .unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    use super::*;
    use std::collections::HashMap;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_match_the_api_table() {
        let c = config(&[]).unwrap();
        assert_eq!(c.http_addr.to_string(), "127.0.0.1:8080");
        assert_eq!(c.redis_url, "redis://127.0.0.1:6379");
        assert_eq!(
            c.database_url,
            "postgres://postgres@127.0.0.1:5432/boxoffice"
        );
        assert!(c.auth_secret_is_default);
        assert_eq!(c.admin_key, None);
        assert_eq!(c.admission_rate, 100);
        assert_eq!(c.max_active, 1000);
        assert_eq!(c.active_ttl, Duration::from_secs(600));
        assert_eq!(c.hold_ttl, Duration::from_secs(300));
        assert_eq!(c.max_holds_per_user, 4);
        assert_eq!(c.waiting_idle, Duration::from_secs(300));
        assert_eq!(c.redis_prefix, "bo");
        assert_eq!(c.http.header_timeout, Duration::from_secs(10));
        assert_eq!(c.http.idle_timeout, Duration::from_secs(75));
        assert_eq!(c.http.body_timeout, Duration::from_secs(10));
        assert_eq!(c.http.max_connections, 10_000);
        assert_eq!(c.limits, crate::limits::Limits::default());
        assert!(c.limits.trusted_proxies.is_empty());
    }

    #[test]
    fn rate_limits_are_set_switched_off_and_trusted_proxies_read() {
        use crate::limits::{Limit, Rate};
        let c = config(&[
            ("POLLS_PER_USER_PER_MIN", "0"),
            ("JOINS_PER_USER_PER_MIN", "6"),
            ("JOINS_PER_USER_BURST", "2"),
            ("TRUSTED_PROXIES", "10.0.0.0/8, 192.0.2.1 fd00::/8"),
        ])
        .unwrap();
        assert!(c.limits.rate(Limit::Poll).is_off());
        assert_eq!(
            c.limits.rate(Limit::Join),
            Rate {
                per_minute: 6,
                burst: 2
            }
        );
        assert_eq!(c.limits.trusted_proxies.len(), 3);
        let off = config(&[("RATE_LIMITS", "off")]).unwrap();
        assert!(Limit::ALL.iter().all(|l| off.limits.rate(*l).is_off()));
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (var, value) in [
            ("HTTP_ADDR", "localhost"),
            ("REDIS_URL", "http://x"),
            ("DATABASE_URL", "mysql://x"),
            ("ADMISSION_RATE", "0"),
            ("ADMISSION_RATE", "fast"),
            ("MAX_ACTIVE", "-1"),
            ("ACTIVE_TTL_SECS", "0"),
            ("HOLD_TTL_SECS", "1.5"),
            ("MAX_HOLDS_PER_USER", "0"),
            ("WAITING_IDLE_SECS", "99999999"),
            ("REDIS_PREFIX", "has space"),
            ("LOG_FORMAT", "xml"),
            ("AUTH_SECRET", "short"),
            ("HTTP_HEADER_TIMEOUT_SECS", "0"),
            ("HTTP_IDLE_TIMEOUT_SECS", "soon"),
            ("HTTP_BODY_TIMEOUT_SECS", "30"),
            ("MAX_CONNECTIONS", "0"),
            ("USERS_PER_ADDRESS_PER_MIN", "60001"),
            ("POLLS_PER_USER_BURST", "0"),
            ("RATE_LIMITS", "maybe"),
            ("TRUSTED_PROXIES", "10.0.0.0/40"),
            ("TRUSTED_PROXIES", "proxy.local"),
        ] {
            let err = config(&[(var, value)]).expect_err(var);
            assert_eq!(err.var, var);
            assert!(err.to_string().starts_with(&format!("invalid {var}=")));
        }
    }

    #[test]
    fn debug_output_hides_the_secrets() {
        let c = config(&[
            ("ADMIN_KEY", "admin-key-value"),
            ("AUTH_SECRET", "auth-secret-value-0123"),
        ])
        .unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains("admin-key-value"), "{shown}");
        assert!(!shown.contains("auth-secret-value-0123"), "{shown}");
        assert!(shown.contains("admission_rate: 100"), "{shown}");
    }

    #[test]
    fn explicit_values_are_used() {
        let c = config(&[
            ("ADMIN_KEY", "k"),
            ("MAX_ACTIVE", "0"),
            ("AUTH_SECRET", "0123456789abcdef"),
        ])
        .unwrap();
        assert_eq!(c.admin_key.as_deref(), Some("k"));
        assert_eq!(c.max_active, 0);
        assert!(!c.auth_secret_is_default);
    }
}
