//! The Velox HTTP cache: pure RFC 9111 decisions (`policy`) and the storage tiers (`store`).

pub mod policy;
pub mod store;
