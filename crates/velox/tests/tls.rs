//! TLS listener over real sockets: SNI picks between two certificates, ALPN negotiates
//! h2 or http/1.1, and requests over both reach the origin.

mod common;
use common::*;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// A Velox with one TLS listener holding certificates for "a.test" (first) and "b.test".
struct TlsVelox {
    velox: Velox,
    tls_addr: SocketAddr,
    cert_a: CertificateDer<'static>,
    cert_b: CertificateDer<'static>,
    _origin: Origin,
    _certs: tempfile::TempDir,
}

fn write_cert(dir: &std::path::Path, name: &str) -> CertificateDer<'static> {
    let certified = rcgen::generate_simple_self_signed(vec![name.to_owned()]).expect("rcgen");
    std::fs::write(dir.join(format!("{name}.pem")), certified.cert.pem()).expect("write cert");
    std::fs::write(
        dir.join(format!("{name}.key")),
        certified.signing_key.serialize_pem(),
    )
    .expect("write key");
    certified.cert.der().clone()
}

async fn start_tls_velox() -> TlsVelox {
    let origin = start_origin().await;
    let certs = tempfile::tempdir().expect("tempdir");
    let cert_a = write_cert(certs.path(), "a.test");
    let cert_b = write_cert(certs.path(), "b.test");
    assert_ne!(cert_a, cert_b);
    let (addr, admin, tls_addr) = (free_addr(), free_addr(), free_addr());
    let dir = certs.path().display();
    let config = format!(
        r#"
[server]
listen = ["{addr}"]
shutdown_grace = "5s"
[[server.tls]]
listen = "{tls_addr}"
[[server.tls.certificates]]
cert = "{dir}/a.test.pem"
key = "{dir}/a.test.key"
[[server.tls.certificates]]
cert = "{dir}/b.test.pem"
key = "{dir}/b.test.key"
[admin]
listen = "{admin}"
token = "secret"
[[upstreams]]
name = "origin"
servers = ["http://{origin}"]
[[routes]]
path_prefix = "/"
upstream = "origin"
"#,
        origin = origin.addr
    );
    let velox = Velox::start(&config, addr, admin).await;
    wait_until_accepting(tls_addr).await;
    TlsVelox {
        velox,
        tls_addr,
        cert_a,
        cert_b,
        _origin: origin,
        _certs: certs,
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client trusting exactly the two test certificates.
fn client_config(roots: &[&CertificateDer<'static>], alpn: &[&[u8]]) -> rustls::ClientConfig {
    let mut store = rustls::RootCertStore::empty();
    for root in roots {
        store.add((*root).clone()).expect("add root");
    }
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(store)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}

async fn connect(
    addr: SocketAddr,
    config: rustls::ClientConfig,
    sni: &str,
) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.expect("tcp connect");
    let name = ServerName::try_from(sni.to_owned()).expect("server name");
    tokio::time::timeout(
        Duration::from_secs(10),
        tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp),
    )
    .await
    .expect("TLS handshake within 10s")
    .unwrap_or_else(|e| panic!("TLS handshake with SNI {sni} failed: {e}"))
}

fn leaf(stream: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .expect("a presented certificate")
        .clone()
        .into_owned()
}

fn echoed(json: &serde_json::Value, name: &str) -> Vec<String> {
    json["headers"][name]
        .as_array()
        .map(|values| {
            values
                .iter()
                .map(|v| v.as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Accepts any certificate: only for seeing what the server presents for an unknown name.
#[derive(Debug)]
struct AcceptAnything;

impl ServerCertVerifier for AcceptAnything {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn sni_selects_the_matching_certificate() {
    let setup = start_tls_velox().await;
    let roots = [&setup.cert_a, &setup.cert_b];

    let a = connect(
        setup.tls_addr,
        client_config(&roots, &[b"http/1.1"]),
        "a.test",
    )
    .await;
    assert!(
        leaf(&a) == setup.cert_a,
        "SNI a.test did not get the a.test certificate"
    );

    let b = connect(
        setup.tls_addr,
        client_config(&roots, &[b"http/1.1"]),
        "b.test",
    )
    .await;
    assert!(
        leaf(&b) == setup.cert_b,
        "SNI b.test did not get the b.test certificate"
    );

    // Trusting only a.test's certificate, a b.test handshake must fail: b.test really
    // gets a different certificate, not a.test's.
    let tcp = TcpStream::connect(setup.tls_addr).await.expect("tcp");
    let only_a = tokio_rustls::TlsConnector::from(Arc::new(client_config(&[&setup.cert_a], &[])));
    let result = tokio::time::timeout(
        Duration::from_secs(10),
        only_a.connect(ServerName::try_from("b.test").expect("name"), tcp),
    )
    .await
    .expect("handshake outcome within 10s");
    assert!(
        result.is_err(),
        "b.test verified against a.test's certificate"
    );
    drop(setup.velox);
}

#[tokio::test]
async fn unknown_sni_gets_the_first_certificate() {
    let setup = start_tls_velox().await;
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnything))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let stream = connect(setup.tls_addr, config, "unknown.test").await;
    assert!(
        leaf(&stream) == setup.cert_a,
        "unknown SNI did not get the first certificate"
    );
}

#[tokio::test]
async fn alpn_h2_negotiates_http2_and_reaches_the_origin() {
    let setup = start_tls_velox().await;
    let roots = [&setup.cert_a, &setup.cert_b];
    let stream = connect(
        setup.tls_addr,
        client_config(&roots, &[b"h2", b"http/1.1"]),
        "b.test",
    )
    .await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    assert!(leaf(&stream) == setup.cert_b);

    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("h2 handshake over TLS");
    tokio::spawn(conn);
    let request = http::Request::get("https://b.test/echo?over=h2")
        .body(Empty::<Bytes>::new())
        .expect("request");
    let response = tokio::time::timeout(Duration::from_secs(10), sender.send_request(request))
        .await
        .expect("response within 10s")
        .expect("h2 response");
    assert_eq!(response.version(), http::Version::HTTP_2);
    assert_eq!(response.status(), 200);
    assert_eq!(
        response
            .headers()
            .get("cache-status")
            .and_then(|v| v.to_str().ok()),
        Some("velox; fwd=uri-miss; fwd-status=200")
    );
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(json["method"], "GET");
    assert_eq!(json["uri"], "/echo?over=h2");
    assert_eq!(echoed(&json, "via"), vec!["2 velox"]);
    assert_eq!(echoed(&json, "x-forwarded-proto"), vec!["https"]);
    assert_eq!(echoed(&json, "host"), vec!["b.test"]);
    assert_eq!(echoed(&json, "x-forwarded-host"), vec!["b.test"]);
}

#[tokio::test]
async fn alpn_http11_only_works() {
    let setup = start_tls_velox().await;
    let roots = [&setup.cert_a, &setup.cert_b];
    for alpn in [&[&b"http/1.1"[..]][..], &[]] {
        let stream = connect(setup.tls_addr, client_config(&roots, alpn), "a.test").await;
        let expected_alpn = if alpn.is_empty() {
            None
        } else {
            Some(&b"http/1.1"[..])
        };
        assert_eq!(stream.get_ref().1.alpn_protocol(), expected_alpn);

        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("http/1.1 over TLS");
        tokio::spawn(conn);
        for round in 0..2 {
            let request = http::Request::get(format!("/echo?round={round}"))
                .header("host", "a.test")
                .body(Empty::<Bytes>::new())
                .expect("request");
            let response =
                tokio::time::timeout(Duration::from_secs(10), sender.send_request(request))
                    .await
                    .expect("response within 10s")
                    .expect("http/1.1 response");
            assert_eq!(response.version(), http::Version::HTTP_11);
            assert_eq!(response.status(), 200);
            let body = response
                .into_body()
                .collect()
                .await
                .expect("body")
                .to_bytes();
            let json: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
            assert_eq!(json["uri"], format!("/echo?round={round}"));
            assert_eq!(echoed(&json, "via"), vec!["1.1 velox"]);
            assert_eq!(echoed(&json, "x-forwarded-proto"), vec!["https"]);
            assert_eq!(echoed(&json, "host"), vec!["a.test"]);
        }
    }
}

#[tokio::test]
async fn plain_listener_still_serves_next_to_tls() {
    let setup = start_tls_velox().await;
    let reply = get(&setup.velox.url("/status/200")).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, "status 200\n");
}
