//! The router's own responses: 400 (no usable Host), 404, 502, 503 and 504 pages.
//!
//! Owns their wording and rendering (HTML for browsers, plain text for everything else), with
//! the request id in both so a user can quote it. It must not decide when a page is due:
//! the proxy does. Anything taken from the request is escaped here.

use bytes::Bytes;
use hyper::header::HeaderValue;
use hyper::StatusCode;

use super::headers::BadHost;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Page<'a> {
    /// No usable Host: missing (an HTTP/1.0 request without an absolute URI), duplicated,
    /// contradicting an absolute-form target, or malformed.
    BadHost(BadHost),
    UnknownHost(&'a str),
    NoInstances(&'a str),
    BadGateway(&'a str),
    GatewayTimeout(&'a str),
    /// A WebSocket over HTTP/2 past the client's connection caps.
    TooManyConnections,
}

impl Page<'_> {
    pub fn status(&self) -> StatusCode {
        match self {
            Page::BadHost(_) => StatusCode::BAD_REQUEST,
            Page::UnknownHost(_) => StatusCode::NOT_FOUND,
            Page::NoInstances(_) => StatusCode::SERVICE_UNAVAILABLE,
            Page::BadGateway(_) => StatusCode::BAD_GATEWAY,
            Page::GatewayTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            Page::TooManyConnections => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn message(&self) -> (&'static str, &str, &'static str) {
        match self {
            Page::BadHost(BadHost::Missing) => ("The request has no Host header.", "", ""),
            Page::BadHost(BadHost::Duplicate) => {
                ("The request has more than one Host header.", "", "")
            }
            Page::BadHost(BadHost::Disagrees) => (
                "The request's Host header disagrees with its absolute-form target.",
                "",
                "",
            ),
            Page::BadHost(BadHost::Malformed) => ("The request's Host header is malformed.", "", ""),
            Page::UnknownHost(h) => ("No app is served at host ", h, "."),
            Page::NoInstances(a) => (
                "App ",
                a,
                " has no web instance ready to take requests; it may be starting, scaled to zero or crashed.",
            ),
            Page::BadGateway(a) => (
                "App ",
                a,
                " did not answer: its instances failed or closed the connection.",
            ),
            Page::GatewayTimeout(a) => ("App ", a, " did not answer in time."),
            Page::TooManyConnections => (
                "Too many connections from your address (each WebSocket counts as one); close some and retry.",
                "",
                "",
            ),
        }
    }

    /// The body and its content type: HTML if the client asked for it.
    pub fn render(&self, html: bool, request_id: &HeaderValue) -> (Bytes, HeaderValue) {
        let status = self.status();
        let reason = status.canonical_reason().unwrap_or("");
        let (before, subject, after) = self.message();
        let id = request_id.to_str().unwrap_or("");
        if html {
            let body = format!(
                "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{code} {reason}</title></head>\n\
                 <body><h1>{code} {reason}</h1>\n<p>{before}<code>{subject}</code>{after}</p>\n\
                 <p><small>Request ID: {id}</small></p></body></html>\n",
                code = status.as_u16(),
                subject = escape_html(subject),
                id = escape_html(id),
            );
            (
                Bytes::from(body),
                HeaderValue::from_static("text/html; charset=utf-8"),
            )
        } else {
            let body = format!(
                "{code} {reason}: {before}{subject}{after}\nRequest ID: {id}\n",
                code = status.as_u16(),
                subject = subject.escape_debug(),
            );
            (
                Bytes::from(body),
                HeaderValue::from_static("text/plain; charset=utf-8"),
            )
        }
    }
}

fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn router_pages_say_what_and_escape() {
        let id = HeaderValue::from_static("req-1");
        let (body, ct) = Page::UnknownHost("nope.example").render(false, &id);
        assert_eq!(ct, "text/plain; charset=utf-8");
        assert_eq!(
            body,
            "404 Not Found: No app is served at host nope.example.\nRequest ID: req-1\n"
        );
        let (body, ct) = Page::UnknownHost("<script>x").render(true, &id);
        assert_eq!(ct, "text/html; charset=utf-8");
        let body = String::from_utf8(body.to_vec()).expect("utf-8");
        assert!(body.contains("<code>&lt;script&gt;x</code>"), "{body}");
        assert!(!body.contains("<script>"));
        assert_eq!(Page::NoInstances("web").status(), 503);
        assert_eq!(Page::BadGateway("web").status(), 502);
        assert_eq!(Page::GatewayTimeout("web").status(), 504);
        assert_eq!(Page::BadHost(BadHost::Missing).status(), 400);
        let (body, _) = Page::BadHost(BadHost::Duplicate).render(false, &id);
        assert_eq!(
            body,
            "400 Bad Request: The request has more than one Host header.\nRequest ID: req-1\n"
        );
    }
}
