//! Rate limits: how fast one client address may mint users, and one user may
//! join, poll, hold, pay and charge (issue 17: one client minted 16 967 users
//! in 20 s and took 5 958 places in a queue in 10 s).
//!
//! Each limit is a GCRA (the generic cell rate algorithm): one Redis key per
//! limit and subject holds the subject's theoretical arrival time, moved on by
//! one interval per request; a request may come up to `burst - 1` intervals
//! ahead of it. The arithmetic is `rate_wait` of `lua/lib.lua`, run inside
//! Redis with Redis's clock, so the limits hold across every server sharing
//! one Redis. Join, poll and hold check theirs inside their own script (still
//! one round trip); `POST /users`, payments and charges, whose work is in
//! Postgres anyway, run `rate_limit.lua` first.
//!
//! Identities are limited per client address, everything else per user: a
//! stadium of fans behind one shared address each mint one user (the fan page
//! keeps it) and then are limited each on their own, never together.
//!
//! The client address is the TCP peer's, unless the peer is a trusted proxy
//! (`TRUSTED_PROXIES`): then it is the rightmost `X-Forwarded-For` entry that
//! is not a trusted proxy. IPv6 addresses are limited by their /64, the block
//! one subscriber usually gets.

use crate::AppState;
use crate::error::{Error, Result};
use crate::store::scripts::{RateLimit, Script};
use std::net::IpAddr;

/// What a limit counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// `POST /users`, per client address.
    Users,
    /// `POST /queue/tokens`, per user and concert.
    Join,
    /// `GET /queue/tokens/{token}`, per user and concert.
    Poll,
    /// `POST /reservations`, per user and concert.
    Hold,
    /// `POST /payments`, per user.
    Payment,
    /// `POST /balance/charge`, per user.
    Charge,
}

impl Limit {
    pub const ALL: [Limit; 6] = [
        Limit::Users,
        Limit::Join,
        Limit::Poll,
        Limit::Hold,
        Limit::Payment,
        Limit::Charge,
    ];

    /// Its name in keys and in `rate_limited_total{limit}`.
    pub const fn name(self) -> &'static str {
        match self {
            Limit::Users => "users",
            Limit::Join => "join",
            Limit::Poll => "poll",
            Limit::Hold => "hold",
            Limit::Payment => "payment",
            Limit::Charge => "charge",
        }
    }

    /// The environment variables that set it: (requests per minute, burst).
    pub const fn vars(self) -> (&'static str, &'static str) {
        match self {
            Limit::Users => ("USERS_PER_ADDRESS_PER_MIN", "USERS_PER_ADDRESS_BURST"),
            Limit::Join => ("JOINS_PER_USER_PER_MIN", "JOINS_PER_USER_BURST"),
            Limit::Poll => ("POLLS_PER_USER_PER_MIN", "POLLS_PER_USER_BURST"),
            Limit::Hold => ("HOLDS_PER_USER_PER_MIN", "HOLDS_PER_USER_BURST"),
            Limit::Payment => ("PAYMENTS_PER_USER_PER_MIN", "PAYMENTS_PER_USER_BURST"),
            Limit::Charge => ("CHARGES_PER_USER_PER_MIN", "CHARGES_PER_USER_BURST"),
        }
    }

    /// Defaults that never bother a real fan (README, "Rate limits", says why
    /// each is what it is).
    pub const fn default_rate(self) -> Rate {
        let (per_minute, burst) = match self {
            // One new identity a second, 60 at once: a household, an office
            // or a venue's shared address gets its fans in (each mints once:
            // the fan page keeps its user); a script minting thousands a
            // second (one did 850) cannot.
            Limit::Users => (60, 60),
            // A fan joins once per concert, again on a reload.
            Limit::Join => (60, 20),
            // API.md's page polls every 2 to 15 s: 30 a minute at most per
            // tab. Ten a second leaves room for tabs, retries and client
            // scripts that poll every 200 ms; a bot polling flat out is cut.
            Limit::Poll => (600, 100),
            // Clicking through taken seats in a rush.
            Limit::Hold => (120, 30),
            Limit::Payment => (60, 20),
            // Top-ups of the prepaid balance, a few dozen in a row at most.
            Limit::Charge => (120, 60),
        };
        Rate { per_minute, burst }
    }
}

/// A sustained rate with a burst; `per_minute` 0 is off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    pub per_minute: u32,
    /// How many requests may come at once after a quiet spell.
    pub burst: u32,
}

impl Rate {
    pub const OFF: Rate = Rate {
        per_minute: 0,
        burst: 1,
    };

    pub fn is_off(self) -> bool {
        self.per_minute == 0
    }

    /// The GCRA's emission interval: ms between requests at the sustained
    /// rate (0 = off).
    pub fn interval_ms(self) -> u64 {
        match self.per_minute {
            0 => 0,
            n => (60_000 / u64::from(n)).max(1),
        }
    }

