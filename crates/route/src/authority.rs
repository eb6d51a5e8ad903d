//! Ports in `:authority`: stripping them for virtual-host selection
//! (`ignore_port_in_host_matching`) and for the connection manager's
//! `strip_matching_host_port` / `strip_any_host_port`.

use strait_model::StripHostPort;

/// The port of `host:port` or `[v6]:port`, if it has one. Does not allocate.
pub fn port_of(authority: &str) -> Option<&str> {
    let host_len = strip_port(authority).len();
    authority
        .get(host_len + 1..)
        .filter(|_| host_len < authority.len())
}

/// `authority` without a trailing `:port` (digits only); brackets of an IPv6
/// literal are kept. Does not allocate.
pub fn strip_port(authority: &str) -> &str {
    let Some(colon) = authority.rfind(':') else {
        return authority;
    };
    let (host, port) = (&authority[..colon], &authority[colon + 1..]);
    let bare_ipv6 = host.contains(':') && !host.ends_with(']');
    if bare_ipv6 || !port.bytes().all(|b| b.is_ascii_digit()) {
        return authority;
    }
    host
}

/// The authority the connection manager routes (and forwards) with: the
/// port removed when `mode` says so: any port, or only one equal to the
/// listener's `listener_port`. Pure; does not allocate.
pub fn strip_host_port(authority: &str, mode: StripHostPort, listener_port: u16) -> &str {
    match mode {
        StripHostPort::None => authority,
        StripHostPort::Any => strip_port(authority),
        StripHostPort::Matching => match port_of(authority).map(str::parse::<u16>) {
            Some(Ok(port)) if port == listener_port => strip_port(authority),
            _ => authority,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports() {
        let cases = [
            ("example.com", "example.com", None),
            ("example.com:80", "example.com", Some("80")),
            ("example.com:", "example.com", Some("")),
            ("[::1]:8080", "[::1]", Some("8080")),
            ("[::1]", "[::1]", None),
            ("::1", "::1", None),
            ("host:abc", "host:abc", None),
        ];
        for (authority, host, port) in cases {
            assert_eq!(strip_port(authority), host, "{authority}");
            assert_eq!(port_of(authority), port, "{authority}");
        }
    }

    #[test]
    fn connection_manager_modes() {
        use StripHostPort::*;
        let cases = [
            ("a.com:8080", None, 8080, "a.com:8080"),
            ("a.com:8080", Any, 1, "a.com"),
            ("a.com:8080", Matching, 8080, "a.com"),
            ("a.com:8080", Matching, 80, "a.com:8080"),
            ("[::1]:80", Matching, 80, "[::1]"),
            ("a.com", Any, 80, "a.com"),
            ("a.com", Matching, 80, "a.com"),
        ];
        for (authority, mode, port, want) in cases {
            assert_eq!(
                strip_host_port(authority, mode, port),
                want,
                "{authority} {mode:?} {port}"
            );
        }
    }
}
