//! `GET /openapi.json` against API.md: every operation API.md names is in the
//! document, with every status and error code API.md gives it, and the
//! credentials it asks for.
//!
//! API.md is read from `../shared/API.md` beside the checkout (as in CI), or
//! from `BOXOFFICE_API_MD`. What it says of an operation is taken from:
//! - the paragraph that opens with the operation (`` `POST /payments` …``) or
//!   the table row that names it: its statuses, and each status followed by a
//!   code (`` `404` `concert_not_found` ``);
//! - its section: "(user auth …)", "(… queue pass)", "(admin)";
//! - the sections that name a rule once for many operations: the gate's table
//!   (every gated operation), "Idempotency" (every operation that takes an
//!   `Idempotency-Key`), "Authentication" (admin and user auth), the waiting
//!   room's table (its "joins" column is `POST /queue/tokens`), and
//!   "Conventions" (bodies, rate limits).

mod common;

use common::TestApp;
use reqwest::StatusCode;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

fn api_md() -> String {
    let path = std::env::var("BOXOFFICE_API_MD")
        .unwrap_or_else(|_| format!("{}/../shared/API.md", env!("CARGO_MANIFEST_DIR")));
    std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read API.md at {path} ({e}): the shared folder must sit beside the \
             checkout as ../shared, as it does in CI; elsewhere set BOXOFFICE_API_MD=/path/to/API.md"
        )
    })
}

/// The text inside each pair of backticks, in order.
fn spans(text: &str) -> Vec<&str> {
    text.split('`').skip(1).step_by(2).collect()
}

/// `GET /balance/history?limit=…` → ("GET", "/balance/history").
fn operation(span: &str) -> Option<(String, String)> {
    let (method, rest) = span.split_once(' ')?;
    if !METHODS.contains(&method) || !rest.starts_with('/') {
        return None;
    }
    let path = rest.split([' ', '?']).next()?;
    Some((method.to_owned(), path.to_owned()))
}

fn status(text: &str) -> Option<u16> {
    let digits = text.get(..3)?;
    let rest = &text[3..];
    (digits.bytes().all(|b| b.is_ascii_digit()) && (rest.is_empty() || rest.starts_with(' ')))
        .then(|| digits.parse().ok())
        .flatten()
}

fn is_code(text: &str) -> bool {
    !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
        && text.contains('_')
        || ["unauthorized", "internal", "unavailable"].contains(&text)
}

type Pairs = BTreeSet<(u16, String)>;

/// The statuses a piece of API.md names, and the (status, code) pairs: a status
/// span followed by a code span (`` `404` `concert_not_found` ``), or one span
/// holding both (`` `409 sold_out` ``).
fn statuses_and_codes(text: &str) -> (BTreeSet<u16>, Pairs) {
    let (mut statuses, mut pairs) = (BTreeSet::new(), Pairs::new());
    let parts: Vec<&str> = text.split('`').collect();
    for (i, part) in parts.iter().enumerate().skip(1).step_by(2) {
        let Some(s) = status(part) else { continue };
        statuses.insert(s);
        let inline = part[3..].trim();
        if is_code(inline) {
            pairs.insert((s, inline.to_owned()));
        } else if parts
            .get(i + 1)
            .is_some_and(|between| between.trim().is_empty())
            && let Some(next) = parts.get(i + 2).filter(|c| is_code(c))
        {
            pairs.insert((s, (*next).to_owned()));
        }
    }
    (statuses, pairs)
}

/// A markdown table: its header cells and rows of cells.
struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

fn cells(line: &str) -> Vec<String> {
    line.trim()
        .trim_matches('|')
        .split('|')
        .map(|c| c.trim().to_owned())
        .collect()
}