    /// The script arguments: interval ms, burst.
    pub fn args(self) -> [String; 2] {
        [self.interval_ms().to_string(), self.burst.to_string()]
    }
}

/// Every limit's rate, and who may tell the client's address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    rates: [Rate; 6],
    pub trusted_proxies: Vec<Cidr>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            rates: Limit::ALL.map(Limit::default_rate),
            trusted_proxies: Vec::new(),
        }
    }
}

impl Limits {
    pub fn rate(&self, limit: Limit) -> Rate {
        self.rates[limit as usize]
    }

    pub fn set(&mut self, limit: Limit, rate: Rate) {
        self.rates[limit as usize] = rate;
    }

    /// Every limit off (`RATE_LIMITS=off`: load tests that make thousands of
    /// users from one address).
    pub fn all_off(&mut self) {
        self.rates = [Rate::OFF; 6];
    }
}

/// `Retry-After` for a wait of `wait_ms`: whole seconds, rounded up, at least 1.
pub fn retry_after_secs(wait_ms: i64) -> u64 {
    (wait_ms.max(1) as u64).div_ceil(1000)
}

/// The answer to a request over `limit`, counted in `rate_limited_total`.
pub fn refused(limit: Limit, wait_ms: i64) -> Error {
    metrics::counter!("rate_limited_total", "limit" => limit.name()).increment(1);
    Error::RateLimited {
        retry_after_secs: retry_after_secs(wait_ms),
    }
}

/// Counts a request of `key`'s subject against `limit` on its own (one
/// EVALSHA): `Err(rate_limited)` when it is over.
async fn check(app: &AppState, limit: Limit, key: String) -> Result<()> {
    let rate = app.config.limits.rate(limit);
    if rate.is_off() {
        return Ok(());
    }
    match (RateLimit { key, rate }).run(&app.redis).await? {
        0 => Ok(()),
        wait_ms => Err(refused(limit, wait_ms)),
    }
}

/// `POST /users` from `client`. A loopback client is not limited: it is a tool
/// on the server's own host, or a proxy there that is not in
/// `TRUSTED_PROXIES`, behind which every fan would share one address (list
/// such a proxy, and its fans are limited each by their own).
pub async fn check_address(app: &AppState, client: IpAddr) -> Result<()> {
    if client.to_canonical().is_loopback() {
        return Ok(());
    }
    let key = app.keys.address_rate(&address_subject(client));
    check(app, Limit::Users, key).await
}

/// A payment or a charge of `user_id`.
pub async fn check_user(app: &AppState, limit: Limit, user_id: i64) -> Result<()> {
    let key = app.keys.user_rate(limit.name(), user_id);
    check(app, limit, key).await
}

/// The subject an address is limited as: an IPv4 address itself, an IPv6
/// address its /64 (a subscriber's usual block: limiting single addresses
/// would let one client take 2^64 of them).
pub fn address_subject(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    }
}

/// The client's address: the peer's, or, when the peer is a trusted proxy,
/// the rightmost `X-Forwarded-For` entry that is not itself a trusted proxy
/// (entries to its left are the client's to write, so never believed). When
/// every entry is trusted, the leftmost; an entry that is not an address
/// ends the walk at the one to its right.
pub fn client_address<'a>(
    peer: IpAddr,
    forwarded_for: impl DoubleEndedIterator<Item = &'a str>,
    trusted: &[Cidr],
) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    let mut client = peer.to_canonical();
    if !is_trusted(client) {
        return client;
    }
    for entry in forwarded_for.rev().flat_map(|h| h.rsplit(',')) {
        let Some(ip) = parse_forwarded(entry.trim()) else {
            break;
        };
        client = ip;
        if !is_trusted(ip) {
            break;
        }
    }
    client
}

/// An `X-Forwarded-For` entry: an address, possibly with a port.
fn parse_forwarded(entry: &str) -> Option<IpAddr> {
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    entry
        .parse::<std::net::SocketAddr>()
        .ok()
        .map(|s| s.ip().to_canonical())
}

/// A block of addresses, `10.0.0.0/8` or `fd00::/8`; a bare address is a
/// block of one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                mask_eq(u32::from(net).into(), u32::from(ip).into(), self.prefix, 32)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                mask_eq(u128::from(net), u128::from(ip), self.prefix, 128)
            }
            _ => false,
        }
    }
}

fn mask_eq(a: u128, b: u128, prefix: u8, bits: u32) -> bool {
    let shift = bits - u32::from(prefix);
    shift >= bits || (a >> shift) == (b >> shift)
}

