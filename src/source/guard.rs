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

/// Why an address may not be fetched, if it may not.
pub fn forbidden(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return forbidden_v4(v4);
            }
            let s = v6.segments();
            if v6.is_loopback() {
                Some("loopback")
            } else if v6.is_unspecified() || v6.is_multicast() {
                Some("not a host address")
            } else if s[0] & 0xfe00 == 0xfc00 {
                // fd00:ec2::254 is AWS's metadata service over IPv6.
                if v6 == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) {
                    Some("cloud metadata")
                } else {
                    Some("private (unique local)")
                }
            } else if s[0] & 0xffc0 == 0xfe80 {
                Some("link-local")
            } else {
                None
            }
        }
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
            let Some(why) = forbidden(addr.ip()) else { continue };
            let allowed = match why {
                "loopback" => self.allow_loopback || self.allow_private,
                "cloud metadata" | "not a host address" => false,
                _ => self.allow_private,
            };
            if !allowed {
                return Err(format!(
                    "file_url's host {host} is at {} ({why} address): refused",
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
