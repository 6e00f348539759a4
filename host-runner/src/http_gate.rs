//! The HTTP gate: the only way out of the sandbox to the network.
//!
//! `wasi:http` egress does not pass through WASI's socket checks; every outgoing request
//! reaches [`HttpGate::send_request`], which allows exactly:
//! - the Sesame API origin (scheme, host and port of `--api-url`, default ports
//!   normalised) under `/api/v1/`, with the lead's key added as `Authorization: Bearer`;
//! - `GET`/`HEAD` to `http://127.0.0.1` or `http://localhost` on a sibling gateway port.
//!
//! Everything else is refused with `HttpRequestDenied`. The guest may not set
//! `Authorization` (or other credential headers) itself. Every decision is audited.

use crate::audit::{Audit, Decision};
use crate::secret::Secret;
use http::header::{AUTHORIZATION, COOKIE, HeaderName, HeaderValue, PROXY_AUTHORIZATION};
use http::{Method, Uri};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wasmtime_wasi_http::{
    DEFAULT_FORBIDDEN_HEADERS, Error as HttpError, ForbiddenHeaderFilter, RequestOptions, WasiBody,
    WasiHttpHooks,
};

/// The Sesame API's path prefix.
pub const API_PREFIX: &str = "/api/v1/";
/// Upper bound on any timeout the guest asks for.
const MAX_TIMEOUT: Duration = Duration::from_secs(120);

/// Scheme, host and port of an origin, normalised for comparison.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    pub scheme: String,
    pub host: String,
    pub port: u16,
}

impl Origin {
    /// Parses an origin URL such as `https://api.sesame.space` (no path, query or user).
    pub fn parse(url: &str) -> anyhow::Result<Self> {
        let uri: Uri = url.parse().map_err(|e| anyhow::anyhow!("--api-url {url}: {e}"))?;
        let origin = Self::of(&uri).ok_or_else(|| anyhow::anyhow!("--api-url {url}: needs http(s)://host"))?;
        let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        anyhow::ensure!(path == "/" || path.is_empty(), "--api-url {url}: give the origin only, without a path");
        Ok(origin)
    }

    /// The origin of a request URI, or `None` without scheme/host, or with user info.
    fn of(uri: &Uri) -> Option<Self> {
        let scheme = uri.scheme_str()?.to_ascii_lowercase();
        let authority = uri.authority()?;
        if authority.as_str().contains('@') {
            return None;
        }
        let default_port = match scheme.as_str() {
            "http" => 80,
            "https" => 443,
            _ => return None,
        };
        let host = authority.host().trim_end_matches('.').to_ascii_lowercase();
        Some(Self { scheme, host, port: authority.port_u16().unwrap_or(default_port) })
    }

    pub fn url(&self) -> String {
        format!("{}://{}:{}", self.scheme, self.host, self.port)
    }
}

/// Where an allowed request goes.
#[derive(Debug, PartialEq, Eq)]
enum Destination {
    Sesame,
    Gateway(u16),
}

/// The `wasi:http` hooks of the sandbox.
pub struct HttpGate {
    sesame: Origin,
    lead_key: Option<Secret>,
    gateway_ports: Arc<Mutex<BTreeSet<u16>>>,
    audit: Arc<Audit>,
}

impl HttpGate {
    pub fn new(
        sesame: Origin,
        lead_key: Option<Secret>,
        gateway_ports: Arc<Mutex<BTreeSet<u16>>>,
        audit: Arc<Audit>,
    ) -> Self {
        Self { sesame, lead_key, gateway_ports, audit }
    }

    /// One line per HTTP grant, for the operator.
    pub fn describe(&self) -> Vec<String> {
        let ports = self.gateway_ports.lock().expect("ports lock");
        let ports = if ports.is_empty() {
            "ports of services installed in this run".to_string()
        } else {
            format!("ports {} and those of services installed in this run", join(&ports))
        };
        vec![
            format!(
                "http: {}{API_PREFIX}* (Sesame API; the lead's key is added by the host{})",
                self.sesame.url(),
                if self.lead_key.is_some() { "" } else { ": none configured" }
            ),
            format!("http: GET http://127.0.0.1|localhost on sibling gateway {ports}"),
        ]
    }

