//! TSIG keys (RFC 8945): loaded from an environment variable or a file, never shown.
//!
//! Two text forms are accepted, wherever the key comes from:
//! - a BIND key block, as written by `tsig-keygen`:
//!   `key "name" { algorithm hmac-sha256; secret "base64"; };`
//! - the bare base64 secret; the key's name (and algorithm, default hmac-sha256) then come
//!   from the caller, i.e. from the runbook.
//!
//! The secret is kept as raw bytes and never appears in `Debug` output or in error messages.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use hickory_proto::rr::rdata::tsig::{
    TSIG, TsigAlgorithm as HickoryAlgorithm, TsigError, make_tsig_record,
};
use hickory_proto::rr::{Name, Record, TSigResponseContext, TSigner};
use hickory_server::server::Request;

use crate::error::DnsError;

/// Clock skew tolerated between client and server, in seconds (BIND's default).
const FUDGE_SECONDS: u16 = 300;

pub use cutover_dns_types::TsigAlgorithm;

fn to_hickory(algorithm: TsigAlgorithm) -> HickoryAlgorithm {
    match algorithm {
        TsigAlgorithm::HmacSha256 => HickoryAlgorithm::HmacSha256,
        TsigAlgorithm::HmacSha384 => HickoryAlgorithm::HmacSha384,
        TsigAlgorithm::HmacSha512 => HickoryAlgorithm::HmacSha512,
    }
}

/// A TSIG key: its name, algorithm and secret.
#[derive(Clone, PartialEq, Eq)]
pub struct TsigKey {
    name: String,
    algorithm: TsigAlgorithm,
    secret: Vec<u8>,
}

