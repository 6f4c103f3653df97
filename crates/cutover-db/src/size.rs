//! How much data a database holds, so `plan --probe` can estimate a
//! replicating `db.sync`'s bulk copy from the source's real size: what the
//! server reports it stores for the database (tables and their indexes).

use crate::mysql::My;
use crate::postgres::Pg;
use crate::{DbError, Server};

/// PostgreSQL: `pg_database_size` of the server's database, in bytes.
pub async fn postgres(server: &Server) -> Result<u64, DbError> {
    let pg = Pg::connect(server).await?;
    let value = pg
        .value(
            "the database's size",
            "SELECT pg_database_size(current_database())::text",
        )
        .await?;
    bytes(&server.label(), value)
}

/// MariaDB/MySQL: the data and index lengths of the database's tables, in bytes.
pub async fn mysql(server: &Server) -> Result<u64, DbError> {
    let mut my = My::connect(server).await?;
    let value = my
        .value(
            "the database's size",
            "SELECT CAST(COALESCE(SUM(data_length + index_length), 0) AS CHAR) \
             FROM information_schema.tables WHERE table_schema = DATABASE()",
        )
        .await;
    my.close().await;
    bytes(&server.label(), value?)
}

fn bytes(server: &str, value: Option<String>) -> Result<u64, DbError> {
    value
        .as_deref()
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| DbError::Query {
            server: server.to_owned(),
            what: "the database's size".to_owned(),
            reason: format!("not a number of bytes: {value:?}"),
        })
}
