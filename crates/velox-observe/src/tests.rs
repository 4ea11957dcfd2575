//! Recording end to end within the crate: begin, finish, body end, encode.

use super::*;
use http_body_util::BodyExt;

fn config(extra: &str) -> Config {
    let text = format!(
        r#"
[server]
listen = ["127.0.0.1:0"]
[admin]
listen = false
[[upstreams]]
name = "origin"
servers = ["http://127.0.0.1:3000"]
[[routes]]
name = "site"
path_prefix = "/"
upstream = "origin"
server_timing = true
{extra}
"#
    );
    velox_config::parse(&text, std::path::Path::new("/tmp")).expect("config")
}

fn response(cache_status: &str, body: &'static str) -> Response<Body> {
    let mut r = Response::new(
        http_body_util::Full::new(Bytes::from_static(body.as_bytes()))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    r.headers_mut().insert(
        CACHE_STATUS.clone(),
        HeaderValue::from_str(cache_status).unwrap(),
    );
    r
}

async fn run(scope: &Scope, path: &str, cache_status: &str, body: &'static str) -> Response<Bytes> {
    let req = Request::get(path).body(()).unwrap();
    let rec = scope.begin(
        Some(0),
        &req,
        fields_of(&req),
        "127.0.0.1".parse().unwrap(),
        Instant::now(),
    );
    let (resp, generated) = scope.finish(&mut { rec }, response(cache_status, body));
    let (mut parts, body) = resp.into_parts();
    // As a protocol server sends it.
    let id = generated.expect("an id is generated").header_value();
    parts.headers.insert(&X_REQUEST_ID, id);
    let bytes = body.collect().await.unwrap().to_bytes();
    Response::from_parts(parts, bytes)
}

fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn end_to_end() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        let observer = Observer::start(&config("")).unwrap();
        let scope = observer.scope(&config(""));
        let r = run(&scope, "/a", "velox; fwd=uri-miss; stored", "hello").await;
        let timing = r.headers()[&SERVER_TIMING].to_str().unwrap();
        assert!(timing.starts_with("cache;desc=miss, origin;dur="), "{timing}");
        run(&scope, "/a", "velox; hit; ttl=5", "hello").await;
        run(&scope, "/a", "velox; hit; ttl=4", "hello").await;
        let r = run(&scope, "/b", "velox; fwd=stale; fwd-status=304", "hi").await;
        assert!(r.headers()[&X_REQUEST_ID].to_str().unwrap().contains('-'));
        let text = observer.encode(&Vec::new());
        let get = |s: &str| value(&text, s);
        assert_eq!(
            get(r#"velox_requests_total{route="site",method="GET",status="200",cache="hit"}"#),
            Some(2.0)
        );
        assert_eq!(
            get(r#"velox_requests_total{route="site",method="GET",status="200",cache="miss"}"#),
            Some(1.0)
        );
        assert_eq!(
            get(r#"velox_response_bytes_total{route="site",cache="hit"}"#),
            Some(10.0)
        );
        assert_eq!(
            get(r#"velox_upstream_response_bytes_total{upstream="origin",server="127.0.0.1:3000"}"#),
            Some(5.0)
        );
        assert_eq!(
            get(r#"velox_upstream_requests_total{upstream="origin",server="127.0.0.1:3000",status="304"}"#),
            Some(1.0)
        );
        assert_eq!(
            get(r#"velox_request_duration_seconds_count{route="site",cache="hit"}"#),
            Some(2.0)
        );
        let snap = observer.snapshot(&Vec::new());
        assert_eq!(snap["requests"], 4);
        assert_eq!(snap["top_requests"][0]["path"], "/a");
        assert_eq!(snap["top_misses"][0]["path"], "/a");
    });
}

/// A recording of `req` on route 0, from 127.0.0.1.
fn begin<'a>(scope: &'a Scope, req: &Request<()>) -> Recording<'a> {
    let ip = "127.0.0.1".parse().unwrap();
    (scope.begin(Some(0), req, fields_of(req), ip, Instant::now())).expect("recorded")
}

/// The fields `begin` reads, looked up in `req`.
fn fields_of<B>(req: &Request<B>) -> RequestFields<'_> {
    RequestFields {
        host: req.headers().get(http::header::HOST),
        request_id: req.headers().get(&X_REQUEST_ID),
    }
}

#[test]
fn a_generated_request_id_is_for_the_origin_and_the_response() {
    let observer = Observer::start(&config("")).unwrap();
    let scope = observer.scope(&config(""));
    let mut req = Request::get("/").body(()).unwrap();
    let rec = begin(&scope, &req);
    let id = rec.generated_id().expect("no client id: one is generated");
    // The request itself is left alone: the id is set on it only if it is forwarded.
    assert!(!req.headers().contains_key(&X_REQUEST_ID));
    // The protocol server writes a generated id into the head: it is handed back, and an id
    // the response had already (an origin echoing the one it was sent) is taken off.
    let mut echoed = response("velox; fwd=uri-miss", "");
    (echoed.headers_mut()).insert(&X_REQUEST_ID, HeaderValue::from_static("echoed"));
    let (answered, generated) = scope.finish(&mut Some(rec), echoed);
    assert_eq!(generated, Some(id));
    assert!(!answered.headers().contains_key(&X_REQUEST_ID));

    req.headers_mut()
        .insert(&X_REQUEST_ID, HeaderValue::from_static("client-42"));
    let rec = begin(&scope, &req);
    assert_eq!(rec.generated_id(), None);
    let (answered, generated) = scope.finish(&mut Some(rec), response("velox; hit", ""));
    assert_eq!(answered.headers()[&X_REQUEST_ID], "client-42");
    assert_eq!(generated, None);

    req.headers_mut()
        .insert(&X_REQUEST_ID, HeaderValue::from_static("has space"));
    let rec = begin(&scope, &req);
    assert!(rec.generated_id().is_some(), "an odd client id is replaced");
}

#[test]
fn everything_off_costs_nothing() {
    let c = config("[observe]\nmetrics = false\nrequest_id = false\n").clone();
    let mut c = c;
    c.routes[0].server_timing = false;
    let observer = Observer::start(&c).unwrap();
    let scope = observer.scope(&c);
    let req = Request::get("/").body(()).unwrap();
    assert!(scope
        .begin(
            Some(0),
            &req,
            fields_of(&req),
            "127.0.0.1".parse().unwrap(),
            Instant::now()
        )
        .is_none());
}

#[test]
fn log_times_follow_the_wall_clock() {
    let close = |nanos: u64| {
        let t = SystemTime::UNIX_EPOCH + Duration::from_nanos(nanos);
        let gap = SystemTime::now()
            .duration_since(t)
            .unwrap_or_else(|e| e.duration());
        assert!(gap < Duration::from_millis(50), "{gap:?}");
    };
    // The first call reads the wall clock; the next ones derive it from the monotonic clock.
    close(wall_nanos(Instant::now()));
    std::thread::sleep(Duration::from_millis(20));
    close(wall_nanos(Instant::now()));
    let earlier = Instant::now();
    std::thread::sleep(Duration::from_millis(5));
    close(wall_nanos(earlier));
}