    /// Decides where a request may go, or why not.
    fn check(&self, method: &Method, uri: &Uri, has_credentials: bool) -> Result<Destination, String> {
        let origin = Origin::of(uri).ok_or("not an http(s) URL with a host (or it carries user info)")?;
        if has_credentials {
            return Err("the guest may not set Authorization, Proxy-Authorization or Cookie".into());
        }
        let path = uri.path();
        if origin == self.sesame {
            if !path.starts_with(API_PREFIX) {
                return Err(format!("Sesame requests must stay under {API_PREFIX} (grant: {}{API_PREFIX}*)", self.sesame.url()));
            }
            if !is_plain_path(path) {
                return Err(format!("path {path} has dot segments or encoded separators"));
            }
            if self.lead_key.is_none() {
                return Err("no lead Sesame key: set channels.sesame.apiKey in the lead's openclaw.json or SESAME_API_KEY".into());
            }
            return Ok(Destination::Sesame);
        }
        let loopback = origin.host == "127.0.0.1" || origin.host == "localhost";
        if loopback && origin.scheme == "http" {
            if !self.gateway_ports.lock().expect("ports lock").contains(&origin.port) {
                return Err(format!(
                    "port {} is not a sibling gateway port (grant: http://127.0.0.1 on gateway ports {})",
                    origin.port,
                    join(&self.gateway_ports.lock().expect("ports lock"))
                ));
            }
            if method != Method::GET && method != Method::HEAD {
                return Err(format!("only GET and HEAD reach sibling gateways, not {method}"));
            }
            return Ok(Destination::Gateway(origin.port));
        }
        Err(format!(
            "{} is not an allowed origin (grants: {}{API_PREFIX}*, http://127.0.0.1 on gateway ports)",
            origin.url(),
            self.sesame.url()
        ))
    }
}

fn join(ports: &BTreeSet<u16>) -> String {
    if ports.is_empty() {
        return "(none yet)".into();
    }
    ports.iter().map(u16::to_string).collect::<Vec<_>>().join(", ")
}

/// True when `path` has no `.`/`..` segments, backslashes, or percent-encoded dots,
/// slashes or backslashes that a server might decode into them.
fn is_plain_path(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    !path.contains('\\')
        && !["%2e", "%2f", "%5c"].iter().any(|enc| lower.contains(enc))
        && path.split('/').all(|segment| segment != "." && segment != "..")
}

/// Headers the guest may never set: the WASI defaults plus credentials.
fn is_forbidden(name: &HeaderName) -> bool {
    *name == AUTHORIZATION
        || *name == PROXY_AUTHORIZATION
        || *name == COOKIE
        || DEFAULT_FORBIDDEN_HEADERS.contains(name)
}

/// `uri` without its query, for logs (queries may carry secrets).
fn display_target(method: &Method, uri: &Uri) -> String {
    let origin = Origin::of(uri).map(|o| o.url()).unwrap_or_else(|| "?".into());
    format!("{method} {origin}{}", uri.path())
}

fn clamp(options: Option<RequestOptions>) -> RequestOptions {
    let bound = |t: Option<Duration>| Some(t.unwrap_or(MAX_TIMEOUT).min(MAX_TIMEOUT));
    let o = options.unwrap_or_default();
    RequestOptions {
        connect_timeout: bound(o.connect_timeout),
        first_byte_timeout: bound(o.first_byte_timeout),
        between_bytes_timeout: bound(o.between_bytes_timeout),
    }
}

type SendFuture = Box<
    dyn Future<
            Output = Result<
                (http::Response<WasiBody>, Box<dyn Future<Output = Result<(), HttpError>> + Send>),
                HttpError,
            >,
        > + Send,
>;

impl WasiHttpHooks for HttpGate {
    fn forbidden_header_filter(&mut self) -> ForbiddenHeaderFilter {
        let audit = self.audit.clone();
        Arc::new(move |name| {
            let forbidden = is_forbidden(name);
            if forbidden && !DEFAULT_FORBIDDEN_HEADERS.contains(name) {
                audit.record("http", "set-header", name.as_str(), Decision::Denied, "credential headers are added by the host only");
            }
            forbidden
        })
    }

