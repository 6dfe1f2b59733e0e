//! Webhook URLs and their delivery: the SSRF rules (protocol sections 6.2 and 12.8)
//! checked when a subscription is created and again on every resolved address at
//! delivery, and one bounded HTTP/1.1 `POST` (plain for loopback in development, TLS
//! otherwise), redirects never followed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// The largest webhook answer read (headers and body).
const MAX_RESPONSE: usize = 64 << 10;

/// A webhook URL, split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub(crate) https: bool,
    /// The host as written (brackets stripped from an IPv6 literal).
    pub(crate) host: String,
    pub(crate) port: u16,
    /// `host[:port]` as written, for the `Host` header.
    pub(crate) authority: String,
    /// Path and query, at least `/`.
    pub(crate) path: String,
}

/// Parses and checks a webhook URL: `https://` to a public host, or (with
/// `allow_loopback`, for development and tests) `http://` or `https://` to
/// `localhost`, `127.0.0.0/8` or `::1`. Private, link-local, loopback (without the
/// option), unspecified, multicast and other local targets are refused.
pub(crate) fn check_url(url: &str, allow_loopback: bool) -> Result<Target, &'static str> {
    if url.len() > 2048 || url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("the URL is too long or has spaces or control characters");
    }
    let (https, rest) = if let Some(rest) = url.strip_prefix("https://") {
        (true, rest)
    } else if let Some(rest) = url.strip_prefix("http://") {
        (false, rest)
    } else {
        return Err("the URL must be https:// (http:// only to loopback in development)");
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    let path = path.split('#').next().unwrap_or("");
    let path = if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/{path}")
    };
    if authority.contains('@') {
        return Err("the URL must not carry credentials");
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or("a malformed IPv6 host")?;
        (host, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let port = match port {
        None => {
            if https {
                443
            } else {
                80
            }
        }
        Some(p) => p.parse().map_err(|_| "a malformed port")?,
    };
    let host = host.to_ascii_lowercase();
    if host.is_empty() || port == 0 {
        return Err("no host or port");
    }
    let loopback = match host.parse::<IpAddr>() {
        Ok(ip) => match classify(ip) {
            Class::Public => false,
            Class::Loopback => true,
            Class::Local => return Err("private, link-local and local addresses are refused"),
        },
        Err(_) => host == "localhost" || host.ends_with(".localhost"),
    };
    if loopback && !allow_loopback {
        return Err("loopback webhook URLs are refused by this server's configuration");
    }
    if !https && !loopback {
        return Err("the URL must be https:// (http:// only to loopback in development)");
    }
    Ok(Target {
        https,
        host,
        port,
        authority: authority.to_owned(),
        path,
    })
}

#[derive(Debug, PartialEq, Eq)]
enum Class {
    Public,
    Loopback,
    /// Private, link-local, unspecified, multicast, documentation, shared and other
    /// non-global addresses.
    Local,
}

fn classify(ip: IpAddr) -> Class {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return classify_v4(v4);
            }
            let first = v6.segments()[0];
            if v6 == Ipv6Addr::LOCALHOST {
                Class::Loopback
            } else if v6.is_unspecified()
                || v6.is_multicast()
                || first & 0xfe00 == 0xfc00 // unique local
                || first & 0xffc0 == 0xfe80 // link-local
                || first == 0x2001 && v6.segments()[1] == 0x0db8 // documentation
                || first == 0x0064 && v6.segments()[1] == 0xff9b // NAT64
                || first == 0
            // other reserved, IPv4-compatible
            {
                Class::Local
            } else {
                Class::Public
            }
        }
    }
}

fn classify_v4(ip: Ipv4Addr) -> Class {
    let [a, b, ..] = ip.octets();
    if ip.is_loopback() {
        Class::Loopback
    } else if ip.is_private()
        || ip.is_link_local() // 169.254/16, cloud metadata included
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || a >= 240
        || a == 100 && (64..128).contains(&b) // shared address space
        || a == 192 && b == 0 // IETF protocol assignments
        || a == 198 && (18..20).contains(&b)
    // benchmarking
    {
        Class::Local
    } else {
        Class::Public
    }
}

/// What a webhook answered.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) body: Vec<u8>,
}

/// `POST`s `body` to `target` with these extra headers, within `timeout` for the whole
/// exchange, connecting only to resolved addresses the rules allow.
pub(crate) async fn post(
    target: &Target,
    allow_loopback: bool,
    headers: &[(&str, String)],
    body: &[u8],
    timeout: Duration,
) -> Result<Answer, String> {
    tokio::time::timeout(timeout, exchange(target, allow_loopback, headers, body))
        .await
        .map_err(|_| "timed out".to_owned())?
}

