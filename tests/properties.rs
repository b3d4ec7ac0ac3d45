//! Property tests (issue 17): every endpoint of API.md is sent requests that
//! proptest generates to be hostile, and every answer keeps the contract.
//!
//! What is generated, per endpoint: bodies shaped like the request with fields
//! dropped, of the wrong type, numbers past i64 or fractional or negative,
//! unknown and repeated keys, escapes Postgres cannot store, truncated JSON,
//! bytes that are not UTF-8, deep nesting and bodies over 64 KiB; path
//! segments of any text, huge and negative numbers and percent-encoded junk;
//! query strings of junk names and values; and junk or near-miss credentials,
//! queue passes, `Idempotency-Key`s, content types and request ids. Real ids
//! and credentials are mixed in, so the junk also reaches past the first check.
//!
//! What every answer must be:
//! - never a 5xx (nothing is down here, so not even a 503);
//! - an error is API.md's envelope, `{"error": {"code", "message"}}` and
//!   nothing more, with a code that `/openapi.json` lists for that operation
//!   and status (`not_found` or `method_not_allowed` where the path or method
//!   names no operation; `payload_too_large` for a body over 64 KiB anywhere).
//!   The document is API.md's contract: tests/openapi.rs checks the two agree;
//! - every answer carries an `X-Request-Id`;
//! - where the input alone decides the answer (the credentials pass, and the
//!   body is not a JSON object, or an id in the path is not an i64, or the
//!   `Idempotency-Key` is not 1 to 255 visible ASCII characters), it is
//!   `400 invalid_request`;
//! - a 4xx changed nothing: every table in Postgres has the same rows (count
//!   and content) and the deployment has the same keys in Redis as before it.
//!   (A generated request that happens to be valid may succeed; the state it
//!   leaves is the next case's "before".)
//!
//! Each test runs one app with a scene (a concert, a user with an ACTIVE queue
//! pass, a hold...) and drives proptest's runner from inside the test, each
//! case a blocking call into the test's runtime. A failing case is shrunk and
//! printed as the request it was. `PROPTEST_CASES` sets the cases per
//! endpoint (default [`CASES`]).

mod common;

use common::{ADMIN_KEY, AUTH_SECRET, Env, TestApp, eventually, expect_status};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use proptest::prelude::*;
use proptest::sample::{Index, select};
use proptest::test_runner::{Config, TestCaseError, TestError, TestRunner};
use reqwest::header::HeaderValue;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Cases per endpoint: enough to meet each kind of junk on each part of each
/// request a few times, while the whole file stays well under a minute.
const CASES: u32 = 256;

/// API.md: bodies over 64 KiB are `413`.
const MAX_BODY: usize = 64 * 1024;

// ---------------------------------------------------------------------------
// The endpoints

/// What an endpoint asks of its caller before it reads the request.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Auth {
    Public,
    User,
    /// User auth, then (after the path, body and resource) the queue pass.
    Gated,
    Admin,
}

/// What fills the route's path parameter.
#[derive(Clone, Debug)]
enum Param {
    None,
    /// An i64 id; this one exists.
    Id(i64),
    /// A queue token; this one exists.
    Token(String),
}

/// One endpoint of API.md, with a valid request for the generators to break.
#[derive(Clone, Debug)]
struct Endpoint {
    method: Method,
    /// As API.md and the document write it: `/concerts/{concert_id}`.
    route: &'static str,
    auth: Auth,
    param: Param,
    /// A body it accepts; `None` for an endpoint that reads none.
    body: Option<Value>,
    /// The query parameters it reads, with a valid value of each.
    query: &'static [(&'static str, &'static str)],
    /// Reads an `Idempotency-Key`.
    idempotent: bool,
    /// A 2xx that changes state may start work in the background
    /// (admission, the audit trail): wait for it to settle before the next
    /// case compares state.
    settles: bool,
}

impl Endpoint {
    fn new(method: Method, route: &'static str, auth: Auth) -> Self {
        Endpoint {
            method,
            route,
            auth,
            param: Param::None,
            body: None,
            query: &[],
            idempotent: false,
            settles: false,
        }
    }
    fn param(mut self, param: Param) -> Self {
        self.param = param;
        self
    }
    fn body(mut self, body: Value) -> Self {
        self.body = Some(body);
        self
    }
    fn query(mut self, query: &'static [(&'static str, &'static str)]) -> Self {
        self.query = query;
        self
    }
    fn idempotent(mut self) -> Self {
        self.idempotent = true;
        self
    }
    fn settles(mut self) -> Self {
        self.settles = true;
        self
    }
}

// ---------------------------------------------------------------------------
// The generated request

/// A header as sent: `None` sends none.
type HeaderBytes = Option<Vec<u8>>;

/// One generated request, and whether the credentials it carries pass.
#[derive(Clone)]
struct Hostile {
    method: Method,
    /// Path and query as written into the URL (the URL parser may still
    /// normalise them: answers are checked against what was actually sent).
    target: String,
    headers: Vec<(&'static str, Vec<u8>)>,
    body: Vec<u8>,
    /// The credentials the endpoint asks for first (bearer token or admin
    /// key) pass, so a request that does not parse must be a `400`.
    credentials_pass: bool,
}

/// Printed in full when a case fails (after shrinking): the request as sent.
impl fmt::Debug for Hostile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} {}", self.method, self.target)?;
        for (name, value) in &self.headers {
            writeln!(f, "{name}: {}", shown(value, 400))?;
        }
        writeln!(
            f,
            "body ({} bytes): {}",
            self.body.len(),
            shown(&self.body, 2000)
        )?;
        write!(
            f,
            "(the credentials {})",
            if self.credentials_pass {
                "pass"
            } else {
                "do not pass"
            }
        )
    }
}

/// Bytes for a person: as text when they are printable UTF-8, else escaped.
fn shown(bytes: &[u8], max: usize) -> String {
    let head = &bytes[..bytes.len().min(max)];
    let more = match bytes.len() - head.len() {
        0 => String::new(),
        n => format!("… ({n} bytes more)"),
    };
    match std::str::from_utf8(head) {
        Ok(text) if !text.chars().any(char::is_control) => format!("{text}{more}"),
        _ => format!("b\"{}\"{more}", head.escape_ascii()),
    }
}

// ---------------------------------------------------------------------------
// JSON that serde_json would not write: repeated keys, any number lexeme

/// A JSON text under construction. `Lexeme` is written as is, so it can be a
/// number serde_json would never print (`1e400`, `-0`, `01`) or a string with
/// raw escapes (`"\ud800"`).
#[derive(Clone, Debug)]
enum J {
    Lexeme(String),
    Array(Vec<J>),
    Object(Vec<(String, J)>),
}

impl J {
    fn string(s: &str) -> J {
        J::Lexeme(Value::from(s).to_string())
    }

