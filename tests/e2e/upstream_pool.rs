//! The HTTP/1.1 upstream pool over real sockets: keep-alive connections are reused, a
//! connection the upstream closes is not, and a request that raced the upstream's close of
//! an idle connection (never written to it) is sent again on a new connection.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use http_body_util::BodyExt;
use scopegate::body::full_body;
use scopegate::forward::UpstreamClient;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, mpsc};

use crate::common::builder::{ConfigBuilder, RouteBuilder};
use crate::common::*;

/// When the tiny upstream closes a connection. It never says so (no `Connection: close`),
/// as an upstream whose keep-alive timeout expires does not.
#[derive(Clone, Copy)]
enum Closing {
    /// After answering this many requests on it.
    After(usize),
    /// After answering its first request, once the test asks (see [`TinyUpstream::close_idle`]).
    WhenAsked,
}

/// An HTTP/1.1 upstream on a thread and runtime of its own (it keeps working while the
/// test's runtime is held up), answering `200 ok` to every request and counting the
/// connections it accepted and the requests it answered. Stops when dropped.
struct TinyUpstream {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
    close: mpsc::UnboundedSender<std::sync::mpsc::Sender<()>>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl TinyUpstream {
    fn start(closing: Closing) -> TinyUpstream {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let (connections, requests) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (close, close_requests) = mpsc::unbounded_channel();
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let counters = (connections.clone(), requests.clone());
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = TcpListener::from_std(listener).unwrap();
                let close_requests = Arc::new(Mutex::new(close_requests));
                let accept = async {
                    while let Ok((stream, _)) = listener.accept().await {
                        counters.0.fetch_add(1, Ordering::SeqCst);
                        let (requests, close_requests) = (counters.1.clone(), close_requests.clone());
                        tokio::spawn(serve(stream, closing, requests, close_requests));
                    }
                };
                tokio::select! {
                    () = accept => {}
                    _ = stopped => {}
                }
            });
        });
        TinyUpstream {
            addr,
            connections,
            requests,
            close,
            _stop: stop,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// Closes the idle connection (`Closing::WhenAsked`) and blocks this thread until it
    /// is closed: the test's runtime does not run meanwhile, so its side of the connection
    /// has not yet noticed.
    fn close_idle(&self) {
        let (done, closed) = std::sync::mpsc::channel();
        self.close.send(done).unwrap();
        closed.recv().unwrap();
    }
}

async fn serve(
    stream: TcpStream,
    closing: Closing,
    requests: Arc<AtomicUsize>,
    close_requests: Arc<Mutex<mpsc::UnboundedReceiver<std::sync::mpsc::Sender<()>>>>,
) {
    let mut stream = BufReader::new(stream);
    let mut answered = 0;
    loop {
        // A request head (the tests send no bodies), up to its empty line.
        let mut line = String::new();
        loop {
            line.clear();
            match stream.read_line(&mut line).await {
                Ok(0) | Err(_) => return,
                Ok(_) if line == "\r\n" => break,
                Ok(_) => {}
            }
        }
        requests.fetch_add(1, Ordering::SeqCst);
        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
        if stream.get_mut().write_all(answer).await.is_err() {
            return;
        }
        answered += 1;
        match closing {
            Closing::After(n) if answered == n => return,
            Closing::After(_) => {}
            Closing::WhenAsked => {
                let Some(done) = close_requests.lock().await.recv().await else {
                    return;
                };
                drop(stream);
                let _ = done.send(());
                return;
            }
        }
    }
}

fn proxy_config(upstream: &TinyUpstream) -> scopegate::config::Config {
    ConfigBuilder::new(&upstream.url())
        .route(RouteBuilder::new("all", "/**").public())
        .build()
}

/// Sends `count` requests one after the other (one client connection) and checks each.
async fn get_sequentially(proxy: &scopegate::server::Running, count: usize) {
    let client = client();
    for i in 0..count {
        let response = client
            .get(format!("http://{}/item/{i}", proxy.addr))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "request {i}");
        assert_eq!(response.text().await.unwrap(), "ok", "request {i}");
    }
}

#[tokio::test]
async fn sequential_requests_reuse_one_upstream_connection() {
    let upstream = TinyUpstream::start(Closing::After(usize::MAX));
    let proxy = start_proxy(proxy_config(&upstream)).await;
    get_sequentially(&proxy, 20).await;
    assert_eq!(upstream.requests(), 20);
    assert_eq!(
        upstream.connections(),
        1,
        "every request after the first found the connection idle"
    );
}

#[tokio::test]
async fn a_connection_the_upstream_closed_is_not_reused() {
    let upstream = TinyUpstream::start(Closing::After(3));
    let proxy = start_proxy(proxy_config(&upstream)).await;
    get_sequentially(&proxy, 10).await;
    assert_eq!(upstream.requests(), 10);
    // Three requests on each connection, the last connection answering one.
    assert_eq!(upstream.connections(), 4);
}

/// The race: the upstream closes an idle connection just as a request is handed to it.
/// This thread's runtime is held while the upstream closes, so the connection is still idle
/// and open as far as the pool knows; checkout takes it and queues the request. With
/// `event_interval(1)` the runtime collects I/O events after every task it runs, so the
/// connection's task sees the upstream's FIN before it writes anything, and hands the
/// request back unsent. It must then go out on a new connection rather than fail.
#[test]
fn a_request_racing_the_close_of_an_idle_connection_is_sent_again() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .event_interval(1)
        .build()
        .unwrap();
    // A spawned task, not the `block_on` future: the runtime polls the I/O driver between
    // spawned tasks.
    runtime.block_on(async { tokio::spawn(racing_close()).await.unwrap() });
}

async fn racing_close() {
    let upstream = TinyUpstream::start(Closing::WhenAsked);
    let config = proxy_config(&upstream).upstream;
    let client = UpstreamClient::new(&config);
    let get = |path: &str| {
        http::Request::get(path)
            .header("host", "api.test")
            .body(full_body(""))
            .unwrap()
    };

    let first = client.send(get("/first")).await.unwrap();
    assert_eq!(first.into_body().collect().await.unwrap().to_bytes(), "ok");
    assert_eq!(upstream.connections(), 1);

    upstream.close_idle();
    let second = client
        .send(get("/second"))
        .await
        .expect("sent again on a new connection");
    assert_eq!(second.status(), 200);
    assert_eq!(second.into_body().collect().await.unwrap().to_bytes(), "ok");
    assert_eq!(upstream.connections(), 2);
    assert_eq!(
        upstream.requests(),
        2,
        "the first connection never saw the second request"
    );
}

/// Without the close, the same sequence reuses the connection: the race above is what
/// made the second connection.
#[tokio::test]
async fn the_same_sequence_without_the_close_uses_one_connection() {
    let upstream = TinyUpstream::start(Closing::After(usize::MAX));
    let client = UpstreamClient::new(&proxy_config(&upstream).upstream);
    for path in ["/first", "/second"] {
        let request = http::Request::get(path)
            .header("host", "api.test")
            .body(full_body(""))
            .unwrap();
        let response = client.send(request).await.unwrap();
        assert_eq!(response.into_body().collect().await.unwrap().to_bytes(), "ok");
    }
    assert_eq!(upstream.connections(), 1);
}
