//! Unit tests for parsing, defaults, validation paths and route matching.

use super::*;
use std::sync::atomic::{AtomicUsize, Ordering};

const MINIMAL: &str = r#"
[server]
listen = ["127.0.0.1:8080"]
data_dir = "./velox-data"
[admin]
listen = "127.0.0.1:9090"
token = "change-me"
[[upstreams]]
name = "origin"
servers = ["http://127.0.0.1:3000"]
[[routes]]
path_prefix = "/"
upstream = "origin"
"#;

fn base() -> &'static Path {
    Path::new("/etc/velox")
}

fn minimal() -> Config {
    match parse(MINIMAL, base()) {
        Ok(c) => c,
        Err(e) => panic!("minimal config must parse: {e}"),
    }
}

/// Validation errors as "path: message" lines (or the parse error).
fn errors(c: &Config) -> Vec<String> {
    match c.validate() {
        Ok(()) => Vec::new(),
        Err(ConfigError::Invalid(v)) => v.iter().map(ToString::to_string).collect(),
        Err(e) => panic!("unexpected error {e}"),
    }
}

fn paths(c: &Config) -> Vec<String> {
    match c.validate() {
        Ok(()) => Vec::new(),
        Err(ConfigError::Invalid(v)) => v.into_iter().map(|e| e.path).collect(),
        Err(e) => panic!("unexpected error {e}"),
    }
}

/// A fresh empty directory under the system temp dir.
fn temp_dir() -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "velox-config-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

// The validator only checks PEM structure, so base64 placeholders suffice.
const CERT_PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIBAAAA\n-----END CERTIFICATE-----\n";
const KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----\nMIIBAAAA\n-----END PRIVATE KEY-----\n";

#[test]
fn minimal_config_has_expected_defaults() {
    let c = minimal();
    assert_eq!(c.server.listen, vec!["127.0.0.1:8080".parse().unwrap()]);
    assert!(c.server.tls.is_empty());
    assert_eq!(c.server.data_dir, PathBuf::from("/etc/velox/velox-data"));
    assert_eq!(c.server.shutdown_grace, Duration::from_secs(10));
    assert_eq!(c.server.via, "velox");
    assert!(!c.server.busy_poll);
    assert_eq!(c.admin.listen, Some("127.0.0.1:9090".parse().unwrap()));
    assert_eq!(c.admin.token.as_deref(), Some("change-me"));
    assert_eq!(c.limits, Limits::default());
    assert_eq!(c.limits.max_connections, 10_000);
    assert_eq!(c.limits.header_read_timeout.get().as_secs(), 10);
    assert_eq!(c.limits.max_header_bytes.bytes(), 64 * 1024);
    assert_eq!(c.limits.max_body_bytes.bytes(), 1 << 30);
    assert_eq!(c.limits.idle_timeout.get().as_secs(), 60);
    let u = &c.upstreams[0];
    assert_eq!(u.name, "origin");
    assert_eq!(u.servers[0].host(), Some("127.0.0.1"));
    assert_eq!(u.servers[0].port_u16(), Some(3000));
    assert_eq!(u.host_header, None);
    assert_eq!(u.ca_file, None);
    assert_eq!(u.connect_timeout.get().as_secs(), 5);
    assert_eq!(u.first_byte_timeout.get().as_secs(), 60);
    assert_eq!(u.idle_timeout.get().as_secs(), 90);
    assert_eq!(u.max_idle_per_server, 256);
    assert_eq!(c.routes[0].host, None);
    assert_eq!(c.routes[0].path_prefix, "/");
    assert_eq!(c.upstream("origin"), Some(u));
    assert_eq!(c.upstream("nope"), None);
}

#[test]
fn example_files_parse_and_validate() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut files = vec![root.join("velox.example.toml")];
    let examples = std::fs::read_dir(root.join("examples")).expect("examples/ exists");
    files.extend(
        examples
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml")),
    );
    assert!(files.len() >= 2, "{files:?}");
    for f in files {
        if let Err(e) = load(&f) {
            panic!("{} does not load:\n{e}", f.display());
        }
    }
    // The minimal example is the documented minimal config.
    let loaded = load(&root.join("examples/minimal.toml")).expect("minimal.toml");
    assert_eq!(loaded.upstreams, minimal().upstreams);
    assert!(loaded.server.data_dir.is_absolute());
}

