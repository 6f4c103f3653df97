//! Names, types and values as a runbook writes them (`www`, `A`, `80.248.164.42`), turned into
//! DNS wire types, and record data shown back in one canonical text form so that values from a
//! runbook and values from a server compare equal when they mean the same thing.

use std::str::FromStr;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Name, RData, RecordType};

use crate::error::DnsError;

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

/// A record type by its mnemonic (`A`, `aaaa`, `MX`, ...).
pub fn record_type(text: &str) -> Result<RecordType, DnsError> {
    let upper = text.trim().to_ascii_uppercase();
    match RecordType::from_str(&upper) {
        Ok(RecordType::Unknown(_)) | Err(_) => {
            Err(DnsError::Input(format!("unknown record type `{text}`")))
        }
        Ok(rtype) => Ok(rtype),
    }
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
            RData::try_from_str(rtype, value)
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
        let mx = canonical_input(RecordType::MX, &["10 MAIL.Example.org."]).unwrap();
        assert_eq!(mx, vec!["10 mail.example.org."]);
        assert!(canonical_input(RecordType::A, &["300.1.1.1"]).is_err());
        assert!(record_type("BOGUS").is_err());
        assert_eq!(record_type("aaaa").unwrap(), RecordType::AAAA);
        assert_eq!(rcode_name(ResponseCode::Refused), "REFUSED");
        assert_eq!(rcode_name(ResponseCode::Unknown(3841)), "RCODE3841");
    }
}