    fn of(value: &Value) -> J {
        match value {
            Value::Array(items) => J::Array(items.iter().map(J::of).collect()),
            Value::Object(map) => {
                J::Object(map.iter().map(|(k, v)| (k.clone(), J::of(v))).collect())
            }
            scalar => J::Lexeme(scalar.to_string()),
        }
    }

    fn render(&self) -> String {
        let mut out = String::new();
        self.write(&mut out);
        out
    }

    fn write(&self, out: &mut String) {
        match self {
            J::Lexeme(text) => out.push_str(text),
            J::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write(out);
                }
                out.push(']');
            }
            J::Object(pairs) => {
                out.push('{');
                for (i, (key, value)) in pairs.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&Value::from(key.as_str()).to_string());
                    out.push(':');
                    value.write(out);
                }
                out.push('}');
            }
        }
    }
}

/// Numbers at and past every bound of API.md (i64, seat counts, prices,
/// charges, the 9e15 balance limit), fractions, exponents, negative zero, and
/// a few lexemes that are not JSON at all.
const NUMBERS: &[&str] = &[
    "0",
    "-0",
    "1",
    "-1",
    "2",
    "10",
    "100",
    "1.0",
    "1.5",
    "-1.5",
    "0.0",
    "1e3",
    "1E3",
    "1e-7",
    "0.1e1",
    "1e400",
    "-1e400",
    "100000",
    "100001",
    "1000000000",
    "1000000001",
    "2147483647",
    "2147483648",
    "4294967296",
    "9000000000000000",
    "9000000000000001",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "-9223372036854775809",
    "18446744073709551615",
    "18446744073709551616",
    "123456789012345678901234567890",
    "01",
    "+1",
    ".5",
    "1.",
    "NaN",
    "Infinity",
    "0x10",
    "1_000",
];

/// Strings (as JSON lexemes) that probe text handling: empty, blank, digits,
/// NUL, lone surrogates, timestamps on and past RFC 3339's edges.
const STRINGS: &[&str] = &[
    r#""""#,
    r#"" ""#,
    r#""1""#,
    r#""-1""#,
    r#""1.5""#,
    r#""true""#,
    r#""null""#,
    r#""a\u0000b""#,
    r#""\u0000""#,
    r#""\\u0000""#,
    r#""\ud800""#,
    r#""\udc00\ud800""#,
    r#""\uD83D\uDE00""#,
    r#""\u00e9\u200b\ufeff""#,
    r#""AVAILABLE""#,
    r#""00000000-0000-0000-0000-000000000000""#,
    r#""2027-01-01T19:00:00Z""#,
    r#""2027-06-30T23:59:60Z""#,
    r#""0000-01-01T00:00:00+01:00""#,
    r#""9999-12-31T23:30:00-01:00""#,
    r#""+012027-01-01T00:00:00Z""#,
    r#""2027-01-01""#,
    r#""2027-02-30T00:00:00Z""#,
    r#""2027-01-01T19:00:00.999999999999Z""#,
    r#""1970-01-01T00:00:00Z""#,
    r#""2027-01-01 19:00:00Z""#,
    r#""2027-01-01t19:00:00z""#,
];

/// Any JSON value, most of them wrong wherever they land.
fn hostile_value() -> BoxedStrategy<J> {
    let leaf = prop_oneof![
        3 => select(NUMBERS).prop_map(|n| J::Lexeme(n.to_owned())),
        2 => any::<i64>().prop_map(|n| J::Lexeme(n.to_string())),
        1 => any::<f64>()
            .prop_filter("finite", |x| x.is_finite())
            .prop_map(|x| J::Lexeme(Value::from(x).to_string())),
        1 => "[1-9][0-9]{18,40}".prop_map(J::Lexeme),
        3 => select(STRINGS).prop_map(|s| J::Lexeme(s.to_owned())),
        2 => any::<String>().prop_map(|s| J::string(&s)),
        1 => (1usize..12_000).prop_map(|n| J::string(&"é".repeat(n))),
        2 => select(&["true", "false", "null"][..]).prop_map(|s| J::Lexeme(s.to_owned())),
    ];
    leaf.prop_recursive(2, 12, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(J::Array),
            prop::collection::vec((field_name(), inner), 0..4).prop_map(J::Object),
        ]
    })
    .boxed()
}

/// A key no endpoint reads, or one that almost matches one it does.
fn field_name() -> BoxedStrategy<String> {
    prop_oneof![
        3 => "[a-z_]{1,12}",
        1 => select(
            &["Amount", "amount ", "seat_no\u{0}", "", "__proto__", "concert_id\u{200b}", "é"][..]
        )
        .prop_map(str::to_owned),
        1 => any::<String>(),
    ]
    .boxed()
}

/// `good` broken: each field kept, dropped, replaced by a hostile value or
/// broken itself; unknown fields added; a key given twice.
fn mutated(good: &Value) -> BoxedStrategy<J> {
    match good {
        Value::Object(map) => {
            let fields: Vec<BoxedStrategy<Option<(String, J)>>> = map
                .iter()
                .map(|(key, value)| {
                    let (k1, k2, k3) = (key.clone(), key.clone(), key.clone());
                    let kept = J::of(value);
                    prop_oneof![
                        1 => Just(Some((k1, kept))),
                        1 => Just(None),
                        3 => hostile_value().prop_map(move |v| Some((k2.clone(), v))),
                        1 => mutated(value).prop_map(move |v| Some((k3.clone(), v))),
                    ]
                    .boxed()
                })
                .collect();
            let extra = prop::collection::vec((field_name(), hostile_value()), 0..3);
            let twice = prop::option::weighted(0.2, (any::<Index>(), hostile_value()));
            (fields, extra, twice)
                .prop_map(|(fields, extra, twice)| {
                    let mut pairs: Vec<(String, J)> = fields.into_iter().flatten().collect();
                    pairs.extend(extra);
                    if let Some((which, value)) = twice
                        && !pairs.is_empty()
                    {
                        let key = pairs[which.index(pairs.len())].0.clone();
                        pairs.push((key, value));
                    }
                    J::Object(pairs)
                })
                .boxed()
        }
        Value::Array(items) if !items.is_empty() => prop_oneof![
            3 => prop::collection::vec(mutated(&items[0]), 0..4).prop_map(J::Array),
            1 => Just(J::Array(vec![])),
            1 => hostile_value(),
        ]
        .boxed(),
        scalar => prop_oneof![1 => Just(J::of(scalar)), 3 => hostile_value()].boxed(),
    }
}

