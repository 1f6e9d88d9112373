//! Downloads asked for over the HTTP API are guarded against server-side request forgery:
//! https only, the host's addresses checked (no loopback, private, link-local or cloud metadata
//! ranges unless allowed), the connection pinned to the addresses checked (no DNS rebinding),
//! no redirect to another host, and limits on size and time. The command line trusts its
//! operator and uses none of this.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};

use reqwest::Url;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Guard {
    /// Loopback addresses allowed, over plain http too (for tests).
    #[serde(default)]
    pub allow_loopback: bool,
    /// Private, shared (CGNAT), link-local and loopback addresses allowed.
    #[serde(default)]
    pub allow_private: bool,
    /// The most bytes a download may have.
    pub max_bytes: u64,
    /// The longest a download may take.
    pub max_seconds: u64,
}

/// Why an address may not be fetched, if it may not: one of `cloud metadata`, `loopback`,
/// `private`, `private (unique local)`, `private (local-use NAT64)`, `link-local`,
/// `shared (CGNAT)` or `not a host address`.
///
/// An IPv6 address that carries an IPv4 address is judged by the IPv4 address it carries,
/// since a packet sent to it ends up there: IPv4-mapped (`::ffff:a.b.c.d`), IPv4-translated
/// (`::ffff:0:a.b.c.d`, RFC 2765), IPv4-compatible (`::a.b.c.d`, RFC 4291 §2.5.5.1), the
/// NAT64 well-known prefix (`64:ff9b::/96`, RFC 6052), 6to4 (`2002:AABB:CCDD::/48`, RFC 3056)
/// and Teredo (`2001:0::/32`, RFC 4380: the client's address, inverted, in the last 32 bits,
/// and the Teredo server's in bits 32–63; both are judged).
pub fn forbidden(ip: IpAddr) -> Option<&'static str> {
    refusal(ip).map(|(why, _)| why)
}

/// Why an address is refused, with the IPv4 address it carries when that is the reason.
fn refusal(ip: IpAddr) -> Option<(&'static str, Option<Ipv4Addr>)> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4).map(|why| (why, None)),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            if v6.is_loopback() {
                return Some(("loopback", None));
            }
            if v6.is_unspecified() || v6.is_multicast() {
                return Some(("not a host address", None));
            }
            let carried = carried_v4(v6).into_iter().flatten();
            if let Some(hit) = carried
                .filter_map(|v4| forbidden_v4(v4).map(|why| (why, Some(v4))))
                .next()
            {
                return Some(hit);
            }
            let why = if s[0] & 0xfe00 == 0xfc00 {
                // fd00:ec2::254 is AWS's metadata service over IPv6.
                if v6 == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) {
                    Some("cloud metadata")
                } else {
                    Some("private (unique local)")
                }
            } else if s[0] & 0xffc0 == 0xfe80 {
                Some("link-local")
            } else if s[..3] == [0x64, 0xff9b, 1] {
                // 64:ff9b:1::/48 (RFC 8215) is NAT64 inside one network, with the IPv4
                // address at a place only that network knows: treated as private.
                Some("private (local-use NAT64)")
            } else {
                None
            };
            why.map(|why| (why, None))
        }
    }
}