#[test]
fn load_reports_missing_file() {
    let err = load(Path::new("/nonexistent/velox.toml")).unwrap_err();
    assert!(matches!(err, ConfigError::Io { .. }), "{err}");
    assert!(err.to_string().contains("/nonexistent/velox.toml"), "{err}");
}

#[test]
fn unknown_keys_are_refused_with_position() {
    for (text, key) in [
        (MINIMAL.replace("[admin]", "[admin]\ntokn = \"x\""), "tokn"),
        (format!("{MINIMAL}\n[limitz]\n"), "limitz"),
        (MINIMAL.replace("path_prefix", "prefix"), "prefix"),
        (
            MINIMAL.replace("[server]", "[server]\nlisten_tls = []"),
            "listen_tls",
        ),
    ] {
        match parse(&text, base()) {
            Err(ConfigError::Parse(m)) => {
                assert!(m.contains(key), "{m}");
                assert!(m.contains("line"), "{m}");
            }
            other => panic!("expected parse error for {key}, got {other:?}"),
        }
    }
}

#[test]
fn bad_values_are_parse_errors() {
    for (from, to) in [
        (
            "token = \"change-me\"",
            "token = \"change-me\"\n[limits]\nmax_body_bytes = \"12 parsecs\"",
        ),
        (
            "token = \"change-me\"",
            "token = \"change-me\"\n[limits]\nidle_timeout = \"-1s\"",
        ),
        (
            "token = \"change-me\"",
            "token = \"change-me\"\n[limits]\nidle_timeout = \"\"",
        ),
        (
            "token = \"change-me\"",
            "token = \"change-me\"\n[limits]\nmax_body_bytes = -5",
        ),
        ("\"http://127.0.0.1:3000\"", "\"http://exa mple\""),
        ("listen = \"127.0.0.1:9090\"", "listen = \"localhost\""),
    ] {
        let text = MINIMAL.replace(from, to);
        assert!(
            matches!(parse(&text, base()), Err(ConfigError::Parse(_))),
            "{to}"
        );
    }
}

#[test]
fn sizes_and_durations_from_toml() {
    let text = MINIMAL.replace(
        "token = \"change-me\"",
        "token = \"change-me\"\n[limits]\nmax_header_bytes = 8192\nmax_body_bytes = \"1.5GiB\"\nidle_timeout = \"1m30s\"\nheader_read_timeout = \"250ms\"",
    );
    let c = parse(&text, base()).expect("parses");
    assert_eq!(c.limits.max_header_bytes, ByteSize(8192));
    assert_eq!(c.limits.max_body_bytes, ByteSize(3 << 29));
    assert_eq!(c.limits.idle_timeout.get().as_secs(), 90);
    assert_eq!(c.limits.header_read_timeout.get().as_millis(), 250);
}

#[test]
fn admin_can_be_disabled() {
    let text = MINIMAL.replace("listen = \"127.0.0.1:9090\"", "listen = false");
    let c = parse(&text, base()).expect("parses");
    assert_eq!(c.admin.listen, None);
    assert_eq!(parse(&c.to_toml(), base()).expect("reparses"), c);
}

#[test]
fn to_toml_reparses_to_equal_config() {
    let mut c = minimal();
    c.routes.insert(
        0,
        RouteConfig {
            host: Some("*.Example.com".into()),
            path_prefix: "/api/".into(),
            upstream: "origin".into(),
            ..RouteConfig::default()
        },
    );
    c.upstreams[0].host_header = Some("origin.internal".into());
    c.upstreams[0]
        .servers
        .push("https://cdn.example.com".parse().unwrap());
    c.limits.max_body_bytes = ByteSize(0);
    c.server.shutdown_grace = Duration::from_millis(1500);
    let text = c.to_toml();
    let again = parse(&text, base()).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(again, c, "{text}");
    assert!(text.contains("max_body_bytes = \"0B\""), "{text}");
    assert!(text.contains("shutdown_grace = \"1s500ms\""), "{text}");
}

#[test]
fn defaults_only_config_needs_listener_and_routes() {
    assert_eq!(
        errors(&Config::default()),
        vec![
            "server.listen: no listener: set server.listen or add a [[server.tls]] listener",
            "routes: at least one [[routes]] entry is required",
        ]
    );
}

