//! `/stats` in Envoy's own names (`cluster.<name>.upstream_rq_total`,
//! `http.<stat_prefix>.downstream_rq_total`, `server.state`, …), derived
//! from the Prometheus rendering so both views always agree. Envoy's
//! Prometheus names are its dotted names with the tag values extracted into
//! labels; this puts them back.
//!
//! `?usedonly` leaves out counters never incremented, `?filter=REGEX` keeps
//! names the regex finds, `?format=json` answers `{"stats":[…]}`. Pilot-agent
//! reads `server.state`, `listener_manager.workers_started`, the LDS/CDS
//! update counters and `downstream_cx_active` this way.

use std::fmt::Write as _;

use regex::Regex;

/// Envoy's Prometheus prefixes (after `envoy_`), the dotted prefix each
/// stands for, and the label whose value follows it in the dotted name.
/// Longer prefixes first: `cluster_manager_` is not a cluster named
/// "manager".
const SCOPES: &[(&str, &str, Option<&str>)] = &[
    ("cluster_manager_cds_", "cluster_manager.cds.", None),
    ("cluster_manager_", "cluster_manager.", None),
    ("cluster_", "cluster.", Some("envoy_cluster_name")),
    ("listener_manager_lds_", "listener_manager.lds.", None),
    ("listener_manager_", "listener_manager.", None),
    ("listener_", "listener.", Some("envoy_listener_address")),
    ("http_", "http.", Some("envoy_http_conn_manager_prefix")),
    ("tcp_", "tcp.", Some("envoy_tcp_prefix")),
    // The network local rate limit: `local_rate_limit.<prefix>.rate_limited`.
    (
        "local_rate_limit_",
        "local_rate_limit.",
        Some("envoy_local_network_ratelimit_prefix"),
    ),
    ("control_plane_", "control_plane.", None),
    // The Zipkin tracer's `tracing.zipkin.spans_sent` and friends.
    ("tracing_zipkin_", "tracing.zipkin.", None),
    ("server_", "server.", None),
];

/// Sub-scopes inside a scope, which Prometheus names flatten with `_`, and
/// the label whose value follows the sub-scope in the dotted name.
const SUBSCOPES: &[(&str, &str, Option<&str>)] = &[
    ("outlier_detection_", "outlier_detection.", None),
    ("health_check_", "health_check.", None),
    ("fault_", "fault.", None),
    // `cluster.<name>.ratelimit.ok`, the global rate limit's counters.
    ("ratelimit_", "ratelimit.", None),
    // `http.<prefix>.rds.<route config>.update_success`.
    ("rds_", "rds.", Some("envoy_rds_route_config")),
];

/// One counter or gauge under its Envoy name.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Stat {
    pub(crate) name: String,
    pub(crate) value: u64,
    pub(crate) counter: bool,
}

/// The query of a `/stats` request.
#[derive(Debug, Default)]
pub(crate) struct Query {
    pub(crate) used_only: bool,
    pub(crate) filter: Option<Regex>,
    pub(crate) json: bool,
}

impl Query {
    pub(crate) fn from_query(query: &[(String, String)]) -> Result<Query, String> {
        let mut q = Query::default();
        for (k, v) in query {
            match k.as_str() {
                "usedonly" => q.used_only = true,
                "filter" => {
                    q.filter =
                        Some(Regex::new(v).map_err(|e| format!("filter: invalid regex: {e}"))?);
                }
                "format" => match v.as_str() {
                    "json" => q.json = true,
                    "text" => {}
                    other => return Err(format!("format: unsupported format '{other}'")),
                },
                _ => {}
            }
        }
        Ok(q)
    }
}

