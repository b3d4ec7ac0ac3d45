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