#[test]
fn route_rules_have_field_paths() {
    let mut c = minimal();
    c.routes.push(RouteConfig {
        upstream: "api".into(),
        ..RouteConfig::default()
    });
    c.routes.push(RouteConfig {
        host: Some("bad host".into()),
        path_prefix: "api".into(),
        upstream: String::new(),
        ..RouteConfig::default()
    });
    c.routes.push(RouteConfig {
        host: Some("*.Example.COM".into()),
        upstream: "origin".into(),
        ..RouteConfig::default()
    });
    assert_eq!(
        errors(&c),
        vec![
            "routes[1].upstream: no upstream named \"api\"",
            "routes[2].upstream: is required",
            "routes[2].path_prefix: must start with \"/\"",
            "routes[2].host: \"bad host\" is not a hostname or a \"*.example.com\" wildcard",
        ]
    );
    for bad in [
        "",
        "*",
        "*.",
        "a.*.com",
        "-a.com",
        "a..com",
        "example.com:80",
        "*example.com",
    ] {
        c.routes = vec![RouteConfig {
            host: Some(bad.into()),
            upstream: "origin".into(),
            ..RouteConfig::default()
        }];
        assert_eq!(paths(&c), vec!["routes[0].host"], "{bad:?}");
    }
}

#[test]
fn upstream_rules_have_field_paths() {
    let mut c = minimal();
    let u = |name: &str, servers: &[&str]| UpstreamConfig {
        name: name.into(),
        servers: servers.iter().map(|s| s.parse().unwrap()).collect(),
        ..UpstreamConfig::default()
    };
    c.upstreams.push(u("origin", &["http://a:1"]));
    c.upstreams.push(u("", &[]));
    c.upstreams.push(u(
        "x",
        &[
            "http://ok:80",
            "ftp://a/",
            "http://a/path",
            "http://a/?q=1",
            "/relative",
            "https://b",
            "https://c/",
        ],
    ));
    c.upstreams[3].host_header = Some(String::new());
    c.upstreams[3].connect_timeout = Duration::from_secs(0);
    c.upstreams[3].first_byte_timeout = Duration::from_secs(0);
    c.upstreams[3].idle_timeout = Duration::from_secs(0);
    c.upstreams[3].ca_file = Some("/nonexistent/ca.pem".into());
    assert_eq!(
        paths(&c),
        vec![
            "upstreams[1].name",
            "upstreams[2].name",
            "upstreams[2].servers",
            "upstreams[3].servers[1]",
            "upstreams[3].servers[2]",
            "upstreams[3].servers[3]",
            "upstreams[3].servers[4]",
            "upstreams[3].host_header",
            "upstreams[3].ca_file",
            "upstreams[3].connect_timeout",
            "upstreams[3].first_byte_timeout",
            "upstreams[3].idle_timeout",
        ]
    );
    let all = errors(&c);
    assert!(
        all[0].contains("duplicate upstream name \"origin\" (also upstreams[0])"),
        "{all:?}"
    );
    assert!(all[3].contains("scheme must be http or https"), "{all:?}");
    assert!(
        all[8].contains("cannot read /nonexistent/ca.pem"),
        "{all:?}"
    );
}

