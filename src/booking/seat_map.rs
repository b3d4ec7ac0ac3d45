//! `GET /schedules/{id}/seats`: every seat of a schedule with its live status,
//! from the catalog (cached) and the SOLD and HELD bitmaps (one round trip,
//! the pass checked in the same script).

use super::count_lapsed;
use crate::AppState;
use crate::catalog::{RenderedMap, SeatCatalog, SeatStatus};
use crate::error::Result;
use crate::queue::gate;
use crate::store::scripts::{self, Script, SeatBits};
use fred::bytes::Bytes;
use std::sync::Arc;

/// A schedule's seats and their statuses, as one read saw them.
pub struct SeatMap {
    catalog: Arc<SeatCatalog>,
    bits: SeatBits,
}

impl SeatMap {
    /// `{"schedule_id":…,"seats":[…]}`, only the seats in `only` when given.
    /// (Rendered from bytes the catalog prepared, and only once per content of
    /// the bitmaps: [`SeatCatalog::render_bits`].)
    pub fn render(&self, only: Option<SeatStatus>) -> RenderedMap {
        self.catalog
            .render_bits(&self.bits.sold, &self.bits.held, only)
    }

    /// The rendered map gzipped (once per map; None if compression failed).
    pub async fn gzip(&self, map: &RenderedMap) -> Option<Bytes> {
        self.catalog.gzip(map).await
    }
}

/// The seat map of a schedule (gated).
pub async fn seat_map(
    app: &AppState,
    user_id: i64,
    pass: Option<&str>,
    schedule_id: i64,
) -> Result<SeatMap> {
    let catalog = app.seats.get(&app.pg, schedule_id).await?;
    let token = gate::pass_for(app, user_id, pass, catalog.concert_id).await?;
    let bits = scripts::SeatMap {
        keys: &app.keys.booking(catalog.concert_id),
        token: &token,
        user_id,
        schedule_id,
    }
    .run(&app.redis)
    .await?
    .map_err(gate::refused)?;
    count_lapsed(bits.lapsed);
    Ok(SeatMap { catalog, bits })
}
