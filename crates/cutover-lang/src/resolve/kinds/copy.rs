//! The file-copy kinds: `image.copy` and the file part of `db.sync sqlite`,
//! both `HOST:/PATH -> HOST:/PATH [size SIZE]` between two single hosts;
//! an image copy may be held to `limit RATE`.

use super::super::Resolver;
use super::super::cursor::{Cursor, PResult, join, short};
use super::super::values::bad_unit;
use crate::code::Code;
use crate::diagnostic::Diagnostic;
use crate::model::*;
use crate::source::Span;
use crate::units::{Bandwidth, Size};

impl<'a> Resolver<'a> {
    /// `image.copy HOST:/PATH -> HOST:/PATH [size SIZE] [limit RATE]`,
    /// after the keyword.
    pub(super) fn image_copy(&mut self, cursor: &mut Cursor<'a>) -> PResult<ActionKind> {
        let (from, to, size) = self.file_copy(cursor, "image.copy")?;
        let limit = match cursor.eat("limit") {
            Some(_) => {
                let (text, span) = cursor.word("a rate like `20MB/s`")?;
                let limit = Bandwidth::parse(text).map_err(|m| bad_unit(m, span))?;
                if limit.0 < 8 {
                    return Err(Diagnostic::error(
                        Code::BadValue,
                        format!("a limit of `{text}` lets nothing through"),
                        span,
                    )
                    .with_help("give the most the copy may take, like `limit 20MB/s`"));
                }
                Some(limit)
            }
            None => None,
        };
        Ok(ActionKind::ImageCopy {
            from,
            to,
            size,
            limit,
        })
    }

    /// `HOST:/PATH -> HOST:/PATH [size SIZE]` of a copy of one file.
    pub(super) fn file_copy(
        &mut self,
        cursor: &mut Cursor<'a>,
        keyword: &str,
    ) -> PResult<(Endpoint, Endpoint, Option<Size>)> {
        let (from, from_span) = self.endpoint(cursor, keyword)?;
        cursor.arrow()?;
        let (to, to_span) = self.endpoint(cursor, keyword)?;
        if from == to {
            return Err(Diagnostic::error(
                Code::BadValue,
                "the source and the destination are the same file",
                join(from_span, to_span),
            )
            .with_help("copy to another host or another path"));
        }
        let size = match cursor.eat("size") {
            Some(_) => {
                let (text, span) = cursor.word("a size like `40G`")?;
                Some(Size::parse(text).map_err(|m| bad_unit(m, span))?)
            }
            None => None,
        };
        Ok((from, to, size))
    }

    fn endpoint(&self, cursor: &mut Cursor<'a>, kind: &str) -> PResult<(Endpoint, Span)> {
        let (word, span) = cursor.word("HOST:/PATH")?;
        let Some((host, path)) = word
            .split_once(':')
            .filter(|(h, p)| !h.is_empty() && p.starts_with('/'))
        else {
            return Err(Diagnostic::error(
                Code::BadKindArgs,
                format!("`{}` is not HOST:/PATH", short(word)),
                span,
            )
            .with_help(
                "name a host and an absolute path on it, like `wiki:/srv/images/wiki.img`",
            ));
        };
        let host_span = Span::new(span.file, span.start, span.start + host.len());
        let host = self.host_ref(host, host_span, kind)?;
        Ok((
            Endpoint {
                host,
                path: path.to_string(),
            },
            span,
        ))
    }
}