/// `good` with the right types and the wrong values: each number any i64 or
/// a small one, each string any text. It parses, so the request reaches the
/// endpoint's own rules (its ranges, its `404`s, the gate, its `409`s).
fn retyped(good: &Value) -> BoxedStrategy<J> {
    match good {
        Value::Object(map) => {
            let fields: Vec<BoxedStrategy<(String, J)>> = map
                .iter()
                .map(|(key, value)| {
                    let key = key.clone();
                    retyped(value).prop_map(move |v| (key.clone(), v)).boxed()
                })
                .collect();
            fields.prop_map(J::Object).boxed()
        }
        Value::Array(items) if !items.is_empty() => prop::collection::vec(retyped(&items[0]), 0..4)
            .prop_map(J::Array)
            .boxed(),
        Value::Number(_) => prop_oneof![
            3 => Just(J::of(good)),
            1 => any::<i64>().prop_map(|n| J::Lexeme(n.to_string())),
            2 => (-2i64..20).prop_map(|n| J::Lexeme(n.to_string())),
        ]
        .boxed(),
        Value::String(_) => prop_oneof![
            1 => Just(J::of(good)),
            1 => any::<String>().prop_map(|s| J::string(&s)),
        ]
        .boxed(),
        other => Just(J::of(other)).boxed(),
    }
}

/// A body for an endpoint that reads one: mostly its valid body broken, then
/// JSON cut short, bytes that are not UTF-8, JSON that is not an object, raw
/// bytes, blank bodies, deep nesting and bodies over the limit.
fn body(good: &Value) -> BoxedStrategy<Vec<u8>> {
    let shaped = mutated(good);
    let not_utf8: &[&[u8]] = &[
        b"\x80",
        b"\xc0\xaf",
        b"\xed\xa0\x80",
        b"\xf4\x90\x80\x80",
        b"\xff",
    ];
    prop_oneof![
        6 => shaped.clone().prop_map(|j| j.render().into_bytes()),
        6 => retyped(good).prop_map(|j| j.render().into_bytes()),
        1 => (shaped.clone(), any::<Index>()).prop_map(|(j, at)| {
            let mut text = j.render().into_bytes();
            text.truncate(at.index(text.len().max(1)));
            text
        }),
        1 => (shaped.clone(), any::<Index>(), select(not_utf8)).prop_map(|(j, at, bad)| {
            let mut text = j.render().into_bytes();
            let at = at.index(text.len() + 1);
            text.splice(at..at, bad.iter().copied());
            text
        }),
        1 => hostile_value().prop_map(|j| j.render().into_bytes()),
        1 => prop::collection::vec(any::<u8>(), 0..64),
        1 => select(
            &["", " ", "\n\t\r ", "\x0c", "{}", "null", "{}{}", "{} x", "\u{feff}{}", "{", "}"][..]
        )
        .prop_map(|s| s.as_bytes().to_vec()),
        1 => (1usize..400, any::<bool>()).prop_map(|(depth, object)| if object {
            format!("{}1{}", r#"{"a":"#.repeat(depth), "}".repeat(depth)).into_bytes()
        } else {
            format!("{}{}", "[".repeat(depth), "]".repeat(depth)).into_bytes()
        }),
        1 => (shaped, 1usize..4096).prop_map(|(j, over)| {
            let pad = "x".repeat(MAX_BODY + over);
            match j {
                J::Object(mut pairs) => {
                    pairs.push(("pad".into(), J::string(&pad)));
                    J::Object(pairs).render().into_bytes()
                }
                other => format!("{}{pad}", other.render()).into_bytes(),
            }
        }),
    ]
    .boxed()
}

/// A body for an endpoint that reads none: usually none, sometimes junk.
fn unread_body() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        4 => Just(Vec::new()),
        1 => prop::collection::vec(any::<u8>(), 0..64),
        1 => hostile_value().prop_map(|j| j.render().into_bytes()),
    ]
    .boxed()
}

// ---------------------------------------------------------------------------
// Paths and queries

