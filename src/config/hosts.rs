//! The host patterns of `mcp.request_server_hosts`: which hosts a request's own MCP server
//! (`server_url`) may name. Parsed here once, for start-up validation and for the MCP hub's
//! policy check (`mcp/request_servers.rs`), so both read a pattern the same way.
//!
//! A pattern is `host`, `*.host` (any subdomain of `host`, not `host` itself) or an IP
//! literal (`10.0.0.5`, `[fd00::1]`), with an optional `:port`; without one only the
//! scheme's default port matches. It may be written `http://…` to allow plain http for that
//! host (https stays allowed); `https://…` is the same as no prefix.

use std::net::{Ipv4Addr, Ipv6Addr};

/// One parsed entry of `mcp.request_server_hosts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    /// Plain `http` is allowed as well as `https`.
    pub plain_http: bool,
    /// `*.host`: subdomains of `host` match, `host` itself does not.
    pub subdomains: bool,
    /// Lower-case; an IPv6 literal in brackets, as `Url::host_str` writes it.
    pub host: String,
    /// `None`: only the scheme's default port.
    pub port: Option<u16>,
}

impl HostPattern {
    /// Parses one pattern; the error quotes it and says what is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = |why: &str| Err(format!("{text:?} is not a host pattern: {why}"));
        let s = text.trim();
        let lower = s.to_ascii_lowercase();
        let (plain_http, rest) = if let Some(rest) = lower.strip_prefix("http://") {
            (true, rest)
        } else if let Some(rest) = lower.strip_prefix("https://") {
            (false, rest)
        } else if lower.contains("://") {
            return bad("only http:// or https:// may come before the host");
        } else {
            (false, lower.as_str())
        };
        if rest.is_empty() {
            return bad("it names no host");
        }
        if rest.contains(['/', '?', '#', '@']) {
            return bad("write a host with an optional :port, without a path, query or user");
        }
        let (subdomains, rest) = match rest.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, rest),
        };
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let Some((addr, after)) = v6.split_once(']') else {
                return bad("an IPv6 address needs its closing ']'");
            };
            let Ok(addr) = addr.parse::<Ipv6Addr>() else {
                return bad("the part in brackets is not an IPv6 address");
            };
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').unwrap_or("x")),
            };
            (format!("[{addr}]"), port)
        } else {
            match rest.rsplit_once(':') {
                Some((host, port)) => (host.to_string(), Some(port)),
                None => (rest.to_string(), None),
            }
        };
        let port = match port {
            None => None,
            Some(p) => match p.parse::<u16>() {
                Ok(p) if p != 0 => Some(p),
                _ => return bad("the port must be a number from 1 to 65535"),
            },
        };
        let is_ip = host.starts_with('[') || host.parse::<Ipv4Addr>().is_ok();
        if is_ip && subdomains {
            return bad("'*.' goes before a domain name, not an IP address");
        }
        if !is_ip {
            if host.contains('*') {
                return bad("'*' may only start the pattern, as in *.example.com");
            }
            if !host.is_ascii() {
                return bad("write an international domain name in its xn-- form");
            }
            if !is_domain(&host) {
                return bad("the host is not a domain name or an IP address");
            }
        }
        Ok(Self {
            plain_http,
            subdomains,
            host,
            port,
        })
    }

    /// Whether `host` (as `Url::host_str` gives it: lower-case, IPv6 in brackets) at `port`
    /// matches; `default_port` is the URL scheme's.
    pub fn matches(&self, host: &str, port: u16, default_port: u16) -> bool {
        self.matches_host(host) && port == self.port.unwrap_or(default_port)
    }

    /// Whether `host` matches, whatever the port (to tell "wrong port" from "not listed").
    pub fn matches_host(&self, host: &str) -> bool {
        if self.subdomains {
            host.strip_suffix(self.host.as_str())
                .and_then(|head| head.strip_suffix('.'))
                .is_some_and(|head| !head.is_empty())
        } else {
            host == self.host
        }
    }
}

fn is_domain(s: &str) -> bool {
    s.split('.').all(|label| {
        (1..=63).contains(&label.len())
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> HostPattern {
        HostPattern::parse(s).unwrap()
    }

    #[test]
    fn plain_wildcard_port_and_scheme_forms_parse() {
        assert_eq!(
            p("Example.COM"),
            HostPattern {
                plain_http: false,
                subdomains: false,
                host: "example.com".into(),
                port: None
            }
        );
        let w = p("http://*.example.com:8080");
        assert!(w.plain_http && w.subdomains);
        assert_eq!((w.host.as_str(), w.port), ("example.com", Some(8080)));
        assert!(!p("https://example.com").plain_http);
        assert_eq!(p("[FD00::1]:9000").host, "[fd00::1]");
        assert_eq!(p("10.0.0.5").host, "10.0.0.5");
    }

    #[test]
    fn bad_patterns_are_quoted_with_the_reason() {
        for (text, why) in [
            ("", "no host"),
            ("ftp://example.com", "only http://"),
            ("example.com/mcp", "without a path"),
            ("user@example.com", "without a path"),
            ("example.com:0", "port"),
            ("example.com:http", "port"),
            ("*", "may only start"),
            ("a.*.example.com", "'*' may only start"),
            ("*.10.0.0.1", "not an IP"),
            ("[::1", "closing"),
            ("[nope]", "not an IPv6"),
            ("exa_mple.com", "not a domain"),
            ("bücher.de", "xn--"),
            ("-a.com", "not a domain"),
        ] {
            let e = HostPattern::parse(text).unwrap_err();
            assert!(
                e.contains(&format!("{text:?}")) && e.contains(why),
                "{text}: {e}"
            );
        }
    }

    #[test]
    fn wildcards_match_subdomains_only_and_ports_must_match() {
        let w = p("*.example.com");
        assert!(w.matches("a.example.com", 443, 443));
        assert!(w.matches("a.b.example.com", 443, 443));
        assert!(!w.matches("example.com", 443, 443));
        assert!(!w.matches("badexample.com", 443, 443));
        assert!(!w.matches("a.example.com", 8443, 443), "default port only");
        let exact = p("example.com:8443");
        assert!(exact.matches("example.com", 8443, 443));
        assert!(!exact.matches("example.com", 443, 443));
        assert!(!exact.matches("a.example.com", 8443, 443));
        assert!(exact.matches_host("example.com"));
        assert!(p("[::1]:80").matches("[::1]", 80, 443));
    }
}
