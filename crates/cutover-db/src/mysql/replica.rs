//! The destination's replica connection: where it stands against the
//! source (GTIDs compared, domain by domain: the destination has caught
//! up when it has applied every transaction the source's binary log
//! holds), the auto-increment counters replication leaves behind, and
//! taking it down.

use super::{My, NamedRow, field, literal, schema};
use crate::{DbError, Lag, SequenceValue, Server};
use std::collections::BTreeMap;

/// The replica connection `name`'s `SHOW ALL SLAVES STATUS` row.
pub(crate) async fn status(dst: &mut My, name: &str) -> Result<Option<NamedRow>, DbError> {
    Ok(dst
        .named_rows("the replica connections", "SHOW ALL SLAVES STATUS")
        .await?
        .into_iter()
        .find(|row| field(row, "Connection_name") == Some(name)))
}

/// Whether the connection was ever started (its copy is then done).
pub(crate) fn has_started(row: &NamedRow) -> bool {
    let is = |name: &str, value: &str| field(row, name).unwrap_or_default() == value;
    !is("Slave_IO_Running", "No")
        || is("Slave_SQL_Running", "Yes")
        || !is("Master_Log_File", "")
        || !is("Last_IO_Errno", "0")
        || !is("Last_SQL_Errno", "0")
}

/// Whether the destination has the replica connection `name`.
pub async fn is_replicating(destination: &Server, name: &str) -> Result<bool, DbError> {
    let mut dst = My::connect(destination).await?;
    let found = status(&mut dst, name).await?.is_some();
    dst.close().await;
    Ok(found)
}

/// `domain-server-sequence,...` as domain -> sequence.
fn gtids(list: &str) -> BTreeMap<u32, u64> {
    list.split(',')
        .filter_map(|gtid| {
            let mut parts = gtid.trim().split('-');
            let domain = parts.next()?.parse().ok()?;
            let _server = parts.next()?;
            let sequence = parts.next()?.parse().ok()?;
            Some((domain, sequence))
        })
        .collect()
}

/// Transactions `written` holds that `applied` does not, domain by domain.
pub(crate) fn transactions_behind(written: &str, applied: &str) -> u64 {
    let applied = gtids(applied);
    gtids(written)
        .into_iter()
        .map(|(domain, sequence)| {
            sequence.saturating_sub(applied.get(&domain).copied().unwrap_or(0))
        })
        .sum()
}

async fn data_bytes(my: &mut My) -> Result<u64, DbError> {
    Ok(my
        .value(
            "the data size",
            "SELECT CAST(COALESCE(SUM(DATA_LENGTH), 0) AS CHAR) FROM information_schema.TABLES \
             WHERE TABLE_SCHEMA = DATABASE() AND TABLE_TYPE = 'BASE TABLE'",
        )
        .await?
        .and_then(|v| v.parse().ok())
        .unwrap_or(0))
}

