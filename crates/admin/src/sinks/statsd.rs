//! The statsd sink (`envoy.stat_sinks.statsd`): every flush, counters that
//! changed as `prefix.name:delta|c` and gauges as `prefix.name:value|g`,
//! over UDP.
//!
//! Lines are joined with `\n` into datagrams of at most [`MAX_DATAGRAM`]
//! bytes, as Envoy's UDP statsd writer does when given a datagram size
//! (one line per datagram being the same protocol with more packets).
//! Sending never waits: a datagram the socket buffer cannot take now is
//! dropped, as UDP may drop it anyway.

use std::{
    io::ErrorKind,
    net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket},
};

use strait_model::stats::StatsdSink;

use super::{Deltas, Flush, SinkError};
use crate::stats::Stat;

/// Fits an Ethernet MTU with IP and UDP headers (1500 - 68), the size
/// statsd servers recommend for a LAN.
pub(crate) const MAX_DATAGRAM: usize = 1432;

pub(super) struct Statsd {
    socket: UdpSocket,
    target: SocketAddr,
    prefix: String,
    counters: Deltas,
}

impl Statsd {
    /// Binds an unconnected, non-blocking socket of the target's family.
    pub(super) fn new(config: StatsdSink) -> Result<Statsd, SinkError> {
        let local: SocketAddr = match config.address {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let socket = UdpSocket::bind(local)?;
        socket.set_nonblocking(true)?;
        Ok(Statsd {
            socket,
            target: config.address,
            prefix: config.prefix,
            counters: Deltas::default(),
        })
    }

    /// Sends one flush. Does not block.
    pub(super) fn flush(&mut self, flush: &Flush) {
        let lines = lines(&self.prefix, &flush.stats, &mut self.counters);
        for datagram in datagrams(&lines, MAX_DATAGRAM) {
            match self.socket.send_to(datagram.as_bytes(), self.target) {
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    tracing::debug!(target = %self.target, "statsd datagram dropped: socket busy");
                }
                Err(e) => {
                    tracing::debug!(target = %self.target, error = %e, "statsd send failed");
                }
            }
        }
    }
}

/// The statsd lines of one flush: counters that changed since the previous
/// flush, then every gauge.
fn lines(prefix: &str, stats: &[Stat], counters: &mut Deltas) -> Vec<String> {
    let mut out = Vec::new();
    for s in stats.iter().filter(|s| s.counter) {
        let delta = counters.delta(&s.name, s.value);
        if delta > 0 {
            out.push(format!("{prefix}.{}:{delta}|c", s.name));
        }
    }
    for s in stats.iter().filter(|s| !s.counter) {
        out.push(format!("{prefix}.{}:{}|g", s.name, s.value));
    }
    out
}

/// `lines` joined by `\n` into payloads of at most `max` bytes. A line
/// longer than `max` goes alone (the OS refuses it only past 64 KiB).
fn datagrams(lines: &[String], max: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in lines {
        if !current.is_empty() && current.len() + 1 + line.len() > max {
            out.push(std::mem::take(&mut current));
        }
        if !current.is_empty() {
            current.push('\n');
        }
        current.push_str(line);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn stat(name: &str, value: u64, counter: bool) -> Stat {
        Stat {
            name: name.into(),
            value,
            counter,
        }
    }

    #[test]
    fn counters_as_deltas_gauges_as_values() {
        let mut d = Deltas::default();
        let first = [
            stat("cluster.a.upstream_rq_total", 3, true),
            stat("cluster.a.upstream_rq_timeout", 0, true),
            stat("server.live", 1, false),
        ];
        assert_eq!(
            lines("envoy", &first, &mut d),
            [
                "envoy.cluster.a.upstream_rq_total:3|c",
                "envoy.server.live:1|g"
            ]
        );
        let second = [
            stat("cluster.a.upstream_rq_total", 7, true),
            stat("server.live", 1, false),
        ];
        assert_eq!(
            lines("mesh", &second, &mut d),
            [
                "mesh.cluster.a.upstream_rq_total:4|c",
                "mesh.server.live:1|g"
            ]
        );
        let third = [stat("cluster.a.upstream_rq_total", 7, true)];
        assert!(lines("envoy", &third, &mut d).is_empty(), "unchanged");
    }

    #[test]
    fn datagrams_are_bounded() {
        let lines: Vec<String> = (0..100).map(|i| format!("envoy.x.c{i:03}:1|c")).collect();
        let grams = datagrams(&lines, 64);
        assert!(grams.iter().all(|g| g.len() <= 64), "{grams:?}");
        let rejoined: Vec<&str> = grams.iter().flat_map(|g| g.split('\n')).collect();
        assert_eq!(rejoined, lines);
        let long = vec!["x".repeat(100), "y".into()];
        assert_eq!(datagrams(&long, 64), [long[0].clone(), "y".into()]);
    }

    #[test]
    fn flush_reaches_a_udp_socket() {
        let server = UdpSocket::bind("127.0.0.1:0").expect("bind");
        server
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut sink = Statsd::new(StatsdSink {
            address: server.local_addr().expect("addr"),
            prefix: "envoy".into(),
        })
        .expect("sink");
        sink.flush(&Flush {
            stats: vec![stat("server.live", 1, false)],
            timestamp_ms: 0,
        });
        let mut buf = [0u8; 2048];
        let n = server.recv(&mut buf).expect("datagram");
        assert_eq!(&buf[..n], b"envoy.server.live:1|g");
    }
}