/// The counters and gauges of a Prometheus text rendering, under Envoy's
/// names, sorted, filtered as `q` asks. Histograms (summaries) are left
/// out: Envoy prints quantiles of its own there, which the Prometheus view
/// already carries.
pub(crate) fn collect(prom: &str, q: &Query) -> Vec<Stat> {
    let mut kinds = std::collections::HashMap::new();
    let mut out = Vec::new();
    for line in prom.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            if let Some((name, kind)) = rest.split_once(' ') {
                kinds.insert(name.to_owned(), kind == "counter");
                if kind != "counter" && kind != "gauge" {
                    kinds.remove(name);
                }
            }
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => (n, parse_labels(l.trim_end_matches('}'))),
            None => (series, Vec::new()),
        };
        let Some(&counter) = kinds.get(name) else {
            continue;
        };
        let value = value.parse::<f64>().unwrap_or(0.0).max(0.0) as u64;
        if q.used_only && counter && value == 0 {
            continue;
        }
        let name = envoy_name(name, &labels);
        if q.filter.as_ref().is_some_and(|re| !re.is_match(&name)) {
            continue;
        }
        out.push(Stat {
            name,
            value,
            counter,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Envoy's text form: `name: value` per line.
pub(crate) fn text(stats: &[Stat]) -> String {
    let mut out = String::new();
    for s in stats {
        let _ = writeln!(out, "{}: {}", s.name, s.value);
    }
    out
}

/// Envoy's `?format=json` form.
pub(crate) fn json(stats: &[Stat]) -> serde_json::Value {
    let list: Vec<_> = stats
        .iter()
        .map(|s| serde_json::json!({"name": s.name, "value": s.value}))
        .collect();
    serde_json::json!({ "stats": list })
}

/// Scopes whose tag value comes first in the dotted name
/// (`<value>.<scope>.<stat>`): the Prometheus prefix (after `envoy_`), the
/// scope and its label.
const LEADING: &[(&str, &str, &str)] = &[(
    "http_local_rate_limit_",
    "http_local_rate_limit.",
    "envoy_local_http_ratelimit_prefix",
)];

/// The dotted Envoy name of a Prometheus series.
fn envoy_name(prom: &str, labels: &[(String, String)]) -> String {
    let Some(rest) = prom.strip_prefix("envoy_") else {
        return prom.to_owned();
    };
    for (pfx, scope, label) in LEADING {
        if let Some(tail) = rest.strip_prefix(pfx)
            && let Some((_, v)) = labels.iter().find(|(k, _)| k == label)
        {
            return format!("{v}.{scope}{tail}");
        }
    }
    let Some((pfx, dotted, label)) = SCOPES.iter().find(|(p, ..)| rest.starts_with(p)) else {
        return rest.to_owned();
    };
    let mut out = (*dotted).to_owned();
    let mut tail = &rest[pfx.len()..];
    if let Some(label) = label
        && let Some((_, v)) = labels.iter().find(|(k, _)| k == label)
    {
        // Envoy names a listener by its address with `_` for `:`.
        out.extend(v.chars().map(|c| if c == ':' { '_' } else { c }));
        out.push('.');
    }
    if let Some((p, d, label)) = SUBSCOPES.iter().find(|(p, ..)| tail.starts_with(p)) {
        out.push_str(d);
        tail = &tail[p.len()..];
        if let Some(label) = label
            && let Some((_, v)) = labels.iter().find(|(k, _)| k == label)
        {
            out.push_str(v);
            out.push('.');
        }
    }
    // `upstream_rq_xx{envoy_response_code_class="2"}` is `upstream_rq_2xx`.
    match (
        tail.strip_suffix("_xx"),
        labels
            .iter()
            .find(|(k, _)| k == "envoy_response_code_class"),
    ) {
        (Some(stem), Some((_, class))) => {
            let _ = write!(out, "{stem}_{class}xx");
        }
        _ => out.push_str(tail),
    }
    out
}

/// `a="x",b="y"` into pairs, undoing Prometheus' escapes.
fn parse_labels(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            return out;
        }
        if chars.next() != Some('"') {
            return out;
        }
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(c) => value.push(c),
                    None => {}
                },
                '"' => break,
                c => value.push(c),
            }
        }
        out.push((key.trim_start_matches(',').to_owned(), value));
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROM: &str = "\
# TYPE envoy_cluster_upstream_rq_total counter
envoy_cluster_upstream_rq_total{envoy_cluster_name=\"svc-a\"} 7
envoy_cluster_upstream_rq_total{envoy_cluster_name=\"idle\"} 0
# TYPE envoy_cluster_upstream_rq_xx counter
envoy_cluster_upstream_rq_xx{envoy_cluster_name=\"svc-a\",envoy_response_code_class=\"2\"} 7
# TYPE envoy_cluster_outlier_detection_ejections_enforced_total counter
envoy_cluster_outlier_detection_ejections_enforced_total{envoy_cluster_name=\"svc-a\"} 1
# TYPE envoy_listener_manager_lds_update_success counter
envoy_listener_manager_lds_update_success 3
# TYPE envoy_cluster_manager_cds_update_rejected counter
envoy_cluster_manager_cds_update_rejected 0
# TYPE envoy_http_rds_update_rejected counter
envoy_http_rds_update_rejected{envoy_http_conn_manager_prefix=\"web\",envoy_rds_route_config=\"web-routes\"} 1
# TYPE envoy_server_state gauge
envoy_server_state 0
# TYPE envoy_listener_downstream_cx_active gauge
envoy_listener_downstream_cx_active{envoy_listener_address=\"127.0.0.1:8080\"} 2
# TYPE envoy_http_downstream_rq_total counter
envoy_http_downstream_rq_total{envoy_http_conn_manager_prefix=\"in\\\"x\"} 9
# TYPE envoy_http_downstream_rq_time summary
envoy_http_downstream_rq_time{envoy_http_conn_manager_prefix=\"in\",quantile=\"0.5\"} 1
envoy_http_downstream_rq_time_count{envoy_http_conn_manager_prefix=\"in\"} 1
";

    fn names(q: &Query) -> Vec<String> {
        collect(PROM, q).into_iter().map(|s| s.name).collect()
    }

    #[test]
    fn prometheus_names_become_envoy_names() {
        let all = collect(PROM, &Query::default());
        let text = text(&all);
        for line in [
            "cluster.svc-a.upstream_rq_total: 7",
            "cluster.idle.upstream_rq_total: 0",
            "cluster.svc-a.upstream_rq_2xx: 7",
            "cluster.svc-a.outlier_detection.ejections_enforced_total: 1",
            "listener_manager.lds.update_success: 3",
            "cluster_manager.cds.update_rejected: 0",
            "server.state: 0",
            "listener.127.0.0.1_8080.downstream_cx_active: 2",
            "http.in\"x.downstream_rq_total: 9",
            "http.web.rds.web-routes.update_rejected: 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
        assert!(!text.contains("rq_time"), "histograms are left out");
        let mut sorted = all.clone();
        sorted.sort_by(|a, b| a.name.cmp(&b.name));
        assert_eq!(all, sorted);
    }

    #[test]
    fn rate_limit_names_are_envoys() {
        let prom = "\
# TYPE envoy_http_local_rate_limit_ok counter
envoy_http_local_rate_limit_ok{envoy_local_http_ratelimit_prefix=\"burst\"} 3
# TYPE envoy_local_rate_limit_rate_limited counter
envoy_local_rate_limit_rate_limited{envoy_local_network_ratelimit_prefix=\"conns\"} 2
# TYPE envoy_cluster_ratelimit_over_limit counter
envoy_cluster_ratelimit_over_limit{envoy_cluster_name=\"svc-a\"} 1
";
        let text = text(&collect(prom, &Query::default()));
        for line in [
            "burst.http_local_rate_limit.ok: 3",
            "local_rate_limit.conns.rate_limited: 2",
            "cluster.svc-a.ratelimit.over_limit: 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
    }

    #[test]
    fn usedonly_drops_untouched_counters_but_keeps_gauges() {
        let q = Query {
            used_only: true,
            ..Query::default()
        };
        let n = names(&q);
        assert!(!n.contains(&"cluster.idle.upstream_rq_total".to_owned()));
        assert!(!n.contains(&"cluster_manager.cds.update_rejected".to_owned()));
        assert!(n.contains(&"server.state".to_owned()), "gauge at 0 kept");
    }

    #[test]
    fn pilot_agent_filters() {
        let q = Query::from_query(&[
            ("usedonly".into(), String::new()),
            (
                "filter".into(),
                r"^(cluster_manager\.cds|listener_manager\.lds)\.(update_success|update_rejected)$"
                    .into(),
            ),
        ])
        .expect("valid");
        assert_eq!(names(&q), ["listener_manager.lds.update_success"]);
        let q =
            Query::from_query(&[("filter".into(), "downstream_cx_active$".into())]).expect("valid");
        assert_eq!(names(&q), ["listener.127.0.0.1_8080.downstream_cx_active"]);
        let err = Query::from_query(&[("filter".into(), "(".into())]).expect_err("bad");
        assert!(err.starts_with("filter: invalid regex"), "{err}");
    }

    #[test]
    fn json_form() {
        let q = Query::from_query(&[("filter".into(), "^server".into())]).expect("valid");
        let v = json(&collect(PROM, &q));
        assert_eq!(
            v,
            serde_json::json!({"stats": [{"name": "server.state", "value": 0}]})
        );
    }
}
