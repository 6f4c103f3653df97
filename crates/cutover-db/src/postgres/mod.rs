//! PostgreSQL: the schema is copied first (read from the catalog and
//! written in one transaction, so a crash leaves none or all of it), then
//! a publication on the source and a subscription on the destination copy
//! the existing rows and stream every later change while the source keeps
//! taking writes. The subscription's walsender on the source reports what
//! the destination has applied and flushed; the destination has caught up
//! when that reaches the source's current WAL position and every table's
//! initial copy is done. Sequence values, which logical replication does
//! not carry, are copied once it has; [`compare`] then checksums both
//! sides.
//!
//! Every step is idempotent and named after the `db.sync` step
//! ([`crate::replication_name`]): a resumed run finds its publication and
//! subscription and carries on with the same copy.

mod checksum;
mod fallback;
mod keys;
mod schema;

pub use checksum::compare;
pub use fallback::start_back;

use crate::{DbError, Lag, Problem, SequenceValue, Server};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls, Row};

/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// One open connection; its task says goodbye to the server and ends
/// when this is dropped.
pub(crate) struct Pg {
    client: Client,
    label: String,
}

impl Pg {
    pub(crate) async fn connect(server: &Server) -> Result<Pg, DbError> {
        let mut config = tokio_postgres::Config::new();
        config
            .host(&server.host)
            .port(server.port)
            .dbname(&server.database)
            .user(&server.user)
            .application_name("cutover")
            .connect_timeout(CONNECT_TIMEOUT);
        if let Some(password) = &server.password {
            config.password(password.expose());
        }
        let label = server.label();
        let (client, connection) = config.connect(NoTls).await.map_err(|err| {
            let reason = reason(&err);
            let login = err.as_db_error().is_some_and(|db| {
                *db.code() == SqlState::INVALID_PASSWORD
                    || *db.code() == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
            }) || reason.contains("password missing");
            if login {
                DbError::Login {
                    server: label.clone(),
                    user: server.user.clone(),
                    reason,
                }
            } else {
                DbError::Connect {
                    server: label.clone(),
                    reason,
                }
            }
        })?;
        tokio::spawn(async move {
            // A broken connection shows as the next statement's error.
            let _ = connection.await;
        });
        Ok(Pg { client, label })
    }

    /// Runs `sql` with text parameters; `what` names it in an error.
    pub(crate) async fn rows(
        &self,
        what: &str,
        sql: &str,
        params: &[&str],
    ) -> Result<Vec<Row>, DbError> {
        let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params
            .iter()
            .map(|p| p as &(dyn tokio_postgres::types::ToSql + Sync))
            .collect();
        self.client
            .query(sql, &params)
            .await
            .map_err(|err| self.error(what, &err))
    }

    pub(crate) async fn execute(&self, what: &str, sql: &str) -> Result<(), DbError> {
        self.client
            .batch_execute(sql)
            .await
            .map_err(|err| self.error(what, &err))
    }

    /// One text value.
    pub(crate) async fn value(&self, what: &str, sql: &str) -> Result<Option<String>, DbError> {
        let rows = self.rows(what, sql, &[]).await?;
        Ok(rows.first().and_then(|r| text(r, 0)))
    }

    pub(crate) fn error(&self, what: &str, err: &tokio_postgres::Error) -> DbError {
        DbError::Query {
            server: self.label.clone(),
            what: what.to_owned(),
            reason: reason(err),
        }
    }

    pub(crate) fn label(&self) -> &str {
        &self.label
    }
}

/// The server's own message when there is one.
fn reason(err: &tokio_postgres::Error) -> String {
    match err.as_db_error() {
        Some(db) => match db.detail() {
            Some(detail) => format!("{} ({detail})", db.message()),
            None => db.message().to_owned(),
        },
        None => {
            let mut text = err.to_string();
            let mut source = std::error::Error::source(err);
            while let Some(inner) = source {
                text = format!("{text}: {inner}");
                source = inner.source();
            }
            text
        }
    }
}

/// Column `i` as text (every query here selects text).
pub(crate) fn text(row: &Row, i: usize) -> Option<String> {
    row.try_get::<_, Option<String>>(i).ok().flatten()
}