/// The IPv4 addresses an IPv6 address carries (see `forbidden`), at most two (Teredo).
fn carried_v4(v6: Ipv6Addr) -> [Option<Ipv4Addr>; 2] {
    let s = v6.segments();
    let low = Ipv4Addr::from(u128::from(v6) as u32);
    let v4 = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    match s {
        // IPv4-mapped and IPv4-translated.
        [0, 0, 0, 0, 0, 0xffff, _, _] | [0, 0, 0, 0, 0xffff, 0, _, _] => [Some(low), None],
        // IPv4-compatible (:: and ::1 are judged before this), and NAT64's well-known prefix.
        [0, 0, 0, 0, 0, 0, _, _] | [0x64, 0xff9b, 0, 0, 0, 0, _, _] => [Some(low), None],
        [0x2002, hi, lo, ..] => [Some(v4(hi, lo)), None],
        [0x2001, 0, hi, lo, ..] => [Some(Ipv4Addr::from(!u32::from(low))), Some(v4(hi, lo))],
        _ => [None, None],
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    if ip == Ipv4Addr::new(169, 254, 169, 254) || ip == Ipv4Addr::new(100, 100, 100, 200) {
        Some("cloud metadata")
    } else if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_private() {
        Some("private")
    } else if ip.is_link_local() {
        Some("link-local")
    } else if o[0] == 100 && (64..128).contains(&o[1]) {
        Some("shared (CGNAT)")
    } else if ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() || o[0] == 0 {
        Some("not a host address")
    } else {
        None
    }
}

impl Guard {
    /// Checks a URL and resolves its host: the addresses to connect to.
    pub fn check(&self, text: &str) -> Result<(Url, Vec<SocketAddr>), String> {
        let url = Url::parse(text.trim())
            .map_err(|_| "file_url must be an https URL; local paths are not accepted over HTTP".to_string())?;
        if !matches!(url.scheme(), "https" | "http") {
            return Err(format!("file_url must be https, not {}", url.scheme()));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("file_url may not carry a user name or password; use a signed URL".into());
        }
        let host = url.host_str().ok_or("file_url has no host")?.to_owned();
        let port = url.port_or_known_default().ok_or("file_url has no port")?;
        let addrs: Vec<SocketAddr> = (host.trim_matches(['[', ']']), port)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {host}: {e}"))?
            .collect();
        if addrs.is_empty() {
            return Err(format!("{host} has no address"));
        }
        let all_loopback = addrs.iter().all(|a| a.ip().is_loopback());
        match url.scheme() {
            "https" => {}
            "http" if self.allow_loopback && all_loopback => {}
            _ => return Err("file_url must be https (http is refused over the API)".into()),
        }
        for addr in &addrs {
            let Some((why, carried)) = refusal(addr.ip()) else {
                continue;
            };
            let allowed = match why {
                "loopback" => self.allow_loopback || self.allow_private,
                "cloud metadata" | "not a host address" => false,
                _ => self.allow_private,
            };
            if !allowed {
                let carries = carried.map(|v4| format!(", which carries {v4}")).unwrap_or_default();
                return Err(format!(
                    "file_url's host {host} is at {}{carries} ({why} address): refused",
                    addr.ip()
                ));
            }
        }
        Ok((url, addrs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inner_addresses_are_named() {
        let cases: [(&str, Option<&str>); 12] = [
            ("169.254.169.254", Some("cloud metadata")),
            ("100.100.100.200", Some("cloud metadata")),
            ("127.0.0.1", Some("loopback")),
            ("10.1.2.3", Some("private")),
            ("172.20.0.1", Some("private")),
            ("192.168.1.1", Some("private")),
            ("169.254.1.1", Some("link-local")),
            ("100.64.0.1", Some("shared (CGNAT)")),
            ("0.0.0.0", Some("not a host address")),
            ("::1", Some("loopback")),
            ("::ffff:10.0.0.1", Some("private")),
            ("93.184.216.34", None),
        ];
        for (ip, why) in cases {
            assert_eq!(forbidden(ip.parse().unwrap()), why, "{ip}");
        }
        assert_eq!(forbidden("fe80::1".parse().unwrap()), Some("link-local"));
        assert_eq!(forbidden("fd12::1".parse().unwrap()), Some("private (unique local)"));
        assert_eq!(forbidden("fd00:ec2::254".parse().unwrap()), Some("cloud metadata"));
        assert_eq!(forbidden("2606:4700::1111".parse().unwrap()), None);
    }

    /// Every way an IPv6 address carries an IPv4 one, built from the IPv4 address.
    fn v6_forms(v4: Ipv4Addr) -> Vec<(&'static str, Ipv6Addr)> {
        let n = u32::from(v4);
        let (hi, lo) = ((n >> 16) as u16, n as u16);
        let public_server = u32::from(Ipv4Addr::new(93, 184, 216, 34));
        let (shi, slo) = ((public_server >> 16) as u16, public_server as u16);
        vec![
            ("mapped", v4.to_ipv6_mapped()),
            ("translated", Ipv6Addr::new(0, 0, 0, 0, 0xffff, 0, hi, lo)),
            ("compatible", v4.to_ipv6_compatible()),
            ("nat64", Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, hi, lo)),
            ("6to4", Ipv6Addr::new(0x2002, hi, lo, 0, 0, 0, 0, 1)),
            // Teredo: a public server, the client's address inverted in the last 32 bits.
            ("teredo client", Ipv6Addr::new(0x2001, 0, shi, slo, 0, 0xf227, !hi, !lo)),
            // Teredo: the server's address in bits 32-63, a public client.
            ("teredo server", Ipv6Addr::new(0x2001, 0, hi, lo, 0, 0xf227, !shi, !slo)),
        ]
    }

    #[test]
    fn ipv6_addresses_are_judged_by_the_ipv4_address_they_carry() {
        let cases: [(&str, Option<&str>); 9] = [
            ("169.254.169.254", Some("cloud metadata")),
            ("100.100.100.200", Some("cloud metadata")),
            ("127.0.0.1", Some("loopback")),
            ("10.0.0.1", Some("private")),
            ("192.168.1.1", Some("private")),
            ("169.254.1.1", Some("link-local")),
            ("100.64.0.1", Some("shared (CGNAT)")),
            ("0.0.0.7", Some("not a host address")),
            ("93.184.216.34", None),
        ];
        for (text, why) in cases {
            let v4: Ipv4Addr = text.parse().unwrap();
            for (form, v6) in v6_forms(v4) {
                assert_eq!(forbidden(IpAddr::V6(v6)), why, "{text} as {form}: {v6}");
            }
        }
        assert_eq!(
            forbidden("64:ff9b:1::a00:1".parse().unwrap()),
            Some("private (local-use NAT64)")
        );
        assert_eq!(forbidden("::".parse().unwrap()), Some("not a host address"));
        assert_eq!(forbidden("::1".parse().unwrap()), Some("loopback"));
    }

    #[test]
    fn metadata_addresses_are_refused_in_every_form_even_with_private_networks_allowed() {
        let open = Guard {
            allow_loopback: true,
            allow_private: true,
            max_bytes: 1,
            max_seconds: 1,
        };
        for metadata in ["169.254.169.254", "100.100.100.200"] {
            for (form, v6) in v6_forms(metadata.parse().unwrap()) {
                let err = open.check(&format!("https://[{v6}]/latest/meta-data")).unwrap_err();
                assert!(
                    err.contains("cloud metadata") && err.contains(&format!("carries {metadata}")),
                    "{metadata} as {form}: {err}"
                );
            }
        }
        // The same forms of a private address pass once private networks are allowed, and
        // are refused without.
        let strict = Guard {
            allow_loopback: false,
            allow_private: false,
            ..open.clone()
        };
        for (form, v6) in v6_forms(Ipv4Addr::new(10, 0, 0, 1)) {
            let url = format!("https://[{v6}]/x.csv");
            assert!(open.check(&url).is_ok(), "{form}: {url}");
            assert!(strict.check(&url).unwrap_err().contains("carries 10.0.0.1"), "{form}");
        }
        // The issue's own examples: 127.0.0.1 by NAT64, IPv4-compatible and 6to4.
        for url in [
            "https://[64:ff9b::7f00:1]/x",
            "https://[::127.0.0.1]/x",
            "https://[2002:7f00:1::]/x",
        ] {
            let err = strict.check(url).unwrap_err();
            assert!(err.contains("carries 127.0.0.1 (loopback address)"), "{url}: {err}");
        }
    }

    #[test]
    fn urls_are_checked_before_anything_is_fetched() {
        let strict = Guard {
            allow_loopback: false,
            allow_private: false,
            max_bytes: 1,
            max_seconds: 1,
        };
        assert!(strict.check("/etc/passwd").unwrap_err().contains("local paths"));
        assert!(strict.check("file:///etc/passwd").unwrap_err().contains("https"));
        assert!(strict.check("http://127.0.0.1:9/x.csv").unwrap_err().contains("https"));
        assert!(strict
            .check("https://127.0.0.1:9/x.csv")
            .unwrap_err()
            .contains("loopback"));
        assert!(strict
            .check("https://169.254.169.254/latest/meta-data")
            .unwrap_err()
            .contains("cloud metadata"));
        assert!(strict.check("https://u:p@10.0.0.1/x").unwrap_err().contains("password"));
        let tests = Guard {
            allow_loopback: true,
            ..strict
        };
        assert!(tests.check("http://127.0.0.1:9/x.csv").is_ok());
        assert!(tests.check("https://10.0.0.1/x.csv").unwrap_err().contains("private"));
        assert!(tests.check("http://169.254.169.254/x").unwrap_err().contains("https"));
    }
}
