//! MariaDB and MySQL: what replication needs, checked before anything
//! runs. The source must write a row-based binary log (`log_bin`,
//! `binlog_format = ROW`) under a `server_id` of its own, and its user must
//! be allowed to read it (`REPLICATION SLAVE`, `SELECT`); the destination
//! needs another `server_id` and a user that may set up replication.
//! (Replication itself is not built yet: see docs/databases.md.)

use crate::{DbError, Problem, Server};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder};
use std::time::Duration;

/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// MySQL's "access denied" error codes (wrong password, unknown user).
const ACCESS_DENIED: [u16; 2] = [1045, 1698];

async fn connect(server: &Server) -> Result<Conn, DbError> {
    let options = OptsBuilder::default()
        .ip_or_hostname(server.host.clone())
        .tcp_port(server.port)
        .user(Some(server.user.clone()))
        .pass(server.password.as_ref().map(|p| p.expose().to_owned()))
        .db_name(Some(server.database.clone()))
        .prefer_socket(false);
    let label = server.label();
    match tokio::time::timeout(CONNECT_TIMEOUT, Conn::new(options)).await {
        Err(_) => Err(DbError::Connect {
            server: label,
            reason: format!("no answer within {}s", CONNECT_TIMEOUT.as_secs()),
        }),
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(mysql_async::Error::Server(err))) if ACCESS_DENIED.contains(&err.code) => {
            Err(DbError::Login {
                server: label,
                user: server.user.clone(),
                reason: err.message,
            })
        }
        Ok(Err(err)) => Err(DbError::Connect {
            server: label,
            reason: err.to_string(),
        }),
    }
}

async fn values(
    conn: &mut Conn,
    label: &str,
    what: &str,
    sql: &str,
) -> Result<Vec<Option<String>>, DbError> {
    let row: Option<mysql_async::Row> =
        conn.query_first(sql).await.map_err(|err| DbError::Query {
            server: label.to_owned(),
            what: what.to_owned(),
            reason: err.to_string(),
        })?;
    Ok(row
        .map(|row| {
            (0..row.len())
                .map(|i| {
                    row.get_opt::<Option<String>, _>(i)
                        .and_then(|v| v.ok())
                        .flatten()
                })
                .collect()
        })
        .unwrap_or_default())
}

/// The current user's global privileges.
async fn privileges(conn: &mut Conn, label: &str) -> Result<Vec<String>, DbError> {
    conn.query(
        "SELECT PRIVILEGE_TYPE FROM information_schema.USER_PRIVILEGES WHERE GRANTEE = \
         CONCAT('''', SUBSTRING_INDEX(CURRENT_USER(), '@', 1), '''@''', SUBSTRING_INDEX(CURRENT_USER(), '@', -1), '''')",
    )
    .await
    .map_err(|err| DbError::Query {
        server: label.to_owned(),
        what: "the user's privileges".into(),
        reason: err.to_string(),
    })
}

/// Everything both servers need for replication: all problems, each
/// naming its setting.
pub async fn preflight(source: &Server, destination: &Server) -> Result<(), DbError> {
    let (src, dst) = tokio::join!(connect(source), connect(destination));
    let (mut src, mut dst) = match (src, dst) {
        (Ok(src), Ok(dst)) => (src, dst),
        (src, dst) => {
            let mut problems = Vec::new();
            for side in [src.err(), dst.err()].into_iter().flatten() {
                problems.push(crate::login_problem(side)?);
            }
            return Err(DbError::Preflight(problems));
        }
    };
    let (source_label, destination_label) = (source.label(), destination.label());
    let mut problems = Vec::new();
    let mut problem = |server: &str, setting: &str, found: String, fix: String| {
        problems.push(Problem {
            server: server.to_owned(),
            setting: setting.to_owned(),
            found,
            fix,
        })
    };
    let settings = values(
        &mut src,
        &source_label,
        "the binary log settings",
        "SELECT CAST(@@log_bin AS CHAR), @@binlog_format, CAST(@@server_id AS CHAR)",
    )
    .await?;
    let get = |v: &[Option<String>], i: usize| v.get(i).cloned().flatten().unwrap_or_default();
    let log_bin = get(&settings, 0);
    if log_bin != "1" && !log_bin.eq_ignore_ascii_case("ON") {
        problem(&source_label, "log_bin", format!("off (`{log_bin}`)"), "add `log_bin` to the [mariadbd] (or [mysqld]) section of the server's configuration and restart it".into());
    }
    if !get(&settings, 1).eq_ignore_ascii_case("ROW") {
        problem(&source_label, "binlog_format", format!("`{}`", get(&settings, 1)), "set `binlog_format = ROW` in the server's configuration and restart it (or `SET GLOBAL binlog_format = ROW`)".into());
    }
    let source_id = get(&settings, 2);
    if source_id == "0" {
        problem(
            &source_label,
            "server_id",
            "0".into(),
            "set a `server_id` other than 0 in the server's configuration and restart it".into(),
        );
    }
    let granted = privileges(&mut src, &source_label).await?;
    for needed in ["REPLICATION SLAVE", "SELECT"] {
        if !granted.iter().any(|g| g == needed) {
            problem(
                &source_label,
                &format!("the {needed} privilege"),
                format!("missing for user `{}`", source.user),
                format!("run `GRANT {needed} ON *.* TO ...` for the user as an administrator"),
            );
        }
    }
    let destination_id = get(
        &values(
            &mut dst,
            &destination_label,
            "the server id",
            "SELECT CAST(@@server_id AS CHAR)",
        )
        .await?,
        0,
    );
    if destination_id == source_id || destination_id == "0" {
        problem(
            &destination_label,
            "server_id",
            format!("{destination_id}, the same as the source's"),
            format!(
                "set a `server_id` other than 0 and {source_id} in the server's configuration and restart it"
            ),
        );
    }
    let granted = privileges(&mut dst, &destination_label).await?;
    if !granted
        .iter()
        .any(|g| g == "SUPER" || g == "REPLICATION SLAVE ADMIN")
    {
        problem(&destination_label, "the REPLICATION SLAVE ADMIN privilege", format!("missing for user `{}`", destination.user), "run `GRANT REPLICATION SLAVE ADMIN ON *.* TO ...` (SUPER on MySQL) for the user as an administrator".into());
    }
    let _ = tokio::join!(src.disconnect(), dst.disconnect());
    if problems.is_empty() {
        Ok(())
    } else {
        Err(DbError::Preflight(problems))
    }
}
