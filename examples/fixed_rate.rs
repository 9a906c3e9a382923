//! A fixed-rate HTTP/1.1 load generator for `bench/compare.sh`: what latency does a proxy add
//! when it is not saturated? (wrk sends as fast as it can, so its latency is mostly queueing.)
//!
//! ```sh
//! cargo run --release --example fixed_rate -- URL RATE SECONDS [CONNECTIONS] [HEADER]
//! # e.g. fixed_rate http://127.0.0.1:8080/read 1000 10 16 "Authorization: Bearer eyJ..."
//! ```
//!
//! Sends RATE requests a second for SECONDS over CONNECTIONS keep-alive connections (default
//! 16). A request's latency runs from its tick (when it was due to be sent) to the end of
//! its response body, so a request that waits for a free connection counts the wait. Prints
//! `RESULT <requests> <errors> <p50 µs> <p90 µs> <p99 µs> <max µs> <achieved rate>`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

type Sender = SendRequest<Empty<Bytes>>;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: fixed_rate URL RATE SECONDS [CONNECTIONS] [HEADER]");
        std::process::exit(2);
    }
    let uri: http::Uri = args[1].parse().expect("URL");
    let rate: f64 = args[2].parse().expect("RATE");
    let seconds: f64 = args[3].parse().expect("SECONDS");
    let connections: usize = args.get(4).map_or(16, |n| n.parse().expect("CONNECTIONS"));
    let header = args.get(5).and_then(|h| h.split_once(':')).map(|(name, value)| {
        (
            http::HeaderName::from_bytes(name.trim().as_bytes()).expect("header name"),
            http::HeaderValue::from_str(value.trim()).expect("header value"),
        )
    });
    let authority = uri.authority().expect("URL with host:port").clone();

    let (idle_tx, idle_rx) = tokio::sync::mpsc::unbounded_channel::<Sender>();
    for _ in 0..connections {
        let stream = tokio::net::TcpStream::connect(authority.as_str())
            .await
            .expect("connect");
        stream.set_nodelay(true).unwrap();
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("handshake");
        tokio::spawn(connection);
        idle_tx.send(sender).unwrap();
    }
    let idle_rx = Arc::new(tokio::sync::Mutex::new(idle_rx));
    let latencies = Arc::new(Mutex::new(Vec::with_capacity((rate * seconds) as usize)));
    let errors = Arc::new(Mutex::new(0u64));

    let period = Duration::from_secs_f64(1.0 / rate);
    let total = (rate * seconds) as u64;
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(total as usize);
    for n in 0..total {
        let due = started + period.mul_f64(n as f64);
        tokio::time::sleep_until(due.into()).await;
        let tick = Instant::now();
        let mut request = http::Request::builder()
            .uri(uri.path_and_query().map_or("/", |p| p.as_str()))
            .header(http::header::HOST, authority.as_str())
            .body(Empty::<Bytes>::new())
            .unwrap();
        if let Some((name, value)) = &header {
            request.headers_mut().insert(name.clone(), value.clone());
        }
        let (idle_rx, idle_tx) = (Arc::clone(&idle_rx), idle_tx.clone());
        let (latencies, errors) = (Arc::clone(&latencies), Arc::clone(&errors));
        tasks.push(tokio::spawn(async move {
            let Some(mut sender) = idle_rx.lock().await.recv().await else {
                return;
            };
            let ok = match sender.send_request(request).await {
                Ok(response) => {
                    let status = response.status();
                    response.into_body().collect().await.is_ok() && status.is_success()
                }
                Err(_) => false,
            };
            let elapsed = tick.elapsed();
            if ok {
                latencies.lock().unwrap().push(elapsed.as_micros() as u64);
                let _ = idle_tx.send(sender);
            } else {
                *errors.lock().unwrap() += 1;
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    let wall = started.elapsed().as_secs_f64();
    let mut latencies = latencies.lock().unwrap().clone();
    latencies.sort_unstable();
    let pct = |p: f64| latencies.get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)));
    let value = |p: f64| pct(p).copied().unwrap_or(0);
    println!(
        "RESULT {} {} {} {} {} {} {:.0}",
        latencies.len(),
        *errors.lock().unwrap(),
        value(0.50),
        value(0.90),
        value(0.99),
        latencies.last().copied().unwrap_or(0),
        latencies.len() as f64 / wall
    );
}