/// (status, code) pairs of a table row: a cell that is a status (bare or in
/// backticks) and the first code in a later cell of the row, or a cell that
/// holds both.
fn row_pairs(row: &[String]) -> Pairs {
    let mut pairs = Pairs::new();
    for (i, cell) in row.iter().enumerate() {
        let (_, inline) = statuses_and_codes(cell);
        pairs.extend(inline);
        if let Some(s) = status(cell.trim_matches('`'))
            && let Some(code) = row[i + 1..]
                .iter()
                .flat_map(|c| spans(c))
                .find(|c| is_code(c))
        {
            pairs.insert((s, code.to_owned()));
        }
    }
    pairs
}

/// What API.md says, section by section.
#[derive(Default)]
struct Contract {
    /// Every operation, with what its own paragraph or row says.
    operations: BTreeMap<(String, String), Said>,
    /// Every (status, code) API.md names anywhere.
    all_pairs: Pairs,
    gate: Pairs,
    idempotency: Pairs,
    /// The "joins" column of the waiting room's state table.
    joins: Pairs,
}

#[derive(Default, Debug)]
struct Said {
    statuses: BTreeSet<u16>,
    pairs: Pairs,
    section: String,
    text: String,
}

impl Said {
    /// A paragraph or row about the operation (an operation may have several:
    /// `GET /concerts/{concert_id}` has one in "Catalog", one in "Waiting rooms").
    fn add(&mut self, section: &str, text: &str) {
        let (statuses, pairs) = statuses_and_codes(text);
        self.statuses.extend(statuses);
        self.pairs.extend(pairs);
        if self.section.is_empty() {
            self.section = section.to_owned();
        }
        self.text.push_str(text);
        self.text.push('\n');
    }

    fn gated(&self) -> bool {
        let says = |t: &str| t.contains("queue pass") && !t.contains("no queue pass");
        says(&self.text) || says(&self.section)
    }

    fn admin(&self, path: &str) -> bool {
        path.starts_with("/admin/")
    }

    fn user_auth(&self) -> bool {
        self.text.contains("user auth") || self.section.contains("user auth")
    }
}

fn contract(md: &str) -> Contract {
    let mut c = Contract::default();
    let mut section = String::new();
    let mut lines = md.lines().peekable();
    let mut paragraph: Vec<&str> = Vec::new();
    let flush = |paragraph: &mut Vec<&str>, section: &str, c: &mut Contract| {
        let text = paragraph.join("\n");
        paragraph.clear();
        let (_, pairs) = statuses_and_codes(&text);
        c.all_pairs.extend(pairs.iter().cloned());
        if section.starts_with("## Idempotency") {
            c.idempotency.extend(pairs.iter().cloned());
        }
        let opening = text.trim_start();
        if let Some(op) = opening
            .strip_prefix('`')
            .and_then(|t| t.split('`').next())
            .and_then(operation)
        {
            c.operations.entry(op).or_default().add(section, &text);
        }
    };
    while let Some(line) = lines.next() {
        if line.starts_with('#') {
            flush(&mut paragraph, &section, &mut c);
            section = line.to_owned();
        } else if line.trim_start().starts_with('|') {
            flush(&mut paragraph, &section, &mut c);
            let mut table = Table {
                header: cells(line),
                rows: Vec::new(),
            };
            while let Some(next) = lines.next_if(|l| l.trim_start().starts_with('|')) {
                if !next.contains("---") {
                    table.rows.push(cells(next));
                }
            }
            read_table(&table, &section, &mut c);
        } else if line.trim().is_empty() {
            flush(&mut paragraph, &section, &mut c);
        } else {
            paragraph.push(line);
        }
    }
    flush(&mut paragraph, &section, &mut c);
    // Operations only mentioned in passing, not described: present all the same.
    for op in spans(md).into_iter().filter_map(operation) {
        c.operations.entry(op).or_default();
    }
    c
}

