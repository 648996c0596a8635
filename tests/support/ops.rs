//! Operator-side test helpers: the admin listener's JSON API, the metrics
//! page read into series, and a server-sent events reader.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::Value;

use super::TestServer;

/// A bound on anything a test waits for from the appliance.
pub const WAIT: Duration = Duration::from_secs(20);

/// An admin request with an optional bearer token.
pub async fn admin_send(
    server: &TestServer,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> reqwest::Response {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut request = server.http.request(method, server.admin_url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.expect("admin listener answers")
}

/// An admin request that must succeed with JSON.
pub async fn admin_ok(server: &TestServer, method: &str, path: &str) -> Value {
    let response = admin_send(server, method, path, None).await;
    let status = response.status();
    let body = response.bytes().await.expect("admin body");
    assert!(
        status.is_success(),
        "{method} {path}: {status}: {}",
        String::from_utf8_lossy(&body)
    );
    serde_json::from_slice(&body).expect("admin JSON")
}

/// The metrics page as series: `name{labels} value` lines.
pub struct MetricsPage {
    pub text: String,
}

impl MetricsPage {
    pub async fn scrape(server: &TestServer) -> MetricsPage {
        let response = admin_send(server, "GET", "/metrics", None).await;
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"],
            "text/plain; version=0.0.4; charset=utf-8"
        );
        MetricsPage {
            text: response.text().await.expect("metrics text"),
        }
    }

    /// The value of the one series of `name` that has every label of
    /// `labels` (others allowed); `None` if no series matches.
    #[track_caller]
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let matching: Vec<f64> = self
            .text
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| {
                let (series, value) = line.rsplit_once(' ')?;
                let (series_name, rest) = match series.split_once('{') {
                    Some((n, rest)) => (n, rest.trim_end_matches('}')),
                    None => (series, ""),
                };
                let has_all = labels
                    .iter()
                    .all(|(k, v)| rest.split(',').any(|pair| pair == format!("{k}=\"{v}\"")));
                (series_name == name && has_all).then(|| value.parse().ok())?
            })
            .collect();
        assert!(
            matching.len() <= 1,
            "{name} {labels:?} matches {} series",
            matching.len()
        );
        matching.first().copied()
    }

    /// Like `value`, 0 when absent.
    #[track_caller]
    pub fn count(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(name, labels).unwrap_or(0.0)
    }
}

/// One server-sent event.
#[derive(Debug, Clone)]
pub struct Sse {
    pub kind: String,
    pub data: Value,
}

/// A live event stream being read.
pub struct EventReader {
    body: futures_util::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buffer: String,
}

impl EventReader {
    /// Opens `url` (an events endpoint); panics unless it answers 200 with
    /// `text/event-stream`.
    pub async fn open(http: &reqwest::Client, url: &str, token: Option<&str>) -> EventReader {
        let mut request = http.get(url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("events answer");
        assert_eq!(response.status(), 200, "{url}");
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        EventReader {
            body: response.bytes_stream().boxed(),
            buffer: String::new(),
        }
    }

    /// The next event (comments skipped), or `None` after `within`.
    pub async fn next_within(&mut self, within: Duration) -> Option<Sse> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(event) = self.take_buffered() {
                return Some(event);
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            match tokio::time::timeout(left, self.body.next()).await {
                Ok(Some(Ok(bytes))) => self.buffer.push_str(&String::from_utf8_lossy(&bytes)),
                Ok(_) | Err(_) => return None,
            }
        }
    }

    /// The next event, which must arrive within `WAIT`.
    pub async fn next(&mut self) -> Sse {
        self.next_within(WAIT).await.expect("an event in time")
    }

    /// Events until one of `kind` arrives (it included).
    pub async fn until(&mut self, kind: &str) -> Vec<Sse> {
        let mut seen = Vec::new();
        loop {
            let event = self.next().await;
            let done = event.kind == kind;
            seen.push(event);
            if done {
                return seen;
            }
        }
    }

    fn take_buffered(&mut self) -> Option<Sse> {
        loop {
            let end = self.buffer.find("\n\n")?;
            let frame: String = self.buffer.drain(..end + 2).collect();
            let mut kind = None;
            let mut data = None;
            for line in frame.lines() {
                if let Some(value) = line.strip_prefix("event: ") {
                    kind = Some(value.to_owned());
                } else if let Some(value) = line.strip_prefix("data: ") {
                    data = Some(serde_json::from_str(value).expect("event data is JSON"));
                }
            }
            if let (Some(kind), Some(data)) = (kind, data) {
                return Some(Sse { kind, data });
            }
        }
    }
}
