//! The operator's policy for per-request MCP servers (`request_servers.rs`): which URLs a
//! request may name, and which addresses the gateway may connect to for them (the SSRF
//! guard).
//!
//! [`Policy::check_url`] checks a URL before anything is sent: `mcp.request_servers` is on,
//! https (plain http only for a host listed as `http://…`), no credentials in the URL, the
//! host and port on `mcp.request_server_hosts`, and an IP literal of an allowed class.
//! [`GuardedResolver`] is the pooled client's DNS resolver: it drops every resolved address
//! of a refused class, so the check is on the address actually connected to (reqwest skips
//! the resolver for IP literals, which `check_url` checks). The redirect policy re-runs
//! `check_url` on every hop, so a redirect to a refused URL is not followed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::{
    Url,
    dns::{Addrs, Name, Resolve, Resolving},
};

use crate::config::{HostPattern, McpConfig, RequestServersMode};

/// Why a request server's URL is refused; the caller names the field (`server_url`). Never
/// holds the URL's path, query or user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("this gateway does not accept per-request MCP servers (mcp.request_servers is off)")]
    Off,
    #[error("not a URL: {0}")]
    NotAUrl(String),
    #[error("scheme {0:?} is not allowed: use https")]
    Scheme(String),
    #[error("credentials in the URL are not accepted: send them as headers")]
    Credentials,
    #[error("host {0} is not on this gateway's list of allowed MCP server hosts")]
    Host(String),
    #[error("port {port} is not allowed for host {host}")]
    Port { host: String, port: u16 },
    #[error("plain http is not allowed for host {0}: use https")]
    PlainHttp(String),
    #[error(
        "host {host} resolves to a {class} address, which this gateway does not connect to for a request's MCP server"
    )]
    Address { host: String, class: &'static str },
    #[error("host {0} resolves to no address")]
    NoAddress(String),
}

/// `mcp.request_servers`, `mcp.request_server_hosts` and `mcp.request_server_private`, parsed.
#[derive(Debug, Clone)]
pub struct Policy {
    on: bool,
    hosts: Vec<HostPattern>,
    allow_private: bool,
}

impl Policy {
    /// The policy of `config`; the error names a bad pattern (start-up validation reports it
    /// first).
    pub fn from_config(config: &McpConfig) -> Result<Self, String> {
        let hosts = config
            .request_server_hosts
            .iter()
            .map(|p| HostPattern::parse(p))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            on: config.request_servers == RequestServersMode::AllowList,
            hosts,
            allow_private: config.request_server_private,
        })
    }

    pub fn enabled(&self) -> bool {
        self.on
    }

    pub fn allow_private(&self) -> bool {
        self.allow_private
    }

    /// Parses `url` and checks it (see the module doc).
    pub fn check(&self, url: &str) -> Result<Url, Refusal> {
        if !self.on {
            return Err(Refusal::Off);
        }
        let url = Url::parse(url.trim()).map_err(|e| Refusal::NotAUrl(e.to_string()))?;
        self.check_url(&url)?;
        Ok(url)
    }

    /// Checks a parsed URL: also each redirect hop.
    pub fn check_url(&self, url: &Url) -> Result<(), Refusal> {
        if !self.on {
            return Err(Refusal::Off);
        }
        let (scheme, default_port) = match url.scheme() {
            "https" => ("https", 443),
            "http" => ("http", 80),
            other => return Err(Refusal::Scheme(other.to_string())),
        };
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Refusal::Credentials);
        }
        let host = url
            .host_str()
            .ok_or_else(|| Refusal::NotAUrl("it has no host".into()))?;
        let port = url.port_or_known_default().unwrap_or(default_port);
        let listed: Vec<_> = self.hosts.iter().filter(|p| p.matches_host(host)).collect();
        if listed.is_empty() {
            return Err(Refusal::Host(host.to_string()));
        }
        let listed: Vec<_> = listed
            .into_iter()
            .filter(|p| p.matches(host, port, default_port))
            .collect();
        if listed.is_empty() {
            return Err(Refusal::Port {
                host: host.to_string(),
                port,
            });
        }
        if scheme == "http" && !listed.iter().any(|p| p.plain_http) {
            return Err(Refusal::PlainHttp(host.to_string()));
        }
        if let Some(ip) = ip_literal(host)
            && !self.allow_private
            && let Some(class) = refused_class(ip)
        {
            return Err(Refusal::Address {
                host: host.to_string(),
                class,
            });
        }
        Ok(())
    }
}

