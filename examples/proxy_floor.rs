//! The floor under scopegate's request path: a reverse proxy built from the same pieces
//! (hyper 1 server and client, hyper-util, one single-threaded tokio runtime) that does
//! nothing but pass each request on. No token, no route, no header rewriting, no record.
//!
//! Question it answers: of what scopegate costs per cache-hit request, how much is the
//! HTTP machinery it is built on, and how much is scopegate's own work? `bench/compare.sh`
//! runs it as the peer `floor` (and `floor-lean`) next to nginx and scopegate.
//!
//!   cargo run --release --example proxy_floor -- 127.0.0.1:8080 http://127.0.0.1:9000 [legacy|lean]
//!
//! `legacy` (the default) forwards through hyper-util's pooled client, as scopegate did
//! before its own pool; `lean` through `scopegate::forward::UpstreamClient`, the pool
//! scopegate uses now.

use std::convert::Infallible;
use std::net::SocketAddr;

use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use scopegate::body::{ProxyBody, stream_body};

/// The binary's allocator (`src/main.rs`), so that what is measured is what ships.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(listen), Some(upstream)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: proxy_floor LISTEN_ADDR UPSTREAM_URL [legacy|lean]");
        std::process::exit(2);
    };
    let listen: SocketAddr = listen.parse().expect("LISTEN_ADDR is host:port");
    let upstream: Uri = upstream.parse().expect("UPSTREAM_URL is a URL");
    let lean = args.get(3).is_some_and(|m| m == "lean");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(serve(listen, upstream, lean));
}

#[derive(Clone)]
#[expect(
    clippy::large_enum_variant,
    reason = "one per process, cloned per request: a box would add an allocation to what is measured"
)]
enum Upstream {
    Legacy(Client<HttpConnector, ProxyBody>),
    Lean(scopegate::forward::UpstreamClient),
}

async fn serve(listen: SocketAddr, upstream: Uri, lean: bool) {
    let client = if lean {
        let config = scopegate::config::UpstreamConfig {
            scheme: upstream.scheme().cloned().expect("UPSTREAM_URL has a scheme"),
            authority: upstream.authority().cloned().expect("UPSTREAM_URL has an authority"),
            connect_timeout: std::time::Duration::from_secs(5),
            response_header_timeout: std::time::Duration::from_secs(30),
            pool_idle_timeout: std::time::Duration::from_secs(90),
            pool_max_idle_per_host: 256,
            http2_prior_knowledge: false,
            max_concurrent_requests: 4096,
            ca_file: None,
            ca: None,
        };
        Upstream::Lean(scopegate::forward::UpstreamClient::new(&config))
    } else {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        Upstream::Legacy(
            Client::builder(TokioExecutor::new())
                .pool_timer(TokioTimer::new())
                .build(connector),
        )
    };
    let listener = tokio::net::TcpListener::bind(listen).await.expect("bind");
    eprintln!("listening on {listen}");
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (client, upstream) = (client.clone(), upstream.clone());
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let (client, upstream) = (client.clone(), upstream.clone());
                async move { Ok::<_, Infallible>(pass(&client, &upstream, req).await) }
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn pass(client: &Upstream, upstream: &Uri, req: Request<Incoming>) -> Response<ProxyBody> {
    let (mut parts, body) = req.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    parts.uri = format!("{upstream}{}", path.trim_start_matches('/'))
        .parse()
        .expect("uri");
    let request = Request::from_parts(parts, stream_body(body));
    let answer = match client {
        Upstream::Legacy(client) => client.request(request).await.ok().map(|r| r.map(stream_body)),
        Upstream::Lean(client) => client.send(request).await.ok().map(|r| r.map(stream_body)),
    };
    match answer {
        Some(response) => response,
        None => Response::builder()
            .status(502)
            .body(scopegate::body::full_body(bytes::Bytes::new()))
            .expect("static response"),
    }
}
