//! The client's address, for sign-in throttling and the audit trail.
//!
//! It is the TCP peer, unless that peer is a configured reverse proxy
//! (`http.trusted_proxies`): then it is the rightmost address in
//! `X-Forwarded-For` that is not itself a trusted proxy. Anything to the
//! left of that was written by the client and proves nothing.

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;

/// An address, or a range written `address/prefix`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRange {
    network: IpAddr,
    prefix: u8,
}

impl IpRange {
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = address.trim().parse().map_err(|_| {
            anyhow::anyhow!(
                "http.trusted_proxies: {text:?} is not an address or a range such as 10.0.0.0/8"
            )
        })?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| {
                    anyhow::anyhow!("http.trusted_proxies: {text:?} has a bad prefix length")
                })?,
        };
        Ok(Self { network, prefix })
    }

    pub fn contains(&self, address: IpAddr) -> bool {
        let address = canonical(address);
        match (self.network, address) {
            (IpAddr::V4(net), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// IPv4 clients of a dual-stack listener appear as `::ffff:a.b.c.d`.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        v4 => v4,
    }
}

/// The client's address as far as it can be trusted.
pub fn client_address(
    peer: Option<SocketAddr>,
    headers: &HeaderMap,
    trusted: &[IpRange],
) -> Option<IpAddr> {
    let peer = canonical(peer?.ip());
    let is_trusted = |a: IpAddr| trusted.iter().any(|r| r.contains(a));
    if !is_trusted(peer) {
        return Some(peer);
    }
    let mut client = peer;
    let forwarded = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .collect::<Vec<_>>();
    for hop in forwarded.iter().rev() {
        let Ok(address) = hop.trim().parse::<IpAddr>() else {
            break;
        };
        client = canonical(address);
        if !is_trusted(client) {
            break;
        }
    }
    Some(client)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(forwarded: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", forwarded.parse().unwrap());
        headers
    }

    #[test]
    fn forwarded_for_counts_only_from_a_trusted_proxy() {
        let proxy = vec![IpRange::parse("10.0.0.0/8").unwrap()];
        let from = |peer: &str| Some(SocketAddr::new(peer.parse().unwrap(), 40000));
        let check = |peer: &str, forwarded: &str, expected: &str| {
            assert_eq!(
                client_address(from(peer), &headers(forwarded), &proxy),
                Some(expected.parse().unwrap()),
                "{peer} {forwarded}"
            );
        };
        // Not a proxy: its header is the client's own words.
        check("192.0.2.7", "198.51.100.1", "192.0.2.7");
        // A proxy: the rightmost untrusted hop; what the client wrote before it is ignored.
        check("10.1.2.3", "6.6.6.6, 198.51.100.1", "198.51.100.1");
        check("10.1.2.3", "198.51.100.1, 10.9.9.9", "198.51.100.1");
        check("::ffff:10.1.2.3", "198.51.100.1", "198.51.100.1");
        // Garbage stops the walk at the last good hop.
        check("10.1.2.3", "nonsense", "10.1.2.3");
    }

    #[test]
    fn ranges_parse_and_match() {
        let range = IpRange::parse("192.168.4.0/22").unwrap();
        assert!(range.contains("192.168.7.255".parse().unwrap()));
        assert!(!range.contains("192.168.8.0".parse().unwrap()));
        assert!(
            IpRange::parse("::1")
                .unwrap()
                .contains("::1".parse().unwrap())
        );
        assert!(
            IpRange::parse("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        for bad in ["10.0.0.0/33", "proxy.local", "10.0.0.1/x"] {
            assert!(IpRange::parse(bad).is_err(), "{bad}");
        }
    }
}
