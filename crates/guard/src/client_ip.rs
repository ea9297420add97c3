//! The caller's address: the TCP peer, or, when the peer is a trusted proxy, the nearest
//! untrusted address in `X-Forwarded-For`.
//!
//! Only proxies the operator listed are believed: anyone can send the header, so trusting it by
//! default would let a caller pick the address an API key's CIDR allowlist sees.

use axum::http::HeaderMap;
use portcullis_domain::api_key::IpNet;
use std::net::IpAddr;

pub fn client_ip(trusted: &[IpNet], peer: IpAddr, headers: &HeaderMap) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    // Walk the chain from the nearest hop back; the first address not of a trusted proxy is the
    // client. Malformed entries end the walk (at the last good address).
    let mut client = peer;
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    for hop in hops.iter().rev() {
        match hop.parse::<IpAddr>() {
            Ok(ip) => {
                client = ip;
                if !is_trusted(&ip) {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("198.51.100.9, 203.0.113.5, 10.0.0.2"));
        assert_eq!(
            client_ip(&trusted, "10.0.0.1".parse().unwrap(), &h),
            "203.0.113.5".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            client_ip(&trusted, "192.0.2.1".parse().unwrap(), &h),
            "192.0.2.1".parse::<IpAddr>().unwrap(),
            "an untrusted peer's header is ignored"
        );
        assert_eq!(client_ip(&[], "10.0.0.1".parse().unwrap(), &h), "10.0.0.1".parse::<IpAddr>().unwrap());
    }
}
