//! The kinds that hold the run: `manual` (a person does something and
//! confirms it) and `wait` (a duration, or until a time).

use super::super::Resolver;
use super::super::cursor::{Cursor, PResult};
use super::super::values::{duration_word, parse_time};
use crate::code::Code;
use crate::diagnostic::Diagnostic;
use crate::model::*;
use crate::units::TimeSpec;

impl<'a> Resolver<'a> {
    /// `manual "INSTRUCTIONS"`, after the keyword.
    pub(super) fn manual(&mut self, cursor: &mut Cursor<'a>) -> PResult<ActionKind> {
        let (instructions, span) = cursor.string("the instructions in double quotes")?;
        if instructions.trim().is_empty() {
            return Err(
                Diagnostic::error(Code::BadValue, "the instructions are empty", span)
                    .with_help("say what the person must do and confirm"),
            );
        }
        Ok(ActionKind::Manual { instructions })
    }

    /// `wait DURATION` or `wait until TIME`, after the keyword.
    pub(super) fn wait(&mut self, cursor: &mut Cursor<'a>) -> PResult<ActionKind> {
        Ok(if cursor.eat("until").is_some() {
            let (time, span) = parse_time(cursor)?;
            if matches!(time, TimeSpec::Relative(_)) {
                self.relative_times.push(span);
            }
            ActionKind::Wait(WaitFor::Until(time))
        } else {
            ActionKind::Wait(WaitFor::Duration(duration_word(
                cursor,
                "a duration like `5m`, or `until TIME`",
            )?))
        })
    }
}
