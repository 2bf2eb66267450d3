//! The origins browsers may act from.
//!
//! A browser sends the page's origin with every WebSocket handshake and
//! every POST, PATCH and DELETE, and a page cannot forge it. Checking it
//! against the addresses users open the app at stops any other web page
//! from using an operator's session (cross-site request forgery, and
//! cross-site WebSocket hijacking of the live feed): SameSite=Strict
//! cookies already stop most of that, and this holds where they do not
//! (a sibling site on the same registrable domain, older browsers).

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};

/// The allowed origins, normalised (`scheme://host[:port]`, lower case,
/// default ports left out).
#[derive(Debug, Clone)]
pub struct Origins {
    allowed: BTreeSet<String>,
}

impl Origins {
    /// The configured origins, or those of the listen address: its own
    /// address, or with an unspecified address (`0.0.0.0`) every address
    /// of this host, plus its names and `localhost`.
    pub fn new(configured: &[String], listen: SocketAddr, https: bool) -> Self {
        let allowed = if configured.is_empty() {
            default_origins(listen, https)
        } else {
            configured.iter().filter_map(|o| normalise(o)).collect()
        };
        Self { allowed }
    }

    pub fn allows(&self, origin: &str) -> bool {
        normalise(origin).is_some_and(|o| self.allowed.contains(&o))
    }

    pub fn list(&self) -> Vec<String> {
        self.allowed.iter().cloned().collect()
    }

    /// Whether every origin is HTTPS: the cookie is then `Secure` even when
    /// a reverse proxy ends TLS in front of a plain-HTTP Trackside.
    pub fn all_https(&self) -> bool {
        !self.allowed.is_empty() && self.allowed.iter().all(|o| o.starts_with("https://"))
    }
}

/// Refuses a configured origin that could never match a browser's.
pub fn check_configured(origin: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        normalise(origin).is_some(),
        "http.public_origins: {origin:?} is not an origin: write scheme://host[:port], as in \
         \"https://trackside.yard.example\" (no path)"
    );
    Ok(())
}

fn normalise(origin: &str) -> Option<String> {
    let origin = origin.trim().trim_end_matches('/').to_ascii_lowercase();
    let (scheme, rest) = origin.split_once("://")?;
    let default_port = match scheme {
        "http" => ":80",
        "https" => ":443",
        _ => return None,
    };
    if rest.is_empty() || rest.contains(['/', '?', '#', '@']) {
        return None;
    }
    let rest = rest.strip_suffix(default_port).unwrap_or(rest);
    Some(format!("{scheme}://{rest}"))
}

fn default_origins(listen: SocketAddr, https: bool) -> BTreeSet<String> {
    let scheme = if https { "https" } else { "http" };
    let mut hosts: Vec<String> = Vec::new();
    let add_ip = |ip: IpAddr, hosts: &mut Vec<String>| match ip {
        IpAddr::V4(v4) => hosts.push(v4.to_string()),
        IpAddr::V6(v6) => hosts.push(format!("[{v6}]")),
    };
    let ip = listen.ip();
    if ip.is_unspecified() {
        for address in host_addresses() {
            add_ip(address, &mut hosts);
        }
        add_ip(IpAddr::from([127, 0, 0, 1]), &mut hosts);
        hosts.push("localhost".into());
        if let Ok(name) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
            let name = name.trim();
            if !name.is_empty() {
                hosts.push(name.to_owned());
            }
        }
    } else {
        add_ip(ip, &mut hosts);
        if ip.is_loopback() {
            hosts.push("localhost".into());
        }
    }
    hosts
        .into_iter()
        .filter_map(|host| normalise(&format!("{scheme}://{host}:{}", listen.port())))
        .collect()
}

/// The addresses of this host's interfaces.
fn host_addresses() -> Vec<IpAddr> {
    let Ok(interfaces) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    interfaces
        .filter_map(|i| i.address)
        .filter_map(|a| {
            a.as_sockaddr_in()
                .map(|v4| IpAddr::V4(v4.ip()))
                .or_else(|| a.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip())))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_compare_as_browsers_send_them() {
        let origins = Origins::new(
            &[
                "https://Trackside.Yard.example/".into(),
                "http://10.0.0.5:8080".into(),
            ],
            "0.0.0.0:8080".parse().unwrap(),
            false,
        );
        assert!(origins.allows("https://trackside.yard.example"));
        assert!(origins.allows("https://trackside.yard.example:443"));
        assert!(origins.allows("http://10.0.0.5:8080"));
        assert!(!origins.allows("http://trackside.yard.example"));
        assert!(!origins.allows("https://evil.example"));
        assert!(!origins.allows("null"));
        assert!(!origins.all_https());
    }

    #[test]
    fn the_default_is_the_listen_address() {
        let loopback = Origins::new(&[], "127.0.0.1:9000".parse().unwrap(), false);
        assert_eq!(
            loopback.list(),
            vec![
                "http://127.0.0.1:9000".to_owned(),
                "http://localhost:9000".to_owned()
            ]
        );
        let every = Origins::new(&[], "0.0.0.0:8443".parse().unwrap(), true);
        assert!(every.allows("https://localhost:8443"));
        assert!(every.allows("https://127.0.0.1:8443"));
        assert!(!every.allows("http://localhost:8443"));
        assert!(every.all_https());
    }

    #[test]
    fn a_configured_origin_must_be_one() {
        assert!(check_configured("https://trackside.example").is_ok());
        for bad in ["trackside.example", "https://x.example/app", "ftp://x"] {
            assert!(check_configured(bad).is_err(), "{bad}");
        }
    }
}
