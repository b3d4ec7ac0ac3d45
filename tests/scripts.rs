//! The Lua side of the seam, run in a real Redis: what `lua/lib.lua` spells
//! must be what `src/store/keys.rs` spells.

mod common;

use boxoffice::store::Keys;
use boxoffice::store::scripts::full_text;
use fred::interfaces::LuaInterface;

#[tokio::test]
async fn lua_builds_hold_keys_as_keys_rs_does() {
    let redis = common::redis().await;
    let keys = Keys::new(common::unique_name("keys"));
    let b = keys.booking(42);
    let script = full_text(
        "return {hold_key(ARGV[1], ARGV[2], ARGV[3]), held_key(ARGV[1], ARGV[2]),
                 held_bits_key(ARGV[1], ARGV[2]), reservation_key(ARGV[1], ARGV[4]),
                 user_holds_key(ARGV[1], ARGV[5]), sold_key(ARGV[1], ARGV[2]),
                 segment_key(ARGV[1], ARGV[6])}",
    );
    let spelled: Vec<String> = redis
        .eval(
            script,
            Vec::<String>::new(),
            vec![b.tag(), "3", "5", "9", "7", "12"],
        )
        .await
        .unwrap();
    assert_eq!(
        spelled,
        vec![
            b.hold(3, 5),
            b.held(3),
            b.held_bits(3),
            b.reservation(9),
            b.user_holds(7),
            b.sold(3),
            keys.queue(42).segment(12),
        ]
    );
    let _ = fred::interfaces::ClientLike::quit(&redis).await;
}

/// The GCRA of `lua/lib.lua` (`rate_wait`), with the clock given: up to
/// `burst` at once, then one per interval; a refusal changes nothing; the key
/// lives only while its arrival time is ahead of the clock.
#[tokio::test]
async fn rate_wait_allows_a_burst_then_one_per_interval() {
    let redis = common::redis().await;
    let key = format!("{}:rl:test", common::unique_name("keys"));
    let script = full_text(
        "local wait = rate_wait(KEYS[1], tonumber(ARGV[1]), ARGV[2], ARGV[3])
         return {wait, redis.call('PTTL', KEYS[1])}",
    );
    // (clock ms, expected wait ms, expected key ttl ms) with interval 1000, burst 3.
    let t0: i64 = 1_000_000;
    let steps = [
        (t0, 0, 1000),
        (t0, 0, 2000),
        (t0, 0, 3000),
        (t0, 1000, 3000), // refused: the key is untouched
        (t0 + 999, 1, 3000),
        (t0 + 1000, 0, 3000),
        (t0 + 1000, 1000, 3000),
        // After a quiet spell the whole burst is back (the key has gone).
        (t0 + 10_000, 0, 1000),
    ];
    for (i, (now, wait, ttl)) in steps.into_iter().enumerate() {
        if i == steps.len() - 1 {
            let _: i64 = fred::interfaces::KeysInterface::del(&redis, &key)
                .await
                .unwrap();
        }
        let got: Vec<i64> = redis
            .eval(
                script.clone(),
                vec![key.clone()],
                vec![now.to_string(), "1000".into(), "3".into()],
            )
            .await
            .unwrap();
        assert_eq!(got[0], wait, "step {i}: wait");
        assert!(
            (ttl - 50..=ttl).contains(&got[1]),
            "step {i}: ttl {} (want about {ttl})",
            got[1]
        );
    }
    // Interval 0 is off: never a wait, no key.
    let off: Vec<i64> = redis
        .eval(
            script,
            vec![format!("{key}:off")],
            vec![t0.to_string(), "0".into(), "1".into()],
        )
        .await
        .unwrap();
    assert_eq!(off, vec![0, -2]);
    let _: i64 = fred::interfaces::KeysInterface::del(&redis, &key)
        .await
        .unwrap();
    let _ = fred::interfaces::ClientLike::quit(&redis).await;
}