/// Percent-encodes every byte but the unreserved ones: the segment reaches the
/// server as exactly this text.
fn encoded(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// What axum hands a path parameter: the segment percent-decoded.
fn decoded(segment: &str) -> Vec<u8> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            )
        {
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

/// Characters a URL's path or query may carry as they are.
const RAW_SEGMENT: &str = "[A-Za-z0-9._~!$&'()*+,;=:@-]{1,12}";
/// Percent signs with and without hex digits, and digits between.
const PERCENT_JUNK: &str = "(%[0-9A-Fa-f]{2}|%[G-Zg-z]{0,2}|[0-9]){1,6}";

/// A path segment where the route wants an id.
fn id_segment(existing: i64) -> BoxedStrategy<String> {
    let lexemes = &[
        "0",
        "-1",
        "+1",
        "01",
        "-0",
        " 1",
        "1 ",
        "1.0",
        "1e3",
        "0x10",
        "9223372036854775807",
        "9223372036854775808",
        "-9223372036854775809",
        "99999999999999999999999",
        "١",
        "1\u{0}",
        ".",
        "..",
        "%",
    ][..];
    prop_oneof![
        2 => Just(existing.to_string()),
        2 => any::<i64>().prop_map(|n| n.to_string()),
        2 => select(lexemes).prop_map(encoded),
        2 => any::<String>().prop_map(|s| encoded(&s)),
        1 => RAW_SEGMENT,
        1 => PERCENT_JUNK,
    ]
    .boxed()
}

/// A path segment where the route wants a queue token.
fn token_segment(existing: String) -> BoxedStrategy<String> {
    let upper = existing.to_uppercase();
    prop_oneof![
        2 => Just(existing),
        1 => Just(upper),
        2 => any::<u128>().prop_map(|n| uuid::Uuid::from_u128(n).to_string()),
        2 => any::<String>().prop_map(|s| encoded(&s)),
        1 => RAW_SEGMENT,
        1 => PERCENT_JUNK,
    ]
    .boxed()
}

/// Query values that miss every rule of API.md's queries.
const QUERY_VALUES: &[&str] = &[
    "",
    "0",
    "-1",
    "1",
    "100",
    "101",
    "1.5",
    "1e2",
    " 5",
    "+5",
    "abc",
    "null",
    "9223372036854775807",
    "9223372036854775808",
    "AVAILABLE",
    "available",
    "AVAILABLE ",
    "HELD,SOLD",
    "\u{0}",
];

/// A query string: none, pairs of known and unknown names with junk values
/// (a name may come twice), or raw junk.
fn query(params: &'static [(&'static str, &'static str)]) -> BoxedStrategy<String> {
    let names: Vec<&'static str> = params.iter().map(|(name, _)| *name).collect();
    let valid: Vec<&'static str> = params.iter().map(|(_, value)| *value).collect();
    let junk_name =
        prop_oneof![3 => "[a-z_]{1,10}", 1 => any::<String>().prop_map(|s| encoded(&s))];
    let name = if names.is_empty() {
        junk_name.boxed()
    } else {
        prop_oneof![3 => select(names).prop_map(str::to_owned), 1 => junk_name].boxed()
    };
    let value = prop_oneof![
        2 => select(if valid.is_empty() { vec![""] } else { valid }).prop_map(str::to_owned),
        3 => select(QUERY_VALUES).prop_map(encoded),
        1 => any::<i64>().prop_map(|n| n.to_string()),
        1 => any::<String>().prop_map(|s| encoded(&s)),
        1 => RAW_SEGMENT,
        1 => PERCENT_JUNK,
    ];
    prop_oneof![
        2 => Just(String::new()),
        4 => prop::collection::vec((name, value), 1..4).prop_map(|pairs| {
            let pairs: Vec<String> = pairs.into_iter().map(|(n, v)| format!("{n}={v}")).collect();
            format!("?{}", pairs.join("&"))
        }),
        1 => "[A-Za-z0-9%=&+;._~!$'()*,:@/?-]{0,24}".prop_map(|junk| format!("?{junk}")),
    ]
    .boxed()
}

// ---------------------------------------------------------------------------
// Headers

/// Bytes a header value may carry on the wire: visible ASCII, space, tab and
/// obs-text (0x80-0xFF, not UTF-8).
fn header_junk() -> BoxedStrategy<Vec<u8>> {
    prop::collection::vec(
        prop_oneof![8 => 0x20u8..0x7f, 2 => 0x80u8..=0xff, 1 => Just(b'\t')],
        0..80,
    )
    .boxed()
}

fn in_an_hour() -> i64 {
    chrono::Utc::now().timestamp() + 3600
}

fn signed(header: Header, claims: Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &header,
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("a test token signs")
}

/// `Authorization` values: (value, whether it passes).
fn authorization(user: &str) -> BoxedStrategy<(HeaderBytes, bool)> {
    let token = user
        .strip_prefix("Bearer ")
        .expect("a bearer value")
        .to_owned();
    let hs256 = || Header::new(Algorithm::HS256);
    let claims = |sub: &str| json!({"sub": sub, "exp": in_an_hour()});
    let unseen_user = signed(hs256(), claims("424242"), AUTH_SECRET);
    let passing = vec![
        Some(user.to_owned()),
        Some(format!("bearer {token}")),
        Some(format!("Bearer {unseen_user}")),
    ];
    let mut critical = hs256();
    critical.crit = Some(vec!["exp".into()]);
    let payload = token.split('.').nth(1).unwrap_or_default().to_owned();
    let refused: Vec<HeaderBytes> = vec![
        None,
        Some("Bearer".into()),
        Some("Bearer ".into()),
        Some("Basic dXNlcjpwYXNz".into()),
        Some(token.clone()),
        Some(format!("Bearer {token}x")),
        Some(format!("Bearer {token} {token}")),
        Some(format!(
            "Bearer eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{payload}."
        )),
        Some(format!(
            "Bearer {}",
            signed(hs256(), claims("1"), "another-secret-0123456789")
        )),
        Some(format!(
            "Bearer {}",
            signed(
                hs256(),
                json!({"sub": "1", "exp": in_an_hour() - 7200}),
                AUTH_SECRET
            )
        )),
        Some(format!(
            "Bearer {}",
            signed(hs256(), json!({"sub": "1"}), AUTH_SECRET)
        )),
        Some(format!(
            "Bearer {}",
            signed(Header::new(Algorithm::HS384), claims("1"), AUTH_SECRET)
        )),
        Some(format!(
            "Bearer {}",
            signed(critical, claims("1"), AUTH_SECRET)
        )),
        Some(format!(
            "Bearer {}",
            signed(hs256(), claims("0"), AUTH_SECRET)
        )),
        Some(format!(
            "Bearer {}",
            signed(hs256(), claims("-7"), AUTH_SECRET)
        )),
        Some(format!(
            "Bearer {}",
            signed(hs256(), claims(" 5"), AUTH_SECRET)
        )),
        Some(format!(
            "Bearer {}",
            signed(hs256(), claims("1e3"), AUTH_SECRET)
        )),
        Some(format!(
            "Bearer {}",
            signed(hs256(), claims("abc"), AUTH_SECRET)
        )),
        Some(format!(
            "Bearer {}",
            signed(hs256(), claims("9223372036854775808"), AUTH_SECRET)
        )),
        Some(format!(
            "Bearer {}",
            signed(hs256(), json!({"sub": 5, "exp": in_an_hour()}), AUTH_SECRET)
        )),
    ]
    .into_iter()
    .map(|v| v.map(String::into_bytes))
    .collect();
    prop_oneof![
        6 => select(passing).prop_map(|v| (v.map(String::into_bytes), true)),
        2 => select(refused).prop_map(|v| (v, false)),
        1 => header_junk().prop_map(|junk| (Some([b"Bearer ".as_slice(), &junk].concat()), false)),
    ]
    .boxed()
}

/// `X-Admin-Key` values: (value, whether it passes).
fn admin_key() -> BoxedStrategy<(HeaderBytes, bool)> {
    let near = &[
        "",
        "test-admin-kez",
        "TEST-ADMIN-KEY",
        "test-admin-key-",
        "dev-admin-key",
    ][..];
    prop_oneof![
        6 => Just((Some(ADMIN_KEY.as_bytes().to_vec()), true)),
        1 => Just((None, false)),
        1 => select(near).prop_map(|k| (Some(k.as_bytes().to_vec()), false)),
        1 => header_junk().prop_map(|junk| (Some(junk), false)),
    ]
    .boxed()
}

/// `X-Queue-Token` values around the scene's pass.
fn queue_pass(pass: &str) -> BoxedStrategy<HeaderBytes> {
    let (pass, upper) = (pass.as_bytes().to_vec(), pass.to_uppercase().into_bytes());
    prop_oneof![
        6 => Just(Some(pass)),
        1 => Just(None),
        1 => Just(Some(upper)),
        1 => any::<u128>().prop_map(|n| Some(uuid::Uuid::from_u128(n).to_string().into_bytes())),
        1 => header_junk().prop_map(Some),
    ]
    .boxed()
}

/// `Idempotency-Key` values: none, valid ones, and ones API.md refuses.
fn idempotency_key() -> BoxedStrategy<HeaderBytes> {
    let refused = &["", "a b", "ключ"][..];
    prop_oneof![
        3 => Just(None),
        2 => "[!-~]{1,255}".prop_map(|k| Some(k.into_bytes())),
        1 => select(refused).prop_map(|k| Some(k.as_bytes().to_vec())),
        1 => (256usize..400).prop_map(|n| Some(vec![b'k'; n])),
        1 => header_junk().prop_map(Some),
    ]
    .boxed()
}

/// `Content-Type` values: API.md does not insist on one.
fn content_type() -> BoxedStrategy<HeaderBytes> {
    let others = &[
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/json; charset=utf-16",
        "multipart/form-data; boundary=x",
        "application/xml",
    ][..];
    prop_oneof![
        2 => Just(Some(b"application/json".to_vec())),
        1 => Just(None),
        1 => select(others).prop_map(|t| Some(t.as_bytes().to_vec())),
        1 => header_junk().prop_map(Some),
    ]
    .boxed()
}

/// `X-Request-Id` values: a bad one is replaced, never refused.
fn request_id() -> BoxedStrategy<HeaderBytes> {
    prop_oneof![3 => Just(None), 1 => header_junk().prop_map(Some)].boxed()
}

/// Whether an `Idempotency-Key` as the server reads it (HTTP trims the
/// spaces and tabs around a header value) is one API.md refuses.
fn refused_key(value: &[u8]) -> bool {
    let trimmed = value
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t'))
        .map_or(&[][..], |start| {
            let end = value
                .iter()
                .rposition(|b| !matches!(b, b' ' | b'\t'))
                .unwrap_or(start);
            &value[start..=end]
        });
    trimmed.is_empty() || trimmed.len() > 255 || !trimmed.iter().all(u8::is_ascii_graphic)
}

// ---------------------------------------------------------------------------
// The scene, its state, and the check of one case

/// Postgres rows (count and digest per table) and Redis keys of the test's
/// deployment.
#[derive(Clone, PartialEq)]
struct State {
    tables: BTreeMap<String, (i64, String)>,
    keys: BTreeSet<String>,
}

impl State {
    fn diff(&self, after: &State) -> String {
        let mut said = Vec::new();
        for (table, before) in &self.tables {
            let now = &after.tables[table];
            if before.0 != now.0 {
                said.push(format!("table {table}: {} rows -> {}", before.0, now.0));
            } else if before != now {
                said.push(format!("table {table}: rows changed"));
            }
        }
        for key in after.keys.difference(&self.keys) {
            said.push(format!("Redis key added: {key}"));
        }
        for key in self.keys.difference(&after.keys) {
            said.push(format!("Redis key removed: {key}"));
        }
        said.join("; ")
    }
}

/// Where the server routes a request, read from the document's paths.
enum Route<'a> {
    Operation {
        route: &'a str,
        operation: &'a Value,
    },
    WrongMethod,
    Unknown,
}

