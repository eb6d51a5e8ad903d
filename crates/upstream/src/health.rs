//! Active health checks: HTTP, TCP and gRPC (`grpc.health.v1.Health/Check`),
//! run against every host of a cluster on the control runtime. Results move
//! a host in and out of rotation through its `FAILED_ACTIVE_HC` flag after
//! `unhealthy_threshold` failures or `healthy_threshold` successes in a row.

use std::{sync::Arc, time::Duration};

use bytes::{BufMut, Bytes, BytesMut};
use http::{Method, Request, header};
use http_body_util::BodyExt;
use strait_codec::{Body, ClientConn, Protocol};
use strait_model::{self as model, HealthCheck, HealthCheckKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{
    cluster::Cluster,
    host::{FAILED_ACTIVE_HC, Host, PENDING_ACTIVE_HC},
    lb::random,
};

/// The shortest check interval of the cluster plus jitter, if it has checks.
pub(crate) fn next_interval(spec: &model::Cluster) -> Option<Duration> {
    spec.health_checks
        .iter()
        .map(|hc| {
            let jitter = hc.interval_jitter.as_millis() as u64;
            let extra = if jitter == 0 { 0 } else { random() % jitter };
            hc.interval + Duration::from_millis(extra)
        })
        .min()
}

/// Runs every configured check once against every host, concurrently, and
/// waits for them (each bounded by its `timeout`).
pub(crate) async fn check_all(cluster: &Arc<Cluster>) {
    let spec = cluster.spec.load_full();
    let hosts = cluster.hosts();
    let mut tasks = Vec::with_capacity(hosts.len());
    for host in hosts {
        let cluster = Arc::clone(cluster);
        let spec = Arc::clone(&spec);
        tasks.push(tokio::spawn(async move {
            let mut ok = true;
            for hc in &spec.health_checks {
                cluster.stats.hc_attempt.increment(1);
                let passed = tokio::time::timeout(hc.timeout, check(&spec, hc, &host))
                    .await
                    .unwrap_or(false);
                ok &= passed;
                if !ok {
                    break;
                }
            }
            // The translator admits one check per cluster.
            if let Some(hc) = spec.health_checks.first() {
                record(&cluster, &host, hc, ok);
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

/// Applies one result to the host's streaks and flag.
fn record(cluster: &Cluster, host: &Host, hc: &HealthCheck, ok: bool) {
    use std::sync::atomic::Ordering;
    let streak = host.hc_streak.load(Ordering::Relaxed);
    let (mut wins, mut losses) = (streak & 0xffff_ffff, streak >> 32);
    if ok {
        cluster.stats.hc_success.increment(1);
        wins += 1;
        losses = 0;
    } else {
        cluster.stats.hc_failure.increment(1);
        losses += 1;
        wins = 0;
    }
    host.hc_streak
        .store((losses << 32) | wins, Ordering::Relaxed);
    let changed = if ok {
        // A host that never passed a check needs only one success (Envoy).
        let pending = host.has_flag(PENDING_ACTIVE_HC);
        if pending || wins >= u64::from(hc.healthy_threshold) {
            host.set_flag(PENDING_ACTIVE_HC, false);
            host.set_flag(FAILED_ACTIVE_HC, false)
        } else {
            false
        }
    } else if losses >= u64::from(hc.unhealthy_threshold) {
        host.set_flag(FAILED_ACTIVE_HC, true)
    } else {
        false
    };
    if changed {
        if ok {
            host.restart_warming();
        }
        tracing::info!(cluster = %cluster.name(), host = %host.addr(), healthy = ok, "health check changed host health");
        cluster.hosts_changed();
    }
}

/// One check against one host; true when it passed.
async fn check(spec: &model::Cluster, hc: &HealthCheck, host: &Host) -> bool {
    match &hc.kind {
        HealthCheckKind::Http {
            path,
            host: authority,
            expected_statuses,
            request_headers,
        } => {
            let authority = authority.as_deref().unwrap_or(&spec.name);
            let mut req = Request::builder()
                .method(Method::GET)
                .uri(path.as_str())
                .header(header::HOST, authority)
                .header(header::USER_AGENT, "Envoy/HC");
            for (k, v) in request_headers {
                req = req.header(k.as_str(), v.as_str());
            }
            let Ok(req) = req.body(Body::full(Bytes::new())) else {
                return false;
            };
            let protocol = match spec.protocol {
                // Health checks have no downstream: HTTP/1.1, as Envoy's
                // checker uses for a cluster that mirrors the downstream.
                model::UpstreamProtocol::Http1 | model::UpstreamProtocol::Downstream => {
                    Protocol::Http1
                }
                model::UpstreamProtocol::Http2 => Protocol::Http2,
            };
            let Ok(mut conn) =
                ClientConn::connect(host.addr(), protocol, hc.timeout, NoCount).await
            else {
                return false;
            };
            let Ok(resp) = conn.send(req).await else {
                return false;
            };
            let status = resp.status().as_u16();
            // Drain so the server sees a clean close.
            let _ = resp.into_body().collect().await;
            expected_statuses
                .iter()
                .any(|&(lo, hi)| (lo..hi).contains(&status))
        }
        HealthCheckKind::Tcp { send, receive } => {
            let Ok(mut s) = tokio::net::TcpStream::connect(host.addr()).await else {
                return false;
            };
            if !send.is_empty() && s.write_all(send).await.is_err() {
                return false;
            }
            let mut got = Vec::new();
            let mut buf = [0u8; 1024];
            loop {
                if contains_in_order(&got, receive) {
                    return true;
                }
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return false,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
        }
        HealthCheckKind::Grpc {
            service_name,
            authority,
        } => {
            grpc_check(
                host,
                hc,
                service_name,
                authority.as_deref().unwrap_or(&spec.name),
            )
            .await
        }
    }
}

/// `grpc.health.v1.Health/Check`: passes when the reply's status is SERVING
/// and `grpc-status` is 0.
async fn grpc_check(host: &Host, hc: &HealthCheck, service: &str, authority: &str) -> bool {
    let Ok(mut conn) = ClientConn::connect(host.addr(), Protocol::Http2, hc.timeout, NoCount).await
    else {
        return false;
    };
    let req = Request::builder()
        .method(Method::POST)
        .uri(format!("http://{authority}/grpc.health.v1.Health/Check"))
        .header(header::CONTENT_TYPE, "application/grpc")
        .header("te", "trailers")
        .header(header::USER_AGENT, "Envoy/HC")
        .body(Body::full(grpc_request(service)));
    let Ok(req) = req else { return false };
    let Ok(resp) = conn.send(req).await else {
        return false;
    };
    if resp.status() != http::StatusCode::OK {
        return false;
    }
    let headers_status = resp
        .headers()
        .get("grpc-status")
        .map(|v| v.as_bytes().to_vec());
    let Ok(collected) = resp.into_body().collect().await else {
        return false;
    };
    let trailer_status = collected
        .trailers()
        .and_then(|t| t.get("grpc-status"))
        .map(|v| v.as_bytes().to_vec());
    let status_ok = trailer_status.or(headers_status).as_deref() == Some(b"0");
    status_ok && grpc_serving(&collected.to_bytes())
}

/// A length-prefixed `HealthCheckRequest { service = 1 }` message.
pub(crate) fn grpc_request(service: &str) -> Bytes {
    let mut msg = BytesMut::new();
    if !service.is_empty() {
        msg.put_u8(0x0a); // field 1, length-delimited
        put_varint(&mut msg, service.len() as u64);
        msg.put_slice(service.as_bytes());
    }
    let mut out = BytesMut::with_capacity(5 + msg.len());
    out.put_u8(0); // not compressed
    out.put_u32(msg.len() as u32);
    out.put_slice(&msg);
    out.freeze()
}

/// True when the framed `HealthCheckResponse` says `status = SERVING` (1).
pub(crate) fn grpc_serving(frame: &[u8]) -> bool {
    let Some(msg) = frame.get(5..) else {
        return false;
    };
    let mut i = 0;
    while i < msg.len() {
        let tag = msg[i];
        i += 1;
        match tag {
            0x08 => {
                let Some((v, n)) = varint(&msg[i..]) else {
                    return false;
                };
                return v == 1 && n > 0;
            }
            // Skip any other varint or length-delimited field.
            t if t & 7 == 0 => match varint(&msg[i..]) {
                Some((_, n)) => i += n,
                None => return false,
            },
            t if t & 7 == 2 => match varint(&msg[i..]) {
                Some((len, n)) => i += n + len as usize,
                None => return false,
            },
            _ => return false,
        }
    }
    false
}

fn put_varint(out: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        out.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    out.put_u8(v as u8);
}

fn varint(b: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, &byte) in b.iter().enumerate().take(10) {
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

/// True when every block of `want` appears in `got`, in order.
fn contains_in_order(got: &[u8], want: &[Vec<u8>]) -> bool {
    let mut rest = got;
    for w in want {
        if w.is_empty() {
            continue;
        }
        match rest.windows(w.len()).position(|win| win == w.as_slice()) {
            Some(p) => rest = &rest[p + w.len()..],
            None => return false,
        }
    }
    true
}

/// Health check traffic is not counted in the cluster's byte stats.
#[derive(Debug, Clone, Copy)]
struct NoCount;

impl strait_codec::ByteCounter for NoCount {
    fn received(&self, _: u64) {}
    fn sent(&self, _: u64) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_messages_round_trip() {
        let req = grpc_request("svc");
        assert_eq!(&req[..], &[0, 0, 0, 0, 5, 0x0a, 3, b's', b'v', b'c']);
        assert!(grpc_serving(&[0, 0, 0, 0, 2, 0x08, 1]));
        assert!(!grpc_serving(&[0, 0, 0, 0, 2, 0x08, 2]));
        assert!(!grpc_serving(&[0, 0, 0, 0, 0]));
    }

    #[test]
    fn tcp_receive_blocks_match_in_order() {
        assert!(contains_in_order(
            b"xxPONGyyOK",
            &[b"PONG".to_vec(), b"OK".to_vec()]
        ));
        assert!(!contains_in_order(
            b"OKxxPONG",
            &[b"PONG".to_vec(), b"OK".to_vec()]
        ));
    }
}
