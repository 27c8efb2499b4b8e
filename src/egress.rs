//! Outbound fetches that a document or an API caller can name (OIDC discovery and JWKS of registered issuers; later
//! providers): nothing they name makes the server reach an address the operator did not allow.
//!
//! Rules: only `http` and `https`; the host is resolved here and **every** address it resolves to is checked —
//! loopback, private, link-local, unique-local, carrier-grade NAT, multicast, unspecified, documentation and other
//! reserved ranges are refused over any scheme unless the operator listed them (`sesame serve --egress-allow
//! CIDR[,CIDR…]`, `SESAME_EGRESS_ALLOW`); plain `http` goes only to listed addresses. The connection is made to the
//! checked addresses (the name is pinned to them: no DNS rebinding between check and connect), through no proxy.
//! A fetch is bounded by [`MAX_BYTES`] and [`TIMEOUT`] in all (connect, redirects, body); a redirect is followed
//! only to the same scheme, host and port (at most [`MAX_REDIRECTS`]). Errors name the URL's host and the rule,
//! never a body.
//!
//! Certificates: the system's roots, plus any CA the operator added (`--egress-ca FILE`, e.g. a cluster's CA for a
//! Kubernetes API server's discovery). A fetch given thumbprints ([`get_pinned`]) also requires the certificate the
//! server presented to match one of them (hex SHA-1 or SHA-256 of its DER), over HTTPS only.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

/// The most bytes a fetch reads.
pub const MAX_BYTES: usize = 1024 * 1024;
/// How long a fetch may take in all.
pub const TIMEOUT: Duration = Duration::from_secs(5);
/// Redirects followed (same origin only).
pub const MAX_REDIRECTS: usize = 3;

/// An address range `ADDR/LEN`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    len: u8,
}

impl Cidr {
    /// Whether `ip` is inside the range (an IPv4-mapped IPv6 address counts as its IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.len)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.len)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl std::str::FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (addr, len) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("invalid CIDR {s:?}: not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = match len {
            None => max,
            Some(l) => l
                .parse::<u8>()
                .ok()
                .filter(|l| *l <= max)
                .ok_or_else(|| format!("invalid CIDR {s:?}: prefix length must be 0 to {max}"))?,
        };
        Ok(Cidr {
            addr: canonical(addr),
            len,
        })
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// The operator's egress allow-list, and the CAs trusted besides the system's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EgressPolicy {
    allow: Vec<Cidr>,
    /// Extra trust anchors, DER.
    roots: Vec<Vec<u8>>,
}

impl EgressPolicy {
    /// A policy allowing `allow` besides public addresses.
    pub fn new(allow: Vec<Cidr>) -> EgressPolicy {
        EgressPolicy {
            allow,
            roots: Vec::new(),
        }
    }

    /// Adds the certificates of a PEM bundle as trust anchors for fetches (`--egress-ca`).
    pub fn with_ca_pem(mut self, pem: &[u8]) -> Result<EgressPolicy, String> {
        let mut added = 0;
        use rustls::pki_types::pem::PemObject;
        for cert in rustls::pki_types::CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| format!("not a PEM certificate bundle: {e}"))?;
            self.roots.push(cert.to_vec());
            added += 1;
        }
        if added == 0 {
            return Err("the file holds no PEM certificate".into());
        }
        Ok(self)
    }

    /// Parses `--egress-allow` values (each may hold several comma-separated CIDRs).
    pub fn parse<S: AsRef<str>>(values: &[S]) -> Result<EgressPolicy, String> {
        let mut allow = Vec::new();
        for v in values {
            for part in v.as_ref().split(',').filter(|p| !p.trim().is_empty()) {
                allow.push(part.parse()?);
            }
        }
        Ok(EgressPolicy::new(allow))
    }

    /// Whether the operator listed `ip`.
    pub fn listed(&self, ip: IpAddr) -> bool {
        self.allow.iter().any(|c| c.contains(ip))
    }

    /// Whether a fetch may connect to `ip` over `https` (or, with `plain_http`, over `http`).
    pub fn permits(&self, ip: IpAddr, plain_http: bool) -> bool {
        self.listed(ip) || (!plain_http && is_public(ip))
    }
}

