//! The Velox HTTP cache: pure RFC 9111 decisions (`policy`), the storage tiers (`store`)
//! and purge records (`purge`).

pub mod policy;
pub mod purge;
pub mod store;
