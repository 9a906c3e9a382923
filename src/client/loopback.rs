//! The loopback redirect of a native app (RFC 8252 §7.3): a listener on `127.0.0.1` on a
//! port the system picks, waiting for the one request the browser brings back to
//! `/callback`.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::error::ClientError;

const CALLBACK_PATH: &str = "/callback";
const DONE_PAGE: &str = "<!doctype html><title>scopegate</title><p>scopegate received the authorization \
                         response. You can close this tab and return to the terminal.</p>";

/// A bound loopback listener; its redirect URI is known before the browser is sent off.
pub struct Loopback {
    listener: TcpListener,
    addr: SocketAddr,
}

/// The query parameters of the authorization response (RFC 6749 §4.1.2).
pub type CallbackParams = BTreeMap<String, String>;

impl Loopback {
    /// Binds `127.0.0.1:0` (RFC 8252 §7.3 and §8.3: the loopback IP literal, not
    /// `localhost`, and any port).
    pub async fn bind() -> Result<Loopback, ClientError> {
        let listener = TcpListener::bind("127.0.0.1:0").await.map_err(ClientError::Listener)?;
        let addr = listener.local_addr().map_err(ClientError::Listener)?;
        Ok(Loopback { listener, addr })
    }

    pub fn redirect_uri(&self) -> String {
        format!("http://{}{CALLBACK_PATH}", self.addr)
    }

    /// Serves until a request reaches `/callback` (other paths get 404), or `timeout`.
    pub async fn wait(self, timeout: Duration) -> Result<CallbackParams, ClientError> {
        let (sender, mut received) = mpsc::channel::<CallbackParams>(1);
        let listener = self.listener;
        let server = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    // Out of descriptors, say: wait instead of spinning.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let sender = sender.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request: Request<Incoming>| {
                        let sender = sender.clone();
                        async move { Ok::<_, Infallible>(answer(&request, &sender)) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .timer(TokioTimer::new())
                        .header_read_timeout(Duration::from_secs(10))
                        .keep_alive(false)
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        let outcome = tokio::time::timeout(timeout, received.recv()).await;
        // Let the browser receive its page before the listener goes away.
        tokio::time::sleep(Duration::from_millis(50)).await;
        server.abort();
        match outcome {
            Ok(Some(params)) => Ok(params),
            _ => Err(ClientError::RedirectTimedOut {
                listener: self.addr,
                seconds: timeout.as_secs(),
            }),
        }
    }
}

fn answer(request: &Request<Incoming>, sender: &mpsc::Sender<CallbackParams>) -> Response<Full<Bytes>> {
    let page = |status: StatusCode, body: &'static str| {
        let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
        *response.status_mut() = status;
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/html; charset=utf-8"),
        );
        response
    };
    if request.uri().path() != CALLBACK_PATH {
        return page(StatusCode::NOT_FOUND, "<!doctype html><p>not found</p>");
    }
    let params: CallbackParams = form_urlencoded::parse(request.uri().query().unwrap_or("").as_bytes())
        .into_owned()
        .collect();
    // Only the first response counts; a full channel means one is already in.
    let _ = sender.try_send(params);
    page(StatusCode::OK, DONE_PAGE)
}
