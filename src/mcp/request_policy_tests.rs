//! Tests of the per-request server policy: patterns applied to URLs, scheme rules, address
//! classes (IPv6 and IPv4 inside IPv6 included) and the resolver's filter.

use std::net::{IpAddr, SocketAddr};

use super::*;

fn policy(hosts: &[&str], allow_private: bool) -> Policy {
    let config = McpConfig {
        request_servers: RequestServersMode::AllowList,
        request_server_hosts: hosts.iter().map(|h| h.to_string()).collect(),
        request_server_private: allow_private,
        ..McpConfig::default()
    };
    Policy::from_config(&config).unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn off_refuses_everything() {
    let p = Policy::from_config(&McpConfig::default()).unwrap();
    assert!(!p.enabled());
    assert_eq!(p.check("https://example.com/mcp"), Err(Refusal::Off));
}

#[test]
fn listed_hosts_pass_and_others_are_refused_by_host_or_port() {
    let p = policy(&["example.com", "*.tools.example.org:8443"], false);
    assert!(p.check("https://example.com/mcp?token=x").is_ok());
    assert!(p.check("https://EXAMPLE.com:443/mcp").is_ok());
    assert!(p.check("https://a.tools.example.org:8443/mcp").is_ok());
    assert_eq!(
        p.check("https://evil.example/mcp"),
        Err(Refusal::Host("evil.example".into()))
    );
    assert_eq!(
        p.check("https://tools.example.org:8443/"),
        Err(Refusal::Host("tools.example.org".into())),
        "a wildcard does not match its own domain"
    );
    assert_eq!(
        p.check("https://example.com:8443/"),
        Err(Refusal::Port {
            host: "example.com".into(),
            port: 8443
        })
    );
}

#[test]
fn https_only_unless_the_pattern_says_http() {
    let p = policy(&["secure.example", "http://plain.example:8080"], false);
    assert_eq!(
        p.check("http://secure.example/mcp"),
        Err(Refusal::PlainHttp("secure.example".into()))
    );
    assert!(p.check("http://plain.example:8080/mcp").is_ok());
    assert!(p.check("https://plain.example:8080/mcp").is_ok());
    assert_eq!(
        p.check("ftp://secure.example/"),
        Err(Refusal::Scheme("ftp".into()))
    );
    assert_eq!(
        p.check("https://user:pw@secure.example/"),
        Err(Refusal::Credentials)
    );
    assert!(matches!(p.check("not a url"), Err(Refusal::NotAUrl(_))));
}

#[test]
fn refusals_never_show_the_path_query_or_user() {
    let p = policy(&["example.com"], false);
    for url in [
        "https://other.example/secret-path?token=hunter2",
        "http://example.com/secret-path?token=hunter2",
        "https://example.com:9/secret-path?token=hunter2",
        "https://me:hunter2@example.com/secret-path",
    ] {
        let text = p.check(url).unwrap_err().to_string();
        assert!(
            !text.contains("secret") && !text.contains("hunter2"),
            "{text}"
        );
    }
}

#[test]
fn ip_literals_are_checked_without_dns() {
    let p = policy(&["http://127.0.0.1:9000", "[::1]:9000"], false);
    assert_eq!(
        p.check("http://127.0.0.1:9000/"),
        Err(Refusal::Address {
            host: "127.0.0.1".into(),
            class: "loopback"
        })
    );
    assert!(matches!(
        p.check("https://[::1]:9000/"),
        Err(Refusal::Address {
            class: "loopback",
            ..
        })
    ));
    let open = policy(&["http://127.0.0.1:9000"], true);
    assert!(open.check("http://127.0.0.1:9000/mcp").is_ok());
    // The URL parser normalises other spellings of the address before the check.
    assert!(open.check("http://127.1:9000/").is_ok());
    assert!(matches!(
        p.check("http://0x7f000001:9000/"),
        Err(Refusal::Address { .. })
    ));
}

#[test]
fn address_classes_ipv4() {
    for (addr, class) in [
        ("0.0.0.0", Some("unspecified")),
        ("127.0.0.1", Some("loopback")),
        ("127.255.0.9", Some("loopback")),
        ("10.1.2.3", Some("private")),
        ("172.16.0.1", Some("private")),
        ("172.31.255.255", Some("private")),
        ("192.168.1.1", Some("private")),
        ("100.64.0.1", Some("shared (carrier-grade NAT)")),
        ("169.254.169.254", Some("link-local")),
        ("224.0.0.1", Some("multicast")),
        ("255.255.255.255", Some("reserved")),
        ("172.32.0.1", None),
        ("8.8.8.8", None),
        ("100.128.0.1", None),
    ] {
        assert_eq!(refused_class(ip(addr)), class, "{addr}");
    }
}

#[test]
fn address_classes_ipv6_and_ipv4_inside_ipv6() {
    for (addr, class) in [
        ("::", Some("unspecified")),
        ("::1", Some("loopback")),
        ("fc00::1", Some("unique-local")),
        ("fd12:3456::1", Some("unique-local")),
        ("fe80::1", Some("link-local")),
        ("fec0::1", Some("site-local")),
        ("ff02::1", Some("multicast")),
        ("::ffff:127.0.0.1", Some("loopback")),
        ("::ffff:10.0.0.1", Some("private")),
        ("::ffff:169.254.169.254", Some("link-local")),
        ("::127.0.0.1", Some("loopback")),
        ("64:ff9b::a00:1", Some("private")),
        ("2002:7f00:1::", Some("loopback")),
        ("::ffff:8.8.8.8", None),
        ("2606:4700::1111", None),
        ("2002:808:808::", None),
    ] {
        assert_eq!(refused_class(ip(addr)), class, "{addr}");
    }
}

#[test]
fn the_resolver_filter_drops_refused_addresses() {
    let addrs: Vec<SocketAddr> = ["127.0.0.1:0", "93.184.216.34:0", "[::1]:0"]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
    assert_eq!(
        filter_addrs(addrs.clone(), false),
        Ok(vec![addrs[1]]),
        "only the public one is kept"
    );
    assert_eq!(filter_addrs(addrs.clone(), true), Ok(addrs.clone()));
    assert_eq!(
        filter_addrs([addrs[0], addrs[2]], false),
        Err(Some("loopback"))
    );
    assert_eq!(filter_addrs([], false), Err(None));
    assert_eq!(
        address_refusal("localhost", Some("loopback")).to_string(),
        "host localhost resolves to a loopback address, which this gateway does not connect to for a request's MCP server"
    );
}

#[tokio::test]
async fn the_guarded_resolver_refuses_a_name_of_a_loopback_address() {
    let name: Name = "localhost".parse().unwrap();
    let refused = GuardedResolver {
        allow_private: false,
    };
    let err = match refused.resolve(name).await {
        Ok(addrs) => panic!("resolved to {:?}", addrs.collect::<Vec<_>>()),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("loopback"), "{err}");
    let allowed = GuardedResolver {
        allow_private: true,
    };
    let addrs: Vec<_> = allowed
        .resolve("localhost".parse().unwrap())
        .await
        .unwrap()
        .collect();
    assert!(addrs.iter().all(|a| a.ip().is_loopback()), "{addrs:?}");
}