/// An IPv4-mapped IPv6 address as IPv4; anything else unchanged.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// Whether `ip` is a globally routable unicast address (not loopback, private, link-local, shared, reserved…).
pub fn is_public(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => public_v4(v4),
        IpAddr::V6(v6) => public_v6(v6),
    }
}

fn public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240) // reserved
}

fn public_v6(ip: Ipv6Addr) -> bool {
    let seg = ip.segments();
    if let Some(v4) = ip.to_ipv4() {
        // IPv4-compatible (::a.b.c.d) and NAT64 forms are judged by the IPv4 address they carry.
        if seg[..6] == [0, 0, 0, 0, 0, 0] && !ip.is_loopback() && !ip.is_unspecified() {
            return public_v4(v4);
        }
    }
    if seg[0] == 0x64 && seg[1] == 0xff9b {
        let v4 = Ipv4Addr::new((seg[6] >> 8) as u8, seg[6] as u8, (seg[7] >> 8) as u8, seg[7] as u8);
        return public_v4(v4);
    }
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (seg[0] & 0xfe00) == 0xfc00 // unique local
        || (seg[0] & 0xffc0) == 0xfe80 // link-local
        || (seg[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
        || (seg[0] == 0x2001 && seg[1] == 0x0db8) // documentation
        || (seg[0] == 0x0100 && seg[1..4] == [0, 0, 0])) // discard-only
}

/// Why a fetch failed. Safe to show: names the host and the rule, never a response body.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EgressError {
    /// Not an absolute http(s) URL with a host.
    #[error("invalid URL: {0}")]
    Url(String),
    /// The host did not resolve.
    #[error("could not resolve {0}")]
    Resolve(String),
    /// An address the host resolves to is not allowed.
    #[error(
        "{host} resolves to {addr}, which is not a public address; the operator may allow it with sesame serve \
         --egress-allow"
    )]
    Refused {
        /// The host.
        host: String,
        /// The refused address.
        addr: IpAddr,
    },
    /// Plain HTTP to an address the operator did not list.
    #[error("plain http:// is allowed only to addresses listed with --egress-allow ({0} is not); use https://")]
    PlainHttp(String),
    /// The fetch took longer than [`TIMEOUT`].
    #[error("{0} did not answer within {secs} s", secs = TIMEOUT.as_secs())]
    Timeout(String),
    /// The answer is larger than [`MAX_BYTES`].
    #[error("{0} answered more than {MAX_BYTES} bytes")]
    TooLarge(String),
    /// A redirect to another scheme, host or port, or too many redirects.
    #[error("{0} redirected elsewhere (redirects are followed only within the same origin)")]
    Redirect(String),
    /// The server's certificate matches none of the registered thumbprints (or the fetch was not over HTTPS).
    #[error("{0} presented a certificate that matches none of the registered thumbprints")]
    Thumbprint(String),
    /// A non-success status.
    #[error("{host} answered HTTP {status}")]
    Status {
        /// The host.
        host: String,
        /// The status.
        status: u16,
    },
    /// A connection or protocol failure.
    #[error("could not fetch from {host}: {reason}")]
    Http {
        /// The host.
        host: String,
        /// What failed (reqwest's description, which holds no body).
        reason: String,
    },
}

/// Checks a URL's shape without resolving it: `http(s)`, a host, no credentials.
pub fn check_url(url: &str) -> Result<url::Url, EgressError> {
    let u = url::Url::parse(url).map_err(|e| EgressError::Url(e.to_string()))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(EgressError::Url("only http:// and https:// URLs are fetched".into()));
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err(EgressError::Url("the URL has no host".into()));
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err(EgressError::Url("the URL must not carry credentials".into()));
    }
    Ok(u)
}

/// Resolves `url`'s host and checks every address against `policy`.
async fn resolve(policy: &EgressPolicy, url: &url::Url) -> Result<Vec<SocketAddr>, EgressError> {
    let host = url.host_str().unwrap_or_default().to_owned();
    let port = url.port_or_known_default().unwrap_or(443);
    let plain = url.scheme() == "http";
    let addrs: Vec<SocketAddr> = match url.host() {
        Some(url::Host::Ipv4(ip)) => vec![SocketAddr::new(IpAddr::V4(ip), port)],
        Some(url::Host::Ipv6(ip)) => vec![SocketAddr::new(IpAddr::V6(ip), port)],
        _ => tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|_| EgressError::Resolve(host.clone()))?
            .collect(),
    };
    if addrs.is_empty() {
        return Err(EgressError::Resolve(host));
    }
    for a in &addrs {
        if !policy.permits(a.ip(), plain) {
            return Err(if plain && is_public(a.ip()) {
                EgressError::PlainHttp(host)
            } else {
                EgressError::Refused { host, addr: a.ip() }
            });
        }
    }
    Ok(addrs)
}

