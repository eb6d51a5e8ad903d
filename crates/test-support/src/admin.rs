//! Reading a proxy's admin server from tests: plain GETs and single
//! Prometheus series.

use std::net::SocketAddr;

use crate::client::{Client, Reply};

/// `GET path` on the admin server at `admin`, on a new connection.
pub async fn get(admin: SocketAddr, path: &str) -> anyhow::Result<Reply> {
    Client::http1(admin).await?.get(path).await
}

/// The value of one series in Prometheus text: `series` is the metric name
/// with its labels exactly as rendered (e.g.
/// `envoy_cluster_upstream_rq_total{envoy_cluster_name="backend"}`), or a
/// bare name for an unlabelled metric. `None` when the series is absent.
pub fn prometheus_value(text: &str, series: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// Fetches `/stats/prometheus` and reads one series (see
/// [`prometheus_value`]).
pub async fn stat(admin: SocketAddr, series: &str) -> anyhow::Result<Option<f64>> {
    let r = get(admin, "/stats/prometheus").await?;
    anyhow::ensure!(r.status == 200, "/stats/prometheus: {}", r.status);
    Ok(prometheus_value(&r.text(), series))
}

/// The sample lines of `/stats/prometheus` whose series name contains
/// `part`, sorted, with Envoy's empty label sets (`{}`) removed so that
/// Strait's and Envoy's pages compare line by line.
pub async fn prometheus_lines(admin: SocketAddr, part: &str) -> anyhow::Result<Vec<String>> {
    let page = get(admin, "/stats/prometheus").await?.text();
    let mut out: Vec<String> = page
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.split(['{', ' '])
                .next()
                .is_some_and(|name| name.contains(part))
        })
        .map(|l| l.replace("{}", ""))
        .collect();
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_exact_series_only() {
        let text = "# TYPE a counter\na{x=\"1\"} 3\na{x=\"10\"} 4\nab 5\na 6\n";
        assert_eq!(prometheus_value(text, "a{x=\"1\"}"), Some(3.0));
        assert_eq!(prometheus_value(text, "a{x=\"10\"}"), Some(4.0));
        assert_eq!(prometheus_value(text, "a"), Some(6.0));
        assert_eq!(prometheus_value(text, "a{x=\"2\"}"), None);
    }
}
