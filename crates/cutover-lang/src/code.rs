//! The language's diagnostic codes, one enum: each code's stable name and what
//! it means are written here and nowhere else, so `check`, `cutover explain`
//! and docs/language.md cannot drift apart. (The planner's lint codes live in
//! its rule registry.)

/// Declares [`Code`] from one table: variant, stable name, meaning.
macro_rules! codes {
    ($($variant:ident $name:literal $meaning:literal,)*) => {
        /// A fault the language reports, by its stable code.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Code {
            $($variant,)*
        }

        impl Code {
            /// Every code, in the order of the table.
            pub const ALL: &'static [Code] = &[$(Code::$variant,)*];

            /// The stable code, as shown in `error[CODE]` and in JSON.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Code::$variant => $name,)*
                }
            }

            /// What a finding with this code means, in one line.
            pub const fn meaning(self) -> &'static str {
                match self {
                    $(Code::$variant => $meaning,)*
                }
            }
        }
    };
}

codes! {
    UnknownName "unknown-name" "a host, group, zone, key or step that is not declared (with \"did you mean\")",
    DuplicateName "duplicate-name" "two items of one sort with one name, or a second `runbook` line",
    AfterCycle "after-cycle" "steps that wait for each other (`after`) in a cycle; the message shows the cycle's path",
    BadKindArgs "bad-kind-args" "a kind line that does not match its kind's syntax (the help shows the syntax)",
    UnknownKind "unknown-kind" "a word that is not a step kind where a kind line starts",
    UnknownKeyword "unknown-keyword" "a word that is not a keyword where an item or attribute line starts",
    MissingKind "missing-kind" "a step without a kind line saying what it does",
    ExtraKind "extra-kind" "a step with two kind lines; a step does one thing",
    BadUnit "bad-unit" "a duration, size or bandwidth without a unit, or with one that is not known",
    BadTime "bad-time" "a time that is not `T0`, `T-48h`, `T+2h` or `YYYY-MM-DD HH:MM UTC`",
    BadValue "bad-value" "a value that does not parse or cannot be right (a port, a TTL, a record value, a window of no length)",
    BadAddress "bad-address" "a host or DNS server address that is not an IP address",
    BadName "bad-name" "a name that is not letters, digits, `-` and `_` starting with a letter, or longer than 128 characters",
    BadSecret "bad-secret" "a key secret or a `db.sync` password that is not given as `env:VARIABLE` or `file:PATH`",
    SecretEnv "secret-env" "`exec ... env NAME` naming the variable a key's secret or a `db.sync` password is read from",
    BadVerifyKind "bad-verify-kind" "`verify` with a kind that cannot check (only port.open, port.closed, http.check and exec can)",
    BadUndoKind "bad-undo-kind" "an `undo` db.sync that is not the step's db.sync in reverse (its destination to its source)",
    FreezeCycle "freeze-cycle" "a `db.sync ... freeze STEP` whose freeze step waits for the `db.sync` itself",
    NoFallback "no-fallback" "a `db.unfollow STEP` whose STEP is not a `db.sync postgres|mysql` with an `undo` replicating back, or that does not wait (`after`) for STEP",
    GroupNotAllowed "group-not-allowed" "a group where one host is needed (a copy's end, `at`, `from`)",
    NestedGroup "nested-group" "a group listed in a group; groups list hosts",
    EmptyGroup "empty-group" "a group without hosts",
    MissingPrimary "missing-primary" "a zone without its `primary` server",
    MissingAttribute "missing-attribute" "a host without `addr` or `via`",
    MissingRunbook "missing-runbook" "a file set without a `runbook` line",
    DuplicateAttribute "duplicate-attribute" "an attribute (`timeout`, `title`, `addr`, ...) given twice",
    NoWindow "no-window" "a time relative to T0 in a runbook without a `window`",
    UnexpectedToken "unexpected-token" "a word out of place on its line",
    UnexpectedIndent "unexpected-indent" "an indented line that belongs to no item, or below an item that takes none",
    UnterminatedString "unterminated-string" "a string whose closing `\"` is missing",
    BadEscape "bad-escape" "an escape in a string other than `\\\"` and `\\\\`",
    LineTooLong "line-too-long" "a line longer than the language allows",
    ControlCharacter "control-character" "a control character (a NUL, an escape sequence) inside a string; a tab is allowed",
    EmptyFile "empty-file" "a runbook or included file with nothing in it",
    NotUtf8 "not-utf8" "a file that is not UTF-8 text",
    IoError "io-error" "a file that cannot be read (missing, a directory, no permission)",
    IncludeCycle "include-cycle" "files that include each other, or includes nested too deep",
    FileTooLarge "file-too-large" "a file larger than a runbook can be",
}

impl Code {
    /// The code with this stable name.
    pub fn from_name(name: &str) -> Option<Code> {
        Code::ALL.iter().copied().find(|c| c.as_str() == name)
    }
}

impl From<Code> for &'static str {
    fn from(code: Code) -> &'static str {
        code.as_str()
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::Code;

    #[test]
    fn names_are_distinct_and_found_again() {
        let mut seen = std::collections::HashSet::new();
        for &code in Code::ALL {
            assert!(seen.insert(code.as_str()), "{code} twice");
            assert_eq!(Code::from_name(code.as_str()), Some(code));
            assert!(!code.meaning().is_empty());
        }
        assert_eq!(Code::from_name("no-such-code"), None);
    }
}