#[test]
fn ca_file_must_hold_a_certificate() {
    let dir = temp_dir();
    std::fs::write(dir.join("ca.pem"), CERT_PEM).unwrap();
    std::fs::write(dir.join("empty.pem"), "no pem here\n").unwrap();
    let text = MINIMAL.replace(
        "servers = [\"http://127.0.0.1:3000\"]",
        "servers = [\"https://127.0.0.1:3000\"]\nca_file = \"CA\"",
    );
    let c = parse(&text.replace("CA", "ca.pem"), &dir).expect("good CA");
    assert_eq!(c.upstreams[0].ca_file, Some(dir.join("ca.pem")));
    match parse(&text.replace("CA", "empty.pem"), &dir) {
        Err(ConfigError::Invalid(v)) => {
            assert_eq!(v[0].path, "upstreams[0].ca_file");
            assert!(
                v[0].message.starts_with("no PEM certificate found"),
                "{v:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn tls_rules_have_field_paths() {
    let dir = temp_dir();
    std::fs::write(dir.join("cert.pem"), CERT_PEM).unwrap();
    std::fs::write(dir.join("key.pem"), KEY_PEM).unwrap();
    std::fs::write(
        dir.join("garbage.pem"),
        "-----BEGIN CERTIFICATE-----\n!!!\n",
    )
    .unwrap();
    let tls = r#"
[[server.tls]]
listen = "127.0.0.1:8443"
[[server.tls.certificates]]
cert = "cert.pem"
key = "key.pem"
[[server.tls.certificates]]
cert = "garbage.pem"
key = "cert.pem"
[[server.tls.certificates]]
cert = "missing.pem"
key = "missing.pem"
[[server.tls]]
listen = "127.0.0.1:8444"
"#;
    let mut c: Config = toml::from_str(&format!("{MINIMAL}{tls}")).expect("parses");
    c.resolve_paths(&dir);
    assert_eq!(c.server.tls[0].certificates[0].cert, dir.join("cert.pem"));
    let all = errors(&c);
    let got: Vec<&str> = all
        .iter()
        .map(|e| e.split(": ").next().unwrap_or(""))
        .collect();
    assert_eq!(
        got,
        vec![
            "server.tls[0].certificates[1].cert",
            "server.tls[0].certificates[1].key",
            "server.tls[0].certificates[2].cert",
            "server.tls[0].certificates[2].key",
            "server.tls[1].certificates",
        ],
        "{all:#?}"
    );
    assert!(all[0].contains("invalid PEM"), "{all:?}");
    assert!(all[1].contains("no PEM private key found"), "{all:?}");
    assert!(all[2].contains("cannot read"), "{all:?}");
    // TLS alone is enough of a listener.
    c.server.listen.clear();
    c.server.tls.truncate(1);
    c.server.tls[0].certificates.truncate(1);
    assert_eq!(errors(&c), Vec::<String>::new());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn duplicate_addresses_are_refused() {
    let mut c = minimal();
    c.server.listen = vec![
        "127.0.0.1:8080".parse().unwrap(),
        "127.0.0.1:8080".parse().unwrap(),
        "0.0.0.0:9090".parse().unwrap(),
        "127.0.0.1:0".parse().unwrap(),
        "127.0.0.1:0".parse().unwrap(),
    ];
    c.server.tls = vec![TlsListenerConfig {
        listen: "127.0.0.1:8080".parse().unwrap(),
        certificates: Vec::new(),
    }];
    assert_eq!(
        errors(&c),
        vec![
            "server.listen[1]: address 127.0.0.1:8080 is already used by server.listen[0]",
            "server.tls[0].listen: address 127.0.0.1:8080 is already used by server.listen[0]",
            "admin.listen: address 127.0.0.1:9090 is already used by server.listen[2]",
            "server.tls[0].certificates: at least one certificate is required",
        ]
    );
}

#[test]
fn limits_and_admin_rules_have_field_paths() {
    let mut c = minimal();
    c.limits.max_header_bytes = ByteSize(1023);
    c.limits.max_connections = 0;
    c.limits.header_read_timeout = Duration::from_secs(0);
    c.limits.idle_timeout = Duration::from_secs(0);
    c.admin.token = Some(String::new());
    c.server.via = "my proxy".into();
    assert_eq!(
        paths(&c),
        vec![
            "admin.token",
            "server.via",
            "limits.max_header_bytes",
            "limits.max_connections",
            "limits.header_read_timeout",
            "limits.idle_timeout",
        ]
    );
    c = minimal();
    c.limits.max_header_bytes = ByteSize::mib(1);
    assert!(c.validate().is_ok());
    c.limits.max_header_bytes = ByteSize(ByteSize::mib(1).bytes() + 1);
    assert_eq!(
        errors(&c),
        vec!["limits.max_header_bytes: must be between 1KiB and 1MiB, got 1048577B"]
    );
}

#[test]
fn invalid_error_displays_one_line_per_problem() {
    let text = MINIMAL.replace(
        "upstream = \"origin\"",
        "upstream = \"api\"\npath_prefix = \"x\"",
    );
    // path_prefix given twice is a TOML error; use a separate route instead.
    assert!(matches!(parse(&text, base()), Err(ConfigError::Parse(_))));
    let text = MINIMAL
        .replace("path_prefix = \"/\"", "path_prefix = \"x\"")
        .replace("upstream = \"origin\"", "upstream = \"api\"");
    let err = parse(&text, base()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "routes[0].upstream: no upstream named \"api\"\nroutes[0].path_prefix: must start with \"/\""
    );
}

#[test]
fn for_origin_builds_a_one_route_config() {
    let c = Config::for_origin("http://127.0.0.1:3000", None, None, None, None).expect("valid");
    assert_eq!(c.server.listen, vec!["127.0.0.1:8080".parse().unwrap()]);
    assert_eq!(c.admin.listen, Some("127.0.0.1:9090".parse().unwrap()));
    assert_eq!(c.admin.token, None);
    assert!(c.server.data_dir.is_absolute());
    assert!(c.server.data_dir.ends_with("velox-data"));
    assert_eq!(c.upstreams.len(), 1);
    assert_eq!(c.upstreams[0].name, "origin");
    assert_eq!(c.routes.len(), 1);
    assert_eq!(c.match_route(Some("any.host"), "/x"), Some(0));

    let c = Config::for_origin(
        "https://example.com",
        Some("0.0.0.0:80".parse().unwrap()),
        Some("127.0.0.1:9999".parse().unwrap()),
        Some("secret".into()),
        Some("/var/lib/velox".into()),
    )
    .expect("valid");
    assert_eq!(c.server.listen, vec!["0.0.0.0:80".parse().unwrap()]);
    assert_eq!(c.admin.listen, Some("127.0.0.1:9999".parse().unwrap()));
    assert_eq!(c.admin.token.as_deref(), Some("secret"));
    assert_eq!(c.server.data_dir, PathBuf::from("/var/lib/velox"));

    for bad in [
        "not a url",
        "ftp://example.com",
        "http://example.com/app",
        "example.com",
    ] {
        match Config::for_origin(bad, None, None, None, None) {
            Err(ConfigError::Invalid(v)) => {
                assert_eq!(v[0].path, "upstreams[0].servers[0]", "{bad}")
            }
            other => panic!("{bad}: {other:?}"),
        }
    }
    // Listener and admin on one port is caught too.
    let same = Some("127.0.0.1:9090".parse().unwrap());
    assert!(Config::for_origin("http://a:1", same, same, None, None).is_err());
}

#[test]
fn match_route_precedence_and_wildcards() {
    let route = |host: Option<&str>, prefix: &str| RouteConfig {
        host: host.map(Into::into),
        path_prefix: prefix.into(),
        upstream: "origin".into(),
        ..RouteConfig::default()
    };
    let mut c = minimal();
    c.routes = vec![
        route(Some("api.example.com"), "/v1/"),   // 0
        route(Some("*.example.com"), "/static/"), // 1
        route(Some("Example.com"), "/"),          // 2
        route(Some("*.example.com"), "/"),        // 3
        route(None, "/admin"),                    // 4
        route(None, "/"),                         // 5
    ];
    let m = |h: Option<&str>, p: &str| c.match_route(h, p);
    assert_eq!(m(Some("api.example.com"), "/v1/users"), Some(0));
    assert_eq!(m(Some("API.Example.COM:8443"), "/v1/users"), Some(0));
    assert_eq!(m(Some("api.example.com"), "/v2/users"), Some(3));
    assert_eq!(m(Some("api.example.com"), "/static/a.css"), Some(1));
    assert_eq!(m(Some("a.b.example.com"), "/static/a.css"), Some(1));
    assert_eq!(m(Some("example.com"), "/static/a.css"), Some(2)); // wildcard excludes apex
    assert_eq!(m(Some("EXAMPLE.com."), "/"), Some(2));
    assert_eq!(m(Some("example.com:80"), "/"), Some(2));
    assert_eq!(m(Some("badexample.com"), "/"), Some(5));
    assert_eq!(m(Some(".example.com"), "/"), Some(5));
    assert_eq!(m(Some("other.org"), "/admin/x"), Some(4));
    assert_eq!(m(None, "/x"), Some(5));
    assert_eq!(m(Some("[::1]:8080"), "/"), Some(5));
    assert_eq!(m(Some("é.example.com"), "/"), Some(3));
    c.routes.pop();
    assert_eq!(c.match_route(Some("other.org"), "/x"), None);
    assert_eq!(c.match_route(None, "/x"), None);
}

#[test]
fn strip_port_handles_ipv6_and_dots() {
    assert_eq!(strip_port("example.com"), "example.com");
    assert_eq!(strip_port("example.com:8080"), "example.com");
    assert_eq!(strip_port("[::1]:8080"), "[::1]");
    assert_eq!(strip_port("[::1]"), "[::1]");
    assert_eq!(strip_port("example.com."), "example.com");
}

#[test]
fn cache_policy_parses_and_validates() {
    let text = format!(
        "{MINIMAL}\n[cache]\nmemory_size = \"64MiB\"\ndisk_size = 0\n"
    )
    .replace(
        "upstream = \"origin\"",
        "upstream = \"origin\"\n[routes.cache]\nmode = \"override\"\nttl = \"5m\"\nstatus_ttl = { \"404\" = \"30s\" }\n[routes.cache.key]\ndrop_query = [\"utm_*\"]\nsort_query = true",
    );
    let c = parse(&text, base()).expect("valid");
    assert_eq!(c.cache.memory_size, ByteSize::mib(64));
    assert_eq!(c.cache.disk_size, ByteSize(0));
    let route = &c.routes[0].cache;
    assert_eq!(route.mode, crate::CacheMode::Override);
    assert_eq!(route.status_ttl["404"], Duration::from_secs(30));
    assert_eq!(route.key.drop_query, vec!["utm_*".to_string()]);
    let again = parse(&c.to_toml(), base()).expect("reparses");
    assert_eq!(again, c);
}

#[test]
fn cache_policy_errors_have_field_paths() {
    let text = MINIMAL.replace(
        "upstream = \"origin\"",
        "upstream = \"origin\"\n[routes.cache]\nmode = \"override\"\nstatus_ttl = { \"99\" = \"1s\" }",
    );
    let err = parse(&text, base()).unwrap_err().to_string();
    assert!(err.contains("routes[0].cache.ttl: is required"), "{err}");
    assert!(err.contains("routes[0].cache.status_ttl.99"), "{err}");
}

#[test]
fn observe_and_access_log_parse_with_defaults() {
    let c = minimal();
    assert!(c.observe.metrics && c.observe.request_id);
    assert!(!c.access_log.enabled);
    assert_eq!(c.access_log.path, PathBuf::from("stdout"));
    assert_eq!(c.access_log.sample_rate, 1.0);
    assert_eq!(c.routes[0].metric_name(), "*/");
    assert!(!c.routes[0].server_timing);

    let text = format!(
        "{MINIMAL}\n[observe]\nmetrics = false\nrequest_id = false\n[access_log]\nenabled = true\npath = \"logs/access.log\"\nsample_rate = 0.25\nbuffer = 16\n"
    )
    .replace(
        "upstream = \"origin\"",
        "upstream = \"origin\"\nname = \"site\"\nserver_timing = true",
    );
    let c = parse(&text, base()).expect("valid");
    assert!(!c.observe.metrics && !c.observe.request_id);
    assert_eq!(
        c.access_log.path,
        PathBuf::from("/etc/velox/logs/access.log")
    );
    assert_eq!(c.access_log.sample_rate, 0.25);
    assert_eq!(c.access_log.buffer, 16);
    assert_eq!(c.routes[0].metric_name(), "site");
    assert!(c.routes[0].server_timing);
    let again = parse(&c.to_toml(), base()).expect("reparses");
    assert_eq!(again, c);
}

#[test]
fn observe_errors_have_field_paths() {
    let mut c = minimal();
    c.access_log.sample_rate = 1.5;
    c.access_log.buffer = 0;
    c.routes[0].name = Some(String::new());
    let mut second = c.routes[0].clone();
    second.name = Some("dup".into());
    let mut third = second.clone();
    third.name = Some("dup".into());
    c.routes.push(second);
    c.routes.push(third);
    let p = paths(&c);
    assert!(p.contains(&"access_log.sample_rate".to_string()), "{p:?}");
    assert!(p.contains(&"access_log.buffer".to_string()), "{p:?}");
    assert!(p.contains(&"routes[0].name".to_string()), "{p:?}");
    assert!(p.contains(&"routes[2].name".to_string()), "{p:?}");
    assert!(!p.contains(&"routes[1].name".to_string()), "{p:?}");
    let err = parse(&format!("{MINIMAL}\n[access_log]\nbogus = 1\n"), base()).unwrap_err();
    assert!(err.to_string().contains("access_log"), "{err}");
}

#[test]
fn purge_allow_networks_have_field_paths() {
    let mut c = minimal();
    assert!(!c.cache.purge_method);
    assert_eq!(c.cache.purge_allow, ["127.0.0.1/32", "::1/128"]);
    c.cache.purge_allow = vec!["10.0.0.0/8".into(), "10.0.0.0/40".into(), "nope".into()];
    assert_eq!(
        paths(&c),
        vec!["cache.purge_allow[1]", "cache.purge_allow[2]"]
    );
}