impl fmt::Debug for TsigKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TsigKey")
            .field("name", &self.name)
            .field("algorithm", &self.algorithm)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl TsigKey {
    /// A key from its parts. The secret is the raw (decoded) bytes.
    pub fn new(
        name: impl Into<String>,
        algorithm: TsigAlgorithm,
        secret: Vec<u8>,
    ) -> Result<Self, DnsError> {
        let name = name.into();
        let key = Self {
            name,
            algorithm,
            secret,
        };
        if key.secret.is_empty() {
            return Err(DnsError::Key {
                source_desc: key.name.clone(),
                message: "the secret is empty".into(),
            });
        }
        key.dns_name()?;
        Ok(key)
    }

    /// The key's name (as the server knows it).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key's MAC algorithm.
    pub fn algorithm(&self) -> TsigAlgorithm {
        self.algorithm
    }

    /// Loads a key from the environment variable `var`.
    ///
    /// `name` picks the key in a BIND block holding several, and names a bare base64 secret;
    /// `algorithm` is checked against a BIND block and used for a bare secret (default
    /// hmac-sha256).
    pub fn from_env(
        var: &str,
        name: Option<&str>,
        algorithm: Option<TsigAlgorithm>,
    ) -> Result<Self, DnsError> {
        let source_desc = format!("env:{var}");
        let text = std::env::var(var).map_err(|err| DnsError::Key {
            source_desc: source_desc.clone(),
            message: match err {
                std::env::VarError::NotPresent => "the variable is not set".into(),
                std::env::VarError::NotUnicode(_) => "the variable is not valid UTF-8".into(),
            },
        })?;
        Self::parse(&text, &source_desc, name, algorithm)
    }

    /// Loads a key from a file: a BIND key file or a file holding just the base64 secret.
    /// See [`TsigKey::from_env`] for `name` and `algorithm`.
    pub fn from_file(
        path: &Path,
        name: Option<&str>,
        algorithm: Option<TsigAlgorithm>,
    ) -> Result<Self, DnsError> {
        let source_desc = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|err| DnsError::Key {
            source_desc: source_desc.clone(),
            message: format!("cannot read: {err}"),
        })?;
        Self::parse(&text, &source_desc, name, algorithm)
    }

    /// Loads every key of a BIND key file (a server accepting several keys).
    pub fn all_from_file(path: &Path) -> Result<Vec<Self>, DnsError> {
        let source_desc = path.display().to_string();
        let key_error = |message: String| DnsError::Key {
            source_desc: source_desc.clone(),
            message,
        };
        let text = std::fs::read_to_string(path)
            .map_err(|err| key_error(format!("cannot read: {err}")))?;
        let tokens = tokenize(&text);
        if tokens.first().map(String::as_str) != Some("key") {
            return Err(key_error(
                "holds a bare secret; give the key's name as NAME=FILE".into(),
            ));
        }
        parse_bind_blocks(&tokens)
            .map_err(key_error)?
            .iter()
            .map(|block| Self::parse_block(block, &source_desc, None))
            .collect()
    }

    /// Parses key text (a BIND key block or a bare base64 secret). `source_desc` names where the
    /// text came from, for messages.
    pub fn parse(
        text: &str,
        source_desc: &str,
        name: Option<&str>,
        algorithm: Option<TsigAlgorithm>,
    ) -> Result<Self, DnsError> {
        let key_error = |message: String| DnsError::Key {
            source_desc: source_desc.to_string(),
            message,
        };
        let tokens = tokenize(text);
        if tokens.first().map(String::as_str) == Some("key") {
            let blocks = parse_bind_blocks(&tokens).map_err(key_error)?;
            let block = match name {
                Some(wanted) => blocks
                    .iter()
                    .find(|block| same_key_name(&block.name, wanted))
                    .ok_or_else(|| {
                        let known: Vec<&str> = blocks.iter().map(|b| b.name.as_str()).collect();
                        key_error(format!(
                            "no key named `{wanted}` (found: {})",
                            known.join(", ")
                        ))
                    })?,
                None if blocks.len() == 1 => &blocks[0],
                None => {
                    return Err(key_error(
                        "holds several keys; say which one by name".into(),
                    ));
                }
            };
            return Self::parse_block(block, source_desc, algorithm);
        }
        let name = name
            .ok_or_else(|| key_error("holds a bare secret; the key's name must be given".into()))?;
        let secret = decode_secret(text).map_err(key_error)?;
        Self::new(name, algorithm.unwrap_or(TsigAlgorithm::HmacSha256), secret).map_err(|err| {
            match err {
                DnsError::Key { message, .. } => key_error(message),
                other => key_error(other.to_string()),
            }
        })
    }

    fn parse_block(
        block: &KeyBlock,
        source_desc: &str,
        algorithm: Option<TsigAlgorithm>,
    ) -> Result<Self, DnsError> {
        let key_error = |message: String| DnsError::Key {
            source_desc: source_desc.to_string(),
            message,
        };
        let block_algorithm: TsigAlgorithm =
            block
                .algorithm
                .parse()
                .map_err(|err: cutover_dns_types::UnknownName| {
                    key_error(format!("key `{}`: {err}", block.name))
                })?;
        if let Some(expected) = algorithm
            && expected != block_algorithm
        {
            return Err(key_error(format!(
                "key `{}` uses {block_algorithm}, but {expected} was expected",
                block.name
            )));
        }
        let secret = decode_secret(&block.secret).map_err(key_error)?;
        Self::new(block.name.clone(), block_algorithm, secret).map_err(|err| match err {
            DnsError::Key { message, .. } => key_error(message),
            other => key_error(other.to_string()),
        })
    }

    pub(crate) fn dns_name(&self) -> Result<Name, DnsError> {
        Name::from_str(&self.name).map_err(|err| DnsError::Key {
            source_desc: self.name.clone(),
            message: format!("invalid key name: {err}"),
        })
    }

    /// The hickory signer for this key.
    pub(crate) fn signer(&self) -> Result<TSigner, DnsError> {
        TSigner::new(
            self.secret.clone(),
            to_hickory(self.algorithm),
            self.dns_name()?,
            FUDGE_SECONDS,
        )
        .map_err(|err| DnsError::Key {
            source_desc: self.name.clone(),
            message: format!("cannot build a signer: {err}"),
        })
    }
}

/// What a server makes of a request's TSIG record (RFC 8945 §5.2), as BIND does.
pub(crate) enum Authentication {
    /// The request carries no TSIG record.
    Unsigned,
    /// Signed with a known key, and the signature and time hold: answers are signed with it.
    Valid(ResponseSigner),
    /// The signature does not hold: the answer is NOTAUTH with this TSIG record.
    Failed(ResponseSigner),
}

/// How to add the TSIG record to an answer.
pub(crate) enum ResponseSigner {
    /// Signed with the request's key, the request's MAC chained in; `error` is BADTIME or none.
    Signed {
        signer: TSigner,
        request_mac: Vec<u8>,
        error: Option<TsigError>,
    },
    /// Unsigned (empty MAC) with a TSIG error: BADKEY for an unknown key or algorithm, BADSIG
    /// for a wrong MAC (RFC 8945 §5.3.2).
    Unsigned {
        key_name: Name,
        algorithm: HickoryAlgorithm,
        error: TsigError,
    },
}

