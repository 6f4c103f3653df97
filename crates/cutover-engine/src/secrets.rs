//! Masking known secrets before anything is stored.
//!
//! A run or rollback reads the secret of every key of its runbook that can
//! be read, and every database password a `db.sync` points to (`env:VAR`
//! or `file:PATH`, as [`read_secret`] reads them; a key
//! whose secret cannot be read is skipped: nothing can print it either,
//! and the step that needs it fails on its own) into a [`Secrets`]. Every
//! event message and data, and every evidence summary and data, written
//! through [`SharedState`](crate::SharedState) passes through
//! [`Secrets::mask`] first, so command output that printed a secret keeps
//! `[secret KEYNAME]` in its place in the state file, and therefore in
//! `status`, `export` and `serve`.
//!
//! What counts as a key's secret, each masked on its own:
//! - the text as read (trimmed), e.g. the base64 of an `env:` variable or
//!   the whole of a `file:` key file;
//! - the value of every `secret "..."` in it (a BIND key file);
//! - each of those with whitespace removed, when that differs;
//! - the base64 decoding of each, when it is valid UTF-8 of at least
//!   [`MIN_DECODED`] characters (a secret written base64-encoded into a
//!   variable and decoded by a script).
//!
//! The rule against false positives: a value of at least [`MIN_ANYWHERE`]
//! characters is masked wherever it occurs, even inside a longer word (a
//! base64 secret glued to other text). A shorter value, which only a
//! careless test key has, is masked only as a whole word (not touching a
//! letter, digit, `+`, `/`, `_` or `-` on either side; `NAME=abc` is
//! masked), so a key `abc` does not turn every `abcdef` into a mask. Longer values are
//! matched first; the text of a mask already in place is never masked
//! again. A value of fewer than [`MIN_VALUE`] characters is not masked at
//! all: masking every `a` would destroy the log and hide nothing.
//!
//! Neither `Debug` nor any message of this module shows a secret.

use cutover_lang::{ActionKind, KeyId, Runbook, SecretRef};
use serde_json::Value;
use std::path::Path;

/// Values at least this long are masked anywhere, even inside a word.
pub const MIN_ANYWHERE: usize = 6;

/// Values shorter than this are not masked (see the module doc).
pub const MIN_VALUE: usize = 2;

/// A decoded secret is masked too when it is at least this many characters.
pub const MIN_DECODED: usize = 8;

const MARK_OPEN: &str = "[secret ";

/// The text of a key's secret (`env:VAR` or `file:PATH` relative to
/// `runbook_dir`, trimmed). The error names the key and where its secret
/// was looked for, never the secret.
pub fn read_secret(runbook: &Runbook, runbook_dir: &Path, key: KeyId) -> anyhow::Result<String> {
    let key = runbook.key(key);
    read_secret_ref(
        &key.secret,
        runbook_dir,
        &format!("the secret of key `{}`", key.name),
    )
}

/// The text of any secret reference (`env:VAR` or `file:PATH` relative to
/// `runbook_dir`, trimmed); `what` names it in the error, e.g. "the
/// password of db-old:5432/app".
pub fn read_secret_ref(
    secret: &SecretRef,
    runbook_dir: &Path,
    what: &str,
) -> anyhow::Result<String> {
    match secret {
        SecretRef::Env(var) => match std::env::var(var) {
            Ok(value) if !value.trim().is_empty() => Ok(value.trim().to_owned()),
            _ => anyhow::bail!("{what} is read from environment variable {var}, which is not set"),
        },
        SecretRef::File(path) => {
            let path = runbook_dir.join(path);
            std::fs::read_to_string(&path)
                .map(|text| text.trim().to_owned())
                .map_err(|e| anyhow::anyhow!("cannot read {what} from {}: {e}", path.display()))
        }
    }
}

/// Every database password a `db.sync` of `runbook` points to (its kind
/// line or `undo`), each reference once.
fn database_passwords(runbook: &Runbook) -> Vec<&SecretRef> {
    let mut found: Vec<&SecretRef> = Vec::new();
    for step in &runbook.steps {
        for action in std::iter::once(&step.action).chain(step.undo.as_ref()) {
            if let ActionKind::DbReplicate { from, to, .. } = &action.kind {
                for secret in [&from.password, &to.password].into_iter().flatten() {
                    if !found.contains(&secret) {
                        found.push(secret);
                    }
                }
            }
        }
    }
    found
}

