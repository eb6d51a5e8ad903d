//! `ListenerFilterChainMatchPredicate`: when a listener filter is skipped
//! (`filter_disabled`).

use std::ops::Range;

/// Envoy `envoy.config.listener.v3.ListenerFilterChainMatchPredicate`.
/// Evaluated once per connection, before the filter runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenerFilterPredicate {
    /// `or_match`: any of the rules.
    Or(Vec<ListenerFilterPredicate>),
    /// `and_match`: all of the rules.
    And(Vec<ListenerFilterPredicate>),
    /// `not_match`.
    Not(Box<ListenerFilterPredicate>),
    /// `any_match`: every connection.
    Any,
    /// `destination_port_range` (`Int32Range`, end exclusive): the port the
    /// connection was sent to (its original destination when the listener
    /// restores it).
    DestinationPorts(Range<u32>),
}

impl ListenerFilterPredicate {
    /// True when the connection to `destination_port` matches, i.e. the
    /// filter is disabled for it. Does not allocate.
    pub fn matches(&self, destination_port: u16) -> bool {
        match self {
            ListenerFilterPredicate::Or(rules) => rules.iter().any(|r| r.matches(destination_port)),
            ListenerFilterPredicate::And(rules) => {
                rules.iter().all(|r| r.matches(destination_port))
            }
            ListenerFilterPredicate::Not(rule) => !rule.matches(destination_port),
            ListenerFilterPredicate::Any => true,
            ListenerFilterPredicate::DestinationPorts(range) => {
                range.contains(&u32::from(destination_port))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ListenerFilterPredicate::{self, *};

    fn ports(start: u32, end: u32) -> ListenerFilterPredicate {
        DestinationPorts(start..end)
    }

    #[test]
    fn each_kind_and_nesting() {
        // (predicate, port, matches)
        let cases = [
            (Any, 1, true),
            (ports(80, 81), 80, true),
            // The range's end is exclusive, as Envoy's Int32Range.
            (ports(80, 81), 81, false),
            (ports(80, 81), 79, false),
            (Not(Box::new(ports(80, 81))), 81, true),
            (Not(Box::new(Any)), 81, false),
            (Or(vec![ports(80, 81), ports(443, 444)]), 443, true),
            (Or(vec![ports(80, 81), ports(443, 444)]), 8080, false),
            (And(vec![ports(80, 90), ports(85, 100)]), 86, true),
            (And(vec![ports(80, 90), ports(85, 100)]), 81, false),
            // Istio's inbound shape: off for everything but the ports it names.
            (
                Not(Box::new(Or(vec![ports(15006, 15007), ports(9080, 9081)]))),
                9080,
                false,
            ),
            (
                Not(Box::new(Or(vec![ports(15006, 15007), ports(9080, 9081)]))),
                3306,
                true,
            ),
            (
                And(vec![Not(Box::new(ports(1, 100))), Or(vec![Any])]),
                200,
                true,
            ),
        ];
        for (predicate, port, want) in cases {
            assert_eq!(predicate.matches(port), want, "{predicate:?} on {port}");
        }
    }
}
