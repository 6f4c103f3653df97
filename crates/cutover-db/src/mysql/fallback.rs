//! Replication back, for a fallback window: once the new database stands
//! alone, the old server becomes a replica of the new one from the new
//! one's current GTID (both sides were just found equal, so nothing is
//! copied), so going back loses no write made on the new side.
//! [`super::lag`], [`super::copy_auto_increments`] and [`super::stop`]
//! serve it as they serve replication forward, with the sides swapped.

use super::{My, copy, replica};
use crate::{DbError, Server};

/// Sets replica connection `name` up on `old`, following `new` from the
/// GTID it has written so far, or finds it set up (then `false`).
/// `new_from_old` is how the old server reaches the new one. Call it only
/// while both hold the same data and nothing writes to the new side.
pub async fn start_back(
    new: &Server,
    new_from_old: &Server,
    old: &Server,
    name: &str,
) -> Result<bool, DbError> {
    let (mut src, mut dst) = tokio::try_join!(My::connect(new), My::connect(old))?;
    if replica::status(&mut dst, name).await?.is_some() {
        tokio::join!(src.close(), dst.close());
        return Ok(false);
    }
    let gtid = src
        .value("the new side's GTIDs", "SELECT @@GLOBAL.gtid_binlog_pos")
        .await?
        .unwrap_or_default();
    copy::set_up_replica(&mut dst, new_from_old, old, name, &gtid).await?;
    dst.run(
        "starting the replica",
        &format!("START SLAVE {}", super::literal(name)),
    )
    .await?;
    tokio::join!(src.close(), dst.close());
    Ok(true)
}
