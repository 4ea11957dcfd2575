//! The configuration tree. Every default lives in exactly one `impl Default` below;
//! `velox.example.toml` at the repository root documents each key.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::types::{ByteSize, Duration};

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub admin: AdminConfig,
    pub limits: Limits,
    pub cache: CacheConfig,
    pub observe: ObserveConfig,
    pub access_log: AccessLogConfig,
    pub upstreams: Vec<UpstreamConfig>,
    pub routes: Vec<RouteConfig>,
}

/// `[cache]`: the shared HTTP cache, a memory tier and a disk tier under `server.data_dir`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    pub enabled: bool,
    /// Bytes of responses held in memory.
    pub memory_size: ByteSize,
    /// Bytes of responses held on disk; 0 disables the disk tier (and persistence).
    pub disk_size: ByteSize,
    /// Larger responses stream through uncached.
    pub max_object_size: ByteSize,
    /// A range request on a miss fetches the whole object once, up to this size; larger ranges pass through.
    pub range_fetch_max: ByteSize,
    /// Targeted cache-control fields (RFC 9213), most specific first; they win over Cache-Control.
    pub targeted_fields: Vec<String>,
    /// Pass targeted fields on to clients (off: they are meant for Velox alone).
    pub forward_targeted_fields: bool,
    /// Add `key=` to every Cache-Status (it is added anyway when the request carries `Velox-Debug: key`).
    pub expose_key: bool,
    /// Response fields whose values are the object's purge tags (split on spaces and commas).
    pub tag_fields: Vec<String>,
    /// Pass the tag fields on to clients (off: they are meant for this cache).
    pub forward_tag_fields: bool,
    /// Purge records older than this are folded into the "everything before" epoch.
    pub purge_retention: Duration,
    /// At most this many purge records are kept; beyond it the oldest fold into the epoch.
    pub purge_max_records: usize,
    /// Accept the `PURGE` method on the edge listeners (Varnish-style), from `purge_allow` only.
    pub purge_method: bool,
    /// Client networks (CIDR) allowed to send `PURGE`.
    pub purge_allow: Vec<String>,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            enabled: true,
            memory_size: ByteSize::mib(256),
            disk_size: ByteSize::gib(1),
            max_object_size: ByteSize::mib(64),
            range_fetch_max: ByteSize::mib(16),
            targeted_fields: vec![
                "velox-cache-control".to_string(),
                "cdn-cache-control".to_string(),
            ],
            forward_targeted_fields: false,
            expose_key: false,
            tag_fields: vec![
                "surrogate-key".to_string(),
                "cache-tag".to_string(),
                "xkey".to_string(),
            ],
            forward_tag_fields: false,
            purge_retention: Duration::from_secs(7 * 24 * 3600),
            purge_max_records: 100_000,
            purge_method: false,
            purge_allow: vec!["127.0.0.1/32".to_string(), "::1/128".to_string()],
        }
    }
}

/// `[observe]`: metrics and request ids.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ObserveConfig {
    /// Count requests for `GET /metrics` and the dashboard.
    pub metrics: bool,
    /// Give every request an `X-Request-Id` (kept if the client sent one), pass it to the
    /// origin and return it to the client.
    pub request_id: bool,
}

impl Default for ObserveConfig {
    fn default() -> Self {
        ObserveConfig {
            metrics: true,
            request_id: true,
        }
    }
}

/// `[access_log]`: one JSON line per request, written off the request path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AccessLogConfig {
    pub enabled: bool,
    /// A file (appended to; relative to the config file) or `"stdout"`.
    pub path: PathBuf,
    /// Fraction of requests logged, 0.0 to 1.0.
    pub sample_rate: f64,
    /// Lines queued for the writer; when full, lines are dropped and counted.
    pub buffer: usize,
}

impl Default for AccessLogConfig {
    fn default() -> Self {
        AccessLogConfig {
            enabled: false,
            path: PathBuf::from("stdout"),
            sample_rate: 1.0,
            buffer: 8192,
        }
    }
}

/// How a route treats the origin's caching instructions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum CacheMode {
    /// Follow the origin's headers (RFC 9111); `default_ttl` fills in where it gives none.
    #[default]
    Respect,
    /// Store every storable response for `ttl`, whatever the origin's freshness says.
    Override,
    /// Store only responses that carry explicit freshness (max-age, s-maxage, Expires).
    OptIn,
    /// Never use the cache on this route.
    Bypass,
}

/// `[routes.cache]`: per-route cache policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct RouteCacheConfig {
    pub mode: CacheMode,
    /// Freshness lifetime in `override` mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl: Option<Duration>,
    /// Freshness for storable responses without explicit freshness (instead of the heuristic).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_ttl: Option<Duration>,
    /// Freshness per status code, e.g. `{ "404" = "30s" }`; wins over the origin's headers.
    pub status_ttl: std::collections::BTreeMap<String, Duration>,
    /// Store responses that set cookies (off: they are usually personal).
    pub store_set_cookie: bool,
    /// Serve from cache even when the client sends `Cache-Control: no-cache` (a common CDN choice).
    pub ignore_client_no_cache: bool,
    /// Serve stale content this long when the origin fails, even if it gave no `stale-if-error`.
    pub stale_if_error: Duration,
    pub key: CacheKeyConfig,
}

/// `[routes.cache.key]`: what makes two requests the same cached object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct CacheKeyConfig {
    /// Query parameters left out of the key, by glob (`utm_*`).
    pub drop_query: Vec<String>,
    /// If set, only these query parameters (globs) are kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_query: Option<Vec<String>>,
    /// Sort query parameters so their order does not matter.
    pub sort_query: bool,
    /// Request header values added to the key.
    pub headers: Vec<String>,
    /// Cookie values added to the key.
    pub cookies: Vec<String>,
}

