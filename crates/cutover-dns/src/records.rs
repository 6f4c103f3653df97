//! Names, types and values as a runbook writes them (`www`, `A`, `80.248.164.42`), turned into
//! DNS wire types, and record data shown back in one canonical text form so that values from a
//! runbook and values from a server compare equal when they mean the same thing.
//!
//! [`RecordType`] (from `cutover-dns-types`) is the one list of record types cutover changes:
//! the language parses it, the step kinds and this crate use it; hickory's open list of wire
//! types stays inside this crate.

use std::str::FromStr;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Name, RData, RecordType as WireType};

use crate::error::DnsError;

pub use cutover_dns_types::RecordType;

/// The wire type of a record type.
pub(crate) fn wire(rtype: RecordType) -> WireType {
    match rtype {
        RecordType::A => WireType::A,
        RecordType::Aaaa => WireType::AAAA,
        RecordType::Cname => WireType::CNAME,
        RecordType::Mx => WireType::MX,
        RecordType::Txt => WireType::TXT,
        RecordType::Ns => WireType::NS,
        RecordType::Srv => WireType::SRV,
        RecordType::Caa => WireType::CAA,
        RecordType::Ptr => WireType::PTR,
        RecordType::Https => WireType::HTTPS,
        RecordType::Svcb => WireType::SVCB,
    }
}

/// A zone name as a fully qualified DNS name (`maemo.org` → `maemo.org.`).
pub fn zone_name(zone: &str) -> Result<Name, DnsError> {
    let trimmed = zone.trim();
    if trimmed.is_empty() {
        return Err(DnsError::Input("empty zone name".into()));
    }
    let mut name = Name::from_str(trimmed)
        .map_err(|err| DnsError::Input(format!("invalid zone name `{zone}`: {err}")))?;
    name.set_fqdn(true);
    Ok(name)
}

/// The fully qualified owner name of `name` in `zone`: `@` (or empty) is the apex, a name
/// ending in `.` is absolute, anything else is relative to the zone.
pub fn owner_name(zone: &Name, name: &str) -> Result<Name, DnsError> {
    let trimmed = name.trim();
    if trimmed.is_empty() || trimmed == "@" {
        return Ok(zone.clone());
    }
    let parsed = Name::parse(trimmed, Some(zone))
        .map_err(|err| DnsError::Input(format!("invalid record name `{name}`: {err}")))?;
    if !zone.zone_of(&parsed) {
        return Err(DnsError::Input(format!(
            "{parsed} is not inside zone {zone}"
        )));
    }
    Ok(parsed)
}

/// Parses record values written in master-file syntax for `rtype`.
pub fn parse_values<S: AsRef<str>>(
    rtype: RecordType,
    values: &[S],
) -> Result<Vec<RData>, DnsError> {
    values
        .iter()
        .map(|value| {
            let value = value.as_ref();
            RData::try_from_str(wire(rtype), value)
                .map_err(|err| DnsError::Input(format!("invalid {rtype} value `{value}`: {err}")))
        })
        .collect()
}

/// Record data in canonical text, sorted, so that two sets compare with `==`.
pub fn canonical_values<'a>(data: impl IntoIterator<Item = &'a RData>) -> Vec<String> {
    let mut values: Vec<String> = data.into_iter().map(canonical_value).collect();
    values.sort();
    values.dedup();
    values
}

/// Values as given by a caller, in the same canonical form as [`canonical_values`].
pub fn canonical_input<S: AsRef<str>>(
    rtype: RecordType,
    values: &[S],
) -> Result<Vec<String>, DnsError> {
    Ok(canonical_values(&parse_values(rtype, values)?))
}

fn canonical_value(data: &RData) -> String {
    // Names in record data compare case-insensitively.
    match data {
        RData::CNAME(_) | RData::NS(_) | RData::PTR(_) | RData::MX(_) | RData::SRV(_) => {
            data.to_string().to_ascii_lowercase()
        }
        // The tag's case does not matter (RFC 8659 §4.1); the value's does.
        RData::CAA(caa) => {
            let text = data.to_string();
            let tag = caa.tag.as_str();
            match text.split_once(tag) {
                Some((flags, rest)) => format!("{flags}{}{rest}", tag.to_ascii_lowercase()),
                None => text,
            }
        }
        _ => data.to_string(),
    }
}

