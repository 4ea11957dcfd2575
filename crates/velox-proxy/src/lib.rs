//! The Velox request path: listeners, TLS, HTTP/1.1 and h2 serving, routing, upstream pools, admin.
//!
//! Data flows one way: `listener` accepts, `h1`/`h2` speak the protocol, the `Handler` (the
//! `proxy`) routes and forwards through an `upstream`, and the response flows back the same way.

mod admin;
pub mod body;
mod buffers;
mod busy_poll;
pub mod cache;
mod clock;
mod deadline;
pub mod errors;
mod field_names;
pub mod forward;
pub mod h1;
mod h2;
pub mod handler;
mod in_place;
pub mod interim;
mod listener;
pub mod proxy;
pub mod server;
#[cfg(test)]
mod test_alloc;
mod tls;
pub mod transport;
mod tunnel;
pub mod upstream;

pub use server::{load_config_file, ConfigSource, Server};
