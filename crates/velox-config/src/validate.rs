//! Validation: every rule reports under the field path it is about, and all
//! problems are collected so one `velox check` run shows them all.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;

use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::schema::Config;
use crate::types::ByteSize;
use crate::FieldError;

#[derive(Default)]
struct Errors(Vec<FieldError>);

impl Errors {
    fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            path: path.into(),
            message: message.into(),
        });
    }
}

pub(crate) fn validate(c: &Config) -> Vec<FieldError> {
    let mut e = Errors::default();
    listeners(c, &mut e);
    tls(c, &mut e);
    admin(c, &mut e);
    limits(c, &mut e);
    upstreams(c, &mut e);
    routes(c, &mut e);
    cache(c, &mut e);
    observe(c, &mut e);
    e.0
}

fn valid_header_name(name: &str) -> bool {
    http::HeaderName::from_bytes(name.as_bytes()).is_ok()
}

fn cache(c: &Config, e: &mut Errors) {
    for (i, field) in c.cache.targeted_fields.iter().enumerate() {
        if !valid_header_name(field) {
            e.add(
                format!("cache.targeted_fields[{i}]"),
                format!("{field:?} is not a header field name"),
            );
        }
    }
    for (i, field) in c.cache.tag_fields.iter().enumerate() {
        if !valid_header_name(field) {
            e.add(
                format!("cache.tag_fields[{i}]"),
                format!("{field:?} is not a header field name"),
            );
        }
    }
    if c.cache.max_object_size.bytes() == 0 {
        e.add("cache.max_object_size", "must be greater than 0");
    }
    if c.cache.purge_max_records == 0 {
        e.add("cache.purge_max_records", "must be greater than 0");
    }
    for (i, net) in c.cache.purge_allow.iter().enumerate() {
        if let Err(why) = net.parse::<crate::types::Cidr>() {
            e.add(format!("cache.purge_allow[{i}]"), why);
        }
    }
    for (i, r) in c.routes.iter().enumerate() {
        let p = format!("routes[{i}].cache");
        let policy = &r.cache;
        if policy.mode == crate::schema::CacheMode::Override && policy.ttl.is_none() {
            e.add(format!("{p}.ttl"), "is required when mode = \"override\"");
        }
        for code in policy.status_ttl.keys() {
            if !code.parse::<u16>().is_ok_and(|n| (100..=599).contains(&n)) || code.len() != 3 {
                e.add(
                    format!("{p}.status_ttl.{code}"),
                    "keys must be status codes from 100 to 599",
                );
            }
        }
        for (j, name) in policy.key.headers.iter().enumerate() {
            if !valid_header_name(name) {
                e.add(
                    format!("{p}.key.headers[{j}]"),
                    format!("{name:?} is not a header field name"),
                );
            }
        }
    }
}

fn observe(c: &Config, e: &mut Errors) {
    let log = &c.access_log;
    if !(0.0..=1.0).contains(&log.sample_rate) {
        e.add(
            "access_log.sample_rate",
            format!("must be between 0.0 and 1.0, got {}", log.sample_rate),
        );
    }
    if log.buffer == 0 || log.buffer > 1_000_000 {
        e.add(
            "access_log.buffer",
            format!("must be between 1 and 1000000 lines, got {}", log.buffer),
        );
    }
    if log.path.as_os_str().is_empty() {
        e.add("access_log.path", "must be a file path or \"stdout\"");
    }
    let mut names: HashMap<String, usize> = HashMap::new();
    for (i, r) in c.routes.iter().enumerate() {
        if let Some(name) = &r.name {
            let ok = !name.is_empty()
                && name.len() <= 64
                && name.bytes().all(|b| b.is_ascii_graphic() || b == b' ');
            if !ok {
                e.add(
                    format!("routes[{i}].name"),
                    "must be 1 to 64 printable ASCII characters",
                );
                continue;
            }
            if let Some(first) = names.get(name) {
                e.add(
                    format!("routes[{i}].name"),
                    format!("duplicate route name {name:?} (also routes[{first}])"),
                );
            } else {
                names.insert(name.clone(), i);
            }
        }
    }
}

fn listeners(c: &Config, e: &mut Errors) {
    if c.server.listen.is_empty() && c.server.tls.is_empty() {
        e.add(
            "server.listen",
            "no listener: set server.listen or add a [[server.tls]] listener",
        );
    }
    let mut seen: Vec<(SocketAddr, String)> = Vec::new();
    let plain = c
        .server
        .listen
        .iter()
        .enumerate()
        .map(|(i, a)| (*a, format!("server.listen[{i}]")));
    let tls = c
        .server
        .tls
        .iter()
        .enumerate()
        .map(|(i, t)| (t.listen, format!("server.tls[{i}].listen")));
    let admin = c.admin.listen.map(|a| (a, "admin.listen".to_string()));
    for (addr, path) in plain.chain(tls).chain(admin) {
        if let Some((_, first)) = seen.iter().find(|(other, _)| conflicts(addr, *other)) {
            e.add(&path, format!("address {addr} is already used by {first}"));
        }
        seen.push((addr, path));
    }
}