impl ResponseSigner {
    /// The TSIG record for an answer with message id `id` whose unsigned encoding is `response`.
    pub(crate) fn sign(&self, id: u16, response: &[u8]) -> Result<Box<Record<TSIG>>, String> {
        let now = unix_now();
        match self {
            Self::Signed {
                signer,
                request_mac,
                error,
            } => TSigResponseContext::new(id, now, signer.clone(), request_mac.clone(), *error)
                .sign(response)
                .map_err(|err| err.to_string()),
            Self::Unsigned {
                key_name,
                algorithm,
                error,
            } => Ok(Box::new(make_tsig_record(
                key_name.clone(),
                TSIG::new(
                    algorithm.clone(),
                    now,
                    FUDGE_SECONDS,
                    Vec::new(),
                    id,
                    Some(*error),
                    Vec::new(),
                ),
            ))),
        }
    }
}

/// Checks a request's TSIG record against the server's keys. A key is known by its name *and*
/// algorithm: the right name with another algorithm is BADKEY, as for an unknown name.
pub(crate) fn authenticate(signers: &[TSigner], request: &Request) -> Authentication {
    let Some(tsig) = request.signature.as_deref() else {
        return Authentication::Unsigned;
    };
    let unsigned = |error| {
        Authentication::Failed(ResponseSigner::Unsigned {
            key_name: tsig.name.clone(),
            algorithm: tsig.data.algorithm.clone(),
            error,
        })
    };
    let Some(signer) = signers.iter().find(|signer| {
        signer.signer_name() == &tsig.name && signer.algorithm() == &tsig.data.algorithm
    }) else {
        return unsigned(TsigError::BadKey);
    };
    let Ok((_, _, valid)) = signer.verify_message_byte(request.as_slice(), None, true) else {
        return unsigned(TsigError::BadSig);
    };
    let signed = |error| ResponseSigner::Signed {
        signer: signer.clone(),
        request_mac: tsig.data.mac.clone(),
        error,
    };
    if valid.contains(&unix_now()) {
        Authentication::Valid(signed(None))
    } else {
        // "A response indicating a BADTIME error MUST be signed by the same key as the request."
        Authentication::Failed(signed(Some(TsigError::BadTime)))
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

fn same_key_name(a: &str, b: &str) -> bool {
    a.trim_end_matches('.')
        .eq_ignore_ascii_case(b.trim_end_matches('.'))
}

fn decode_secret(text: &str) -> Result<Vec<u8>, String> {
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    if compact.is_empty() {
        return Err("the secret is empty".into());
    }
    data_encoding::BASE64
        .decode(compact.as_bytes())
        .map_err(|_| "the secret is not valid base64".into())
}

struct KeyBlock {
    name: String,
    algorithm: String,
    secret: String,
}

/// Splits BIND configuration text into words, quoted strings (quotes removed) and the
/// punctuation `{ } ;`, dropping `#`, `//` and `/* */` comments.
fn tokenize(text: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {}
            '#' => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut previous = ' ';
                for c in chars.by_ref() {
                    if previous == '*' && c == '/' {
                        break;
                    }
                    previous = c;
                }
            }
            '{' | '}' | ';' => tokens.push(c.to_string()),
            '"' => {
                let mut word = String::new();
                for c in chars.by_ref() {
                    if c == '"' {
                        break;
                    }
                    word.push(c);
                }
                tokens.push(word);
            }
            _ => {
                let mut word = c.to_string();
                while let Some(&next) = chars.peek() {
                    if next.is_whitespace() || matches!(next, '{' | '}' | ';' | '"') {
                        break;
                    }
                    word.push(next);
                    chars.next();
                }
                tokens.push(word);
            }
        }
    }
    tokens
}

