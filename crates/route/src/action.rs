//! The compiled parts of a forwarding action: cluster choice (including
//! weighted clusters and `cluster_header`), regex rewrites, host rewrites,
//! and the timeouts a request derives from `grpc-timeout`.

use std::{
    borrow::Cow,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use http::{HeaderMap, HeaderName};
use regex::Regex;
use strait_model::{
    ClusterSpecifier, ClusterTarget, ClusterWeight, ForwardAction, HostRewrite, RegexRewrite,
    WeightedClusters,
};

use crate::{
    RouteError,
    headers::HeaderMutation,
    matcher::{RequestView, first, header_name, path_without_query, search_regex},
};

/// `grpc-timeout`.
static GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");

/// A compiled `RouteAction` (beyond what the model already says plainly).
#[derive(Debug, Clone)]
pub(crate) struct ForwardEntry {
    cluster: ClusterEntry,
    pub(crate) regex_rewrite: Option<Rewrite>,
    host_rewrite: Option<HostRewriteEntry>,
}

#[derive(Debug, Clone)]
enum ClusterEntry {
    Name(Box<str>),
    Header(HeaderName),
    Weighted(WeightedEntry),
}

#[derive(Debug, Clone)]
struct WeightedEntry {
    clusters: Box<[WeightedClusterEntry]>,
    /// Running sums of the weights: cluster `i` owns `[cumulative[i-1],
    /// cumulative[i])`.
    cumulative: Box<[u64]>,
    random_header: Option<HeaderName>,
    /// Requests picked so far without a `random_value_header` value.
    turn: Turn,
}

/// A weighted route's rotation. Envoy draws a random value per request,
/// so a 50/50 split over 400 requests lands outside 45–55 % one time in
/// twenty; Strait steps through the shares instead: `n * step % total`
/// visits every point of `[0, total)` once in each `total` requests (the
/// step is coprime to the total), interleaved rather than in runs (the
/// step is the coprime nearest to `total / φ`, the golden-ratio stride).
/// Each route has its own rotation, so requests of other routes in
/// between cannot skew it. Copies start afresh.
#[derive(Debug)]
struct Turn {
    count: AtomicU64,
    step: u64,
}

impl Clone for Turn {
    fn clone(&self) -> Self {
        Turn::new(self.step)
    }
}

impl Turn {
    fn new(step: u64) -> Self {
        Turn {
            count: AtomicU64::new(0),
            step,
        }
    }

    /// The rotation for weights summing to `total` (non-zero).
    fn for_total(total: u64) -> Self {
        const INVERSE_PHI: f64 = 0.618_033_988_749_895;
        fn gcd(a: u64, b: u64) -> u64 {
            if b == 0 { a } else { gcd(b, a % b) }
        }
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let ideal = ((total as f64) * INVERSE_PHI).round() as u64;
        let step = (0..total)
            .flat_map(|d| [ideal.saturating_add(d), ideal.saturating_sub(d)])
            .find(|s| (1..total).contains(s) && gcd(*s, total) == 1)
            .unwrap_or(1);
        Turn::new(step)
    }

    fn next(&self, total: u64) -> u64 {
        // Relaxed: the count only has to be unique per request, not
        // ordered with anything else.
        self.count
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(self.step)
            % total
    }
}

/// One compiled `weighted_clusters` entry.
#[derive(Debug, Clone)]
pub struct WeightedClusterEntry {
    target: Target,
    weight: u32,
    headers: HeaderMutation,
    host_rewrite_literal: Option<Box<str>>,
}

#[derive(Debug, Clone)]
enum Target {
    Name(Box<str>),
    Header(HeaderName),
}

#[derive(Debug, Clone)]
enum HostRewriteEntry {
    Literal(Box<str>),
    Auto,
    Header(HeaderName),
    PathRegex(Rewrite),
}

/// A compiled `RegexMatchAndSubstitute`: every match is replaced, with RE2's
/// `\N` groups already translated to the `regex` crate's syntax.
#[derive(Debug, Clone)]
pub(crate) struct Rewrite {
    regex: Regex,
    replacement: Box<str>,
}

/// The upstream cluster chosen for one request, with the weighted-cluster
/// entry that chose it (whose header mutations and host rewrite apply).
#[derive(Debug, Clone, Copy)]
pub struct ChosenCluster<'a> {
    name: &'a str,
    weighted: Option<&'a WeightedClusterEntry>,
}

/// A cluster choice that borrows only the route table, for callers that
/// must change the request after choosing (see [`crate::Matched::choice`]).
#[derive(Debug, Clone)]
pub struct Choice<'t> {
    /// The cluster name; empty when a `cluster_header` was missing.
    pub name: Cow<'t, str>,
    /// The weighted-cluster entry chosen, whose header mutations apply.
    pub weighted: Option<&'t WeightedClusterEntry>,
}