/// Where replication `name` stands; `None` when the destination has no
/// such connection. A connection stopped by an error is an error naming
/// it.
pub async fn lag(
    source: &Server,
    destination: &Server,
    name: &str,
) -> Result<Option<Lag>, DbError> {
    let (mut src, mut dst) = tokio::try_join!(My::connect(source), My::connect(destination))?;
    let Some(row) = status(&mut dst, name).await? else {
        tokio::join!(src.close(), dst.close());
        return Ok(None);
    };
    for (running, error) in [
        ("Slave_IO_Running", "Last_IO_Error"),
        ("Slave_SQL_Running", "Last_SQL_Error"),
    ] {
        let reason = field(&row, error).unwrap_or_default();
        if field(&row, running) == Some("No") && !reason.is_empty() {
            return Err(DbError::Stopped {
                server: dst.label().to_owned(),
                reason: reason.to_owned(),
            });
        }
    }
    let written = src
        .value("the source's GTIDs", "SELECT @@GLOBAL.gtid_binlog_pos")
        .await?
        .unwrap_or_default();
    // Needs BINLOG MONITOR; the bytes are a figure, the GTIDs decide.
    let master = src
        .rows("the source's binary log", "SHOW MASTER STATUS")
        .await
        .ok()
        .and_then(|rows| rows.into_iter().next());
    let tables = schema::read(&mut src).await?.len();
    let source_bytes = data_bytes(&mut src).await?;
    let copied_bytes = data_bytes(&mut dst).await?;
    let applied = dst
        .value("the applied GTIDs", "SELECT @@GLOBAL.gtid_slave_pos")
        .await?
        .unwrap_or_default();
    tokio::join!(src.close(), dst.close());
    let lag_bytes = master.and_then(|m| {
        let file = m.first().cloned().flatten()?;
        let position: u64 = m.get(1).cloned().flatten()?.parse().ok()?;
        let executed: u64 = field(&row, "Exec_Master_Log_Pos")?.parse().ok()?;
        (field(&row, "Relay_Master_Log_File") == Some(file.as_str()))
            .then(|| position.saturating_sub(executed))
    });
    Ok(Some(Lag {
        tables,
        tables_ready: if has_started(&row) { tables } else { 0 },
        source_bytes,
        copied_bytes,
        lag_transactions: Some(transactions_behind(&written, &applied)),
        source_position: written,
        applied_position: Some(applied),
        lag_bytes,
        lag_seconds: field(&row, "Seconds_Behind_Master").and_then(|s| s.parse().ok()),
    }))
}

/// Raises each destination table's next auto-increment value to the
/// source's where it is lower (a copy leaves it after the highest key
/// copied, the source's may be past rows since deleted); returns the
/// source's values.
pub async fn copy_auto_increments(
    source: &Server,
    destination: &Server,
) -> Result<Vec<SequenceValue>, DbError> {
    let (mut src, mut dst) = tokio::try_join!(My::connect(source), My::connect(destination))?;
    let (theirs, ours) = (schema::read(&mut src).await?, schema::read(&mut dst).await?);
    let _ = dst.run("not logging", "SET SESSION sql_log_bin = 0").await;
    let mut values = Vec::new();
    for table in &theirs {
        let Some(next) = table.auto_increment else {
            continue;
        };
        let current = ours
            .iter()
            .find(|t| t.name == table.name)
            .and_then(|t| t.auto_increment);
        if current.is_some_and(|c| c < next) {
            dst.run(
                "setting an auto-increment value",
                &format!("ALTER TABLE {} AUTO_INCREMENT = {next}", table.qualified()),
            )
            .await?;
        }
        values.push(SequenceValue {
            sequence: format!("{}.{} AUTO_INCREMENT", source.database, table.name),
            value: i64::try_from(next).unwrap_or(i64::MAX),
        });
    }
    tokio::join!(src.close(), dst.close());
    Ok(values)
}

/// Takes replication `name` down: the replica connection stops and is
/// forgotten, and the destination applies changes strictly again. Nothing
/// there is not an error.
pub async fn stop(destination: &Server, name: &str) -> Result<(), DbError> {
    let mut dst = My::connect(destination).await?;
    if status(&mut dst, name).await?.is_some() {
        dst.run(
            "stopping the replica",
            &format!("STOP SLAVE {}", literal(name)),
        )
        .await?;
        dst.run(
            "removing the replica",
            &format!("RESET SLAVE {} ALL", literal(name)),
        )
        .await?;
    }
    dst.run(
        "applying changes strictly",
        "SET GLOBAL slave_exec_mode = 'STRICT'",
    )
    .await?;
    dst.close().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transactions_behind_compares_domains() {
        assert_eq!(transactions_behind("0-1-100", "0-1-100"), 0);
        assert_eq!(transactions_behind("0-1-100", "0-1-93"), 7);
        assert_eq!(transactions_behind("0-1-100,1-1-5", "0-1-100"), 5);
        assert_eq!(transactions_behind("0-1-100", ""), 100);
        assert_eq!(transactions_behind("", "0-1-3"), 0);
    }
}
