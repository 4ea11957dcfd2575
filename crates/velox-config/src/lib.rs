//! Velox configuration: the TOML schema, its defaults, and validation that reports
//! every problem under its field path (`routes[2].upstream: no upstream named "api"`).
//!
//! ```no_run
//! let config = velox_config::load(std::path::Path::new("velox.toml"))?;
//! println!("{}", config.to_toml());
//! # Ok::<(), velox_config::ConfigError>(())
//! ```

mod schema;
mod types;
mod validate;

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

pub use schema::{
    AccessLogConfig, AdminConfig, CacheConfig, CacheKeyConfig, CacheMode, CertificateConfig,
    Config, Limits, ObserveConfig, RouteCacheConfig, RouteConfig, ServerConfig, TlsListenerConfig,
    UpstreamConfig,
};
pub use types::{ByteSize, Cidr, Duration};

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// TOML syntax or schema error; the message carries line, column and key.
    #[error("{0}")]
    Parse(String),
    /// The file parsed but breaks validation rules; one entry per problem.
    #[error("{}", display_lines(.0))]
    Invalid(Vec<FieldError>),
}

fn display_lines(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// One validation problem, e.g. `routes[2].upstream: no upstream named "api"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub path: String,
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Reads, parses and validates a config file; relative paths inside it are
/// resolved against the file's own directory (made absolute).
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    // Canonical, so `velox check` prints clean absolute paths (the directory exists: we just read from it).
    let base = std::fs::canonicalize(dir).map_err(|source| ConfigError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    parse(&text, &base)
}

/// Parses and validates config text; relative paths are resolved against `base_dir`.
pub fn parse(text: &str, base_dir: &Path) -> Result<Config, ConfigError> {
    let deserializer =
        toml::Deserializer::parse(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
    // Through serde_path_to_error so a type error or unknown key names its field path.
    let mut config: Config = serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        if path.is_empty() || path == "." {
            ConfigError::Parse(inner)
        } else {
            ConfigError::Parse(format!("{path}: {inner}"))
        }
    })?;
    config.resolve_paths(base_dir);
    config.validate()?;
    Ok(config)
}

/// `base/./x` -> `base/x`: collecting components drops interior `.` segments.
fn resolve(base: &Path, p: &Path) -> PathBuf {
    base.join(p).components().collect()
}

impl Config {
    /// The config-less one-liner `velox serve --origin URL [--listen ..] [--admin ..] [--data-dir ..]`:
    /// one upstream "origin", one route "/" to it.
    pub fn for_origin(
        origin: &str,
        listen: Option<SocketAddr>,
        admin: Option<SocketAddr>,
        admin_token: Option<String>,
        data_dir: Option<PathBuf>,
    ) -> Result<Config, ConfigError> {
        let server = origin.trim().parse::<http::Uri>().map_err(|e| {
            ConfigError::Invalid(vec![FieldError {
                path: "upstreams[0].servers[0]".to_string(),
                message: format!("invalid origin URL {origin:?}: {e}"),
            }])
        })?;
        let defaults = Config::default();
        let mut config = Config {
            server: ServerConfig {
                listen: vec![listen.unwrap_or(SocketAddr::from((Ipv4Addr::LOCALHOST, 8080)))],
                data_dir: data_dir.unwrap_or(defaults.server.data_dir),
                ..ServerConfig::default()
            },
            admin: AdminConfig {
                listen: admin.or(defaults.admin.listen),
                token: admin_token,
            },
            upstreams: vec![UpstreamConfig {
                name: "origin".to_string(),
                servers: vec![server],
                ..UpstreamConfig::default()
            }],
            routes: vec![RouteConfig {
                upstream: "origin".to_string(),
                ..RouteConfig::default()
            }],
            ..defaults
        };
        // Relative to where the command runs, as a shell user expects.
        if let Ok(cwd) = std::env::current_dir() {
            config.resolve_paths(&cwd);
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks every rule and returns all violations at once.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let errors = validate::validate(self);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(errors))
        }
    }

    /// The effective configuration, all defaults filled in, as TOML.
    pub fn to_toml(&self) -> String {
        // Only non-UTF-8 paths can fail to serialize; say so instead of panicking.
        toml::to_string_pretty(self)
            .unwrap_or_else(|e| format!("# cannot render configuration as TOML: {e}\n"))
    }

    /// Index of the first route matching `host` (case-insensitive, port and trailing dot
    /// ignored; `*.example.com` matches any subdomain but not the apex) whose `path_prefix`
    /// is a prefix of `path` (plain string prefix: "/api" also matches "/apix"; write
    /// "/api/" for a segment boundary). A route without `host` matches any host; the
    /// first match in config order wins.
    pub fn match_route(&self, host: Option<&str>, path: &str) -> Option<usize> {
        let host = host.map(strip_port);
        self.routes.iter().position(|r| {
            path.starts_with(r.path_prefix.as_str())
                && match (&r.host, host) {
                    (None, _) => true,
                    (Some(_), None) => false,
                    (Some(pattern), Some(h)) => host_matches(pattern, h),
                }
        })
    }

    /// The upstream with this name.
    pub fn upstream(&self, name: &str) -> Option<&UpstreamConfig> {
        self.upstreams.iter().find(|u| u.name == name)
    }

    fn resolve_paths(&mut self, base: &Path) {
        let s = &mut self.server;
        s.data_dir = resolve(base, &s.data_dir);
        for cert in s.tls.iter_mut().flat_map(|t| t.certificates.iter_mut()) {
            cert.cert = resolve(base, &cert.cert);
            cert.key = resolve(base, &cert.key);
        }
        for ca in self.upstreams.iter_mut().filter_map(|u| u.ca_file.as_mut()) {
            *ca = resolve(base, ca);
        }
        if self.access_log.path.as_os_str() != "stdout" {
            self.access_log.path = resolve(base, &self.access_log.path);
        }
    }
}

/// `example.com:8080` -> `example.com`, `[::1]:8080` -> `[::1]`, `example.com.` -> `example.com`.
fn strip_port(host: &str) -> &str {
    let host = if host.starts_with('[') {
        host.find(']').map_or(host, |end| &host[..=end])
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    host.strip_suffix('.').unwrap_or(host)
}

fn host_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix("*.") {
        // "*.example.com" needs at least one label before ".example.com".
        Some(suffix) => {
            host.len() > suffix.len() + 1
                && host
                    .get(host.len() - suffix.len() - 1..)
                    .and_then(|tail| tail.strip_prefix('.'))
                    .is_some_and(|tail| tail.eq_ignore_ascii_case(suffix))
        }
        None => pattern.eq_ignore_ascii_case(host),
    }
}

#[cfg(test)]
mod tests;