/// `"name"` with inner quotes doubled.
pub(crate) fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `'text'` with inner quotes doubled.
pub(crate) fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Everything both servers need for replication, checked before anything
/// changes: all problems, each naming its setting.
pub async fn preflight(source: &Server, destination: &Server) -> Result<(), DbError> {
    let mut problems = Vec::new();
    let (src, dst) = tokio::join!(Pg::connect(source), Pg::connect(destination));
    let (src, dst) = match (src, dst) {
        (Ok(src), Ok(dst)) => (src, dst),
        (src, dst) => {
            for side in [src.err(), dst.err()].into_iter().flatten() {
                problems.push(crate::login_problem(side)?);
            }
            return Err(DbError::Preflight(problems));
        }
    };
    source_problems(&src, &mut problems).await?;
    destination_problems(&dst, &mut problems).await?;
    if problems.is_empty() {
        Ok(())
    } else {
        Err(DbError::Preflight(problems))
    }
}

async fn source_problems(src: &Pg, problems: &mut Vec<Problem>) -> Result<(), DbError> {
    let server = src.label().to_owned();
    let mut problem = |setting: &str, found: String, fix: String| {
        problems.push(Problem {
            server: server.clone(),
            setting: setting.to_owned(),
            found,
            fix,
        })
    };
    let wal_level = src.value("wal_level", "SHOW wal_level").await?;
    if wal_level.as_deref() != Some("logical") {
        problem(
            "wal_level",
            format!("`{}`", wal_level.unwrap_or_default()),
            "set `wal_level = logical` in postgresql.conf and restart the server".into(),
        );
    }
    let role = src
        .rows(
            "the user's privileges",
            "SELECT current_user::text, rolsuper::text, rolreplication::text FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .await?;
    let user = role.first().and_then(|r| text(r, 0)).unwrap_or_default();
    let superuser = role.first().and_then(|r| text(r, 1)).as_deref() == Some("true");
    let replication = role.first().and_then(|r| text(r, 2)).as_deref() == Some("true");
    if !superuser && !replication {
        problem(
            "the REPLICATION privilege",
            format!("missing for user `{user}`"),
            format!(
                "run `ALTER ROLE {} REPLICATION;` as a superuser",
                ident(&user)
            ),
        );
    }
    let settings = src
        .rows(
            "replication slots",
            "SELECT current_setting('max_replication_slots')::int::text, (SELECT count(*) FROM pg_replication_slots)::text, current_setting('max_wal_senders')::int::text",
            &[],
        )
        .await?;
    let number = |i: usize| {
        settings
            .first()
            .and_then(|r| text(r, i))
            .and_then(|t| t.parse::<u64>().ok())
            .unwrap_or(0)
    };
    if number(0) <= number(1) {
        problem(
            "max_replication_slots",
            format!("{} with {} in use", number(0), number(1)),
            format!(
                "set `max_replication_slots = {}` or more in postgresql.conf and restart the server",
                number(1) + 2
            ),
        );
    }
    if number(2) == 0 {
        problem(
            "max_wal_senders",
            "0".into(),
            "set `max_wal_senders = 10` in postgresql.conf and restart the server".into(),
        );
    }
    if !superuser {
        for row in src
            .rows(
                "table privileges",
                "SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE c.relkind = 'r' AND n.nspname NOT IN ('information_schema') AND n.nspname NOT LIKE 'pg\\_%' \
                 AND (NOT has_table_privilege(c.oid, 'SELECT') OR NOT pg_has_role(c.relowner, 'USAGE')) ORDER BY 1",
                &[],
            )
            .await?
        {
            let table = text(&row, 0).unwrap_or_default();
            problem(
                &format!("ownership of table {table}"),
                format!("another user's (a publication needs the owner or a superuser, `{user}` is neither)"),
                format!("run `ALTER TABLE {table} OWNER TO {};` or name a superuser", ident(&user)),
            );
        }
    }
    for row in src
        .rows(
            "replica identities",
            "SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind = 'r' AND n.nspname NOT IN ('information_schema') AND n.nspname NOT LIKE 'pg\\_%' \
             AND c.relreplident = 'd' AND NOT EXISTS (SELECT 1 FROM pg_index x WHERE x.indrelid = c.oid AND x.indisprimary) ORDER BY 1",
            &[],
        )
        .await?
    {
        let table = text(&row, 0).unwrap_or_default();
        problem(
            &format!("the replica identity of table {table}"),
            "the primary key, and the table has none (updates and deletes would be refused once it is published)".into(),
            format!("add a primary key, or run `ALTER TABLE {table} REPLICA IDENTITY FULL;`"),
        );
    }
    Ok(())
}

async fn destination_problems(dst: &Pg, problems: &mut Vec<Problem>) -> Result<(), DbError> {
    let rows = dst
        .rows(
            "the user's privileges",
            "SELECT current_user::text, rolsuper::text, current_setting('server_version_num'), \
             current_setting('max_logical_replication_workers'), \
             CASE WHEN current_setting('server_version_num')::int >= 160000 \
                  THEN pg_has_role('pg_create_subscription', 'MEMBER')::text ELSE 'false' END, \
             has_database_privilege(current_database(), 'CREATE')::text \
             FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .await?;
    let get = |i: usize| rows.first().and_then(|r| text(r, i)).unwrap_or_default();
    let server = dst.label().to_owned();
    let user = get(0);
    let superuser = get(1) == "true";
    let version: u32 = get(2).parse().unwrap_or(0);
    let may_subscribe = superuser || (get(4) == "true" && get(5) == "true");
    if !may_subscribe {
        let fix = if version >= 160000 {
            format!(
                "run `GRANT pg_create_subscription TO {0}; GRANT CREATE ON DATABASE {1} TO {0};` as a superuser",
                ident(&user),
                ident(
                    &dst.value("database", "SELECT current_database()::text")
                        .await?
                        .unwrap_or_default()
                )
            )
        } else {
            format!(
                "name a superuser, or run `ALTER ROLE {} SUPERUSER;` (PostgreSQL before 16 lets only superusers subscribe)",
                ident(&user)
            )
        };
        problems.push(Problem {
            server: server.clone(),
            setting: "the privilege to create a subscription".into(),
            found: format!("missing for user `{user}`"),
            fix,
        });
    }
    if get(3).parse::<u32>().unwrap_or(0) == 0 {
        problems.push(Problem {
            server,
            setting: "max_logical_replication_workers".into(),
            found: "0".into(),
            fix: "set `max_logical_replication_workers = 4` in postgresql.conf and restart the server".into(),
        });
    }
    Ok(())
}

/// What [`start`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Started {
    /// Tables created on the destination (0 when the schema was there).
    pub tables_created: usize,
    /// The tables replicated.
    pub tables: usize,
    pub publication_created: bool,
    pub subscription_created: bool,
}

/// Sets replication up, or finds it set up: the schema on the destination
/// (indexes other than constraints', foreign keys and a big table's keys
/// come with the initial copy's end, from [`create_indexes`]), the
/// publication on the source, the subscription (which starts the initial
/// copy) on the destination. `source_from_destination` is how the
/// destination's server reaches the source (usually `source` itself).
pub async fn start(
    source: &Server,
    source_from_destination: &Server,
    destination: &Server,
    name: &str,
) -> Result<Started, DbError> {
    let (src, dst) = tokio::try_join!(Pg::connect(source), Pg::connect(destination))?;
    let mut started = Started::default();
    let source_schema = schema::read(&src).await?;
    started.tables = source_schema.tables.len();
    if source_schema.tables.is_empty() {
        return Err(DbError::Unsupported {
            server: src.label().to_owned(),
            what: "the database has no tables to replicate".into(),
        });
    }
    if has_subscription(&dst, name).await? {
        return Ok(started);
    }
    let deferred = keys::deferred(&src, &source_schema).await?;
    started.tables_created = schema::create_missing(&source_schema, &dst, &deferred).await?;

    started.publication_created = publish_and_subscribe(
        &src,
        &dst,
        &source_schema.tables,
        source_from_destination,
        name,
        Subscription::CopyingData,
    )
    .await?;
    started.subscription_created = true;
    Ok(started)
}

/// What a subscription made by [`publish_and_subscribe`] does with the rows
/// the publication's tables already hold.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Subscription {
    /// Copies them (replication forward: the destination starts empty).
    CopyingData,
    /// Copies nothing (replication back: both sides were just found equal).
    Back,
}

