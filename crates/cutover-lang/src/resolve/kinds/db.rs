//! The database kind, `db.sync`: a SQLite file copied like an image, or a
//! PostgreSQL or MySQL/MariaDB server replicated to another, with its
//! login (the password by reference only) and its freeze step; and
//! `db.unfollow`, which ends the fallback window such a step's undo opens.

use super::super::Resolver;
use super::super::cursor::{Cursor, PResult, join, short};
use super::super::values::{bad_unit, duplicate_attribute, parse_secret, port_number};
use crate::code::Code;
use crate::diagnostic::Diagnostic;
use crate::model::*;
use crate::source::Span;
use crate::units::Size;

impl<'a> Resolver<'a> {
    /// `db.sync sqlite|postgres|mysql ...`, after the keyword.
    pub(super) fn db_sync(&mut self, cursor: &mut Cursor<'a>) -> PResult<ActionKind> {
        let (engine, engine_span) =
            cursor.word("the database engine (`sqlite`, `postgres` or `mysql`)")?;
        match engine {
            "sqlite" => {}
            "postgres" => return self.db_replicate(ServerEngine::Postgres, cursor),
            "mysql" | "mariadb" => {
                return self.db_replicate(ServerEngine::Mysql, cursor);
            }
            _ => {
                return Err(Diagnostic::error(
                    Code::BadValue,
                    format!("unknown database engine `{}`", short(engine)),
                    engine_span,
                )
                .with_help(
                    "cutover syncs `sqlite`, `postgres` and `mysql` (MariaDB or MySQL) databases",
                ));
            }
        }
        let (from, to, size) = self.file_copy(cursor, "db.sync")?;
        Ok(ActionKind::DbSync {
            engine: DbEngine::Sqlite,
            from,
            to,
            size,
        })
    }

    fn db_replicate(&self, engine: ServerEngine, cursor: &mut Cursor<'a>) -> PResult<ActionKind> {
        let (from, from_span) = self.db_server(engine, cursor)?;
        cursor.arrow()?;
        let (to, to_span) = self.db_server(engine, cursor)?;
        if from.host == to.host && from.port == to.port {
            return Err(Diagnostic::error(
                Code::BadValue,
                "the source and the destination are the same server",
                join(from_span, to_span),
            )
            .with_help("replicate to another server (another host, or another port)"));
        }
        let mut freeze: Option<(StepId, Span)> = None;
        let mut size: Option<(Size, Span)> = None;
        while !cursor.at_end() {
            let (word, word_span) = cursor.word("`freeze STEP` or `size SIZE`")?;
            match word {
                "freeze" => {
                    let (name, name_span) = cursor.name("the step that stops the writers")?;
                    if let Some((_, first)) = freeze {
                        return Err(duplicate_attribute("freeze", word_span, first));
                    }
                    freeze = Some((self.step_ref(name, name_span)?, word_span));
                }
                "size" => {
                    let (text, span) = cursor.word("a size like `40G`")?;
                    if let Some((_, first)) = size {
                        return Err(duplicate_attribute("size", word_span, first));
                    }
                    size = Some((Size::parse(text).map_err(|m| bad_unit(m, span))?, word_span));
                }
                _ => {
                    return Err(Diagnostic::error(
                        Code::BadKindArgs,
                        format!("db.sync: unexpected `{}`", short(word)),
                        word_span,
                    )
                    .with_help("after the destination come `freeze STEP` and `size SIZE`"));
                }
            }
        }
        Ok(ActionKind::DbReplicate {
            engine,
            from,
            to,
            freeze: freeze.map(|(s, _)| s),
            size: size.map(|(s, _)| s),
        })
    }

    /// `db.unfollow STEP`, after the keyword (what STEP must be is
    /// checked once every step is built).
    pub(super) fn db_unfollow(&self, cursor: &mut Cursor<'a>) -> PResult<ActionKind> {
        let (name, span) = cursor.name("the db.sync step whose fallback window ends")?;
        Ok(ActionKind::DbUnfollow {
            step: self.step_ref(name, span)?,
        })
    }

    /// `HOST[:PORT]/DATABASE user USER [password SECRET-REF]`
    fn db_server(
        &self,
        engine: ServerEngine,
        cursor: &mut Cursor<'a>,
    ) -> PResult<(DbServer, Span)> {
        let (word, span) = cursor.word("HOST[:PORT]/DATABASE")?;
        let shape = || {
            Diagnostic::error(
                Code::BadKindArgs,
                format!("`{}` is not HOST[:PORT]/DATABASE", short(word)),
                span,
            )
            .with_help(format!(
                "name a host, optionally a port, and the database, like `db-old:{}/app`",
                engine.default_port()
            ))
        };
        let (place, database) = word.split_once('/').ok_or_else(shape)?;
        let database_ok = !database.is_empty()
            && database.len() <= 63
            && database
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '$'));
        if !database_ok {
            return Err(shape());
        }
        let (host, port) = match place.split_once(':') {
            Some((host, port)) => {
                let port_span = Span::new(
                    span.file,
                    span.start + host.len() + 1,
                    span.start + place.len(),
                );
                (host, port_number(port, port_span)?)
            }
            None => (place, engine.default_port()),
        };
        if host.is_empty() {
            return Err(shape());
        }
        let host_span = Span::new(span.file, span.start, span.start + host.len());
        let host = self.host_ref(host, host_span, "db.sync")?;
        let mut user: Option<(String, Span)> = None;
        let mut password: Option<(SecretRef, Span)> = None;
        let mut end = span;
        while let Some(word) = cursor.peek_word() {
            match word {
                "user" => {
                    let word_span = cursor.eat("user").unwrap_or(span);
                    let (name, name_span) = cursor.word("the user to log in as")?;
                    if let Some((_, first)) = user {
                        return Err(duplicate_attribute("user", word_span, first));
                    }
                    user = Some((name.to_owned(), word_span));
                    end = name_span;
                }
                "password" => {
                    let word_span = cursor.eat("password").unwrap_or(span);
                    let (text, text_span) = cursor.word("`env:VARIABLE` or `file:PATH`")?;
                    if let Some((_, first)) = password {
                        return Err(duplicate_attribute("password", word_span, first));
                    }
                    let secret = parse_secret(text, text_span).map_err(|d| {
                        d.with_help("write `password env:VARIABLE` or `password file:PATH`; never put a password itself in a runbook")
                    })?;
                    password = Some((secret, word_span));
                    end = text_span;
                }
                _ => break,
            }
        }
        let Some((user, _)) = user else {
            return Err(Diagnostic::error(
                Code::BadKindArgs,
                format!("db.sync: `{}` needs `user NAME`", short(word)),
                span,
            )
            .with_help("name the user to log in as, like `db-old/app user cutover password env:OLD_DB_PASSWORD`"));
        };
        Ok((
            DbServer {
                host,
                port,
                database: database.to_owned(),
                user,
                password: password.map(|(p, _)| p),
            },
            join(span, end),
        ))
    }
}