/// The address of a URL host that is an IP literal (`Url` has normalised it: `127.1` and
/// `2130706433` are both `127.0.0.1`; IPv6 is in brackets).
pub fn ip_literal(host: &str) -> Option<IpAddr> {
    match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6.parse::<Ipv6Addr>().ok().map(IpAddr::V6),
        None => host.parse::<Ipv4Addr>().ok().map(IpAddr::V4),
    }
}

/// The class of an address a request server may not be reached at (unless
/// `mcp.request_server_private`), or `None` for a public one. IPv4 inside IPv6 (mapped,
/// compatible, NAT64, 6to4) is judged by the IPv4 address.
pub fn refused_class(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_class(v4),
        IpAddr::V6(v6) => v6_class(v6),
    }
}

fn v4_class(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    Some(if a == 0 {
        "unspecified"
    } else if ip.is_loopback() {
        "loopback"
    } else if ip.is_private() {
        "private"
    } else if a == 100 && (b & 0xc0) == 64 {
        "shared (carrier-grade NAT)"
    } else if ip.is_link_local() {
        "link-local"
    } else if ip.is_multicast() {
        "multicast"
    } else if a >= 240 {
        "reserved"
    } else {
        return None;
    })
}

fn v6_class(ip: Ipv6Addr) -> Option<&'static str> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return v4_class(v4);
    }
    let s = ip.segments();
    let embedded =
        |hi: u16, lo: u16| v4_class(Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo)));
    Some(if ip.is_unspecified() {
        "unspecified"
    } else if ip.is_loopback() {
        "loopback"
    } else if (s[0] & 0xfe00) == 0xfc00 {
        "unique-local"
    } else if (s[0] & 0xffc0) == 0xfe80 {
        "link-local"
    } else if (s[0] & 0xffc0) == 0xfec0 {
        "site-local"
    } else if (s[0] & 0xff00) == 0xff00 {
        "multicast"
    } else if s[..6] == [0; 6] || (s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0; 4]) {
        // IPv4-compatible (::a.b.c.d) and NAT64 (64:ff9b::a.b.c.d).
        return embedded(s[6], s[7]);
    } else if s[0] == 0x2002 {
        // 6to4: 2002:AABB:CCDD::/48 carries a.b.c.d.
        return embedded(s[1], s[2]);
    } else {
        return None;
    })
}

/// The addresses of `addrs` the policy allows; when none is left, the class of the first
/// refused one (`None` when there was no address at all).
pub fn filter_addrs(
    addrs: impl IntoIterator<Item = SocketAddr>,
    allow_private: bool,
) -> Result<Vec<SocketAddr>, Option<&'static str>> {
    let mut refused = None;
    let kept: Vec<_> = addrs
        .into_iter()
        .filter(|a| match refused_class(a.ip()) {
            Some(class) if !allow_private => {
                refused.get_or_insert(class);
                false
            }
            _ => true,
        })
        .collect();
    if kept.is_empty() {
        Err(refused)
    } else {
        Ok(kept)
    }
}

/// The refusal for a host whose addresses were all filtered out.
pub fn address_refusal(host: &str, class: Option<&'static str>) -> Refusal {
    match class {
        Some(class) => Refusal::Address {
            host: host.to_string(),
            class,
        },
        None => Refusal::NoAddress(host.to_string()),
    }
}

/// Resolves with the system resolver and drops the addresses the policy refuses; fails when
/// none is left, so nothing connects to a refused address (a DNS answer that changes between
/// the check and the connection included).
pub struct GuardedResolver {
    pub allow_private: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_string();
        let allow_private = self.allow_private;
        Box::pin(async move {
            let addrs = tokio::net::lookup_host((host.as_str(), 0)).await?;
            match filter_addrs(addrs, allow_private) {
                Ok(kept) => Ok(Box::new(kept.into_iter()) as Addrs),
                Err(class) => Err(Box::new(address_refusal(&host, class)) as _),
            }
        })
    }
}

#[cfg(test)]
#[path = "request_policy_tests.rs"]
mod tests;