/// Publishes `tables` on `src` as `name` (unless a publication of that
/// name exists) and subscribes `dst` to it through `src_from_dst`, the way
/// `dst`'s server reaches `src`. Returns whether the publication was made.
pub(super) async fn publish_and_subscribe(
    src: &Pg,
    dst: &Pg,
    tables: &[schema::Table],
    src_from_dst: &Server,
    name: &str,
    kind: Subscription,
) -> Result<bool, DbError> {
    let (back, copy_data) = match kind {
        Subscription::CopyingData => ("", "true"),
        Subscription::Back => (" back", "false"),
    };
    let published = src
        .value(
            &format!("the publication{back}"),
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
            &format!("creating the publication{back}"),
            &format!(
                "CREATE PUBLICATION {} FOR TABLE {}",
                ident(name),
                tables.join(", ")
            ),
        )
        .await?;
    }
    // A subscription whose creation was cut short can leave its slot on
    // the source; an idle one of this name is ours to replace.
    src.rows(
        "a leftover replication slot",
        "SELECT pg_drop_replication_slot(slot_name)::text FROM pg_replication_slots WHERE slot_name = $1::text AND NOT active",
        &[name],
    )
    .await?;
    dst.execute(
        &format!("creating the subscription{back}"),
        &format!(
            "CREATE SUBSCRIPTION {} CONNECTION {} PUBLICATION {} WITH (copy_data = {copy_data})",
            ident(name),
            literal(&conninfo(src_from_dst)),
            ident(name)
        ),
    )
    .await?;
    Ok(!published)
}