    fn send_request(
        &mut self,
        mut request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> SendFuture {
        let _ = fut;
        let method = request.method().clone();
        let target = display_target(&method, request.uri());
        let headers = request.headers();
        let has_credentials = [AUTHORIZATION, PROXY_AUTHORIZATION, COOKIE].iter().any(|h| headers.contains_key(h));
        match self.check(&method, request.uri(), has_credentials) {
            Err(why) => {
                self.audit.record("http", method.as_str(), &target, Decision::Denied, &why);
                Box::new(async { Err(HttpError::HttpRequestDenied) })
            }
            Ok(destination) => {
                let rule = match destination {
                    Destination::Sesame => {
                        let key = self.lead_key.as_ref().expect("checked above");
                        let mut value = HeaderValue::from_str(&format!("Bearer {}", key.expose()))
                            .expect("API keys are header-safe");
                        value.set_sensitive(true);
                        request.headers_mut().insert(AUTHORIZATION, value);
                        format!("Sesame API {}{API_PREFIX}* (lead key added)", self.sesame.url())
                    }
                    Destination::Gateway(port) => format!("sibling gateway port {port}"),
                };
                self.audit.record("http", method.as_str(), &target, Decision::Allowed, &rule);
                let options = clamp(options);
                Box::new(async move {
                    use http_body_util::BodyExt;
                    let (response, io) =
                        wasmtime_wasi_http::default_send_request(request, Some(options)).await?;
                    Ok((
                        response.map(BodyExt::boxed_unsync),
                        Box::new(io) as Box<dyn Future<Output = Result<(), HttpError>> + Send>,
                    ))
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(ports: &[u16], key: bool) -> HttpGate {
        HttpGate::new(
            Origin::parse("https://api.sesame.space").unwrap(),
            key.then(|| Secret::new("lead-key").unwrap()),
            Arc::new(Mutex::new(ports.iter().copied().collect())),
            Arc::new(Audit::stderr_only(vec![])),
        )
    }

    fn check(gate: &HttpGate, method: Method, url: &str) -> Result<Destination, String> {
        gate.check(&method, &url.parse().unwrap(), false)
    }

    #[test]
    fn sesame_origin_is_normalised_and_confined_to_the_api_prefix() {
        let g = gate(&[], true);
        assert_eq!(check(&g, Method::POST, "https://api.sesame.space/api/v1/vault/vaults"), Ok(Destination::Sesame));
        assert_eq!(check(&g, Method::POST, "https://API.Sesame.Space:443/api/v1/x"), Ok(Destination::Sesame));
        for bad in [
            "https://api.sesame.space/api/v2/x",
            "https://api.sesame.space/admin",
            "https://api.sesame.space/api/v1/../admin",
            "https://api.sesame.space/api/v1/%2e%2e/admin",
            "https://api.sesame.space/api/v1/a%2Fb",
            "https://api.sesame.space:8443/api/v1/x",
            "http://api.sesame.space/api/v1/x",
            "https://evil.example/api/v1/x",
            "https://api.sesame.space.evil.example/api/v1/x",
            "https://user@api.sesame.space/api/v1/x",
        ] {
            assert!(check(&g, Method::GET, bad).is_err(), "{bad} should be denied");
        }
    }

    #[test]
    fn sesame_needs_a_lead_key() {
        let err = check(&gate(&[], false), Method::GET, "https://api.sesame.space/api/v1/x").unwrap_err();
        assert!(err.contains("SESAME_API_KEY"), "{err}");
    }

    #[test]
    fn gateways_only_on_their_ports_over_loopback_http_get() {
        let g = gate(&[18790], true);
        assert_eq!(check(&g, Method::GET, "http://127.0.0.1:18790/healthz"), Ok(Destination::Gateway(18790)));
        assert_eq!(check(&g, Method::GET, "http://localhost:18790/"), Ok(Destination::Gateway(18790)));
        assert!(check(&g, Method::GET, "http://127.0.0.1:18791/healthz").unwrap_err().contains("18790"));
        assert!(check(&g, Method::GET, "http://127.0.0.1:22/").is_err());
        assert!(check(&g, Method::GET, "https://127.0.0.1:18790/").is_err());
        assert!(check(&g, Method::GET, "http://127.0.0.2:18790/").is_err());
        assert!(check(&g, Method::GET, "http://[::1]:18790/").is_err());
        assert!(check(&g, Method::POST, "http://127.0.0.1:18790/").is_err());
    }

    #[test]
    fn credential_headers_from_the_guest_are_refused() {
        let g = gate(&[18790], true);
        let uri: Uri = "https://api.sesame.space/api/v1/x".parse().unwrap();
        assert!(g.check(&Method::GET, &uri, true).unwrap_err().contains("Authorization"));
        assert!(is_forbidden(&AUTHORIZATION) && is_forbidden(&COOKIE));
        assert!(!is_forbidden(&http::header::CONTENT_TYPE));
    }

    #[test]
    fn api_url_must_be_an_origin() {
        assert!(Origin::parse("https://api.sesame.space/api/v1").is_err());
        assert!(Origin::parse("ftp://x").is_err());
        assert_eq!(Origin::parse("http://127.0.0.1:9000/").unwrap().port, 9000);
    }

    #[test]
    fn timeouts_are_bounded() {
        let o = clamp(Some(RequestOptions { connect_timeout: Some(Duration::from_secs(1)), ..Default::default() }));
        assert_eq!(o.connect_timeout, Some(Duration::from_secs(1)));
        assert_eq!(o.first_byte_timeout, Some(MAX_TIMEOUT));
    }
}