fn read_table(table: &Table, section: &str, c: &mut Contract) {
    let joins = table.header.iter().position(|h| h == "joins");
    for row in &table.rows {
        let pairs = row_pairs(row);
        c.all_pairs.extend(pairs.iter().cloned());
        if section.starts_with("## Authentication") {
            c.gate.extend(pairs.iter().cloned());
        }
        if let Some(joins) = joins {
            c.joins.extend(row_pairs(&row[joins..=joins]));
        }
        if let Some(op) = row
            .first()
            .and_then(|cell| spans(cell).first().and_then(|s| operation(s)))
        {
            c.operations
                .entry(op)
                .or_default()
                .add(section, &row[1..].join(" | "));
        }
    }
}

/// The document's view of one operation.
struct Documented<'a> {
    doc: &'a Value,
    operation: &'a Value,
}

impl Documented<'_> {
    fn response(&self, status: u16) -> Option<&Value> {
        let response = self.operation["responses"].get(status.to_string())?;
        Some(match response["$ref"].as_str() {
            Some(to) => self
                .doc
                .pointer(to.trim_start_matches('#'))
                .unwrap_or_else(|| panic!("{to} does not resolve")),
            None => response,
        })
    }

    /// The codes the document lists for `status`: as `x-error-codes` and as
    /// the `enum` of the envelope's `code`, which must agree.
    fn codes(&self, status: u16) -> BTreeSet<String> {
        let Some(response) = self.response(status) else {
            return BTreeSet::new();
        };
        let strings = |v: &Value| -> BTreeSet<String> {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|c| c.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        let listed = strings(&response["x-error-codes"]);
        let schema = &response["content"]["application/json"]["schema"];
        let enumerated = strings(&schema["properties"]["error"]["properties"]["code"]["enum"]);
        assert_eq!(listed, enumerated, "x-error-codes and the code enum differ");
        for code in &listed {
            assert!(
                response["description"]
                    .as_str()
                    .unwrap_or("")
                    .contains(&format!("`{code}`")),
                "the description of {status} does not explain `{code}`"
            );
        }
        listed
    }

    fn security(&self) -> Vec<BTreeSet<String>> {
        self.operation["security"]
            .as_array()
            .map(|reqs| {
                reqs.iter()
                    .map(|r| r.as_object().unwrap().keys().cloned().collect())
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[tokio::test]
async fn the_document_holds_every_operation_status_and_code_of_api_md() {
    let contract = contract(&api_md());
    assert!(
        contract.operations.len() >= 20,
        "API.md read wrong: {:?}",
        contract.operations.keys()
    );
    assert!(!contract.gate.is_empty(), "the gate's table read wrong");
    assert!(!contract.idempotency.is_empty() && !contract.joins.is_empty());

    let app = TestApp::spawn().await;
    let response = app
        .http
        .get(format!("{}/openapi.json", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/json");
    let doc: Value = response.json().await.unwrap();
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1.")),
        "openapi: {}",
        doc["openapi"]
    );

    // Path parameters are named as the router names them (`{reservation_id}`
    // where API.md writes `{id}`): paths are compared by their shape.
    let shape = |path: &str| -> String {
        path.split('/')
            .map(|s| if s.starts_with('{') { "{}" } else { s })
            .collect::<Vec<_>>()
            .join("/")
    };
    let paths: BTreeMap<String, &Value> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(path, item)| (shape(path), item))
        .collect();
    let mut missing = Vec::new();
    let mut everywhere = Pairs::new();
    for ((method, path), said) in &contract.operations {
        let name = format!("{method} {path}");
        let Some(operation) = paths
            .get(&shape(path))
            .and_then(|item| item.get(method.to_lowercase()))
        else {
            missing.push(format!("{name}: not in the document"));
            continue;
        };
        let documented = Documented {
            doc: &doc,
            operation,
        };
        let mut want_statuses = said.statuses.clone();
        if name == "GET /" {
            // The fan page's paragraph names the API's answers the page copes
            // with (`503`), not the page's own.
            want_statuses.clear();
        }
        let mut want_pairs = said.pairs.clone();
        if said.gated() {
            want_pairs.extend(contract.gate.iter().cloned());
            want_pairs.insert((401, "unauthorized".into()));
            if !documented
                .security()
                .iter()
                .any(|r| r.contains("bearer") && r.contains("queue_token"))
            {
                missing.push(format!(
                    "{name}: gated, but no bearer + queue_token security"
                ));
            }
        } else if said.user_auth() && name != "POST /users" {
            // ("POST /users" sits in the "(user auth)" section, but it mints the tokens.)
            want_pairs.insert((401, "unauthorized".into()));
            if !documented.security().iter().any(|r| r.contains("bearer")) {
                missing.push(format!("{name}: user auth, but no bearer security"));
            }
        }
        if said.admin(path) {
            want_pairs.insert((401, "unauthorized".into()));
            want_statuses.insert(404);
            if !documented
                .security()
                .iter()
                .any(|r| r.contains("admin_key"))
            {
                missing.push(format!("{name}: admin, but no admin_key security"));
            }
        }
        if said.text.contains("Idempotency-Key") {
            want_pairs.extend(contract.idempotency.iter().cloned());
            let takes_key = operation["parameters"].as_array().is_some_and(|ps| {
                ps.iter()
                    .any(|p| p["name"] == "Idempotency-Key" && p["in"] == "header")
            });
            if !takes_key {
                missing.push(format!("{name}: no Idempotency-Key header parameter"));
            }
        }
        if name == "POST /queue/tokens" {
            want_pairs.extend(contract.joins.iter().cloned());
        }
        // Conventions: any request may be rate limited; a body may be bad,
        // too large or too slow.
        want_pairs.insert((429, "rate_limited".into()));
        if operation.get("requestBody").is_some() {
            want_statuses.extend([400, 408, 413]);
        }
        want_statuses.extend(want_pairs.iter().map(|(s, _)| *s));
        for status in &want_statuses {
            if documented.response(*status).is_none() {
                missing.push(format!("{name}: no {status} answer"));
            }
        }
        for (status, code) in &want_pairs {
            if !documented.codes(*status).contains(code) {
                missing.push(format!("{name}: {status} does not list `{code}`"));
            }
        }
        for status in operation["responses"].as_object().unwrap().keys() {
            let status: u16 = status.parse().unwrap();
            everywhere.extend(documented.codes(status).into_iter().map(|c| (status, c)));
        }
    }
    // Codes of no single operation (an unknown route, a wrong method) are in
    // the document's shared answers.
    let shared: BTreeSet<&str> = doc["components"]["responses"]
        .as_object()
        .unwrap()
        .values()
        .filter_map(|r| r["x-error-codes"].as_array())
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    for (status, code) in &contract.all_pairs {
        if !everywhere.contains(&(*status, code.clone())) && !shared.contains(code.as_str()) {
            missing.push(format!(
                "{status} `{code}`: named by API.md, in no answer of the document"
            ));
        }
    }
    assert!(
        missing.is_empty(),
        "the document lacks:\n{}",
        missing.join("\n")
    );
}

#[test]
fn api_md_is_read_as_it_is_written() {
    let c = contract(
        "## Things (user auth + queue pass)\n\n\
         `POST /things` `{\"id\"}` → `201`; `404` `thing_not_found`,\n\
         `409 thing_taken`.\n\n\
         | situation | status | code |\n|---|---|---|\n| no pass | 401 | `pass_required` |\n",
    );
    let said = &c.operations[&("POST".to_owned(), "/things".to_owned())];
    assert_eq!(said.statuses, BTreeSet::from([201, 404, 409]));
    assert_eq!(
        said.pairs,
        Pairs::from([(404, "thing_not_found".into()), (409, "thing_taken".into())])
    );
    assert!(said.gated() && said.user_auth());
    assert!(c.all_pairs.contains(&(401, "pass_required".into())));
}
