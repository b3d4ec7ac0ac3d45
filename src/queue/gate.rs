//! The queue gate: the `X-Queue-Token` pass that every booking request needs,
//! checked in API.md's order (no header, then unknown or another user's, then
//! expired or processed, then still waiting, then another concert's).
//!
//! The hot gated requests (seat map, availability, hold, payment) fold the
//! check into their own script (`lib.lua`'s `gate()`), so they stay one round
//! trip: [`parse_for`] only parses the header, and their reply's [`Denied`] is
//! mapped here by [`refused`]. [`check_pass`] is the gate on its own, for the
//! rare path that needs it alone.

use super::QueueToken;
use crate::AppState;
use crate::error::{Error, Result};
use crate::store::scripts::{self, Denied, Script};

fn pass_required() -> Error {
    Error::Unauthorized {
        code: "queue_token_required",
        message: "an X-Queue-Token header is required".into(),
    }
}

fn pass_invalid() -> Error {
    Error::Unauthorized {
        code: "queue_token_invalid",
        message: "the queue token is unknown or not yours".into(),
    }
}

fn wrong_concert() -> Error {
    Error::Forbidden {
        code: "queue_token_wrong_concert",
        message: "the queue token is for another concert".into(),
    }
}

/// The API's answer to a pass that does not hold.
pub fn refused(denied: Denied) -> Error {
    match denied {
        Denied::Invalid => pass_invalid(),
        Denied::Expired => Error::Unauthorized {
            code: "queue_token_expired",
            message: "the queue token has expired or was already used".into(),
        },
        Denied::Waiting => Error::Forbidden {
            code: "queue_token_not_active",
            message: "the queue token is still waiting to be admitted".into(),
        },
    }
}

/// Parses the header: a missing one or one that is no token of ours fails at
/// once, with no round trip.
fn parse(header: Option<&str>) -> Result<QueueToken> {
    QueueToken::parse(header.ok_or_else(pass_required)?).ok_or_else(pass_invalid)
}

/// A pass that does not name the concert a request touches.
pub enum Mismatch {
    /// No header, or no token of ours: the error is known at once.
    Refused(Error),
    /// A well-formed token of another concert.
    OtherConcert(QueueToken),
}

impl Mismatch {
    /// The gate's error for it, in API.md's order: a token of another concert
    /// is first checked as a pass (one round trip), so an expired one says
    /// so before "wrong concert" does.
    pub async fn into_error(self, app: &AppState, user_id: i64) -> Error {
        let token = match self {
            Mismatch::Refused(e) => return e,
            Mismatch::OtherConcert(token) => token,
        };
        let checked = scripts::Gate {
            keys: &app.keys.queue(token.concert_id),
            token: &token,
            user_id,
        }
        .run(&app.redis)
        .await;
        match checked {
            Ok(None) => wrong_concert(),
            Ok(Some(denied)) => refused(denied),
            Err(e) => e,
        }
    }
}

/// The pass of a request for `concert_id`, read from its header without a
/// round trip: the request's own script checks it (one round trip in all).
pub fn parse_for(header: Option<&str>, concert_id: i64) -> Result<QueueToken, Mismatch> {
    let token = parse(header).map_err(Mismatch::Refused)?;
    if token.concert_id == concert_id {
        Ok(token)
    } else {
        Err(Mismatch::OtherConcert(token))
    }
}

/// [`parse_for`], answering a mismatch with the gate's exact error.
pub async fn pass_for(
    app: &AppState,
    user_id: i64,
    header: Option<&str>,
    concert_id: i64,
) -> Result<QueueToken> {
    match parse_for(header, concert_id) {
        Ok(token) => Ok(token),
        Err(mismatch) => Err(mismatch.into_error(app, user_id).await),
    }
}

/// The whole gate for `concert_id`, on its own: one round trip.
pub async fn check_pass(
    app: &AppState,
    user_id: i64,
    header: Option<&str>,
    concert_id: i64,
) -> Result<()> {
    let token = pass_for(app, user_id, header, concert_id).await?;
    let denied = scripts::Gate {
        keys: &app.keys.queue(concert_id),
        token: &token,
        user_id,
    }
    .run(&app.redis)
    .await?;
    match denied {
        None => Ok(()),
        Some(denied) => Err(refused(denied)),
    }
}
