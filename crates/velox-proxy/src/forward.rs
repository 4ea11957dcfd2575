//! Header rules for forwarding a message across Velox (RFC 9110 §7.6). Pure.

use http::header::{Entry, HeaderName, CONNECTION, TE, TRAILER, TRANSFER_ENCODING, UPGRADE, VIA};
use http::{HeaderMap, HeaderValue, Version};
use std::cell::RefCell;
use std::net::IpAddr;

pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// The fields that are hop-by-hop by definition (RFC 9110 §7.6.1), Connection first.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    name == CONNECTION
        || name == KEEP_ALIVE
        || name == PROXY_CONNECTION
        || name == TE
        || name == TRAILER
        || name == TRANSFER_ENCODING
        || name == UPGRADE
}

/// Connection options that are not field names (or name a field removed anyway): most
/// `Connection` values are just these, and then no name needs parsing.
fn is_plain_option(token: &str) -> bool {
    ["close", "keep-alive", "upgrade"]
        .iter()
        .any(|o| token.eq_ignore_ascii_case(o))
}

/// Removes hop-by-hop fields (RFC 9110 §7.6.1): Connection, every field it names,
/// and the fields that are hop-by-hop by definition.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // One pass over the names first: most messages carry none, and then nothing is hashed.
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|list| list.split(','))
        .map(str::trim)
        .filter(|token| !is_plain_option(token))
        .filter_map(|token| HeaderName::from_bytes(token.as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        CONNECTION,
        KEEP_ALIVE,
        PROXY_CONNECTION,
        TE,
        TRAILER,
        TRANSFER_ENCODING,
        UPGRADE,
    ] {
        headers.remove(name);
    }
}

/// Appends `value` to a list-valued field, folding existing lines into one.
fn append_to_list(headers: &mut HeaderMap, name: HeaderName, value: &str) {
    let mut combined = String::new();
    for existing in headers.get_all(&name) {
        if let Ok(text) = existing.to_str() {
            combined.push_str(text);
            combined.push_str(", ");
        }
    }
    combined.push_str(value);
    // From the String itself: no second copy.
    if let Ok(value) = HeaderValue::try_from(combined) {
        headers.insert(name, value);
    }
}

/// A client address as a field value. Consecutive requests on a thread mostly come from the
/// same client (keep-alive), so the last value is kept and shared (a reference count) rather
/// than formatted and allocated again.
fn ip_value(ip: IpAddr) -> Option<HeaderValue> {
    thread_local! {
        static LAST: RefCell<Option<(IpAddr, HeaderValue)>> = const { RefCell::new(None) };
    }
    LAST.with_borrow_mut(|last| match last {
        Some((seen, value)) if *seen == ip => Some(value.clone()),
        _ => {
            let value = HeaderValue::try_from(ip.to_string()).ok()?;
            *last = Some((ip, value.clone()));
            Some(value)
        }
    })
}

/// The `X-Forwarded-*` fields an origin behind Velox expects.
/// Proto and Host describe this hop, so a client cannot forge them.
pub fn add_forwarded(
    headers: &mut HeaderMap,
    client: IpAddr,
    tls: bool,
    host: Option<&HeaderValue>,
) {
    // One hash of the name: the entry says whether a list is already there.
    match headers.entry(X_FORWARDED_FOR) {
        Entry::Vacant(slot) => {
            if let Some(value) = ip_value(client) {
                slot.insert(value);
            }
        }
        Entry::Occupied(_) => append_to_list(headers, X_FORWARDED_FOR, &client.to_string()),
    }
    let proto = if tls { "https" } else { "http" };
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    match host {
        Some(host) => {
            headers.insert(X_FORWARDED_HOST, host.clone());
        }
        None => {
            headers.remove(X_FORWARDED_HOST);
        }
    }
}

/// This hop's `Via` entries (RFC 9110 §7.6.3), one per protocol version a message can arrive
/// with, made once per configuration.
pub struct Via {
    entries: [HeaderValue; 4],
}

impl Via {
    pub fn new(pseudonym: &str) -> Result<Via, http::header::InvalidHeaderValue> {
        let entry = |version: &str| HeaderValue::try_from(format!("{version} {pseudonym}"));
        Ok(Via {
            entries: [entry("1.0")?, entry("1.1")?, entry("2")?, entry("3")?],
        })
    }

    fn entry(&self, received: Version) -> &HeaderValue {
        &self.entries[match received {
            Version::HTTP_10 | Version::HTTP_09 => 0,
            Version::HTTP_2 => 2,
            Version::HTTP_3 => 3,
            _ => 1,
        }]
    }
}

/// Appends this hop to `Via`, naming the protocol version the message was received with.
pub fn add_via(headers: &mut HeaderMap, received: Version, via: &Via) {
    let entry = via.entry(received);
    match headers.entry(VIA) {
        Entry::Vacant(slot) => {
            slot.insert(entry.clone());
        }
        Entry::Occupied(_) => {
            if let Ok(entry) = entry.to_str() {
                append_to_list(headers, VIA, entry);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_addresses_as_values_whether_kept_or_new() {
        for ip in [
            "10.0.0.1",
            "10.0.0.1",
            "192.168.1.255",
            "::1",
            "10.0.0.1",
            "2001:db8::7",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(ip_value(ip).unwrap(), ip.to_string().as_str());
        }
    }

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        headers
    }

    #[test]
    fn strips_connection_and_the_fields_it_names_rfc9110_7_6_1() {
        let mut headers = map(&[
            ("connection", "X-Custom, keep-alive"),
            ("connection", "close"),
            ("x-custom", "1"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("te", "trailers"),
            ("trailer", "x-t"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("x-end-to-end", "1"),
        ]);
        strip_hop_by_hop(&mut headers);
        assert_eq!(headers.len(), 1);
        assert!(headers.contains_key("x-end-to-end"));
    }

    #[test]
    fn forwarded_for_appends_and_proto_is_overwritten() {
        let mut headers = map(&[
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-proto", "https"),
        ]);
        let host = HeaderValue::from_static("example.com");
        add_forwarded(
            &mut headers,
            "10.0.0.1".parse().unwrap(),
            false,
            Some(&host),
        );
        assert_eq!(headers["x-forwarded-for"], "1.1.1.1, 10.0.0.1");
        let mut fresh = HeaderMap::new();
        add_forwarded(&mut fresh, "192.168.100.7".parse().unwrap(), true, None);
        add_forwarded(&mut fresh, "::1".parse().unwrap(), true, None);
        assert_eq!(fresh["x-forwarded-for"], "192.168.100.7, ::1");
        assert_eq!(fresh["x-forwarded-proto"], "https");
        assert_eq!(headers["x-forwarded-proto"], "http");
        assert_eq!(headers["x-forwarded-host"], "example.com");
    }

    #[test]
    fn via_names_the_received_version_rfc9110_7_6_3() {
        let mut headers = map(&[("via", "1.0 fred")]);
        let via = Via::new("velox").unwrap();
        add_via(&mut headers, Version::HTTP_11, &via);
        assert_eq!(headers["via"], "1.0 fred, 1.1 velox");
        let mut headers = HeaderMap::new();
        add_via(&mut headers, Version::HTTP_2, &via);
        assert_eq!(headers["via"], "2 velox");
        let mut headers = HeaderMap::new();
        add_via(&mut headers, Version::HTTP_10, &via);
        assert_eq!(headers["via"], "1.0 velox");
    }
}