impl Choice<'_> {
    /// The choice as [`crate::Matched::cluster`] returns it, for
    /// [`crate::Matched::host_rewrite`]. Choosing once and viewing the
    /// choice twice matters: each choice of a weighted route advances its
    /// rotation.
    pub fn as_chosen(&self) -> ChosenCluster<'_> {
        ChosenCluster {
            name: &self.name,
            weighted: self.weighted,
        }
    }
}

/// What to do with the upstream request's host (`:authority`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostRewriteOutcome<'a> {
    /// Leave it as received.
    Keep,
    /// Replace it with this.
    Set(Cow<'a, str>),
    /// `auto_host_rewrite`: replace it with the chosen upstream host's name
    /// (for DNS clusters), which only the caller knows.
    Auto,
}

/// The route's verdict on the stream's maximum duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamDuration {
    /// The route says nothing: the connection manager's limit applies.
    Inherit,
    /// No limit for this route, whatever the connection manager says.
    Disabled,
    /// This limit; `Duration::ZERO` means the stream times out at once (a
    /// `grpc-timeout` used up by `grpc_timeout_header_offset`).
    Limit(Duration),
}

impl ForwardEntry {
    pub(crate) fn compile(
        config: &ForwardAction,
        at: &dyn Fn() -> String,
    ) -> Result<Self, RouteError> {
        let cluster = match &config.cluster {
            ClusterSpecifier::Name(name) => ClusterEntry::Name(name.as_str().into()),
            ClusterSpecifier::Header(h) => ClusterEntry::Header(header_name(h, at)?),
            ClusterSpecifier::Weighted(w) => ClusterEntry::Weighted(WeightedEntry::compile(w, at)?),
        };
        let host_rewrite = match &config.host_rewrite {
            None => None,
            Some(HostRewrite::Literal(h)) => Some(HostRewriteEntry::Literal(h.as_str().into())),
            Some(HostRewrite::Auto) => Some(HostRewriteEntry::Auto),
            Some(HostRewrite::Header(h)) => Some(HostRewriteEntry::Header(header_name(h, at)?)),
            Some(HostRewrite::PathRegex(r)) => {
                Some(HostRewriteEntry::PathRegex(Rewrite::compile(r, at)?))
            }
        };
        Ok(Self {
            cluster,
            regex_rewrite: config
                .regex_rewrite
                .as_ref()
                .map(|r| Rewrite::compile(r, at))
                .transpose()?,
            host_rewrite,
        })
    }

    /// Like [`ForwardEntry::choose`], detached from the request: a name
    /// taken from a request header is copied, so the caller may go on to
    /// change the request. Allocates only for header-named clusters.
    pub(crate) fn choice(&self, request: &RequestView<'_>) -> Choice<'_> {
        let owned = |h: &HeaderName| Cow::Owned(header_str(request.headers, h).to_owned());
        match &self.cluster {
            ClusterEntry::Name(name) => Choice {
                name: Cow::Borrowed(name),
                weighted: None,
            },
            ClusterEntry::Header(h) => Choice {
                name: owned(h),
                weighted: None,
            },
            ClusterEntry::Weighted(w) => {
                let entry = w.pick(request);
                let name = match &entry.target {
                    Target::Name(name) => Cow::Borrowed(&**name),
                    Target::Header(h) => owned(h),
                };
                Choice {
                    name,
                    weighted: Some(entry),
                }
            }
        }
    }

    /// Picks the cluster. Pure; does not allocate.
    pub(crate) fn choose<'a>(&'a self, request: &RequestView<'a>) -> ChosenCluster<'a> {
        match &self.cluster {
            ClusterEntry::Name(name) => ChosenCluster {
                name,
                weighted: None,
            },
            ClusterEntry::Header(h) => ChosenCluster {
                name: header_str(request.headers, h),
                weighted: None,
            },
            ClusterEntry::Weighted(w) => {
                let entry = w.pick(request);
                let name = match &entry.target {
                    Target::Name(name) => name,
                    Target::Header(h) => header_str(request.headers, h),
                };
                ChosenCluster {
                    name,
                    weighted: Some(entry),
                }
            }
        }
    }

    pub(crate) fn host_rewrite<'a>(
        &'a self,
        request: &RequestView<'a>,
        cluster: Option<&ChosenCluster<'a>>,
    ) -> HostRewriteOutcome<'a> {
        // A weighted cluster's own literal is the most specific rewrite.
        if let Some(literal) = cluster.and_then(ChosenCluster::host_rewrite_literal) {
            return HostRewriteOutcome::Set(Cow::Borrowed(literal));
        }
        match &self.host_rewrite {
            None => HostRewriteOutcome::Keep,
            Some(HostRewriteEntry::Literal(h)) => HostRewriteOutcome::Set(Cow::Borrowed(h)),
            Some(HostRewriteEntry::Auto) => HostRewriteOutcome::Auto,
            // An empty or missing header leaves the host alone, as in Envoy.
            Some(HostRewriteEntry::Header(h)) => match first(request.headers, h) {
                Some(v) if !v.is_empty() => HostRewriteOutcome::Set(v),
                _ => HostRewriteOutcome::Keep,
            },
            Some(HostRewriteEntry::PathRegex(r)) => {
                match r.apply(path_without_query(request.path)) {
                    v if v.is_empty() => HostRewriteOutcome::Keep,
                    v => HostRewriteOutcome::Set(v),
                }
            }
        }
    }
}