/// One running app, the credentials that pass in it, the contract, and the
/// state the next case starts from.
struct Scene {
    app: TestApp,
    user: String,
    pass: Option<String>,
    doc: Value,
    tables: Vec<String>,

    seen: Mutex<Option<State>>,
    /// Answers per status, and cases whose input alone decided a `400`, for
    /// the run's summary.
    statuses: Mutex<BTreeMap<u16, u32>>,
    decided: AtomicU32,
}

impl Scene {
    async fn new(app: TestApp, user: String, pass: Option<String>) -> Scene {
        let (status, doc) = app.get("/openapi.json", &[]).await;
        assert_eq!(status, StatusCode::OK, "the contract is served");
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT tablename::text FROM pg_tables
              WHERE schemaname = 'public' AND tablename <> '_sqlx_migrations' ORDER BY 1",
        )
        .fetch_all(&app.pg)
        .await
        .unwrap();
        let scene = Scene {
            app,
            user,
            pass,
            doc,
            tables,
            seen: Mutex::new(None),
            statuses: Mutex::new(BTreeMap::new()),
            decided: AtomicU32::new(0),
        };
        let settled = scene.settled().await;
        *scene.seen.lock().unwrap() = Some(settled);
        scene
    }

    async fn state(&self) -> State {
        let sql = self
            .tables
            .iter()
            .map(|t| {
                format!(
                    "SELECT '{t}'::text, count(*), \
                     md5(coalesce(string_agg(x::text, ',' ORDER BY x::text), '')) FROM \"{t}\" x"
                )
            })
            .collect::<Vec<_>>()
            .join(" UNION ALL ");
        let rows: Vec<(String, i64, String)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.app.pg)
            .await
            .expect("reading the tables");
        let tables = rows
            .into_iter()
            .map(|(t, n, digest)| (t, (n, digest)))
            .collect();
        State {
            tables,
            keys: self.keys().await,
        }
    }

    /// The deployment's Redis keys, less those that live on their own: the
    /// readiness probe's (10 s, written by every `GET /ready`), the admission
    /// leases and the roll of admission servers (renewed every tick); the
    /// harness already leaves out the SOLD rebuild markers.
    async fn keys(&self) -> BTreeSet<String> {
        let keys = self.app.keys();
        let mut own: BTreeSet<String> = (0..boxoffice::store::keys::ADMISSION_GROUPS)
            .map(|g| keys.admission_lease(g))
            .collect();
        own.insert(keys.ready_probe());
        own.insert(keys.admission_servers());
        self.app
            .redis_keys()
            .await
            .into_iter()
            .filter(|k| !own.contains(k))
            .collect()
    }

    /// The state once background work is done: unchanged for 600 ms, three
    /// times the audit trail's linger (200 ms) after an admission tick (100 ms).
    async fn settled(&self) -> State {
        let mut last = self.state().await;
        let mut since = Instant::now();
        let deadline = since + Duration::from_secs(10);
        while since.elapsed() < Duration::from_millis(600) {
            assert!(
                Instant::now() < deadline,
                "the state did not settle within 10 s"
            );
            tokio::time::sleep(Duration::from_millis(150)).await;
            let now = self.state().await;
            if now != last {
                (last, since) = (now, Instant::now());
            }
        }
        last
    }

    /// Where the document says `method path` goes.
    fn route(&self, method: &Method, path: &str) -> Route<'_> {
        let segments: Vec<&str> = path.split('/').collect();
        let mut best: Option<(usize, &str, &Value)> = None;
        for (route, item) in self.doc["paths"].as_object().expect("paths") {
            let parts: Vec<&str> = route.split('/').collect();
            if parts.len() != segments.len() {
                continue;
            }
            let mut literal = 0;
            let last = parts.len() - 1;
            let fits = parts
                .iter()
                .zip(&segments)
                .enumerate()
                .all(|(i, (part, segment))| {
                    if part.starts_with('{') {
                        // As axum's router matches: an empty parameter ends no
                        // route (`/concerts/` is `404 not_found`), but one inside
                        // a path reaches the handler (`/concerts//schedules` is
                        // its `400`).
                        i < last || !segment.is_empty()
                    } else {
                        literal += 1;
                        part == segment
                    }
                });
            if fits && best.is_none_or(|(most, _, _)| literal > most) {
                best = Some((literal, route, item));
            }
        }
        match best {
            None => Route::Unknown,
            Some((_, route, item)) => match item.get(method.as_str().to_lowercase()) {
                Some(operation) if method.as_str().bytes().all(|b| b.is_ascii_uppercase()) => {
                    Route::Operation { route, operation }
                }
                _ => Route::WrongMethod,
            },
        }
    }

    /// The error codes the contract allows for `status` where `route` went.
    fn allowed(&self, route: &Route, status: u16, body_len: usize) -> BTreeSet<String> {
        let mut codes = BTreeSet::new();
        match route {
            Route::Unknown if status == 404 => {
                codes.insert("not_found".to_owned());
            }
            Route::WrongMethod if status == 405 => {
                codes.insert("method_not_allowed".to_owned());
            }
            Route::Operation { operation, .. } => {
                let mut answer = &operation["responses"][status.to_string()];
                if let Some(name) = answer["$ref"].as_str() {
                    let name = name.rsplit('/').next().unwrap_or_default();
                    answer = &self.doc["components"]["responses"][name];
                }
                for code in answer["x-error-codes"].as_array().into_iter().flatten() {
                    codes.insert(code.as_str().unwrap_or_default().to_owned());
                }
            }
            _ => {}
        }
        if status == 413 && body_len > MAX_BODY {
            codes.insert("payload_too_large".to_owned());
        }
        codes
    }

    /// Why the request must be `400 invalid_request`, when the input alone
    /// decides it: the endpoint's credentials pass and the request does not
    /// parse. `None` when the answer depends on more than the input.
    fn must_be_invalid(
        &self,
        endpoint: &Endpoint,
        case: &Hostile,
        route: &Route,
        path: &str,
    ) -> Option<String> {
        let Route::Operation { route, .. } = route else {
            return None;
        };
        if *route != endpoint.route
            || case.method != endpoint.method
            || !case.credentials_pass
            || case.body.len() > MAX_BODY
        {
            return None;
        }
        if endpoint.body.is_some() && !reads_as_an_object(&case.body) {
            return Some("the body is not a JSON object".into());
        }
        if let Param::Id(_) = endpoint.param {
            let at = route.split('/').position(|p| p.starts_with('{'))?;
            let segment = path.split('/').nth(at)?;
            let id = String::from_utf8(decoded(segment)).ok();
            if id.and_then(|id| id.parse::<i64>().ok()).is_none() {
                return Some(format!("the path's id {segment:?} is not an i64"));
            }
        }
        if endpoint.idempotent
            && let Some((_, key)) = case.headers.iter().find(|(n, _)| *n == "idempotency-key")
            && refused_key(key)
        {
            return Some("the Idempotency-Key is not 1 to 255 visible ASCII characters".into());
        }
        None
    }

    /// Sends one case and checks its answer and what it left behind.
    async fn check(&self, endpoint: &Endpoint, case: &Hostile) -> Result<(), String> {
        let url = reqwest::Url::parse(&format!("{}{}", self.app.base, case.target))
            .map_err(|e| format!("the generated URL does not parse: {e}"))?;
        let mut request = self
            .app
            .http
            .request(case.method.clone(), url.clone())
            .body(case.body.clone());
        for (name, value) in &case.headers {
            let value =
                HeaderValue::from_bytes(value).map_err(|e| format!("header {name}: {e}"))?;
            request = request.header(*name, value);
        }
        let response = request
            .send()
            .await
            .map_err(|e| format!("no answer: {e:?}"))?;
        let status = response.status().as_u16();
        *self.statuses.lock().unwrap().entry(status).or_default() += 1;
        let has_request_id = response.headers().contains_key("x-request-id");
        let content_type = response.headers().get("content-type").cloned();
        let body = response
            .bytes()
            .await
            .map_err(|e| format!("the answer broke off: {e}"))?;
        let answer = format!("{status} {}", shown(&body, 600));
        let mut after = self.state().await;
        let before = self.seen.lock().unwrap().take().expect("a state seen");
        // A success that changed something (a join, a hold, a leave) may go
        // on in the background (admission, the audit trail): wait for it, so
        // that it is not blamed on the next case.
        if (200..300).contains(&status) && endpoint.settles && after != before {
            after = self.settled().await;
        }
        *self.seen.lock().unwrap() = Some(after.clone());

        if status >= 500 {
            return Err(format!("a {status} for hostile input: {answer}"));
        }
        if !has_request_id {
            return Err(format!("no X-Request-Id: {answer}"));
        }
        let route = self.route(&case.method, url.path());
        let mut code = None;
        if (400..500).contains(&status) {
            let got = envelope_code(content_type.as_ref(), &body)
                .map_err(|why| format!("{why}: {answer}"))?;
            let allowed = self.allowed(&route, status, case.body.len());
            if !allowed.contains(&got) {
                return Err(format!(
                    "{status} {got} is not an answer the contract lists here (it lists {allowed:?}): {answer}"
                ));
            }
            code = Some(got);
        }
        if let Some(why) = self.must_be_invalid(endpoint, case, &route, url.path()) {
            self.decided.fetch_add(1, Ordering::Relaxed);
            if !(status == 400 && code.as_deref() == Some("invalid_request")) {
                return Err(format!("{why}: wanted 400 invalid_request, got {answer}"));
            }
        }
        if (400..500).contains(&status) && before != after {
            return Err(format!(
                "a {status} changed state: {}: {answer}",
                before.diff(&after)
            ));
        }
        Ok(())
    }

    /// Runs `cases` of `requests` as cases of `endpoint`; panics with the
    /// smallest failing request, as proptest shrinks it.
    fn fuzz(&self, endpoint: &Endpoint, requests: BoxedStrategy<Hostile>, cases: u32) {
        let documented =
            &self.doc["paths"][endpoint.route][endpoint.method.as_str().to_lowercase()];
        assert!(
            endpoint.route == "*" || documented.is_object(),
            "{} {} is not an operation of the document",
            endpoint.method,
            endpoint.route
        );
        let started = Instant::now();
        self.statuses.lock().unwrap().clear();
        self.decided.store(0, Ordering::Relaxed);
        let mut runner = TestRunner::new(Config {
            cases,
            failure_persistence: None,
            max_shrink_iters: 400,
            max_shrink_time: 60_000,
            ..Config::default()
        });
        let runtime = tokio::runtime::Handle::current();
        let outcome = runner.run(&requests, |case| {
            runtime
                .block_on(self.check(endpoint, &case))
                .map_err(TestCaseError::fail)
        });
        match outcome {
            Ok(()) => {}
            Err(TestError::Fail(why, case)) => panic!(
                "{} {}: {why}\nthe smallest request that shows it:\n{case:?}",
                endpoint.method, endpoint.route
            ),
            Err(e) => panic!("{} {}: {e}", endpoint.method, endpoint.route),
        }
        let answers: Vec<String> = self
            .statuses
            .lock()
            .unwrap()
            .iter()
            .map(|(status, n)| format!("{n}×{status}"))
            .collect();
        eprintln!(
            "{} {}: {cases} cases in {:.1} s: {} ({} decided by the input alone)",
            endpoint.method,
            endpoint.route,
            started.elapsed().as_secs_f64(),
            answers.join(" "),
            self.decided.load(Ordering::Relaxed),
        );
    }

    /// Hostile requests for `endpoint`.
    fn requests(&self, endpoint: &Endpoint) -> BoxedStrategy<Hostile> {
        let (before, after) = match endpoint.route.split_once('{') {
            Some((before, rest)) => (before, rest.split_once('}').map_or("", |(_, a)| a)),
            None => (endpoint.route, ""),
        };
        let (before, after) = (before.to_owned(), after.to_owned());
        let segment = match &endpoint.param {
            Param::None => Just(String::new()).boxed(),
            Param::Id(id) => id_segment(*id),
            Param::Token(token) => token_segment(token.clone()),
        };
        let target = (segment, query(endpoint.query))
            .prop_map(move |(segment, query)| format!("{before}{segment}{after}{query}"));
        let credentials = match endpoint.auth {
            Auth::Public => Just((None, true)).boxed(),
            Auth::User | Auth::Gated => authorization(&self.user),
            Auth::Admin => admin_key(),
        };
        let credential_header = match endpoint.auth {
            Auth::Admin => "x-admin-key",
            _ => "authorization",
        };
        let pass = match (endpoint.auth, &self.pass) {
            (Auth::Gated, Some(pass)) => queue_pass(pass),
            _ => Just(None).boxed(),
        };
        let key = if endpoint.idempotent {
            idempotency_key()
        } else {
            Just(None).boxed()
        };
        let body = match &endpoint.body {
            Some(good) => body(good),
            None => unread_body(),
        };
        let method = endpoint.method.clone();
        (
            target,
            credentials,
            pass,
            key,
            content_type(),
            request_id(),
            body,
        )
            .prop_map(
                move |(target, (credential, passes), pass, key, kind, id, body)| {
                    let headers = [
                        (credential_header, credential),
                        ("x-queue-token", pass),
                        ("idempotency-key", key),
                        ("content-type", kind),
                        ("x-request-id", id),
                    ]
                    .into_iter()
                    .filter_map(|(name, value)| Some((name, value?)))
                    .collect();
                    Hostile {
                        method: method.clone(),
                        target,
                        headers,
                        body,
                        credentials_pass: passes,
                    }
                },
            )
            .boxed()
    }
}

