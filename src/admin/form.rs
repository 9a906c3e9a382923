//! The admin plane's wire helpers: plain answers, and form bodies read strictly.

use http::header::CONTENT_TYPE;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::body::{ProxyBody, full_body};

pub(super) fn respond(status: StatusCode, content_type: &'static str, body: String) -> Response<ProxyBody> {
    let mut response = Response::new(full_body(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// Reads a bounded application/x-www-form-urlencoded body into its pairs, each name at most
/// once; a broken escape or non-UTF-8 text is refused.
pub(super) async fn read_form(req: Request<Incoming>) -> Result<Vec<(String, String)>, Response<ProxyBody>> {
    let bad = |message: &str| respond(StatusCode::BAD_REQUEST, "text/plain", format!("{message}\n"));
    let body = match http_body_util::Limited::new(req.into_body(), 16 * 1024).collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => {
            return Err(respond(
                StatusCode::PAYLOAD_TOO_LARGE,
                "text/plain",
                "body too large\n".into(),
            ));
        }
    };
    let mut pairs: Vec<(String, String)> = Vec::new();
    for pair in body.split(|b| *b == b'&').filter(|pair| !pair.is_empty()) {
        let (name, value) = match pair.iter().position(|b| *b == b'=') {
            Some(eq) => (&pair[..eq], &pair[eq + 1..]),
            None => (pair, &[][..]),
        };
        let (Some(name), Some(value)) = (form_decode(name), form_decode(value)) else {
            return Err(bad("the body is not valid application/x-www-form-urlencoded"));
        };
        if pairs.iter().any(|(seen, _)| *seen == name) {
            return Err(bad(&format!("{name} is given twice")));
        }
        pairs.push((name, value));
    }
    Ok(pairs)
}

/// Decodes one name or value of a form body: `+` is a space, `%XX` a byte; a `%` without two
/// hex digits after it, or a result that is not UTF-8, is refused rather than guessed at.
pub(super) fn form_decode(raw: &[u8]) -> Option<String> {
    let mut out = Vec::with_capacity(raw.len());
    let mut bytes = raw.iter();
    while let Some(&byte) = bytes.next() {
        out.push(match byte {
            b'+' => b' ',
            b'%' => {
                let high = (*bytes.next()? as char).to_digit(16)?;
                let low = (*bytes.next()? as char).to_digit(16)?;
                (high * 16 + low) as u8
            }
            other => other,
        });
    }
    String::from_utf8(out).ok()
}
