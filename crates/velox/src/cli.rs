//! The command line (a stable contract: see docs and DESIGN.md).

use clap::{ArgGroup, Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

/// The version `--version` prints; a profile-guided build (`scripts/release-build.sh` sets
/// `VELOX_PGO` while it compiles) says so, so that benchmark reports can tell the builds apart.
const VERSION: &str = match option_env!("VELOX_PGO") {
    Some(_) => concat!(env!("CARGO_PKG_VERSION"), " (profile-guided build)"),
    None => env!("CARGO_PKG_VERSION"),
};

#[derive(Debug, Parser)]
#[command(
    name = "velox",
    version = VERSION,
    about = "Velox: a self-hosted edge node — shared HTTP cache, reverse proxy and load balancer in one binary.",
    after_help = "Examples:\n  velox demo                                    # demo site behind Velox on http://127.0.0.1:8080\n  velox serve --origin http://127.0.0.1:3000    # put Velox in front of an origin, no config file\n  velox serve --config velox.toml\n  velox check --config velox.toml               # validate and print the effective config\n  velox purge --tag product-42                  # purge every object tagged product-42"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run an edge node, from a config file or from flags.
    #[command(
        after_help = "Examples:\n  velox serve --config velox.toml\n  velox serve --origin http://127.0.0.1:3000 --listen 0.0.0.0:8080 --admin 127.0.0.1:9090\n  VELOX_ADMIN_TOKEN=secret velox serve --origin https://example.org"
    )]
    Serve(ServeArgs),
    /// Validate a config file; print the effective config, or each error with its field path (exit 2).
    #[command(after_help = "Example:\n  velox check --config velox.example.toml")]
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Run the built-in demo site with a Velox node in front of it; Ctrl-C stops both.
    #[command(
        after_help = "Example:\n  velox demo --listen 127.0.0.1:8080 --origin-listen 127.0.0.1:8081 --admin 127.0.0.1:9090"
    )]
    Demo {
        /// Where the edge listens.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Where the demo origin listens.
        #[arg(long, default_value = "127.0.0.1:8081")]
        origin_listen: SocketAddr,
        /// Where the admin API listens.
        #[arg(long, default_value = "127.0.0.1:9090")]
        admin: SocketAddr,
    },
    /// Purge cached objects through a running node's admin API (POST /api/purge).
    #[command(
        after_help = "Purges are records, not scans: each costs the same whatever it covers, takes effect for the next request and survives restarts. A hard purge makes covered objects misses; --soft makes them stale (revalidated, and still served under stale-while-revalidate / stale-if-error).\n\nExamples:\n  export VELOX_ADMIN_TOKEN=secret\n  velox purge --tag product-42 --tag product-43       # objects whose Surrogate-Key / Cache-Tag has either\n  velox purge --url https://example.com/a.css          # every stored variant of one URL\n  velox purge --prefix /images/ --host example.com     # a path prefix on one host (any host without --host)\n  velox purge --tag homepage --soft                    # mark stale, revalidate on next use\n  velox purge --all --admin 10.0.0.5:9090 --token T    # everything, instantly\n\nPrints the node's JSON answer; exits 1 on any failure (401: missing or wrong token)."
    )]
    Purge(PurgeArgs),
    /// Run only the demo origin (no edge): the fixture for tests and benchmarks.
    #[command(after_help = "Example:\n  velox origin --listen 127.0.0.1:3000")]
    Origin {
        #[arg(long, default_value = "127.0.0.1:8081")]
        listen: SocketAddr,
    },
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// A TOML config file (see velox.example.toml).
    #[arg(long, short, conflicts_with_all = ["origin", "listen", "admin", "data_dir"], required_unless_present = "origin")]
    pub config: Option<PathBuf>,
    /// The origin to put Velox in front of, e.g. http://127.0.0.1:3000.
    #[arg(long)]
    pub origin: Option<String>,
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, requires = "origin")]
    pub listen: Option<SocketAddr>,
    /// Admin API address [default: 127.0.0.1:9090].
    #[arg(long, requires = "origin")]
    pub admin: Option<SocketAddr>,
    /// Token for the mutating admin endpoints; without one they stay disabled.
    #[arg(long, env = "VELOX_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Where the cache and state live [default: ./velox-data].
    #[arg(long, requires = "origin")]
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("what").required(true).multiple(true).args(["urls", "prefixes", "tags", "all"])))]
pub struct PurgeArgs {
    /// The node's admin API: host:port or http://host:port.
    #[arg(long, default_value = "127.0.0.1:9090")]
    pub admin: String,
    /// The admin token (the node's admin.token).
    #[arg(long, env = "VELOX_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// An absolute URL to purge (all its variants); repeatable.
    #[arg(long = "url", value_name = "URL")]
    pub urls: Vec<String>,
    /// A path prefix to purge, e.g. /images/; repeatable.
    #[arg(long = "prefix", value_name = "PATH")]
    pub prefixes: Vec<String>,
    /// A tag (surrogate key) to purge; repeatable.
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// Purge everything (always hard).
    #[arg(long)]
    pub all: bool,
    /// Mark covered objects stale instead of removing them.
    #[arg(long, conflicts_with = "all")]
    pub soft: bool,
    /// Limit --prefix purges to this host.
    #[arg(long, requires = "prefixes")]
    pub host: Option<String>,
}
