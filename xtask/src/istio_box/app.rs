//! The stand-in BookInfo apps: one small HTTP/1.1 server with BookInfo's
//! call graph, run as `cargo xtask bookinfo-app` inside each workload's
//! network namespace (its outbound calls are intercepted by the sidecar, as
//! in a pod).
//!
//! - productpage calls details and reviews; a reviews call times out after
//!   3 s and is tried twice, as BookInfo's productpage does, which is what
//!   makes the ratings delay fault visible;
//! - reviews v2 and v3 call ratings (10 s timeout); v1 does not;
//! - details and ratings answer alone.
//!
//! Every answer is JSON naming the service and version, with what it got
//! from the services it called (or the error), so a scenario reads the
//! whole path from one response at the gateway. `end-user` and the tracing
//! headers are passed on, as BookInfo's apps do.

use std::{convert::Infallible, net::SocketAddr, time::Duration};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, body::Incoming, service::service_fn};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

/// Headers BookInfo's apps propagate (its productpage's list).
const PROPAGATE: &[&str] = &[
    "end-user",
    "x-request-id",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-b3-flags",
    "b3",
    "traceparent",
    "tracestate",
    "x-ot-span-context",
];

/// What one app is: `--name reviews --version v2 --listen 0.0.0.0:9080
/// --call ratings=ratings.default.svc.cluster.local:9080@10.20.0.14:9080`.
#[derive(Clone, Debug)]
pub struct Args {
    pub name: String,
    pub version: String,
    pub listen: SocketAddr,
    /// Services this app calls: the name, the `Host` it sends, the address
    /// it connects to (the service's VIP; the sidecar intercepts it).
    pub calls: Vec<Call>,
}

#[derive(Clone, Debug)]
pub struct Call {
    pub service: String,
    pub host: String,
    pub addr: SocketAddr,
}

impl Args {
    pub fn parse(args: &[String]) -> Result<Self> {
        let (mut name, mut version, mut listen, mut calls) = (None, None, None, Vec::new());
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
            match flag.as_str() {
                "--name" => name = Some(value()?.clone()),
                "--version" => version = Some(value()?.clone()),
                "--listen" => listen = Some(value()?.parse().context("--listen")?),
                "--call" => {
                    let v = value()?;
                    let (service, rest) = v.split_once('=').context("--call name=host@addr")?;
                    let (host, addr) = rest.split_once('@').context("--call name=host@addr")?;
                    calls.push(Call {
                        service: service.to_owned(),
                        host: host.to_owned(),
                        addr: addr.parse().context("--call address")?,
                    });
                }
                other => bail!("bookinfo-app: unknown option {other}"),
            }
        }
        Ok(Self {
            name: name.context("--name")?,
            version: version.context("--version")?,
            listen: listen.context("--listen")?,
            calls,
        })
    }
}

/// Serves until killed.
pub fn run(args: Args) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    runtime.block_on(serve(args))
}

async fn serve(args: Args) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listen on {}", args.listen))?;
    let args = std::sync::Arc::new(args);
    loop {
        let (stream, _) = listener.accept().await?;
        let args = args.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let args = args.clone();
                async move { Ok::<_, Infallible>(answer(&args, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn answer(args: &Args, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let passed: Vec<(String, String)> = PROPAGATE
        .iter()
        .filter_map(|h| {
            let v = req.headers().get(*h)?.to_str().ok()?;
            Some(((*h).to_owned(), v.to_owned()))
        })
        .collect();
    let mut body = json!({
        "service": args.name,
        "version": args.version,
        "path": req.uri().path(),
        "end_user": req.headers().get("end-user").and_then(|v| v.to_str().ok()),
        // Who the sidecar says called (Istio forwards the peer's identity).
        "xfcc": req.headers().get("x-forwarded-client-cert").and_then(|v| v.to_str().ok()),
    });
    for call in &args.calls {
        // productpage tries reviews twice with a 3 s timeout each.
        let (timeout, tries) = if args.name == "productpage" && call.service == "reviews" {
            (Duration::from_secs(3), 2)
        } else {
            (Duration::from_secs(10), 1)
        };
        let mut result = json!(null);
        for _ in 0..tries {
            result = match tokio::time::timeout(timeout, get(call, &passed)).await {
                Ok(Ok((200, v))) => v,
                Ok(Ok((status, v))) => json!({"error": status, "body": v}),
                Ok(Err(e)) => json!({"error": format!("{e:#}")}),
                Err(_) => json!({"error": "timeout"}),
            };
            if result.get("error").is_none() {
                break;
            }
        }
        body[call.service.as_str()] = result;
    }
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}

/// One GET to `call`, through the sidecar (the connection to the VIP is
/// intercepted): status and JSON body.
async fn get(call: &Call, passed: &[(String, String)]) -> Result<(u16, Value)> {
    let tcp = tokio::net::TcpStream::connect(call.addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(conn);
    let mut req = Request::get(format!("/{}/0", call.service)).header("host", &call.host);
    for (k, v) in passed {
        req = req.header(k, v);
    }
    let resp = sender
        .send_request(req.body(http_body_util::Empty::<Bytes>::new())?)
        .await?;
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await?.to_bytes();
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    Ok((status, value))
}
