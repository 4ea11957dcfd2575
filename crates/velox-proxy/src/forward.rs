//! Header rules for forwarding a message across Velox (RFC 9110 §7.6). Pure.

use http::header::{HeaderName, CONNECTION, TE, TRAILER, TRANSFER_ENCODING, UPGRADE, VIA};
use http::{HeaderMap, HeaderValue, Version};
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
        .filter_map(|token| HeaderName::from_bytes(token.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    let present: Vec<HeaderName> = headers
        .keys()
        .filter(|n| is_hop_by_hop(n))
        .cloned()
        .collect();
    for name in present {
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

/// The `X-Forwarded-*` fields an origin behind Velox expects.
/// Proto and Host describe this hop, so a client cannot forge them.
pub fn add_forwarded(
    headers: &mut HeaderMap,
    client: IpAddr,
    tls: bool,
    host: Option<&HeaderValue>,
) {
    append_to_list(headers, X_FORWARDED_FOR, &client.to_string());
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

/// Appends this hop to `Via` (RFC 9110 §7.6.3), naming the protocol version it was received with.
pub fn add_via(headers: &mut HeaderMap, received: Version, pseudonym: &str) {
    let version = match received {
        Version::HTTP_09 => "0.9",
        Version::HTTP_10 => "1.0",
        Version::HTTP_2 => "2",
        Version::HTTP_3 => "3",
        _ => "1.1",
    };
    if !headers.contains_key(VIA) {
        let mut value = String::with_capacity(version.len() + 1 + pseudonym.len());
        value.push_str(version);
        value.push(' ');
        value.push_str(pseudonym);
        if let Ok(value) = HeaderValue::try_from(value) {
            headers.insert(VIA, value);
        }
        return;
    }
    append_to_list(headers, VIA, &format!("{version} {pseudonym}"));
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(headers["x-forwarded-proto"], "http");
        assert_eq!(headers["x-forwarded-host"], "example.com");
    }

    #[test]
    fn via_names_the_received_version_rfc9110_7_6_3() {
        let mut headers = map(&[("via", "1.0 fred")]);
        add_via(&mut headers, Version::HTTP_11, "velox");
        assert_eq!(headers["via"], "1.0 fred, 1.1 velox");
        let mut headers = HeaderMap::new();
        add_via(&mut headers, Version::HTTP_2, "velox");
        assert_eq!(headers["via"], "2 velox");
    }
}