impl std::str::FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Cidr, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let net = addr
            .parse::<IpAddr>()
            .map_err(|_| format!("{s:?} is not an address or a CIDR block"))?
            .to_canonical();
        let bits = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => bits,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= bits)
                .ok_or_else(|| format!("{s:?}: the prefix length must be 0 to {bits}"))?,
        };
        Ok(Cidr { net, prefix })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidrs(list: &[&str]) -> Vec<Cidr> {
        list.iter().map(|c| c.parse().unwrap()).collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn retry_after_is_whole_seconds_rounded_up_and_at_least_one() {
        assert_eq!(retry_after_secs(1), 1);
        assert_eq!(retry_after_secs(0), 1);
        assert_eq!(retry_after_secs(1000), 1);
        assert_eq!(retry_after_secs(1001), 2);
        assert_eq!(retry_after_secs(2999), 3);
    }

    #[test]
    fn intervals_follow_the_rate_and_zero_is_off() {
        assert_eq!(Limit::Users.default_rate().interval_ms(), 1000);
        assert_eq!(Limit::Poll.default_rate().interval_ms(), 100);
        assert_eq!(Rate::OFF.interval_ms(), 0);
        let fast = Rate {
            per_minute: 60_000,
            burst: 1,
        };
        assert_eq!(fast.interval_ms(), 1);
    }

    #[test]
    fn a_fan_polling_at_the_pages_fastest_pace_is_under_the_default() {
        // API.md: at least every max(2 s, estimate / 10): 30 a minute, and a
        // join with it. Two tabs still fit.
        let poll = Limit::Poll.default_rate();
        assert!(poll.per_minute >= 2 * 30);
        assert!(poll.burst >= 10);
    }

    #[test]
    fn cidr_blocks_hold_their_addresses() {
        let c: Cidr = "10.1.0.0/16".parse().unwrap();
        assert!(c.contains(ip("10.1.255.3")));
        assert!(!c.contains(ip("10.2.0.1")));
        assert!(c.contains(ip("::ffff:10.1.0.9")));
        assert!(!c.contains(ip("fd00::1")));
        let one: Cidr = "192.0.2.7".parse().unwrap();
        assert!(one.contains(ip("192.0.2.7")) && !one.contains(ip("192.0.2.8")));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("203.0.113.1")));
        let v6: Cidr = "fd00::/8".parse().unwrap();
        assert!(v6.contains(ip("fd12::1")) && !v6.contains(ip("fe80::1")));
        for bad in ["10.0.0.0/33", "x", "fd00::/129", "10.0.0.0/-1", ""] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn forwarded_for_counts_only_behind_a_trusted_proxy() {
        let trusted = cidrs(&["10.0.0.0/8"]);
        let xff = ["203.0.113.9, 198.51.100.4"];
        // An untrusted peer: its own address, whatever it claims.
        assert_eq!(
            client_address(ip("198.51.100.77"), xff.into_iter(), &trusted),
            ip("198.51.100.77")
        );
        // A trusted one: the rightmost entry it did not add itself.
        assert_eq!(
            client_address(ip("10.0.0.2"), xff.into_iter(), &trusted),
            ip("198.51.100.4")
        );
        // Two proxies deep, over two headers.
        let two = ["6.6.6.6, 203.0.113.9", "10.0.0.3"];
        assert_eq!(
            client_address(ip("10.0.0.2"), two.into_iter(), &trusted),
            ip("203.0.113.9")
        );
        // No header: the proxy itself.
        assert_eq!(
            client_address(ip("10.0.0.2"), [].into_iter(), &trusted),
            ip("10.0.0.2")
        );
        // Garbage stops the walk: the last address believed.
        assert_eq!(
            client_address(ip("10.0.0.2"), ["junk, 10.0.0.5"].into_iter(), &trusted),
            ip("10.0.0.5")
        );
        // A port is allowed.
        assert_eq!(
            client_address(ip("10.0.0.2"), ["203.0.113.9:4711"].into_iter(), &trusted),
            ip("203.0.113.9")
        );
        // Nothing trusted: never believed.
        assert_eq!(
            client_address(ip("10.0.0.2"), xff.into_iter(), &[]),
            ip("10.0.0.2")
        );
    }

    #[test]
    fn every_limit_is_a_zeroed_series_of_rate_limited_total() {
        let family = crate::telemetry::catalog::FAMILIES
            .iter()
            .find(|f| f.name == "rate_limited_total")
            .unwrap();
        let names: Vec<&str> = Limit::ALL.iter().map(|l| l.name()).collect();
        assert_eq!(family.zero, names.as_slice());
    }

    #[test]
    fn ipv6_clients_are_limited_by_their_64() {
        assert_eq!(
            address_subject(ip("2001:db8:1:2:aaaa::1")),
            address_subject(ip("2001:db8:1:2:bbbb::9"))
        );
        assert_ne!(
            address_subject(ip("2001:db8:1:2::1")),
            address_subject(ip("2001:db8:1:3::1"))
        );
        assert_eq!(address_subject(ip("::ffff:192.0.2.1")), "192.0.2.1");
    }
}
