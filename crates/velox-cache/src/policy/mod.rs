//! RFC 9111 semantics.
pub mod conditional;
pub mod range;
pub mod vary;
pub use conditional::{
    evaluate_conditional, ConditionalOutcome, EntityTag, OriginPreconditions, SelectedResponse,
};
pub use range::{evaluate_range, ByteRange, MultipartByteranges, RangeDecision};
pub use vary::{normalize_accept_encoding, secondary_key, ContentCoding, VaryFields};

pub mod cache_control;
pub mod cache_status;
pub mod freshness;
pub mod invalidation;
pub mod key;
pub mod storability;

pub use cache_control::{
    request_directives, select_response_directives, CacheControl, Delta, DirectiveSource, MaxStale,
    Qualified, ResponseDirectives,
};
pub use cache_status::{CacheStatus, Fwd, CACHE_NAME};
pub use freshness::{
    may_serve_stale_on_error, serve_decision, AgeInputs, ServeDecision, StoredFreshness,
};
pub use invalidation::{invalidations, UriParts};
pub use key::{primary_key, KeyRules};
pub use storability::{
    storability, LifetimeSource, RoutePolicy, Storability, StoreDecision, StoreInput, TtlMode,
};