/// The first value of `name` when it is valid UTF-8, else "" (which no
/// cluster is named).
fn header_str<'a>(headers: &'a HeaderMap, name: &HeaderName) -> &'a str {
    headers
        .get(name)
        .and_then(|v| std::str::from_utf8(v.as_bytes()).ok())
        .unwrap_or("")
}

impl WeightedEntry {
    fn compile(config: &WeightedClusters, at: &dyn Fn() -> String) -> Result<Self, RouteError> {
        let clusters: Box<[WeightedClusterEntry]> = config
            .clusters
            .iter()
            .map(|c| WeightedClusterEntry::compile(c, at))
            .collect::<Result<_, _>>()?;
        let cumulative: Box<[u64]> = clusters
            .iter()
            .scan(0u64, |sum, c| {
                *sum += u64::from(c.weight);
                Some(*sum)
            })
            .collect();
        if cumulative.last().is_none_or(|total| *total == 0) {
            return Err(RouteError::ZeroWeights { at: at() });
        }
        let turn = Turn::for_total(*cumulative.last().unwrap_or(&1));
        Ok(Self {
            clusters,
            cumulative,
            random_header: config
                .random_value_header
                .as_deref()
                .map(|h| header_name(h, at))
                .transpose()?,
            turn,
        })
    }

    /// A point in `[0, total)` lands in one cluster's share: the
    /// `random_value_header` value modulo the total when the request holds
    /// a `u64` there (Envoy's choice), else the route's next [`Turn`].
    fn pick(&self, request: &RequestView<'_>) -> &WeightedClusterEntry {
        // `compile` guarantees a non-zero total and one sum per cluster.
        let total = self.cumulative.last().copied().unwrap_or(1).max(1);
        let point = self
            .random_header
            .as_ref()
            .and_then(|h| request.headers.get(h))
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .map_or_else(|| self.turn.next(total), |v| v % total);
        let index = self.cumulative.partition_point(|end| *end <= point);
        &self.clusters[index.min(self.clusters.len() - 1)]
    }
}

impl WeightedClusterEntry {
    fn compile(config: &ClusterWeight, at: &dyn Fn() -> String) -> Result<Self, RouteError> {
        Ok(Self {
            target: match &config.target {
                ClusterTarget::Name(name) => Target::Name(name.as_str().into()),
                ClusterTarget::Header(h) => Target::Header(header_name(h, at)?),
            },
            weight: config.weight,
            headers: HeaderMutation::compile(&config.headers, at)?,
            host_rewrite_literal: config.host_rewrite_literal.as_deref().map(Into::into),
        })
    }

    /// The cluster's name, or `None` when it is read from a header.
    pub fn name(&self) -> Option<&str> {
        match &self.target {
            Target::Name(name) => Some(name),
            Target::Header(_) => None,
        }
    }

    pub fn weight(&self) -> u32 {
        self.weight
    }

    /// This entry's `request/response_headers_to_add/remove`.
    pub fn headers(&self) -> &HeaderMutation {
        &self.headers
    }
}

impl<'a> ChosenCluster<'a> {
    /// The cluster to forward to. Empty when `cluster_header` named a header
    /// the request lacks; like a name no cluster has, the caller answers it
    /// with the route's `cluster_not_found_status` (503 by default, response
    /// flag `NC`).
    pub fn name(&self) -> &'a str {
        self.name
    }

    /// The weighted-cluster entry chosen, when the route splits traffic.
    pub fn weighted(&self) -> Option<&'a WeightedClusterEntry> {
        self.weighted
    }

    fn host_rewrite_literal(&self) -> Option<&'a str> {
        self.weighted
            .and_then(|w| w.host_rewrite_literal.as_deref())
    }
}

impl Rewrite {
    pub(crate) fn compile(
        config: &RegexRewrite,
        at: &dyn Fn() -> String,
    ) -> Result<Self, RouteError> {
        Ok(Self {
            regex: search_regex(&config.pattern, at)?,
            replacement: re2_replacement(&config.substitution).into(),
        })
    }