/// Resolves `url`'s host and checks that every address is one `policy` allows for its scheme (at registration;
/// every fetch checks again).
pub async fn check_target(policy: &EgressPolicy, url: &url::Url) -> Result<(), EgressError> {
    let host = url.host_str().unwrap_or_default().to_owned();
    match tokio::time::timeout(TIMEOUT, resolve(policy, url)).await {
        Ok(r) => r.map(|_| ()),
        Err(_) => Err(EgressError::Timeout(host)),
    }
}

/// GETs `url` under `policy` and the limits above; returns the body.
pub async fn get(policy: &EgressPolicy, url: &str) -> Result<Vec<u8>, EgressError> {
    get_pinned(policy, url, &[]).await
}

/// One request a provider sends ([`send`]): method, headers (which may hold a credential: never logged nor shown)
/// and an optional JSON body.
pub struct Request<'a> {
    /// `GET` or `POST`.
    pub method: reqwest::Method,
    /// The URL, checked like [`get`]'s.
    pub url: &'a str,
    /// Extra headers (`X-Vault-Token`, …).
    pub headers: &'a [(&'a str, &'a str)],
    /// A JSON body (sent with `content-type: application/json`).
    pub json: Option<&'a [u8]>,
}

impl std::fmt::Debug for Request<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("method", &self.method)
            .finish_non_exhaustive()
    }
}

/// Sends `req` under `policy` and the same rules and limits as [`get`] (allow-list, [`MAX_BYTES`], [`TIMEOUT`],
/// same-origin redirects); returns the body of a success.
pub async fn send(policy: &EgressPolicy, req: &Request<'_>) -> Result<Vec<u8>, EgressError> {
    let start = check_url(req.url)?;
    let host = start.host_str().unwrap_or_default().to_owned();
    match tokio::time::timeout(TIMEOUT, get_within(policy, start, &[], Some(req))).await {
        Ok(r) => r,
        Err(_) => Err(EgressError::Timeout(host)),
    }
}

/// [`get`], and when `thumbprints` is not empty, the certificate the server presents must have one of them as its
/// hex SHA-1 (40 digits) or SHA-256 (64 digits), case-insensitive; plain HTTP is then refused.
pub async fn get_pinned(policy: &EgressPolicy, url: &str, thumbprints: &[String]) -> Result<Vec<u8>, EgressError> {
    let start = check_url(url)?;
    let host = start.host_str().unwrap_or_default().to_owned();
    if !thumbprints.is_empty() && start.scheme() != "https" {
        return Err(EgressError::Thumbprint(host));
    }
    match tokio::time::timeout(TIMEOUT, get_within(policy, start, thumbprints, None)).await {
        Ok(r) => r,
        Err(_) => Err(EgressError::Timeout(host)),
    }
}

/// Whether `der` (a certificate) has one of `thumbprints` as its SHA-1 or SHA-256.
pub fn matches_thumbprint(der: &[u8], thumbprints: &[String]) -> bool {
    use aws_lc_rs::digest;
    let sha1 = crate::core::audit::hex(digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, der).as_ref());
    let sha256 = crate::core::audit::hex(digest::digest(&digest::SHA256, der).as_ref());
    thumbprints.iter().any(|t| {
        let t = t.to_ascii_lowercase();
        t == sha1 || t == sha256
    })
}

