//! Replication back, for a fallback window: once the new database stands
//! alone, the old one follows it (a publication on the new server, a
//! subscription on the old one that copies nothing, since both sides were
//! just found equal), so going back loses no write made on the new side.
//! [`super::lag`], [`super::copy_sequences`] and [`super::stop`] serve it
//! as they serve replication forward, with the sides swapped.

use super::{Pg, conninfo, has_subscription, ident, literal, schema};
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
    let published = src
        .value(
            "the publication back",
            &format!(
                "SELECT pubname::text FROM pg_publication WHERE pubname = {}",
                literal(name)
            ),
        )
        .await?
        .is_some();
    if !published {
        let tables: Vec<String> = tables.iter().map(|t| t.qualified()).collect();
        src.execute(
            "creating the publication back",
            &format!(
                "CREATE PUBLICATION {} FOR TABLE {}",
                ident(name),
                tables.join(", ")
            ),
        )
        .await?;
    }
    src.rows(
        "a leftover replication slot",
        "SELECT pg_drop_replication_slot(slot_name)::text FROM pg_replication_slots WHERE slot_name = $1::text AND NOT active",
        &[name],
    )
    .await?;
    dst.execute(
        "creating the subscription back",
        &format!(
            "CREATE SUBSCRIPTION {} CONNECTION {} PUBLICATION {} WITH (copy_data = false)",
            ident(name),
            literal(&conninfo(new_from_old)),
            ident(name)
        ),
    )
    .await?;
    Ok(true)
}
