mod common;
use common::*;

#[tokio::test]
async fn proxies_the_demo_home_page() {
    let origin = start_origin().await;
    let velox = Velox::basic(origin.addr).await;
    let reply = get(&velox.url("/")).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("cache-status"),
        Some("velox; fwd=uri-miss; fwd-status=200")
    );
    assert!(String::from_utf8_lossy(&reply.body).contains("<img"));
}
