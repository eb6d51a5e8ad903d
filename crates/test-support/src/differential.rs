//! Differential testing against the real Envoy: the same requests sent to
//! Strait and to Envoy serving the same config, and what a client and the
//! echo upstream observed compared, every difference reported at once.

use std::{collections::BTreeMap, net::SocketAddr};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;

use crate::client::{Client, Reply};

/// One request of a case.
#[derive(Debug, Clone)]
pub struct Req {
    pub method: String,
    pub authority: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl Req {
    /// `GET path` with `Host: authority`.
    pub fn get(authority: &str, path: &str) -> Req {
        Req {
            method: "GET".to_owned(),
            authority: authority.to_owned(),
            path: path.to_owned(),
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    /// `POST path` with `body`.
    pub fn post(authority: &str, path: &str, body: &str) -> Req {
        Req {
            method: "POST".to_owned(),
            body: Bytes::copy_from_slice(body.as_bytes()),
            ..Req::get(authority, path)
        }
    }

    /// The request with one more header.
    #[must_use]
    pub fn header(mut self, name: &str, value: &str) -> Req {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }
}

/// What of an answer is compared.
#[derive(Debug, Clone, Copy)]
pub struct Observe {
    /// Response headers a client acts on (others, such as `date`, vary).
    pub response_headers: &'static [&'static str],
    /// Upstream-seen headers compared; `None` for all of them.
    pub upstream_headers: Option<&'static [&'static str]>,
    /// Upstream-seen headers whose values differ per request: compared by
    /// presence.
    pub volatile: &'static [&'static str],
}

/// What a client and the echo upstream observed for one request.
#[derive(Debug, PartialEq)]
pub struct Observed {
    pub status: u16,
    /// The upstream that answered (its `x-upstream`), if one did.
    pub upstream: Option<String>,
    pub upstream_path: Option<String>,
    pub upstream_headers: BTreeMap<String, String>,
    /// The request body bytes the upstream received (its `/count` answer).
    pub upstream_received: Option<u64>,
    pub response_headers: BTreeMap<String, String>,
    /// The body of a local reply.
    pub local_body: Option<String>,
}

impl Observe {
    /// Reads `r` as this observation compares it.
    pub fn of(&self, r: &Reply) -> Observed {
        let mut response_headers = BTreeMap::new();
        for name in self.response_headers {
            let values: Vec<&str> = r
                .headers
                .get_all(*name)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect();
            if !values.is_empty() {
                response_headers.insert((*name).to_owned(), values.join(","));
            }
        }
        let upstream = r.header("x-upstream").map(str::to_owned);
        let mut upstream_headers = BTreeMap::new();
        let (mut upstream_path, mut upstream_received, mut local_body) = (None, None, None);
        if upstream.is_some() {
            let echo = r.json();
            upstream_path = echo["path"].as_str().map(str::to_owned);
            upstream_received = echo["received"].as_u64();
            for h in echo["headers"].as_array().into_iter().flatten() {
                let (k, v) = (h[0].as_str().unwrap_or(""), h[1].as_str().unwrap_or(""));
                if self.upstream_headers.is_some_and(|keep| !keep.contains(&k)) {
                    continue;
                }
                let v = if self.volatile.contains(&k) {
                    "<present>"
                } else {
                    v
                };
                upstream_headers
                    .entry(k.to_owned())
                    .and_modify(|old: &mut String| {
                        old.push(',');
                        old.push_str(v);
                    })
                    .or_insert_with(|| v.to_owned());
            }
        } else {
            local_body = Some(r.text());
        }
        Observed {
            status: r.status.as_u16(),
            upstream,
            upstream_path,
            upstream_headers,
            upstream_received,
            response_headers,
            local_body,
        }
    }

    /// Sends `req` to `addr` over a new HTTP/1.1 connection.
    pub async fn send(&self, addr: SocketAddr, req: &Req) -> anyhow::Result<Observed> {
        let mut c = Client::http1(addr).await?;
        let mut b = Request::builder()
            .method(req.method.as_str())
            .uri(&req.path)
            .header("host", &req.authority);
        for (k, v) in &req.headers {
            b = b.header(k, v);
        }
        Ok(self.of(&c.send(b.body(Full::new(req.body.clone()))?).await?))
    }

    /// Sends every request to both and panics listing every difference.
    /// `DIFF_VERBOSE=1` prints each observation.
    pub async fn compare(
        &self,
        case: &str,
        strait: SocketAddr,
        envoy: SocketAddr,
        requests: &[Req],
    ) -> anyhow::Result<()> {
        let mut diffs = Vec::new();
        for req in requests {
            let ours = self.send(strait, req).await?;
            let theirs = self.send(envoy, req).await?;
            if std::env::var_os("DIFF_VERBOSE").is_some() {
                eprintln!(
                    "{case}: {} {} {:?}: {ours:?}",
                    req.method, req.path, req.headers
                );
            }
            if ours != theirs {
                diffs.push(format!(
                    "{case}: {} {} (host {}, {:?}):\n  strait: {ours:?}\n  envoy:  {theirs:?}",
                    req.method, req.path, req.authority, req.headers
                ));
            }
        }
        assert!(
            diffs.is_empty(),
            "{} differences:\n{}",
            diffs.len(),
            diffs.join("\n")
        );
        Ok(())
    }
}