/// The error code of an error answer, if it is API.md's envelope and nothing
/// more: `{"error": {"code": "<snake_case>", "message": "<text>"}}` as JSON.
fn envelope_code(content_type: Option<&HeaderValue>, body: &[u8]) -> Result<String, String> {
    let json = content_type.is_some_and(|t| t.as_bytes().starts_with(b"application/json"));
    if !json {
        return Err(format!(
            "an error answer with content type {content_type:?}"
        ));
    }
    let body: Value =
        serde_json::from_slice(body).map_err(|_| "an error answer that is not JSON")?;
    let (Some(top), Some(error)) = (body.as_object(), body["error"].as_object()) else {
        return Err("an error answer without the envelope".into());
    };
    if top.len() != 1 || error.len() != 2 {
        return Err("an envelope with fields beyond error.code and error.message".into());
    }
    let message = error
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if message.trim().is_empty() {
        return Err("an envelope without a message".into());
    }
    let code = error
        .get("code")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let snake = !code.is_empty()
        && code
            .split('_')
            .all(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase()));
    if !snake {
        return Err(format!("an envelope whose code {code:?} is not snake_case"));
    }
    Ok(code.to_owned())
}

/// Whether a body reads as a JSON object where the server reads one (a blank
/// body reads as `{}`).
fn reads_as_an_object(body: &[u8]) -> bool {
    use serde::de::IgnoredAny;
    // Read as the server's types read fields they ignore: `1e400` in an
    // unknown field is well-formed JSON (`Value` refuses it, out of range).
    body.iter().all(u8::is_ascii_whitespace)
        || serde_json::from_slice::<BTreeMap<String, IgnoredAny>>(body).is_ok()
}

