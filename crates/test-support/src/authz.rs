//! External authorization servers for tests: one gRPC
//! (`envoy.service.auth.v3.Authorization/Check`) and one plain HTTP, with
//! the same small policy, so a test can run Strait and Envoy against them.
//!
//! The policy, read from the request being checked:
//! - header `x-authz: allow`: allowed; the request gains `x-auth-user`
//!   (replacing any), `x-auth-append` is appended, the header named in
//!   `x-remove` is removed, the response gains `x-auth-resp`; the gRPC
//!   server also echoes the route's context extension `k` as `x-auth-ctx`
//!   and the body it saw as `x-auth-body`;
//! - `x-authz: boom`: the service fails (gRPC UNAVAILABLE, HTTP 500);
//! - a body containing `forbidden`: denied, 403 `body refused`;
//! - anything else: denied, 401 (gRPC) or 403 (HTTP) with a body and
//!   `x-deny-reason`;
//! - a connection check (gRPC, no HTTP request: network ext_authz): denied
//!   when the client's address is 127.0.0.2, allowed otherwise.

use std::{convert::Infallible, net::SocketAddr};

use bytes::Bytes;
use envoy_types::pb::{
    envoy::{
        config::core::v3::{HeaderValue, HeaderValueOption, address},
        service::auth::v3::{
            AttributeContext, CheckRequest, CheckResponse, DeniedHttpResponse, OkHttpResponse,
            authorization_server::{Authorization, AuthorizationServer},
            check_response::HttpResponse,
        },
        r#type::v3::HttpStatus,
    },
    google::{protobuf::BoolValue, rpc::Status as RpcStatus},
};
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, body::Incoming, service::service_fn};
use hyper_util::rt::TokioIo;

use crate::upstream::{Upstream, grpc_server, spawn_server_at};

fn any_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn option(key: &str, value: &str, append: Option<bool>) -> HeaderValueOption {
    #[allow(deprecated)]
    HeaderValueOption {
        header: Some(HeaderValue {
            key: key.to_owned(),
            value: value.to_owned(),
            ..Default::default()
        }),
        append: append.map(|value| BoolValue { value }),
        ..Default::default()
    }
}

struct GrpcAuthz;

#[tonic::async_trait]
impl Authorization for GrpcAuthz {
    async fn check(
        &self,
        request: tonic::Request<CheckRequest>,
    ) -> Result<tonic::Response<CheckResponse>, tonic::Status> {
        let attrs = request.into_inner().attributes.unwrap_or_default();
        if attrs.request.is_none() {
            return Ok(tonic::Response::new(connection_check(&attrs)));
        }
        let http = attrs.request.and_then(|r| r.http).unwrap_or_default();
        let h = |k: &str| http.headers.get(k).map(String::as_str);
        let body = if http.raw_body.is_empty() {
            http.body.clone()
        } else {
            String::from_utf8_lossy(&http.raw_body).into_owned()
        };
        let deny = |code: i32, text: &str, reason: &str| CheckResponse {
            status: Some(RpcStatus {
                code: 7,
                ..Default::default()
            }),
            http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
                status: Some(HttpStatus { code }),
                headers: vec![option("x-deny-reason", reason, None)],
                body: text.to_owned(),
            })),
            ..Default::default()
        };
        let answer = if h("x-authz") == Some("boom") {
            return Err(tonic::Status::unavailable("authorization service down"));
        } else if body.contains("forbidden") {
            deny(403, "body refused", "body")
        } else if h("x-authz") == Some("allow") {
            let mut headers = vec![
                option("x-auth-user", "bob", Some(false)),
                option("x-auth-append", "more", Some(true)),
            ];
            if let Some(v) = attrs.context_extensions.get("k") {
                headers.push(option("x-auth-ctx", v, None));
            }
            if !body.is_empty() {
                headers.push(option("x-auth-body", &body, None));
            }
            CheckResponse {
                status: Some(RpcStatus::default()),
                http_response: Some(HttpResponse::OkResponse(OkHttpResponse {
                    headers,
                    headers_to_remove: h("x-remove").map(str::to_owned).into_iter().collect(),
                    response_headers_to_add: vec![option("x-auth-resp", "grpc-ok", None)],
                    ..Default::default()
                })),
                ..Default::default()
            }
        } else {
            deny(401, "denied by grpc authz", "no-grant")
        };
        Ok(tonic::Response::new(answer))
    }
}

/// A network ext_authz check: by the client's address.
fn connection_check(attrs: &AttributeContext) -> CheckResponse {
    let source = attrs
        .source
        .as_ref()
        .and_then(|p| p.address.as_ref())
        .and_then(|a| match &a.address {
            Some(address::Address::SocketAddress(s)) => Some(s.address.as_str()),
            _ => None,
        });
    let code = if source == Some("127.0.0.2") { 7 } else { 0 };
    CheckResponse {
        status: Some(RpcStatus {
            code,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The gRPC authorization server (HTTP/2 cleartext).
pub fn grpc_authz() -> Upstream {
    grpc_server(AuthorizationServer::new(GrpcAuthz))
}

async fn http_check(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let (head, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let h = |k: &str| head.headers.get(k).and_then(|v| v.to_str().ok());
    let mut resp = Response::new(Full::new(Bytes::new()));
    let set = |r: &mut Response<Full<Bytes>>, k: &'static str, v: &str| {
        if let Ok(v) = http::HeaderValue::from_str(v) {
            r.headers_mut().insert(k, v);
        }
    };
    if h("x-authz") == Some("boom") {
        *resp.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
    } else if String::from_utf8_lossy(&body).contains("forbidden") {
        *resp.status_mut() = http::StatusCode::FORBIDDEN;
        *resp.body_mut() = Full::new(Bytes::from_static(b"body refused"));
    } else if h("x-authz") == Some("allow") {
        set(&mut resp, "x-auth-user", "alice");
        set(&mut resp, "x-auth-append", "more");
        set(&mut resp, "x-auth-resp", "http-ok");
        set(&mut resp, "x-auth-path", head.uri.path());
        set(&mut resp, "x-auth-body", &String::from_utf8_lossy(&body));
        if let Some(r) = h("x-remove") {
            set(&mut resp, "x-envoy-auth-headers-to-remove", r);
        }
    } else {
        *resp.status_mut() = http::StatusCode::FORBIDDEN;
        set(&mut resp, "x-deny-reason", "no-grant");
        set(&mut resp, "www-authenticate", "Bearer realm=\"test\"");
        *resp.body_mut() = Full::new(Bytes::from_static(b"denied by http authz"));
    }
    Ok(resp)
}

/// The HTTP authorization server (HTTP/1.1).
pub fn http_authz() -> Upstream {
    spawn_server_at(any_addr(), |listener, _counters| async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service_fn(http_check))
                    .await;
            });
        }
    })
}
