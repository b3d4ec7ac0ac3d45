//! Each script's Rust type against its file in `lua/`: the keys its header
//! declares, the codes it may not spell itself, the verdicts it returns.

use super::codes::LUA_NAMES;
use super::*;
use std::collections::{BTreeSet, HashSet};

/// The `KEYS[n]` the header comment (the lines before the first code line)
/// names, as a set of n.
fn header_keys(text: &str) -> BTreeSet<usize> {
    let mut found = BTreeSet::new();
    for line in text.lines().take_while(|l| l.starts_with("--")) {
        let mut rest = line;
        while let Some(at) = rest.find("KEYS[") {
            rest = &rest[at + 5..];
            let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
            if let Ok(n) = digits.parse() {
                found.insert(n);
            }
        }
    }
    found
}

/// Every single-quoted literal of a Lua text (outside comments).
fn literals(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let code = line.split("--").next().unwrap_or("");
        let mut parts = code.split('\'');
        parts.next();
        while let (Some(inside), Some(_)) = (parts.next(), parts.next()) {
            out.push(inside.to_owned());
        }
    }
    out
}

#[test]
fn every_script_file_has_one_type() {
    let files: BTreeSet<String> = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/lua"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".lua") && name != "lib.lua")
        .collect();
    let typed: Vec<&str> = all().iter().map(|l| l.file).collect();
    let unique: BTreeSet<String> = typed.iter().map(|f| f.to_string()).collect();
    assert_eq!(unique.len(), typed.len(), "a file has two types: {typed:?}");
    assert_eq!(unique, files);
}

#[test]
fn each_header_declares_the_keys_its_type_passes() {
    for lua in all() {
        let declared = header_keys(lua.own_text);
        let expected: BTreeSet<usize> = match lua.keys {
            KeyCount::Exactly(n) => (1..=n).collect(),
            KeyCount::Repeating { fixed, .. } => (1..=fixed).collect(),
        };
        assert_eq!(declared, expected, "{}: header KEYS vs its type", lua.file);
        if let KeyCount::Repeating { each, .. } = lua.keys {
            assert!(
                lua.own_text
                    .contains(&format!("for i = {}, #KEYS, {each} do", expected.len() + 1)),
                "{}: the repeated keys come in groups of {each}",
                lua.file
            );
        }
    }
}

#[test]
fn key_counts_accept_what_they_say() {
    assert!(KeyCount::Exactly(3).accepts(3));
    assert!(!KeyCount::Exactly(3).accepts(4));
    let r = KeyCount::Repeating { fixed: 2, each: 3 };
    assert!(r.accepts(2) && r.accepts(5) && r.accepts(8));
    assert!(!r.accepts(1) && !r.accepts(4));
}

#[test]
fn no_script_spells_a_code_itself() {
    let codes: HashSet<&str> = LUA_NAMES.iter().map(|(_, v)| *v).collect();
    for (file, text) in all()
        .iter()
        .map(|l| (l.file, l.own_text))
        .chain([("lib.lua", LIB)])
    {
        for literal in literals(text) {
            assert!(
                !codes.contains(literal.as_str()),
                "{file} spells the code '{literal}': use its name from the prelude"
            );
        }
    }
}

#[test]
fn codes_are_distinct_where_they_share_a_field() {
    let distinct = |prefixes: &[&str]| {
        let values: Vec<&str> = LUA_NAMES
            .iter()
            .filter(|(name, _)| prefixes.iter().any(|p| name.starts_with(p)))
            .map(|(_, v)| *v)
            .collect();
        let set: HashSet<&&str> = values.iter().collect();
        assert_eq!(set.len(), values.len(), "{prefixes:?}: {values:?}");
    };
    distinct(&["WAITING", "ACTIVE", "EXPIRED", "PROCESSED"]);
    distinct(&["PENDING", "CONFIRMED", "CANCELED"]);
    distinct(&["R_"]);
    let names: HashSet<&str> = LUA_NAMES.iter().map(|(n, _)| *n).collect();
    assert_eq!(names.len(), LUA_NAMES.len());
    for (name, _) in LUA_NAMES {
        let used = all().iter().any(|l| l.own_text.contains(name)) || LIB.contains(name);
        assert!(used, "{name} is declared but no script uses it");
    }
}

#[test]
fn letters_read_back_as_what_rust_wrote() {
    use crate::booking::ReservationStatus as R;
    use crate::queue::QueueStatus as Q;
    for s in [Q::Waiting, Q::Active, Q::Expired, Q::Processed] {
        assert_eq!(Q::from_letter(s.letter()), Some(s));
    }
    for s in [R::Pending, R::Confirmed, R::Canceled] {
        assert_eq!(R::from_letter(s.letter()), Some(s));
    }
    assert_eq!(Q::from_letter("?"), None);
}

/// Words a script answers with (`return 'word'`, `return {'word', ...}`, and
/// `gate()`'s verdicts for the scripts that call it).
fn returned_words(text: &str) -> BTreeSet<String> {
    let mut words = BTreeSet::new();
    for line in text.lines() {
        let line = line.trim();
        for start in ["return '", "return {'"] {
            if let Some(rest) = line.strip_prefix(start) {
                let word = rest.split('\'').next().unwrap_or("");
                if !word.is_empty() {
                    words.insert(word.to_owned());
                }
            }
        }
    }
    words
}

#[test]
fn every_verdict_a_script_returns_is_one_its_type_reads() {
    let rust = [
        include_str!("queue.rs"),
        include_str!("booking.rs"),
        include_str!("ops.rs"),
        include_str!("room.rs"),
        include_str!("limits.rs"),
    ]
    .concat();
    let gate_words = returned_words(LIB);
    assert!(gate_words.contains("waiting") && gate_words.contains("invalid"));
    for lua in all() {
        let mut words = returned_words(lua.own_text);
        if lua.own_text.contains("gate(") {
            words.extend(gate_words.iter().cloned());
        }
        for word in words {
            assert!(
                rust.contains(&format!("\"{word}\"")),
                "{} returns '{word}', which no script type reads",
                lua.file
            );
        }
    }
}

#[test]
fn a_script_gets_the_codes_and_helpers_it_uses_and_no_others() {
    let text = full_text("return {WAITING, gate(KEYS[1], ARGV[1], now_ms())}");
    assert!(text.contains("local WAITING = 'W'\n"));
    // gate() reads these codes and helpers itself.
    assert!(text.contains("local ACTIVE = "));
    assert!(text.contains("local REC_BUCKET = 128\n"));
    assert!(text.contains("local function rec_of("));
    assert!(!text.contains("local WBLOCK"));
    assert!(text.contains("local function gate("));
    assert!(text.contains("local function now_ms("));
    assert!(!text.contains("local function room_get("));
    assert!(!text.contains("local R_PRICE"));
    assert!(text.ends_with("now_ms())}"));
    // Every helper a full script calls is defined before the script runs.
    for lua in all() {
        let text = full_text(lua.own_text);
        let defined: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("local function "))
            .map(|l| l.split('(').next().unwrap_or(""))
            .collect();
        for (name, _) in lib_helpers() {
            let called = lua.own_text.contains(&format!("{name}("));
            assert!(
                !called || defined.contains(&name.as_str()),
                "{}: {name}",
                lua.file
            );
        }
    }
}