/// A libpq connection string for the destination's server to reach the
/// source (the password, if any, goes to that server only). No
/// `application_name`: the source's walsender then carries the
/// subscription's name, which [`lag`] looks for.
fn conninfo(server: &Server) -> String {
    let quote = |v: &str| format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"));
    let mut text = format!(
        "host={} port={} dbname={} user={}",
        quote(&server.host),
        server.port,
        quote(&server.database),
        quote(&server.user),
    );
    if let Some(password) = &server.password {
        text.push_str(&format!(" password={}", quote(password.expose())));
    }
    text
}

/// Builds what waits for the initial copy (see `start`) as it falls due:
/// a big table's primary key and unique constraints as its copy ends
/// (queued behind it while it runs, without waiting here), indexes and
/// foreign keys once every table is copied. Call it at every look at the
/// copy. Returns how many were built by this call (0 when nothing was
/// due or all are there).
pub async fn create_indexes(source: &Server, destination: &Server) -> Result<usize, DbError> {
    let (src, dst) = tokio::try_join!(Pg::connect(source), Pg::connect(destination))?;
    let source_schema = schema::read(&src).await?;
    keys::build(&source_schema, &dst, destination).await
}

/// Whether the destination has the subscription `name`.
pub async fn is_replicating(destination: &Server, name: &str) -> Result<bool, DbError> {
    let dst = Pg::connect(destination).await?;
    has_subscription(&dst, name).await
}

async fn has_subscription(dst: &Pg, name: &str) -> Result<bool, DbError> {
    Ok(!dst
        .rows(
            "the subscription",
            "SELECT subname::text FROM pg_subscription WHERE subname = $1::text",
            &[name],
        )
        .await?
        .is_empty())
}