/// `[server]`: where the proxy listens and keeps its state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Plain listeners (HTTP/1.1 and h2c).
    pub listen: Vec<SocketAddr>,
    /// TLS listeners, `[[server.tls]]`.
    pub tls: Vec<TlsListenerConfig>,
    /// Cache and state directory; relative paths are resolved against the config file's directory.
    pub data_dir: PathBuf,
    /// How long in-flight requests may drain after SIGTERM.
    pub shutdown_grace: Duration,
    /// Pseudonym written into the `Via` header.
    pub via: String,
    /// Worker threads poll their sockets without ever sleeping: lower latency where waking an
    /// idle CPU is slow (virtual machines), at the price of one busy CPU per worker.
    pub busy_poll: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: Vec::new(),
            tls: Vec::new(),
            data_dir: PathBuf::from("./velox-data"),
            shutdown_grace: Duration::from_secs(10),
            via: "velox".to_string(),
            busy_poll: false,
        }
    }
}

/// `[[server.tls]]`: one TLS listener; SNI picks among its certificates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsListenerConfig {
    pub listen: SocketAddr,
    #[serde(default)]
    pub certificates: Vec<CertificateConfig>,
}

/// `[[server.tls.certificates]]`: a PEM certificate chain and its PEM private key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// `[admin]`: the admin API, metrics and dashboard listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// `None` (written `listen = false` in TOML) disables the admin listener.
    #[serde(with = "admin_listen")]
    pub listen: Option<SocketAddr>,
    /// Bearer token required by mutating endpoints; `None` means they always refuse.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: Some(SocketAddr::from((Ipv4Addr::LOCALHOST, 9090))),
            token: None,
        }
    }
}

/// `[limits]`: protection of the downstream side.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    pub max_connections: usize,
    /// Time allowed to receive a whole request head (slowloris guard).
    pub header_read_timeout: Duration,
    /// Largest request head: request line plus header fields.
    pub max_header_bytes: ByteSize,
    /// Largest request body; 0 means unlimited.
    pub max_body_bytes: ByteSize,
    /// Keep-alive idle timeout for downstream connections.
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 10_000,
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: ByteSize::kib(64),
            max_body_bytes: ByteSize::gib(1),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// `[[upstreams]]`: a named group of origin servers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpstreamConfig {
    pub name: String,
    /// `http://host:port` or `https://host[:port]`, no path or query.
    #[serde(with = "uri_list")]
    pub servers: Vec<http::Uri>,
    /// Host header sent upstream; `None` preserves the client's Host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_header: Option<String>,
    /// Extra PEM CA certificates trusted for https servers, besides the system roots.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    pub connect_timeout: Duration,
    pub first_byte_timeout: Duration,
    /// Lifetime of an idle pooled connection.
    pub idle_timeout: Duration,
    pub max_idle_per_server: usize,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            name: String::new(),
            servers: Vec::new(),
            host_header: None,
            ca_file: None,
            connect_timeout: Duration::from_secs(5),
            first_byte_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(90),
            max_idle_per_server: 256,
        }
    }
}

/// `[[routes]]`: host + path prefix -> upstream; the first matching route wins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RouteConfig {
    /// The `route` label in metrics and logs; default `host + path_prefix` (`*` for any host).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Exact `example.com` or wildcard `*.example.com`; `None` matches any host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    pub path_prefix: String,
    pub upstream: String,
    /// Add `Server-Timing` (cache outcome, origin time) to responses, for browser tools.
    pub server_timing: bool,
    pub cache: RouteCacheConfig,
}

impl RouteConfig {
    /// The route's label in metrics and logs.
    pub fn metric_name(&self) -> String {
        match &self.name {
            Some(name) => name.clone(),
            None => format!(
                "{}{}",
                self.host.as_deref().unwrap_or("*"),
                self.path_prefix
            ),
        }
    }
}

impl Default for RouteConfig {
    fn default() -> Self {
        RouteConfig {
            name: None,
            host: None,
            path_prefix: "/".to_string(),
            upstream: String::new(),
            server_timing: false,
            cache: RouteCacheConfig::default(),
        }
    }
}

/// TOML has no null, so a disabled admin listener is written `listen = false`.
mod admin_listen {
    use std::fmt;
    use std::net::SocketAddr;

    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<SocketAddr>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(addr) => s.collect_str(addr),
            None => s.serialize_bool(false),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Option<SocketAddr>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an address like \"127.0.0.1:9090\", or false to disable")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                if v {
                    Err(E::custom(
                        "listen = true is not an address; give \"ip:port\" or false",
                    ))
                } else {
                    Ok(None)
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                v.parse()
                    .map(Some)
                    .map_err(|e| E::custom(format!("invalid socket address {v:?}: {e}")))
            }
        }
        d.deserialize_any(V)
    }
}

/// `http::Uri` has no serde support; (de)serialize it as its string form.
mod uri_list {
    use serde::de::Error as _;
    use serde::ser::SerializeSeq;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[http::Uri], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(v.len()))?;
        for uri in v {
            // Print "http://host:port" as written, not with the "/" that Uri's Display adds.
            let text = match (uri.scheme_str(), uri.authority(), uri.path(), uri.query()) {
                (Some(scheme), Some(authority), "/", None) => format!("{scheme}://{authority}"),
                _ => uri.to_string(),
            };
            seq.serialize_element(&text)?;
        }
        seq.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<http::Uri>, D::Error> {
        Vec::<String>::deserialize(d)?
            .into_iter()
            .map(|s| {
                s.parse::<http::Uri>()
                    .map_err(|e| D::Error::custom(format!("invalid URI {s:?}: {e}")))
            })
            .collect()
    }
}
