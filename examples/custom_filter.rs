//! A custom HTTP filter registered by type URL and configured from an
//! Envoy YAML bootstrap, like any Envoy filter.
//!
//! The filter's config has no `.proto` in Strait's build, so the YAML
//! carries it as Envoy carries such configs: an `xds.type.v3.TypedStruct`
//! naming the filter's type URL, with its fields as a JSON value. The same
//! factory parses a per-route override. The filter tags requests and
//! responses, and answers requests that carry `x-block` itself (403,
//! through the proxy's one local-reply path, with a response flag).
//!
//! Run: `cargo run -p strait-examples --example custom_filter`

use std::{sync::Arc, time::Duration};

use http::{HeaderName, HeaderValue, StatusCode};
use strait_app::{ConfigSource, Options, Proxy};
use strait_examples::{check, echo_upstream, get};
use strait_http::{Decision, HttpFilter, HttpFilterFactory, Reply, RequestHead, ResponseHead};
use strait_model::extension::{Extension, TypedValue};

const TYPE_URL: &str = "type.googleapis.com/example.filters.Tag";
const PER_ROUTE_TYPE_URL: &str = "type.googleapis.com/example.filters.TagPerRoute";

/// The filter's validated config: what the factory makes of the YAML.
#[derive(Debug, Clone, PartialEq)]
struct Tag {
    header: HeaderName,
    value: HeaderValue,
}

/// Parses `{header: ..., value: ...}` from a `TypedStruct`'s value.
fn tag(value: TypedValue<'_>) -> Result<Tag, String> {
    let TypedValue::Struct(v) = value else {
        return Err("expected a TypedStruct".into());
    };
    let field = |name: &str| {
        v.get(name)
            .and_then(|x| x.as_str())
            .ok_or_else(|| format!("{name}: a string is required"))
    };
    Ok(Tag {
        header: HeaderName::try_from(field("header")?).map_err(|e| format!("header: {e}"))?,
        value: HeaderValue::try_from(field("value")?).map_err(|e| format!("value: {e}"))?,
    })
}

struct TagFactory;

impl HttpFilterFactory for TagFactory {
    fn type_url(&self) -> &str {
        TYPE_URL
    }

    fn parse(&self, value: TypedValue<'_>) -> Result<Extension, String> {
        tag(value).map(|t| Extension::new(TYPE_URL, t))
    }

    fn per_route_type_url(&self) -> Option<&str> {
        Some(PER_ROUTE_TYPE_URL)
    }

    fn parse_per_route(&self, value: TypedValue<'_>) -> Result<Extension, String> {
        tag(value).map(|t| Extension::new(PER_ROUTE_TYPE_URL, t))
    }

    fn create(&self, config: &Extension) -> Result<Arc<dyn HttpFilter>, String> {
        let tag = config.get::<Tag>().ok_or("not a Tag config")?;
        Ok(Arc::new(TagFilter(tag.clone())))
    }
}

struct TagFilter(Tag);

impl HttpFilter for TagFilter {
    fn on_request<'a>(&'a self, req: &'a mut RequestHead<'_>) -> Decision<'a> {
        if req.head.headers.contains_key("x-block") {
            return Decision::Respond(
                Reply::new(StatusCode::FORBIDDEN)
                    .body("blocked by the tag filter\n")
                    .flag("UAEX")
                    .details("tag_filter_blocked"),
            );
        }
        // The route's override, if any, wins over the filter's own config.
        let tag = req.route_config::<Tag>().unwrap_or(&self.0);
        req.head
            .headers
            .insert(tag.header.clone(), tag.value.clone());
        Decision::Continue
    }

    fn on_response(&self, resp: &mut ResponseHead<'_>) {
        let tag = resp.route_config::<Tag>().unwrap_or(&self.0);
        resp.headers.insert("x-tagged", tag.value.clone());
    }
}

fn main() -> anyhow::Result<()> {
    let upstream = echo_upstream()?;
    let config = format!(
        r#"
static_resources:
  listeners:
  - name: web
    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: web
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{prefix: /special}}
                route: {{cluster: backend}}
                typed_per_filter_config:
                  tag:
                    "@type": type.googleapis.com/xds.type.v3.TypedStruct
                    type_url: {PER_ROUTE_TYPE_URL}
                    value: {{header: x-tag, value: special}}
              - match: {{prefix: /}}
                route: {{cluster: backend}}
          http_filters:
          - name: tag
            typed_config:
              "@type": type.googleapis.com/xds.type.v3.TypedStruct
              type_url: {TYPE_URL}
              value: {{header: x-tag, value: plain}}
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
  clusters:
  - name: backend
    load_assignment:
      cluster_name: backend
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}}}
"#,
        port = upstream.port()
    );

    // Without the factory, the same YAML is refused, naming the filter.
    let refused = strait_app::check(&config).err().unwrap_or_default();
    check(
        refused.iter().any(|e| e.contains(TYPE_URL)),
        "an unregistered type URL is refused by name",
    )?;

    let mut opts = Options::new(ConfigSource::Inline(config));
    opts.concurrency = 1;
    opts.http_filters.register(TagFactory);
    let proxy = Proxy::start(opts)?;
    let addr = proxy
        .listener_addr("web")
        .ok_or_else(|| anyhow::anyhow!("listener web is not bound"))?;

    let plain = get(addr, "/", &[])?;
    check(plain.status == 200, "status through the filter")?;
    check(plain.body.contains("x-tag: plain"), "request tagged")?;
    check(plain.header("x-tagged") == Some("plain"), "response tagged")?;

    let special = get(addr, "/special", &[])?;
    check(special.body.contains("x-tag: special"), "per-route config")?;
    check(
        special.header("x-tagged") == Some("special"),
        "per-route config",
    )?;

    let blocked = get(addr, "/", &[("x-block", "1")])?;
    check(blocked.status == 403, "answered by the filter")?;
    check(
        blocked.body == "blocked by the tag filter\n",
        "the filter's body",
    )?;

    println!("custom_filter: {TYPE_URL} tagged / and /special, and blocked x-block");
    proxy.shutdown(Duration::ZERO);
    Ok(())
}