async fn get_within(
    policy: &EgressPolicy,
    start: url::Url,
    thumbprints: &[String],
    req: Option<&Request<'_>>,
) -> Result<Vec<u8>, EgressError> {
    crate::tls::install_crypto_provider();
    let host = start.host_str().unwrap_or_default().to_owned();
    let addrs = resolve(policy, &start).await?;
    let http_err = |e: reqwest::Error| EgressError::Http {
        host: host.clone(),
        reason: e.without_url().to_string(),
    };
    let mut builder = reqwest::Client::builder();
    for der in &policy.roots {
        builder = builder.add_root_certificate(reqwest::Certificate::from_der(der).map_err(http_err)?);
    }
    let client = builder
        .tls_info(!thumbprints.is_empty())
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .resolve_to_addrs(&host, &addrs)
        // The whole fetch is bounded by `get`'s timeout (one clock for connect, redirects and body).
        .connect_timeout(TIMEOUT)
        .user_agent(concat!("sesame/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(http_err)?;
    let mut url = start.clone();
    for _ in 0..=MAX_REDIRECTS {
        let mut builder = client
            .request(req.map_or(reqwest::Method::GET, |r| r.method.clone()), url.clone())
            .header("accept", "application/json");
        if let Some(r) = req {
            for (k, v) in r.headers {
                builder = builder.header(*k, *v);
            }
            if let Some(body) = r.json {
                builder = builder.header("content-type", "application/json").body(body.to_vec());
            }
        }
        let mut resp = builder.send().await.map_err(http_err)?;
        let status = resp.status();
        if status.is_redirection() {
            let next = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .and_then(|l| url.join(l).ok())
                .ok_or_else(|| EgressError::Redirect(host.clone()))?;
            let same = next.scheme() == start.scheme()
                && next.host_str() == start.host_str()
                && next.port_or_known_default() == start.port_or_known_default();
            if !same {
                return Err(EgressError::Redirect(host));
            }
            url = next;
            continue;
        }
        if !thumbprints.is_empty() {
            let presented = resp
                .extensions()
                .get::<reqwest::tls::TlsInfo>()
                .and_then(|i| i.peer_certificate());
            if !presented.is_some_and(|der| matches_thumbprint(der, thumbprints)) {
                return Err(EgressError::Thumbprint(host));
            }
        }
        if !status.is_success() {
            return Err(EgressError::Status {
                host,
                status: status.as_u16(),
            });
        }
        if resp.content_length().is_some_and(|n| n > MAX_BYTES as u64) {
            return Err(EgressError::TooLarge(host));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(http_err)? {
            if body.len() + chunk.len() > MAX_BYTES {
                return Err(EgressError::TooLarge(host));
            }
            body.extend_from_slice(&chunk);
        }
        return Ok(body);
    }
    Err(EgressError::Redirect(host))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn non_public_addresses_are_recognised() {
        for a in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "0.1.2.3",
            "224.0.0.1",
            "255.255.255.255",
            "192.0.2.1",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "::127.0.0.1",
            "2001:db8::1",
            "ff02::1",
        ] {
            assert!(!is_public(ip(a)), "{a}");
        }
        for a in ["8.8.8.8", "140.82.112.3", "2606:4700::1111", "::ffff:8.8.8.8"] {
            assert!(is_public(ip(a)), "{a}");
        }
    }

    #[test]
    fn allow_lists_parse_and_match() {
        let p = EgressPolicy::parse(&["127.0.0.1/32,10.0.0.0/8", "fd00::/8"]).unwrap();
        assert!(p.listed(ip("127.0.0.1")));
        assert!(p.listed(ip("::ffff:127.0.0.1")));
        assert!(!p.listed(ip("127.0.0.2")));
        assert!(p.listed(ip("10.200.0.1")));
        assert!(p.listed(ip("fd12::1")));
        assert!(p.permits(ip("127.0.0.1"), true));
        assert!(!p.permits(ip("8.8.8.8"), true), "plain http only to listed addresses");
        assert!(p.permits(ip("8.8.8.8"), false));
        assert!(!EgressPolicy::default().permits(ip("127.0.0.1"), false));
        for bad in ["127.0.0.1/33", "x/8", "::1/129", "10.0.0.0/-1"] {
            assert!(EgressPolicy::parse(&[bad]).is_err(), "{bad}");
        }
        assert!(EgressPolicy::parse(&["0.0.0.0/0"]).unwrap().listed(ip("1.2.3.4")));
    }

    #[test]
    fn urls_are_checked() {
        for bad in [
            "file:///etc/passwd",
            "gopher://x",
            "https://user:pw@x.example",
            "not a url",
            "https://",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
        assert!(check_url("https://token.actions.githubusercontent.com").is_ok());
    }
}