async fn exchange(
    target: &Target,
    allow_loopback: bool,
    headers: &[(&str, String)],
    body: &[u8],
) -> Result<Answer, String> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((target.host.as_str(), target.port))
        .await
        .map_err(|e| format!("cannot resolve {}: {e}", target.host))?
        .collect();
    let addr = addrs
        .into_iter()
        .find(|a| match classify(a.ip()) {
            Class::Public => true,
            Class::Loopback => allow_loopback,
            Class::Local => false,
        })
        .ok_or_else(|| format!("{} resolves to no allowed address", target.host))?;
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    let mut request = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         User-Agent: resumable-stream-durable-streams\r\nConnection: close\r\n",
        target.path,
        target.authority,
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    let mut bytes = request.into_bytes();
    bytes.extend_from_slice(body);
    if target.https {
        let name = rustls::pki_types::ServerName::try_from(target.host.clone())
            .map_err(|e| format!("not a TLS server name: {e}"))?;
        let tls = tokio_rustls::TlsConnector::from(tls_config()?)
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS: {e}"))?;
        roundtrip(tls, &bytes).await
    } else {
        roundtrip(tcp, &bytes).await
    }
}

/// The TLS client configuration: ring, the system's root certificates.
fn tls_config() -> Result<Arc<rustls::ClientConfig>, String> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let mut roots = rustls::RootCertStore::empty();
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .with_root_certificates(roots)
                .with_no_client_auth();
            Ok(Arc::new(config))
        })
        .clone()
}

async fn roundtrip<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    request: &[u8],
) -> Result<Answer, String> {
    stream
        .write_all(request)
        .await
        .map_err(|e| format!("write: {e}"))?;
    stream.flush().await.map_err(|e| format!("write: {e}"))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(answer) = parse(&buf, false) {
            return Ok(answer);
        }
        let n = match stream.read(&mut chunk).await {
            Ok(n) => n,
            // A peer that closes without TLS close_notify: what was read counts.
            Err(_) if !buf.is_empty() => 0,
            Err(e) => return Err(format!("read: {e}")),
        };
        if n == 0 {
            return parse(&buf, true).ok_or_else(|| "a malformed HTTP answer".to_owned());
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > MAX_RESPONSE {
            return Err("the answer is too large".to_owned());
        }
    }
}

/// An HTTP/1.1 answer from `buf` once complete (`eof`: the connection ended).
fn parse(buf: &[u8], eof: bool) -> Option<Answer> {
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&buf[..head_end]).ok()?;
    let rest = &buf[head_end + 4..];
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let mut length = None;
    let mut chunked = false;
    for line in lines {
        let (name, value) = line.split_once(':')?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(value.parse::<usize>().ok()?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().contains("chunked");
        }
    }
    let body = if chunked {
        dechunk(rest)?
    } else if let Some(n) = length {
        rest.get(..n)?.to_vec()
    } else if eof || status == 204 || status == 304 {
        rest.to_vec()
    } else {
        return None;
    };
    Some(Answer { status, body })
}

/// A complete chunked body (`None` until its last chunk has arrived).
fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size = std::str::from_utf8(&data[..line_end]).ok()?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert!(check_url("https://worker.example/hooks", false).is_ok());
        for refused in [
            "http://worker.example/hooks",
            "http://10.0.0.1/hook",
            "https://10.0.0.1/hook",
            "https://192.168.1.1/",
            "https://169.254.169.254/latest/meta-data",
            "https://[fd00::1]/",
            "https://[::ffff:10.0.0.1]/",
            "https://0.0.0.0/",
            "http://127.0.0.1:8080/webhook",
            "http://localhost/x",
            "https://user@worker.example/",
            "ftp://worker.example/",
            "https://worker.example:99999/",
            "https:///nohost",
        ] {
            assert!(check_url(refused, false).is_err(), "{refused}");
        }
        let t = check_url("http://127.0.0.1:8080/webhook?x=1", true).expect("loopback allowed");
        assert_eq!(
            (t.https, t.host.as_str(), t.port, t.path.as_str()),
            (false, "127.0.0.1", 8080, "/webhook?x=1")
        );
        assert!(check_url("http://[::1]:9/", true).is_ok());
        assert!(check_url("http://localhost", true).is_ok());
        assert!(check_url("http://10.0.0.1/hook", true).is_err());
    }

    #[test]
    fn answers() {
        let a = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}", false).expect("complete");
        assert_eq!((a.status, a.body.as_slice()), (200, &b"{}"[..]));
        assert!(parse(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n{}", false).is_none());
        let c = parse(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
            false,
        )
        .expect("chunked");
        assert_eq!(c.body, b"{}");
        assert!(parse(b"HTTP/1.1 200 OK\r\n\r\nabc", false).is_none());
        assert_eq!(
            parse(b"HTTP/1.1 200 OK\r\n\r\nabc", true)
                .expect("eof")
                .body,
            b"abc"
        );
        assert!(parse(b"garbage\r\n\r\n", true).is_none());
    }
}
