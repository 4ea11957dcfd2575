//! The JSON API: search and recommendations, each with 150 ms of artificial latency and
//! results determined by the query.

use std::time::Duration;

use http::header::{HeaderValue, CACHE_CONTROL};
use http::{Response, StatusCode, Uri};
use serde_json::json;

use crate::pages::TITLES;
use crate::resp::{self, Body, Rng};

/// Artificial latency of every API call.
pub const API_LATENCY: Duration = Duration::from_millis(150);

/// `/api/search?q=TEXT`: `Cache-Control: no-cache`.
pub(crate) async fn search(uri: &Uri) -> Response<Body> {
    let q = resp::query_param(uri, "q").unwrap_or_default();
    tokio::time::sleep(API_LATENCY).await;
    let mut rng = Rng::new(resp::fnv1a(q.as_bytes()));
    let needle = q.to_lowercase();
    let mut results = Vec::new();
    for (i, t) in TITLES.iter().enumerate() {
        let lucky = rng.below(3) == 0 && i % 2 == 0;
        if needle.is_empty() || t.to_lowercase().contains(&needle) || lucky {
            results.push(json!({
                "id": i + 1,
                "title": t,
                "url": format!("/articles/{}", i + 1),
                "score": (rng.below(1000) as f64) / 1000.0,
            }));
        }
    }
    let mut r = resp::json(
        StatusCode::OK,
        &json!({ "query": q, "total": results.len(), "results": results }),
    );
    resp::set(&mut r, CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// `/api/recommendations?user=ID`: `Cache-Control: max-age=30`.
pub(crate) async fn recommendations(uri: &Uri) -> Response<Body> {
    let user = resp::query_param(uri, "user").unwrap_or_else(|| "anonymous".to_owned());
    tokio::time::sleep(API_LATENCY).await;
    let mut rng = Rng::new(resp::fnv1a(user.as_bytes()) ^ 0x5eed);
    let start = rng.below(TITLES.len() as u64) as usize;
    let items: Vec<_> = (0..3)
        .map(|k| {
            let i = (start + k * 2) % TITLES.len();
            json!({
                "id": i + 1,
                "title": TITLES[i],
                "url": format!("/articles/{}", i + 1),
                "image": format!("/images/photo-{}.jpg", i % 4 + 1),
            })
        })
        .collect();
    let mut r = resp::json(StatusCode::OK, &json!({ "user": user, "items": items }));
    resp::set(
        &mut r,
        CACHE_CONTROL,
        HeaderValue::from_static("max-age=30"),
    );
    r
}