fn parse_bind_blocks(tokens: &[String]) -> Result<Vec<KeyBlock>, String> {
    let mut blocks = Vec::new();
    let mut rest = tokens;
    while let Some(first) = rest.first() {
        if first != "key" {
            return Err(format!("expected `key`, found `{first}`"));
        }
        let name = rest.get(1).ok_or("`key` without a name")?.clone();
        if rest.get(2).map(String::as_str) != Some("{") {
            return Err(format!("key `{name}`: expected `{{` after the name"));
        }
        rest = &rest[3..];
        let mut algorithm = None;
        let mut secret = None;
        loop {
            match rest {
                [close, semi, tail @ ..] if close == "}" && semi == ";" => {
                    rest = tail;
                    break;
                }
                [close] if close == "}" => {
                    rest = &[];
                    break;
                }
                [field, value, semi, tail @ ..] if semi == ";" => {
                    match field.as_str() {
                        "algorithm" => algorithm = Some(value.clone()),
                        "secret" => secret = Some(value.clone()),
                        other => return Err(format!("key `{name}`: unknown field `{other}`")),
                    }
                    rest = tail;
                }
                _ => return Err(format!("key `{name}`: expected `FIELD VALUE;` or `}};`")),
            }
        }
        blocks.push(KeyBlock {
            algorithm: algorithm.ok_or_else(|| format!("key `{name}` has no algorithm"))?,
            secret: secret.ok_or_else(|| format!("key `{name}` has no secret"))?,
            name,
        });
    }
    if blocks.is_empty() {
        return Err("no key found".into());
    }
    Ok(blocks)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BIND_KEY: &str = "key \"maemo-update\" {\n\talgorithm hmac-sha256;\n\tsecret \"c2VjcmV0LWJ5dGVzLWZvci10ZXN0cw==\";\n};\n";

    #[test]
    fn reads_a_bind_key_block() {
        let key = TsigKey::parse(BIND_KEY, "test", None, None).unwrap();
        assert_eq!(key.name(), "maemo-update");
        assert_eq!(key.algorithm(), TsigAlgorithm::HmacSha256);
        assert_eq!(key.secret, b"secret-bytes-for-tests");
    }

    #[test]
    fn reads_a_bare_secret_with_name_and_algorithm_from_the_caller() {
        let key = TsigKey::parse(
            "  c2VjcmV0LWJ5dGVzLWZvci10ZXN0cw==\n",
            "test",
            Some("k"),
            Some(TsigAlgorithm::HmacSha512),
        )
        .unwrap();
        assert_eq!(key.name(), "k");
        assert_eq!(key.algorithm(), TsigAlgorithm::HmacSha512);
    }

    #[test]
    fn picks_a_key_by_name_among_several() {
        let two = format!(
            "# comment\n{BIND_KEY}key other {{ algorithm hmac-sha512; secret \"AAAA\"; }};"
        );
        let key = TsigKey::parse(&two, "test", Some("other"), None).unwrap();
        assert_eq!(key.algorithm(), TsigAlgorithm::HmacSha512);
        let err = TsigKey::parse(&two, "keys.conf", None, None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "TSIG key keys.conf: holds several keys; say which one by name"
        );
    }

    #[test]
    fn bad_keys_are_clear_errors_that_never_show_the_secret() {
        let cases = [
            (
                "not base64 !!",
                Some("k"),
                None,
                "the secret is not valid base64",
            ),
            (
                "AAAA",
                None,
                None,
                "holds a bare secret; the key's name must be given",
            ),
            (
                BIND_KEY,
                None,
                Some(TsigAlgorithm::HmacSha512),
                "key `maemo-update` uses hmac-sha256, but hmac-sha512 was expected",
            ),
            (
                "key k { algorithm hmac-md5; secret \"AAAA\"; };",
                None,
                None,
                "key `k`: unsupported TSIG algorithm `hmac-md5` (use hmac-sha256, hmac-sha384 or hmac-sha512)",
            ),
            (
                "key k { secret \"AAAA\"; };",
                None,
                None,
                "key `k` has no algorithm",
            ),
        ];
        for (text, name, algorithm, expected) in cases {
            let err = TsigKey::parse(text, "f", name, algorithm)
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(expected),
                "{err:?} should contain {expected:?}"
            );
        }
    }

    #[test]
    fn a_server_loads_every_key_of_a_bind_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.conf");
        std::fs::write(
            &path,
            format!("{BIND_KEY}key other {{ algorithm hmac-sha512; secret \"AAAA\"; }};"),
        )
        .unwrap();
        let names: Vec<String> = TsigKey::all_from_file(&path)
            .unwrap()
            .iter()
            .map(|key| key.name().to_string())
            .collect();
        assert_eq!(names, vec!["maemo-update", "other"]);
        std::fs::write(&path, "AAAA").unwrap();
        assert!(TsigKey::all_from_file(&path).is_err());
    }

    #[test]
    fn debug_output_redacts_the_secret() {
        let key = TsigKey::parse(BIND_KEY, "test", None, None).unwrap();
        let shown = format!("{key:?}");
        assert!(shown.contains("<redacted>"));
        assert!(!shown.contains("c2VjcmV0"));
        assert!(!shown.contains("secret-bytes"));
    }
}