/// Two listeners cannot bind the same port when the IPs are equal or either is a wildcard.
/// Port 0 asks the OS for a free port, so it never conflicts.
fn conflicts(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() != 0
        && a.port() == b.port()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

fn tls(c: &Config, e: &mut Errors) {
    for (i, t) in c.server.tls.iter().enumerate() {
        if t.certificates.is_empty() {
            e.add(
                format!("server.tls[{i}].certificates"),
                "at least one certificate is required",
            );
        }
        for (j, cert) in t.certificates.iter().enumerate() {
            let base = format!("server.tls[{i}].certificates[{j}]");
            if let Err(m) = check_certs(&cert.cert) {
                e.add(format!("{base}.cert"), m);
            }
            if let Err(err) = PrivateKeyDer::from_pem_file(&cert.key) {
                e.add(
                    format!("{base}.key"),
                    pem_message(&cert.key, err, "private key"),
                );
            }
        }
    }
}

/// The file must be readable PEM holding at least one certificate.
fn check_certs(path: &Path) -> Result<(), String> {
    let iter =
        CertificateDer::pem_file_iter(path).map_err(|err| pem_message(path, err, "certificate"))?;
    let mut count = 0;
    for item in iter {
        item.map_err(|err| pem_message(path, err, "certificate"))?;
        count += 1;
    }
    if count == 0 {
        return Err(pem_message(path, pem::Error::NoItemsFound, "certificate"));
    }
    Ok(())
}

fn pem_message(path: &Path, err: pem::Error, what: &str) -> String {
    let path = path.display();
    match err {
        pem::Error::Io(io) => format!("cannot read {path}: {io}"),
        pem::Error::NoItemsFound => format!("no PEM {what} found in {path}"),
        other => format!("invalid PEM in {path}: {other}"),
    }
}

fn admin(c: &Config, e: &mut Errors) {
    if c.admin
        .token
        .as_deref()
        .is_some_and(|t| t.trim().is_empty())
    {
        e.add(
            "admin.token",
            "must not be empty (remove the key to leave mutating endpoints locked)",
        );
    }
    let via = &c.server.via;
    if via.is_empty() || !via.bytes().all(|b| b.is_ascii_graphic() && b != b',') {
        e.add(
            "server.via",
            "must be a non-empty token without spaces or commas",
        );
    }
}

fn limits(c: &Config, e: &mut Errors) {
    let l = &c.limits;
    let (min, max) = (ByteSize::kib(1), ByteSize::mib(1));
    if l.max_header_bytes < min || l.max_header_bytes > max {
        e.add(
            "limits.max_header_bytes",
            format!(
                "must be between {min} and {max}, got {}",
                l.max_header_bytes
            ),
        );
    }
    if l.max_connections < 1 {
        e.add("limits.max_connections", "must be at least 1");
    }
    for (name, d) in [
        ("header_read_timeout", l.header_read_timeout),
        ("idle_timeout", l.idle_timeout),
    ] {
        if d.is_zero() {
            e.add(format!("limits.{name}"), "must be greater than 0");
        }
    }
}

fn upstreams(c: &Config, e: &mut Errors) {
    let mut names: HashMap<&str, usize> = HashMap::new();
    for (i, u) in c.upstreams.iter().enumerate() {
        let p = format!("upstreams[{i}]");
        if u.name.trim().is_empty() {
            e.add(format!("{p}.name"), "must not be empty");
        } else if let Some(first) = names.get(u.name.as_str()) {
            e.add(
                format!("{p}.name"),
                format!(
                    "duplicate upstream name {:?} (also upstreams[{first}])",
                    u.name
                ),
            );
        } else {
            names.insert(&u.name, i);
        }
        if u.servers.is_empty() {
            e.add(format!("{p}.servers"), "at least one server is required");
        }
        for (j, uri) in u.servers.iter().enumerate() {
            if let Err(m) = check_server_uri(uri) {
                e.add(format!("{p}.servers[{j}]"), m);
            }
        }
        if let Some(h) = &u.host_header {
            if h.is_empty() || http::HeaderValue::from_str(h).is_err() {
                e.add(
                    format!("{p}.host_header"),
                    "must be a non-empty valid header value",
                );
            }
        }
        if let Some(ca) = &u.ca_file {
            if let Err(m) = check_certs(ca) {
                e.add(format!("{p}.ca_file"), m);
            }
        }
        for (name, d) in [
            ("connect_timeout", u.connect_timeout),
            ("first_byte_timeout", u.first_byte_timeout),
            ("idle_timeout", u.idle_timeout),
        ] {
            if d.is_zero() {
                e.add(format!("{p}.{name}"), "must be greater than 0");
            }
        }
    }
}

fn check_server_uri(uri: &http::Uri) -> Result<(), String> {
    match uri.scheme_str() {
        Some("http" | "https") => {}
        Some(other) => {
            return Err(format!(
                "{uri}: scheme must be http or https, not {other:?}"
            ))
        }
        None => {
            return Err(format!(
                "{uri}: missing scheme (write http://{uri} or https://{uri})"
            ))
        }
    }
    if !matches!(uri.host(), Some(h) if !h.is_empty()) {
        return Err(format!("{uri}: missing host"));
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(format!("{uri}: must not have a path or query"));
    }
    Ok(())
}

fn routes(c: &Config, e: &mut Errors) {
    if c.routes.is_empty() {
        e.add("routes", "at least one [[routes]] entry is required");
    }
    for (i, r) in c.routes.iter().enumerate() {
        let p = format!("routes[{i}]");
        if r.upstream.is_empty() {
            e.add(format!("{p}.upstream"), "is required");
        } else if c.upstream(&r.upstream).is_none() {
            e.add(
                format!("{p}.upstream"),
                format!("no upstream named {:?}", r.upstream),
            );
        }
        if !r.path_prefix.starts_with('/') {
            e.add(format!("{p}.path_prefix"), "must start with \"/\"");
        }
        if let Some(h) = &r.host {
            if !valid_host_pattern(h) {
                e.add(
                    format!("{p}.host"),
                    format!("{h:?} is not a hostname or a \"*.example.com\" wildcard"),
                );
            }
        }
    }
}

fn valid_host_pattern(h: &str) -> bool {
    valid_hostname(h.strip_prefix("*.").unwrap_or(h))
}

/// RFC 1123 hostname: dot-separated labels of letters, digits and inner hyphens.
fn valid_hostname(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}