/// A set of values as people read it: `a, b` or `no such record`.
pub fn describe_values(values: &[String]) -> String {
    if values.is_empty() {
        "no such record".into()
    } else {
        values.join(", ")
    }
}

/// A response code by its mnemonic, as dig shows it (`NOERROR`, `REFUSED`, `NXRRSET`).
pub(crate) fn rcode_name(code: ResponseCode) -> String {
    match code {
        ResponseCode::NoError => "NOERROR".into(),
        ResponseCode::FormErr => "FORMERR".into(),
        ResponseCode::ServFail => "SERVFAIL".into(),
        ResponseCode::NXDomain => "NXDOMAIN".into(),
        ResponseCode::NotImp => "NOTIMP".into(),
        ResponseCode::Refused => "REFUSED".into(),
        ResponseCode::YXDomain => "YXDOMAIN".into(),
        ResponseCode::YXRRSet => "YXRRSET".into(),
        ResponseCode::NXRRSet => "NXRRSET".into(),
        ResponseCode::NotAuth => "NOTAUTH".into(),
        ResponseCode::NotZone => "NOTZONE".into(),
        ResponseCode::BADVERS => "BADVERS".into(),
        ResponseCode::BADSIG => "BADSIG".into(),
        ResponseCode::BADKEY => "BADKEY".into(),
        ResponseCode::BADTIME => "BADTIME".into(),
        other => format!("RCODE{}", u16::from(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve_relative_to_the_zone() {
        let zone = zone_name("maemo.org").unwrap();
        assert_eq!(
            owner_name(&zone, "wiki").unwrap().to_string(),
            "wiki.maemo.org."
        );
        assert_eq!(owner_name(&zone, "@").unwrap().to_string(), "maemo.org.");
        assert_eq!(
            owner_name(&zone, "talk.maemo.org.").unwrap().to_string(),
            "talk.maemo.org."
        );
        let err = owner_name(&zone, "www.example.com.").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid input: www.example.com. is not inside zone maemo.org."
        );
    }

    #[test]
    fn values_compare_canonically() {
        let a = canonical_input(RecordType::A, &["192.0.2.2", "192.0.2.1"]).unwrap();
        assert_eq!(a, vec!["192.0.2.1", "192.0.2.2"]);
        let mx = canonical_input(RecordType::Mx, &["10 MAIL.Example.org."]).unwrap();
        assert_eq!(mx, vec!["10 mail.example.org."]);
        assert!(canonical_input(RecordType::A, &["300.1.1.1"]).is_err());
        assert!("BOGUS".parse::<RecordType>().is_err());
        assert_eq!("aaaa".parse::<RecordType>().unwrap(), RecordType::Aaaa);
        assert_eq!(rcode_name(ResponseCode::Refused), "REFUSED");
        assert_eq!(rcode_name(ResponseCode::Unknown(3841)), "RCODE3841");
    }

    #[test]
    fn caa_ptr_and_service_bindings_parse_and_compare() {
        let caa = canonical_input(RecordType::Caa, &["0 ISSUE \"letsencrypt.org\""]).unwrap();
        assert_eq!(
            caa,
            canonical_input(RecordType::Caa, &["0 issue \"letsencrypt.org\""]).unwrap()
        );
        assert!(caa[0].contains("issue"), "{caa:?}");
        assert!(canonical_input(RecordType::Caa, &["issue"]).is_err());
        let ptr = canonical_input(RecordType::Ptr, &["WWW.Example.org."]).unwrap();
        assert_eq!(ptr, vec!["www.example.org."]);
        let https = canonical_input(RecordType::Https, &["1 . alpn=h2,h3"]).unwrap();
        assert_eq!(https.len(), 1);
        let svcb = canonical_input(RecordType::Svcb, &["1 svc.example.org. port=8443"]).unwrap();
        assert_eq!(svcb.len(), 1);
        for rtype in RecordType::ALL {
            assert_eq!(rtype.as_str().parse::<RecordType>().unwrap(), rtype);
            assert_eq!(wire(rtype).to_string(), rtype.as_str());
        }
    }
}
