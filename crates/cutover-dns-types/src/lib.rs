//! The DNS vocabulary that the runbook language and the DNS plumbing share: which record types
//! cutover changes and which TSIG algorithms it signs with. One list of each, here, with no
//! dependency, so the language (and everything that reads runbooks) does not carry the DNS
//! library, and `cutover-dns` maps them to wire types inside itself.

use std::fmt;
use std::str::FromStr;

/// The record types cutover changes and verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RecordType {
    /// An IPv4 address.
    A,
    /// An IPv6 address.
    Aaaa,
    /// An alias.
    Cname,
    /// A mail exchanger.
    Mx,
    /// Text strings.
    Txt,
    /// A name server.
    Ns,
    /// A service location.
    Srv,
    /// Which certificate authorities may issue for the name (RFC 8659).
    Caa,
    /// A reverse mapping.
    Ptr,
    /// HTTPS service binding (RFC 9460).
    Https,
    /// General service binding (RFC 9460).
    Svcb,
}

impl RecordType {
    /// Every type, in the order the docs list them.
    pub const ALL: [RecordType; 11] = [
        Self::A,
        Self::Aaaa,
        Self::Cname,
        Self::Mx,
        Self::Txt,
        Self::Ns,
        Self::Srv,
        Self::Caa,
        Self::Ptr,
        Self::Https,
        Self::Svcb,
    ];

    /// The mnemonic, in capitals as zone files write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::A => "A",
            Self::Aaaa => "AAAA",
            Self::Cname => "CNAME",
            Self::Mx => "MX",
            Self::Txt => "TXT",
            Self::Ns => "NS",
            Self::Srv => "SRV",
            Self::Caa => "CAA",
            Self::Ptr => "PTR",
            Self::Https => "HTTPS",
            Self::Svcb => "SVCB",
        }
    }

    /// The type written exactly as [`RecordType::as_str`] gives it (capitals), if cutover
    /// handles it.
    pub fn from_mnemonic(text: &str) -> Option<RecordType> {
        Self::ALL.into_iter().find(|rtype| rtype.as_str() == text)
    }
}

impl fmt::Display for RecordType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A record type or TSIG algorithm cutover does not handle, with the ones it does.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnknownName {
    #[error(
        "unknown record type `{0}` (cutover handles A AAAA CNAME MX TXT NS SRV CAA PTR HTTPS SVCB)"
    )]
    RecordType(String),
    #[error("unsupported TSIG algorithm `{0}` (use hmac-sha256, hmac-sha384 or hmac-sha512)")]
    Algorithm(String),
}

impl FromStr for RecordType {
    type Err = UnknownName;

    /// Any case: `aaaa` is `AAAA`.
    fn from_str(text: &str) -> Result<Self, UnknownName> {
        Self::from_mnemonic(&text.trim().to_ascii_uppercase())
            .ok_or_else(|| UnknownName::RecordType(text.to_string()))
    }
}

/// The MAC algorithms cutover supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TsigAlgorithm {
    /// hmac-sha256
    HmacSha256,
    /// hmac-sha384
    HmacSha384,
    /// hmac-sha512
    HmacSha512,
}

impl TsigAlgorithm {
    /// The algorithm's name as BIND and the runbook write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HmacSha256 => "hmac-sha256",
            Self::HmacSha384 => "hmac-sha384",
            Self::HmacSha512 => "hmac-sha512",
        }
    }
}

impl FromStr for TsigAlgorithm {
    type Err = UnknownName;

    /// Any case, with or without the trailing dot of its DNS name.
    fn from_str(text: &str) -> Result<Self, UnknownName> {
        match text
            .trim()
            .trim_end_matches('.')
            .to_ascii_lowercase()
            .as_str()
        {
            "hmac-sha256" => Ok(Self::HmacSha256),
            "hmac-sha384" => Ok(Self::HmacSha384),
            "hmac-sha512" => Ok(Self::HmacSha512),
            other => Err(UnknownName::Algorithm(other.to_string())),
        }
    }
}

impl fmt::Display for TsigAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for rtype in RecordType::ALL {
            assert_eq!(rtype.as_str().parse::<RecordType>(), Ok(rtype));
            assert_eq!(RecordType::from_mnemonic(rtype.as_str()), Some(rtype));
        }
        assert_eq!("aaaa".parse::<RecordType>(), Ok(RecordType::Aaaa));
        assert_eq!(RecordType::from_mnemonic("aaaa"), None);
        assert!("BOGUS".parse::<RecordType>().is_err());
        for algorithm in [
            TsigAlgorithm::HmacSha256,
            TsigAlgorithm::HmacSha384,
            TsigAlgorithm::HmacSha512,
        ] {
            assert_eq!(algorithm.as_str().parse::<TsigAlgorithm>(), Ok(algorithm));
        }
        assert_eq!(
            "HMAC-SHA512.".parse::<TsigAlgorithm>(),
            Ok(TsigAlgorithm::HmacSha512)
        );
        assert_eq!(
            "hmac-md5".parse::<TsigAlgorithm>().unwrap_err().to_string(),
            "unsupported TSIG algorithm `hmac-md5` (use hmac-sha256, hmac-sha384 or hmac-sha512)"
        );
    }
}