/// The cases per endpoint: `PROPTEST_CASES`, or [`CASES`].
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(CASES)
}

/// Runs every endpoint's cases, from a runtime thread that may block, and
/// says how they were answered.
fn fuzz_all(scene: &Scene, endpoints: &[Endpoint]) {
    tokio::task::block_in_place(|| {
        for endpoint in endpoints {
            scene.fuzz(endpoint, scene.requests(endpoint), cases());
        }
    });
}

// ---------------------------------------------------------------------------
// Arranging scenes

/// Admission fast and uncapped, so a fan is ACTIVE at once.
async fn spawn() -> TestApp {
    let mut env = Env::default();
    env.vars.insert("ADMISSION_RATE", "10000".into());
    env.vars.insert("MAX_ACTIVE", "0".into());
    TestApp::spawn_with(env).await
}

/// A user admitted to `concert`: (bearer value, ACTIVE queue token).
async fn admitted_fan(app: &TestApp, concert: i64) -> (String, String) {
    let (_, user) = app.new_user().await;
    let answer = app
        .post(
            "/queue/tokens",
            &[("authorization", &user)],
            json!({"concert_id": concert}),
        )
        .await;
    let body = expect_status(answer, StatusCode::CREATED, "joining the queue");
    let token = body["token"].as_str().expect("a token").to_owned();
    eventually(Duration::from_secs(10), || async {
        let path = format!("/queue/tokens/{token}");
        let (_, t) = app.get(&path, &[("authorization", &user)]).await;
        (t["status"] == "ACTIVE").then_some(())
    })
    .await
    .expect("the fan is admitted within 10 s");
    (user, token)
}

