//! Replication back, for a fallback window: once the new database stands
//! alone, the old one follows it (a publication on the new server, a
//! subscription on the old one that copies nothing, since both sides were
//! just found equal), so going back loses no write made on the new side.
//! [`super::lag`], [`super::copy_sequences`] and [`super::stop`] serve it
//! as they serve replication forward, with the sides swapped.

use super::{Pg, Subscription, has_subscription, publish_and_subscribe, schema};
use crate::{DbError, Server};

/// Sets replication `name` up from `new` to `old`, or finds it set up
/// (then `false`). `new_from_old` is how the old server reaches the new
/// one. Call it only while both hold the same data and nothing writes to
/// the new side (the new side's writes from then on are what it carries).
pub async fn start_back(
    new: &Server,
    new_from_old: &Server,
    old: &Server,
    name: &str,
) -> Result<bool, DbError> {
    let (src, dst) = tokio::try_join!(Pg::connect(new), Pg::connect(old))?;
    if has_subscription(&dst, name).await? {
        return Ok(false);
    }
    let tables = schema::read(&src).await?.tables;
    if tables.is_empty() {
        return Err(DbError::Unsupported {
            server: src.label().to_owned(),
            what: "the database has no tables to replicate back".into(),
        });
    }
    publish_and_subscribe(&src, &dst, &tables, new_from_old, name, Subscription::Back).await?;
    Ok(true)
}