/// Where replication `name` stands; `None` when the destination has no
/// such subscription.
pub async fn lag(
    source: &Server,
    destination: &Server,
    name: &str,
) -> Result<Option<Lag>, DbError> {
    let (src, dst) = tokio::try_join!(Pg::connect(source), Pg::connect(destination))?;
    // Nothing here opens a destination table: a table's keys may be
    // queued behind its copy, and whatever opens it would queue too.
    let states = dst
        .rows(
            "the subscription's tables",
            "SELECT n.nspname::text, c.relname::text, r.srsubstate::text, \
               (SELECT max(p.bytes_processed) FROM pg_stat_progress_copy p WHERE p.relid = r.srrelid)::text \
             FROM pg_subscription_rel r JOIN pg_subscription s ON s.oid = r.srsubid \
             JOIN pg_class c ON c.oid = r.srrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE s.subname = $1::text",
            &[name],
        )
        .await?;
    if !has_subscription(&dst, name).await? {
        return Ok(None);
    }
    let source_rows = src
        .rows(
            "the WAL position",
            "SELECT pg_current_wal_lsn()::text, \
               (SELECT flush_lsn::text FROM pg_stat_replication WHERE application_name = $1::text ORDER BY flush_lsn DESC NULLS LAST LIMIT 1), \
               (SELECT greatest(0, pg_wal_lsn_diff(pg_current_wal_lsn(), flush_lsn))::bigint::text FROM pg_stat_replication WHERE application_name = $1::text ORDER BY flush_lsn DESC NULLS LAST LIMIT 1), \
               (SELECT extract(epoch FROM coalesce(flush_lag, '0'::interval))::float8::text FROM pg_stat_replication WHERE application_name = $1::text ORDER BY flush_lsn DESC NULLS LAST LIMIT 1)",
            &[name],
        )
        .await?;
    let sizes: BTreeMap<(String, String), u64> = src
        .rows(
            "the tables' sizes",
            "SELECT p.schemaname::text, p.tablename::text, pg_table_size(c.oid)::text FROM pg_publication_tables p \
             JOIN pg_namespace n ON n.nspname = p.schemaname JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = p.tablename \
             WHERE p.pubname = $1::text",
            &[name],
        )
        .await?
        .iter()
        .map(|r| {
            let size = text(r, 2).and_then(|t| t.parse().ok()).unwrap_or(0);
            ((text(r, 0).unwrap_or_default(), text(r, 1).unwrap_or_default()), size)
        })
        .collect();
    let row = source_rows.first();
    let get = |i: usize| row.and_then(|r| text(r, i));
    let number = |t: &Option<String>| t.as_deref().and_then(|t| t.parse::<u64>().ok());
    // A copied table counts as its size on the source; one being copied
    // as the bytes its copy has read so far.
    let copied_bytes = states
        .iter()
        .map(|r| {
            let size = sizes
                .get(&(
                    text(r, 0).unwrap_or_default(),
                    text(r, 1).unwrap_or_default(),
                ))
                .copied()
                .unwrap_or(0);
            match text(r, 2).as_deref() {
                Some("f" | "s" | "r") => size,
                Some("d") => number(&text(r, 3)).unwrap_or(0).min(size),
                _ => 0,
            }
        })
        .sum();
    Ok(Some(Lag {
        tables: states.len(),
        tables_ready: states
            .iter()
            .filter(|r| text(r, 2).as_deref() == Some("r"))
            .count(),
        source_bytes: sizes.values().sum(),
        copied_bytes,
        source_position: get(0).unwrap_or_default(),
        applied_position: get(1),
        lag_bytes: number(&get(2)),
        lag_seconds: get(3).and_then(|t| t.parse::<f64>().ok()),
        lag_transactions: None,
    }))
}

/// Sets every sequence of the destination to the source's value.
pub async fn copy_sequences(
    source: &Server,
    destination: &Server,
) -> Result<Vec<SequenceValue>, DbError> {
    let (src, dst) = tokio::try_join!(Pg::connect(source), Pg::connect(destination))?;
    let mut copied = Vec::new();
    for sequence in schema::sequences(&src).await? {
        let rows = src
            .rows(
                "a sequence value",
                &format!(
                    "SELECT last_value::text, is_called::text FROM {}",
                    sequence.qualified()
                ),
                &[],
            )
            .await?;
        let Some(row) = rows.first() else { continue };
        let value: i64 = text(row, 0).and_then(|t| t.parse().ok()).unwrap_or(1);
        let called = text(row, 1).as_deref() == Some("true");
        dst.execute(
            "setting a sequence",
            &format!(
                "SELECT setval({}, {value}, {called})",
                literal(&sequence.qualified())
            ),
        )
        .await?;
        copied.push(SequenceValue {
            sequence: format!("{}.{}", sequence.schema, sequence.name),
            value,
        });
    }
    Ok(copied)
}

/// Takes replication `name` down: the subscription (and with it the slot
/// on the source) and the publication. Nothing there is not an error.
pub async fn stop(source: &Server, destination: &Server, name: &str) -> Result<(), DbError> {
    let dst = Pg::connect(destination).await?;
    dst.execute(
        "dropping the subscription",
        &format!("DROP SUBSCRIPTION IF EXISTS {}", ident(name)),
    )
    .await?;
    let src = Pg::connect(source).await?;
    src.execute(
        "dropping the publication",
        &format!("DROP PUBLICATION IF EXISTS {}", ident(name)),
    )
    .await?;
    src.rows(
        "a leftover replication slot",
        "SELECT pg_drop_replication_slot(slot_name)::text FROM pg_replication_slots WHERE slot_name = $1::text AND NOT active",
        &[name],
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conninfo_quotes_values() {
        let server = Server {
            host: "127.0.0.1".into(),
            port: 5432,
            database: "app's".into(),
            user: "u".into(),
            password: Some(crate::Password::new("p'w\\")),
        };
        assert_eq!(
            conninfo(&server),
            "host='127.0.0.1' port=5432 dbname='app\\'s' user='u' password='p\\'w\\\\'"
        );
    }

    #[test]
    fn quoting() {
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(literal("it's"), "'it''s'");
    }
}