    /// Replaces every non-overlapping match; borrows when nothing matched.
    pub(crate) fn apply<'s>(&self, input: &'s str) -> Cow<'s, str> {
        self.regex.replace_all(input, &*self.replacement)
    }
}

/// RE2's substitution syntax (`\1`, `\\`) in the `regex` crate's (`${1}`,
/// `\`, with `$` escaped as `$$`).
fn re2_replacement(substitution: &str) -> String {
    let mut out = String::with_capacity(substitution.len() + 8);
    let mut chars = substitution.chars();
    while let Some(c) = chars.next() {
        match c {
            '$' => out.push_str("$$"),
            '\\' => match chars.next() {
                Some(d) if d.is_ascii_digit() => {
                    out.push_str("${");
                    out.push(d);
                    out.push('}');
                }
                Some(other) => out.push(other),
                None => out.push('\\'),
            },
            c => out.push(c),
        }
    }
    out
}

/// Parses a `grpc-timeout` header: 1 to 8 digits and a unit (`H`, `M`, `S`,
/// `m`, `u`, `n`). `None` when absent or malformed, which Envoy treats as
/// no timeout given.
pub fn grpc_timeout(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(&GRPC_TIMEOUT)?.as_bytes();
    let (&unit, digits) = value.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = digits
        .iter()
        .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
    Some(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The upstream (route) timeout of a request, as Envoy's router computes
/// it without `x-envoy-upstream-rq-timeout-ms`: the route's `timeout`,
/// except that with the deprecated `max_grpc_timeout` a gRPC request uses
/// its `grpc-timeout` (none when absent), less `grpc_timeout_offset` when
/// that leaves something, capped at `max_grpc_timeout` unless that is 0.
/// `None` means no timeout.
pub(crate) fn upstream_timeout(
    config: &ForwardAction,
    request: &RequestView<'_>,
) -> Option<Duration> {
    let Some(grpc) = config.grpc_timeout else {
        return config.timeout;
    };
    if !crate::matcher::is_grpc(request.headers) {
        return config.timeout;
    }
    let mut timeout = grpc_timeout(request.headers).filter(|t| !t.is_zero());
    if let (Some(t), Some(offset)) = (timeout, grpc.offset)
        && offset < t
    {
        timeout = Some(t - offset);
    }
    match (timeout, grpc.max) {
        (None, max) => max,
        (Some(t), Some(max)) if t > max => Some(max),
        (Some(t), _) => Some(t),
    }
}

/// The route's stream duration for a request: with
/// `grpc_timeout_header_max` and a `grpc-timeout` header, the header's
/// value (capped unless the max is 0) less `grpc_timeout_header_offset`;
/// else `max_stream_duration` (0 disables, unset inherits).
pub(crate) fn stream_duration(config: &ForwardAction, request: &RequestView<'_>) -> StreamDuration {
    let Some(m) = config.max_stream_duration else {
        return StreamDuration::Inherit;
    };
    if let Some(max) = m.grpc_timeout_header_max
        && let Some(t) = grpc_timeout(request.headers).filter(|t| !t.is_zero())
    {
        let capped = if !max.is_zero() && t > max { max } else { t };
        let offset = m.grpc_timeout_header_offset.unwrap_or_default();
        return StreamDuration::Limit(capped.saturating_sub(offset));
    }
    match m.max_stream_duration {
        None => StreamDuration::Inherit,
        Some(d) if d.is_zero() => StreamDuration::Disabled,
        Some(d) => StreamDuration::Limit(d),
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn with_timeout(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(&GRPC_TIMEOUT, HeaderValue::from_str(value).expect("value"));
        h
    }

    #[test]
    fn grpc_timeout_header() {
        let cases: &[(&str, Option<Duration>)] = &[
            ("1H", Some(Duration::from_secs(3600))),
            ("2M", Some(Duration::from_secs(120))),
            ("3S", Some(Duration::from_secs(3))),
            ("250m", Some(Duration::from_millis(250))),
            ("99999999u", Some(Duration::from_micros(99_999_999))),
            ("5n", Some(Duration::from_nanos(5))),
            ("0S", Some(Duration::ZERO)),
            ("123456789S", None),
            ("S", None),
            ("10", None),
            ("10s", None),
            ("-1S", None),
            ("1 S", None),
        ];
        for (value, want) in cases {
            assert_eq!(grpc_timeout(&with_timeout(value)), *want, "{value}");
        }
        assert_eq!(grpc_timeout(&HeaderMap::new()), None);
    }

    #[test]
    fn re2_substitutions() {
        let cases = [
            (r"\2/instance/\1", "${2}/instance/${1}"),
            (r"\0", "${0}"),
            (r"a\\b", r"a\b"),
            ("$1", "$$1"),
            ("plain", "plain"),
        ];
        for (re2, want) in cases {
            assert_eq!(re2_replacement(re2), want, "{re2}");
        }
    }
}