// ---------------------------------------------------------------------------
// The properties, endpoint by endpoint

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_endpoints_answer_junk_queries_headers_and_bodies_without_a_5xx() {
    let app = spawn().await;
    let (_, user) = app.new_user().await;
    let scene = Scene::new(app, user, None).await;
    let endpoints = ["/health", "/ready", "/metrics", "/openapi.json"]
        .map(|route| Endpoint::new(Method::GET, route, Auth::Public));
    fuzz_all(&scene, &endpoints);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_endpoints_refuse_hostile_input_with_an_enveloped_4xx_that_changes_nothing() {
    let app = spawn().await;
    let (concert, _) = app.new_concert(5, 100).await;
    let (_, user) = app.new_user().await;
    let scene = Scene::new(app, user, None).await;
    let room = "/admin/concerts/{concert_id}/waiting-room";
    let endpoints = [
        Endpoint::new(Method::POST, "/admin/concerts", Auth::Admin)
            .body(json!({"title": "Hostile", "artist": "Band", "description": "d"})),
        Endpoint::new(
            Method::POST,
            "/admin/concerts/{concert_id}/schedules",
            Auth::Admin,
        )
        .param(Param::Id(concert))
        .body(json!({"start_at": "2027-01-01T19:00:00Z", "seat_count": 5, "price": 10}))
        .settles(),
        Endpoint::new(
            Method::POST,
            "/admin/concerts/{concert_id}/schedules",
            Auth::Admin,
        )
        .param(Param::Id(concert))
        .body(json!({"start_at": "2027-01-01T19:00:00Z",
                         "seats": [{"seat_no": 1, "price": 5, "section": "A"}]}))
        .settles(),
        Endpoint::new(Method::GET, room, Auth::Admin).param(Param::Id(concert)),
        Endpoint::new(Method::PATCH, room, Auth::Admin)
            .param(Param::Id(concert))
            .body(json!({
                "admission_rate": 100, "max_active": 1000, "active_ttl_secs": 600,
                "waiting_idle_secs": 300, "hold_ttl_secs": 300, "max_holds_per_user": 4,
                "opens_at": null, "paused": false, "message": "Welcome",
            }))
            .settles(),
    ];
    fuzz_all(&scene, &endpoints);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_and_balance_endpoints_refuse_hostile_input_with_an_enveloped_4xx_that_changes_nothing()
 {
    let app = spawn().await;
    let (_, user) = app.new_user().await;
    expect_status(app.charge(&user, 1000).await, StatusCode::OK, "charging");
    let scene = Scene::new(app, user, None).await;
    let endpoints = [
        Endpoint::new(Method::POST, "/users", Auth::Public).body(json!({})),
        Endpoint::new(Method::GET, "/balance", Auth::User),
        Endpoint::new(Method::POST, "/balance/charge", Auth::User)
            .body(json!({"amount": 1000}))
            .idempotent(),
        Endpoint::new(Method::GET, "/balance/history", Auth::User)
            .query(&[("limit", "20"), ("before_id", "5")]),
    ];
    fuzz_all(&scene, &endpoints);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_endpoints_refuse_hostile_input_with_an_enveloped_4xx_that_changes_nothing() {
    let app = spawn().await;
    let (concert, schedule) = app.new_concert(5, 100).await;
    let (user, pass) = admitted_fan(&app, concert).await;
    let scene = Scene::new(app, user, Some(pass)).await;
    let endpoints = [
        Endpoint::new(Method::GET, "/concerts", Auth::Public),
        Endpoint::new(Method::GET, "/concerts/{concert_id}", Auth::Public)
            .param(Param::Id(concert)),
        Endpoint::new(Method::GET, "/concerts/{concert_id}/schedules", Auth::Gated)
            .param(Param::Id(concert)),
        Endpoint::new(Method::GET, "/schedules/{schedule_id}/seats", Auth::Gated)
            .param(Param::Id(schedule))
            .query(&[("status", "AVAILABLE")]),
    ];
    fuzz_all(&scene, &endpoints);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_endpoints_refuse_hostile_input_with_an_enveloped_4xx_that_changes_nothing() {
    let app = spawn().await;
    let (concert, _) = app.new_concert(5, 100).await;
    let (user, token) = admitted_fan(&app, concert).await;
    let scene = Scene::new(app, user, None).await;
    let endpoints = [
        Endpoint::new(Method::POST, "/queue/tokens", Auth::User)
            .body(json!({"concert_id": concert}))
            .settles(),
        Endpoint::new(Method::GET, "/queue/tokens/{token}", Auth::User)
            .param(Param::Token(token.clone())),
        Endpoint::new(Method::DELETE, "/queue/tokens/{token}", Auth::User)
            .param(Param::Token(token))
            .settles(),
    ];
    fuzz_all(&scene, &endpoints);
}

/// The fan has no money, so no payment goes through and the pass stays
/// ACTIVE; payments come before the hold's release, so they meet `402`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn booking_endpoints_refuse_hostile_input_with_an_enveloped_4xx_that_changes_nothing() {
    let app = spawn().await;
    let (concert, schedule) = app.new_concert(10, 100).await;
    let (user, pass) = admitted_fan(&app, concert).await;
    let answer = app
        .post(
            "/reservations",
            &[("authorization", &user), ("x-queue-token", &pass)],
            json!({"schedule_id": schedule, "seat_no": 1}),
        )
        .await;
    let hold = expect_status(answer, StatusCode::CREATED, "holding seat 1")["id"]
        .as_i64()
        .expect("a reservation id");
    let scene = Scene::new(app, user, Some(pass)).await;
    let endpoints = [
        Endpoint::new(Method::POST, "/reservations", Auth::Gated)
            .body(json!({"schedule_id": schedule, "seat_no": 2}))
            .settles(),
        Endpoint::new(Method::GET, "/reservations/{reservation_id}", Auth::User)
            .param(Param::Id(hold)),
        Endpoint::new(Method::POST, "/payments", Auth::Gated)
            .body(json!({"reservation_id": hold}))
            .idempotent()
            .settles(),
        Endpoint::new(Method::DELETE, "/reservations/{reservation_id}", Auth::User)
            .param(Param::Id(hold))
            .settles(),
    ];
    fuzz_all(&scene, &endpoints);
}

/// Any method on any path: a route that does not exist is `404 not_found`, a
/// method a route lacks `405 method_not_allowed`, both in the envelope.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_and_methods_answer_with_the_envelope_and_change_nothing() {
    let app = spawn().await;
    let (concert, _) = app.new_concert(5, 100).await;
    let (_, user) = app.new_user().await;
    let scene = Scene::new(app, user, None).await;
    let methods = [
        "GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "PROPFIND", "get",
    ]
    .map(|m| Method::from_bytes(m.as_bytes()).expect("a method"));
    let routes = [
        "/",
        "/health",
        "/ready",
        "/metrics",
        "/openapi.json",
        "/admin/concerts",
        "/concerts",
        "/reservations",
        "/payments",
        "/queue/tokens",
        "/users",
        "/balance",
        "/balance/charge",
        "/balance/history",
    ];
    let with_id = [
        "/admin/concerts/{}/schedules",
        "/admin/concerts/{}/waiting-room",
        "/concerts/{}",
        "/concerts/{}/schedules",
        "/schedules/{}/seats",
        "/reservations/{}",
        "/queue/tokens/{}",
    ];
    let path = prop_oneof![
        2 => select(routes.to_vec()).prop_map(str::to_owned),
        2 => (select(with_id.to_vec()), id_segment(concert)).prop_map(|(r, id)| r.replace("{}", &id)),
        2 => prop::collection::vec(prop_oneof![RAW_SEGMENT, PERCENT_JUNK], 1..5)
            .prop_map(|segments| format!("/{}", segments.join("/"))),
        1 => (select(routes.to_vec()), "/|//|/x|\\.json|%2F|;a").prop_map(|(r, tail)| format!("{r}{tail}")),
    ];
    let strategy = (
        select(methods.to_vec()),
        path,
        authorization(&scene.user),
        admin_key(),
        unread_body(),
    )
        .prop_map(|(method, target, (bearer, _), (key, _), body)| Hostile {
            method,
            target,
            headers: [("authorization", bearer), ("x-admin-key", key)]
                .into_iter()
                .filter_map(|(name, value)| Some((name, value?)))
                .collect(),
            body,
            credentials_pass: false,
        })
        .boxed();
    let anywhere = Endpoint::new(Method::GET, "*", Auth::Public).settles();
    tokio::task::block_in_place(|| scene.fuzz(&anywhere, strategy, cases() * 4));
}