/// Every known secret value and the mask that replaces it.
#[derive(Default, Clone)]
pub struct Secrets {
    /// (value, mask), longest value first.
    values: Vec<(String, String)>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secrets({} values)", self.values.len())
    }
}

impl Secrets {
    /// No secrets: masking changes nothing.
    pub fn none() -> Secrets {
        Secrets::default()
    }

    /// The secrets of every key of `runbook` that can be read now.
    pub fn of_runbook(runbook: &Runbook, runbook_dir: &Path) -> Secrets {
        let mut secrets = Secrets::none();
        for (i, key) in runbook.keys.iter().enumerate() {
            if let Ok(text) = read_secret(runbook, runbook_dir, KeyId(i)) {
                secrets.add(&key.name, &text);
            }
        }
        for secret in database_passwords(runbook) {
            if let Ok(text) = read_secret_ref(secret, runbook_dir, "a database password") {
                secrets.add(&secret.reference(), &text);
            }
        }
        secrets
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Adds the secret text of key `name` and the forms it may be printed
    /// in (see the module doc).
    pub fn add(&mut self, name: &str, text: &str) {
        let mask = format!("{MARK_OPEN}{name}]");
        let mut forms = vec![text.trim().to_owned()];
        forms.extend(bind_secrets(text));
        let compact: Vec<String> = forms
            .iter()
            .map(|f| f.chars().filter(|c| !c.is_whitespace()).collect())
            .collect();
        forms.extend(compact);
        let decoded: Vec<String> = forms
            .iter()
            .filter_map(|f| base64_decode(f))
            .filter_map(|bytes| String::from_utf8(bytes).ok())
            .map(|s| s.trim().to_owned())
            .filter(|s| s.chars().count() >= MIN_DECODED)
            .collect();
        forms.extend(decoded);
        for form in forms {
            if form.chars().count() < MIN_VALUE || self.values.iter().any(|(v, _)| *v == form) {
                continue;
            }
            self.values.push((form, mask.clone()));
        }
        self.values.sort_by_key(|v| std::cmp::Reverse(v.0.len()));
    }

    /// `text` with every known secret replaced by its mask.
    pub fn mask(&self, text: &str) -> String {
        if self.values.is_empty() {
            return text.to_owned();
        }
        let bytes = text.as_bytes();
        let mut out = String::with_capacity(text.len());
        let mut copied = 0;
        let mut i = 0;
        while i < text.len() {
            if !text.is_char_boundary(i) {
                i += 1;
                continue;
            }
            let rest = &text[i..];
            // A mask already in place is kept as it is.
            if rest.starts_with(MARK_OPEN)
                && let Some(end) = rest.find(']')
            {
                i += end + 1;
                continue;
            }
            let found = self.values.iter().find(|(value, _)| {
                rest.starts_with(value.as_str())
                    && (value.chars().count() >= MIN_ANYWHERE
                        || (!i.checked_sub(1).is_some_and(|p| is_word_byte(bytes[p]))
                            && !bytes.get(i + value.len()).is_some_and(|&b| is_word_byte(b))))
            });
            match found {
                Some((value, mask)) => {
                    out.push_str(&text[copied..i]);
                    out.push_str(mask);
                    i += value.len();
                    copied = i;
                }
                None => i += 1,
            }
        }
        out.push_str(&text[copied..]);
        out
    }

    /// `value` with every string in it (object keys too) masked.
    pub fn mask_json(&self, value: &Value) -> Value {
        if self.values.is_empty() {
            return value.clone();
        }
        match value {
            Value::String(s) => Value::String(self.mask(s)),
            Value::Array(items) => Value::Array(items.iter().map(|v| self.mask_json(v)).collect()),
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| (self.mask(k), self.mask_json(v)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }
}

/// Bytes that continue a word (and a base64 text) for the whole-word rule.
fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'_' | b'-')
}

/// The values of `secret "..."` in a BIND key file.
fn bind_secrets(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("secret") {
        rest = &rest[at + "secret".len()..];
        let after = rest.trim_start();
        if let Some(quoted) = after.strip_prefix('"')
            && let Some(end) = quoted.find('"')
        {
            let value = quoted[..end].trim();
            if !value.is_empty() {
                found.push(value.to_owned());
            }
        }
    }
    found
}

/// Standard base64 (padding optional, no whitespace); `None` when `text`
/// is not base64.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let text = text.trim_end_matches('=');
    if text.is_empty() || text.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for b in text.bytes() {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(((acc >> bits) & 0xff) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets(pairs: &[(&str, &str)]) -> Secrets {
        let mut s = Secrets::none();
        for (name, text) in pairs {
            s.add(name, text);
        }
        s
    }

    #[test]
    fn a_secret_is_masked_wherever_it_occurs() {
        let s = secrets(&[("lab", "c2VjcmV0LXRzaWcta2V5LTEyMzQ1Ng==")]);
        assert_eq!(
            s.mask("LAB_TSIG=c2VjcmV0LXRzaWcta2V5LTEyMzQ1Ng==\nxc2VjcmV0LXRzaWcta2V5LTEyMzQ1Ng==y"),
            "LAB_TSIG=[secret lab]\nx[secret lab]y"
        );
    }

    #[test]
    fn the_decoded_text_is_masked_when_it_is_long_utf8() {
        // base64 of "secret-tsig-key-123456"
        let s = secrets(&[("lab", "c2VjcmV0LXRzaWcta2V5LTEyMzQ1Ng==")]);
        assert_eq!(
            s.mask("it is secret-tsig-key-123456!"),
            "it is [secret lab]!"
        );
        // base64 of "short" (5 chars): not masked in decoded form.
        let s = secrets(&[("k", "c2hvcnQ=")]);
        assert_eq!(s.mask("short c2hvcnQ="), "short [secret k]");
    }

    #[test]
    fn bind_key_files_mask_the_secret_line_too() {
        let file =
            "key \"lab\" {\n  algorithm hmac-sha256;\n  secret \"QUJDREVGR0hJSktMTU5PUA==\";\n};";
        let s = secrets(&[("lab", file)]);
        assert_eq!(
            s.mask("grep: secret \"QUJDREVGR0hJSktMTU5PUA==\";"),
            "grep: secret \"[secret lab]\";"
        );
        assert_eq!(s.mask(file), "[secret lab]");
        assert_eq!(s.mask("ABCDEFGHIJKLMNOP"), "[secret lab]");
    }

    #[test]
    fn short_secrets_are_masked_only_as_whole_words() {
        let s = secrets(&[("tiny", "abc")]);
        assert_eq!(s.mask("abc"), "[secret tiny]");
        assert_eq!(s.mask("x=abc;"), "x=[secret tiny];");
        assert_eq!(s.mask("abcdef xabc abc1"), "abcdef xabc abc1");
        let s = secrets(&[("one", "a")]);
        assert_eq!(s.mask("a cat"), "a cat");
    }

    #[test]
    fn masks_are_not_masked_again_and_longer_values_win() {
        let s = secrets(&[("secret", "secret"), ("long", "secretsecret99")]);
        let once = s.mask("secretsecret99 secret");
        assert_eq!(once, "[secret long] [secret secret]");
        assert_eq!(s.mask(&once), once);
    }

    #[test]
    fn json_strings_and_keys_are_masked() {
        let s = secrets(&[("k", "topsecret-value")]);
        let v = serde_json::json!({"text": "x topsecret-value y", "n": 1, "list": ["topsecret-value"], "topsecret-value": true});
        assert_eq!(
            s.mask_json(&v),
            serde_json::json!({"text": "x [secret k] y", "n": 1, "list": ["[secret k]"], "[secret k]": true})
        );
    }

    #[test]
    fn multibyte_text_is_kept_intact() {
        let s = secrets(&[("k", "geheimnis")]);
        assert_eq!(s.mask("ä geheimnis ö"), "ä [secret k] ö");
        assert_eq!(s.mask("äöü"), "äöü");
    }

    #[test]
    fn debug_never_shows_a_value() {
        let s = secrets(&[("k", "do-not-show-me")]);
        assert!(!format!("{s:?}").contains("do-not-show-me"));
    }

    #[test]
    fn base64_decoding_is_standard() {
        assert_eq!(base64_decode("aGVsbG8="), Some(b"hello".to_vec()));
        assert_eq!(base64_decode("aGVsbG8"), Some(b"hello".to_vec()));
        assert_eq!(base64_decode("not base64!"), None);
    }
}
