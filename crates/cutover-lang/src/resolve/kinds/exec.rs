//! The `exec` kind: a command run on hosts or groups (or where cutover
//! runs), with the environment variables it is handed by name. It may also
//! follow `verify`, as a check the user writes.

use super::super::Resolver;
use super::super::cursor::{Cursor, PResult, short};
use super::super::values::is_env_name;
use crate::code::Code;
use crate::diagnostic::Diagnostic;
use crate::model::*;

impl<'a> Resolver<'a> {
    /// `exec [on HOST|GROUP, ...] "COMMAND" [env NAME, ...]`, after the keyword.
    pub(super) fn exec(&mut self, cursor: &mut Cursor<'a>) -> PResult<ActionKind> {
        let mut on = HostList::default();
        if cursor.eat("on").is_some() {
            on = HostList::new(cursor.list(|c| {
                let (name, span) = c.name("a host or group name")?;
                self.hosts_ref(name, span)
            })?);
        }
        let (command, command_span) = cursor.string("the command in double quotes")?;
        if command.trim().is_empty() {
            return Err(Diagnostic::error(
                Code::BadValue,
                "the command is empty",
                command_span,
            ));
        }
        let mut env = Vec::new();
        if cursor.eat("env").is_some() {
            let names = cursor.list(|c| {
                let (name, span) = c.word("an environment variable name")?;
                if !is_env_name(name) {
                    return Err(Diagnostic::error(
                        Code::BadName,
                        format!("`{}` is not an environment variable name", short(name)),
                        span,
                    )
                    .with_help("variable names are letters, digits and `_`, not starting with a digit: `env PGHOST, PGPORT`"));
                }
                Ok((name, span))
            })?;
            for (name, span) in names {
                if !env.iter().any(|n: &String| n == name) {
                    env.push(name.to_string());
                    self.exec_env.push((name.to_string(), span));
                }
            }
        }
        Ok(ActionKind::Exec { on, command, env })
    }
}
