//! The HTTP gate: the only way out of the sandbox to the network.
//!
//! `wasi:http` egress does not pass through WASI's socket checks; every outgoing request
//! reaches [`HttpGate::send_request`], which allows exactly:
//! - on the Sesame API origin (scheme, host and port of `--api-url`, default ports
//!   normalised), the spec's endpoints and nothing else ([`SESAME_ENDPOINTS`]: method and
//!   path template, ids of a plain character set, no query), with the lead's key added as
//!   `Authorization: Bearer`; a body must be declared with `Content-Length`, as the
//!   original skill's curl did (an empty one is sent as no body);
//! - and of those, only calls whose ids are this run's ([`RunIds`]: the vault it created,
//!   the task, family, principals and channels the host read before the component ran);
//!   a body must be one JSON object without a key the host holds, and the host sends its
//!   own serialisation of it (what was checked is what goes out: no duplicate key, no
//!   escape hides anything);
//! - `GET /healthz` (and `GET /`, the older gateways' web UI) to `http://127.0.0.1` on a
//!   port the service capability proved is a sibling gateway's (a definition the host
//!   wrote, or a service installed in this run), without a body.
//!
//! Everything else is refused with `HttpRequestDenied`. The guest may not set
//! `Authorization` (or other credential headers), a method override or a hop-by-hop or
//! forwarding header itself. Every decision is audited.

use crate::caps::access::Access;
use crate::record::audit::{Audit, Decision};
use crate::sys::secret::Secret;
use crate::caps::http::sesame_ids::{Binds, RunIds};
use exchange::{Exchange, IoFuture};
use http::header::{AUTHORIZATION, COOKIE, HeaderMap, HeaderName, HeaderValue, PROXY_AUTHORIZATION};
use http::{Method, Uri};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wasmtime_wasi_http::{
    DEFAULT_FORBIDDEN_HEADERS, Error as HttpError, ForbiddenHeaderFilter, RequestOptions, WasiBody,
    WasiHttpHooks,
};

mod exchange;
/// The ids of this run that its Sesame calls may name.
pub mod sesame_ids;
/// Whether the Sesame API can be reached at all, checked before a provision writes.
pub mod sesame_reach;

/// The Sesame API's path prefix.
pub const API_PREFIX: &str = "/api/v1/";
/// Upper bound on any timeout the guest asks for.
const MAX_TIMEOUT: Duration = Duration::from_secs(120);
/// The largest body the gate sends to Sesame (the spec's bodies are a few hundred bytes;
/// a health summary of many siblings a few KiB).
const MAX_SESAME_BODY: u64 = 256 * 1024;
/// The largest answer to `POST /vault/vaults` the gate reads for the vault's id.
const MAX_VAULT_ANSWER: usize = 64 * 1024;
/// The only loopback host a gateway is asked on. The proof that a port is a sibling
/// gateway's (an install is refused on a port that already listens; `ports.taken`) binds
/// and connects on 127.0.0.1, the sibling's config binds its gateway to loopback, and the
/// guest's health probes use 127.0.0.1. `localhost` resolves to `::1` first on macOS and
/// Debian's defaults, where another process may hold the same port number unproven (and
/// `localhost.`, `[::1]`, `127.1` name other lookups), so the gate takes 127.0.0.1 only
/// instead of widening the proof to every address a name may resolve to.
pub const GATEWAY_HOST: &str = "127.0.0.1";

/// One Sesame endpoint the gate lets through: a method and a path template under
/// [`API_PREFIX`], where `{name}` stands for one id segment ([`is_id_segment`]).
#[derive(Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub method: Method,
    pub template: &'static str,
    /// Which of the run's ids its path names.
    pub binds: Binds,
}

/// The Sesame endpoints of the spec (`provisioning.md`, steps 3 and 6, rollback,
/// deprovision and family health), exactly the catalogue of the guest's
/// `sesame::Call::request`; nothing else on the Sesame origin is reachable.
pub const SESAME_ENDPOINTS: [Endpoint; 6] = [
    // Step 3: create the sibling's vault, then add its members.
    Endpoint { method: Method::POST, template: "vault/vaults", binds: Binds::NewVault },
    Endpoint { method: Method::POST, template: "vault/vaults/{vault}/members", binds: Binds::Vault },
    // Step 6, rollback, deprovision, health reports: a family member's status.
    Endpoint { method: Method::PATCH, template: "families/{family}/members/{principal}", binds: Binds::Member },
    // Step 6 and rollback: the task's activity and status.
    Endpoint { method: Method::POST, template: "tasks/{task}/activity", binds: Binds::Task },
    Endpoint { method: Method::PATCH, template: "tasks/{task}", binds: Binds::Task },
    // Step 6, rollback, health reports: a message to a channel.
    Endpoint { method: Method::POST, template: "channels/{channel}/messages", binds: Binds::Channel },
];

/// The paths a sibling gateway may be asked for (with `GET`): its health and readiness
/// endpoints, and its web UI at `/`, which older gateways answer instead.
pub const GATEWAY_PATHS: [&str; 3] = ["/healthz", "/readyz", "/"];

/// The longest id segment accepted in a Sesame path.
const MAX_ID_LEN: usize = 128;

impl Endpoint {
    /// `POST /vault/vaults/{vault}/members`.
    pub fn describe(&self) -> String {
        format!("{} /{}", self.method, self.template)
    }

    /// Whether `segments` (the path under [`API_PREFIX`]) have this template's shape:
    /// the same number, the literal ones equal. Ids are checked by [`Endpoint::check_ids`].
    fn shape_matches(&self, segments: &[&str]) -> bool {
        let template: Vec<&str> = self.template.split('/').collect();
        template.len() == segments.len()
            && template.iter().zip(segments).all(|(t, s)| is_placeholder(t) || t == s)
    }

    /// Checks every segment that fills a `{name}` of the template.
    fn check_ids(&self, segments: &[&str]) -> Result<(), String> {
        for (name, segment) in self.template.split('/').zip(segments).filter(|(t, _)| is_placeholder(t)) {
            if !is_id_segment(segment) {
                return Err(format!(
                    "the {name} segment {} is not an id (1 to {MAX_ID_LEN} of A-Z a-z 0-9 . _ ~ -, not . or .., no percent-encoding)",
                    shown(segment)
                ));
            }
        }
        Ok(())
    }
}

fn is_placeholder(template_segment: &str) -> bool {
    template_segment.starts_with('{') && template_segment.ends_with('}')
}

/// True for a path segment that may fill an id of a template: 1 to [`MAX_ID_LEN`] of
/// `[A-Za-z0-9._~-]` (so no percent-encoding, separators or empty segment), and not a
/// dot segment.
pub fn is_id_segment(segment: &str) -> bool {
    (1..=MAX_ID_LEN).contains(&segment.len())
        && segment.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-'))
        && segment != "."
        && segment != ".."
}

/// A guest-chosen text for a message: quoted, bounded.
fn shown(text: &str) -> String {
    let mut short: String = text.chars().take(40).collect();
    if short.len() < text.len() {
        short.push('…');
    }
    format!("{short:?}")
}

/// Every endpoint, for messages: `POST /vault/vaults, ...`.
fn endpoint_list() -> String {
    SESAME_ENDPOINTS.iter().map(Endpoint::describe).collect::<Vec<_>>().join(", ")
}

/// The endpoint a Sesame request is, with its path's segments under [`API_PREFIX`], or
/// why it is none of them.
fn sesame_endpoint<'u>(method: &Method, uri: &'u Uri) -> Result<(&'static Endpoint, Vec<&'u str>), String> {
    let path = uri.path();
    let target = format!("{method} {path}");
    let not_one = || format!("{target} is not one of the spec's Sesame endpoints ({})", endpoint_list());
    if uri.query().is_some() {
        return Err(format!("{target}: no Sesame endpoint of the spec takes a query string"));
    }
    let rest = path.strip_prefix(API_PREFIX).ok_or_else(not_one)?;
    let segments: Vec<&str> = rest.split('/').collect();
    let shaped: Vec<&Endpoint> = SESAME_ENDPOINTS.iter().filter(|e| e.shape_matches(&segments)).collect();
    let endpoint = shaped.iter().find(|e| e.method == method).ok_or_else(|| match shaped.first() {
        Some(e) => format!("{target} is not one of the spec's Sesame endpoints: /{} takes {} only", e.template, e.method),
        None => not_one(),
    })?;
    endpoint.check_ids(&segments).map_err(|why| format!("{target}: {why}"))?;
    Ok((endpoint, segments))
}

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
pub(crate) enum Destination {
    Sesame(&'static Endpoint),
    Gateway(u16),
}

impl Destination {
    /// The grant that allows it, for the audit.
    fn rule(&self, sesame: &Origin) -> String {
        match self {
            Destination::Sesame(e) => format!("Sesame API {}{API_PREFIX}: {} (lead key added)", sesame.url(), e.describe()),
            Destination::Gateway(port) => format!("sibling gateway port {port} (its definition is the host's)"),
        }
    }
}

/// The `wasi:http` hooks of the sandbox.
pub struct HttpGate {
    sesame: Origin,
    lead_key: Option<Secret>,
    /// Ports of sibling gateways the service capability proved (definitions the host
    /// wrote, services installed in this run); shared with it.
    gateway_ports: Arc<Mutex<BTreeSet<u16>>>,
    /// The ids this run's Sesame calls may name (none until [`HttpGate::bind_run`]); the
    /// vault is added when Sesame answers the run's create.
    run: Arc<Mutex<RunIds>>,
    audit: Arc<Audit>,
    /// What the command may change: a read-only one makes no Sesame call at all.
    access: Access,
}

impl HttpGate {
    pub fn new(
        sesame: Origin,
        lead_key: Option<Secret>,
        gateway_ports: Arc<Mutex<BTreeSet<u16>>>,
        audit: Arc<Audit>,
    ) -> Self {
        Self { sesame, lead_key, gateway_ports, run: Arc::default(), audit, access: Access::ReadWrite }
    }

    /// Binds the gate to the ids of this run, read by the host before the component runs.
    pub fn bind_run(&self, ids: RunIds) {
        *self.run.lock().expect("run ids lock") = ids;
    }

    /// The gate of a command with `access`: a read-only one reaches sibling gateways only.
    pub fn with_access(self, access: Access) -> Self {
        Self { access, ..self }
    }

    /// One line per HTTP grant, for the operator.
    pub fn describe(&self) -> Vec<String> {
        let ports = self.gateway_ports.lock().expect("ports lock");
        let ports = if ports.is_empty() {
            "ports of services installed in this run".to_string()
        } else {
            format!("ports {} (definitions this host wrote) and those of services installed in this run", join(&ports))
        };
        let sesame = match self.access {
            Access::ReadOnly(command) => format!("http: {}{API_PREFIX}* nothing (`{command}` changes nothing: no Sesame call)", self.sesame.url()),
            Access::ReadWrite => format!(
                "http: {}{API_PREFIX}* only the spec's Sesame endpoints: {} (only this run's ids: the vault it creates, the task, family, principals and channels the host read; no query; bodies one JSON object with Content-Length, never holding a key the host holds; no method-override, hop-by-hop or forwarding headers; the lead's key is added by the host{})",
                self.sesame.url(),
                endpoint_list(),
                if self.lead_key.is_some() { "" } else { ": none configured" }
            ),
        };
        vec![
            sesame,
            format!(
                "http: GET http://{GATEWAY_HOST} {} on sibling gateway {ports} (not localhost or [::1]: the port proof binds {GATEWAY_HOST}); never a port that was listening before its service was installed",
                GATEWAY_PATHS.join(" or ")
            ),
        ]
    }

    /// Decides where a request may go, or why not.
    fn check(&self, method: &Method, uri: &Uri, has_credentials: bool) -> Result<Destination, String> {
        let origin = Origin::of(uri).ok_or("not an http(s) URL with a host (or it carries user info)")?;
        if has_credentials {
            return Err("the guest may not set Authorization, Proxy-Authorization or Cookie".into());
        }
        if origin == self.sesame {
            self.access.allows("a Sesame call")?;
            let (endpoint, segments) = sesame_endpoint(method, uri)?;
            if self.lead_key.is_none() {
                return Err("no lead Sesame key: set channels.sesame.apiKey in the lead's openclaw.json or SESAME_API_KEY".into());
            }
            let run = self.run.lock().expect("run ids lock");
            run.check_path(endpoint.binds, &segments).map_err(|why| format!("{method} {}: {why}", uri.path()))?;
            return Ok(Destination::Sesame(endpoint));
        }
        if uri.host() == Some(GATEWAY_HOST) && origin.scheme == "http" {
            return self.check_gateway(method, uri, origin.port).map(|()| Destination::Gateway(origin.port));
        }
        if matches!(origin.host.as_str(), "localhost" | "[::1]" | "127.0.0.1") {
            return Err(format!(
                "{}: sibling gateways are asked on http://{GATEWAY_HOST} only, the address the port proof binds (localhost may be ::1, where another process can hold the port)",
                origin.url()
            ));
        }
        Err(format!(
            "{} is not an allowed origin (grants: {}{API_PREFIX} spec endpoints, http://{GATEWAY_HOST} on sibling gateway ports)",
            origin.url(),
            self.sesame.url()
        ))
    }

    /// A loopback request: a proven sibling gateway port, `GET`, a gateway path, no query.
    fn check_gateway(&self, method: &Method, uri: &Uri, port: u16) -> Result<(), String> {
        let ports = self.gateway_ports.lock().expect("ports lock");
        if !ports.contains(&port) {
            return Err(format!(
                "port {port} is not a sibling gateway port: no definition the host wrote and no service installed in this run uses it (grant: http://{GATEWAY_HOST} on gateway ports {})",
                join(&ports)
            ));
        }
        if method != Method::GET {
            return Err(format!("only GET reaches sibling gateways, not {method}"));
        }
        if uri.query().is_some() || !GATEWAY_PATHS.contains(&uri.path()) {
            return Err(format!(
                "{method} {} on port {port}: sibling gateways are asked for {} only (no query)",
                uri.path(),
                GATEWAY_PATHS.join(" or ")
            ));
        }
        Ok(())
    }
}

fn join(ports: &BTreeSet<u16>) -> String {
    if ports.is_empty() {
        return "(none yet)".into();
    }
    ports.iter().map(u16::to_string).collect::<Vec<_>>().join(", ")
}

/// Headers the guest may never set, refused as it sets them: the WASI defaults and
/// credentials (the host adds the lead's key).
fn is_forbidden(name: &HeaderName) -> bool {
    *name == AUTHORIZATION || *name == PROXY_AUTHORIZATION || *name == COOKIE || DEFAULT_FORBIDDEN_HEADERS.contains(name)
}

/// Headers a request may not carry, refused when it is sent (not as the guest sets them:
/// answers may carry some, such as `Via`, and are not the guest's doing): method overrides
/// (a `POST` the gate allowed must not become a `DELETE` behind it), and hop-by-hop and
/// forwarding headers (they steer proxies and servers about the connection and the
/// client, which are the host's).
const REFUSED_HEADERS: [&str; 7] = ["x-http-method-override", "x-http-method", "x-method-override", "te", "trailer", "forwarded", "via"];

/// The first header of `headers` a request may not carry ([`REFUSED_HEADERS`], the
/// `proxy-` and `x-forwarded-` families), if any.
fn refused_header(headers: &HeaderMap) -> Option<String> {
    let refused = |name: &str| REFUSED_HEADERS.contains(&name) || name.starts_with("proxy-") || name.starts_with("x-forwarded-");
    headers.keys().find(|name| refused(name.as_str())).map(|name| {
        format!("the guest may not set the {name} header (method overrides, hop-by-hop and forwarding headers are the host's)")
    })
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

type SendFuture = Box<dyn Future<Output = Result<(http::Response<WasiBody>, IoFuture), HttpError>> + Send>;

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
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> SendFuture {
        let _ = fut;
        let method = request.method().clone();
        let target = display_target(&method, request.uri());
        let headers = request.headers();
        let has_credentials = [AUTHORIZATION, PROXY_AUTHORIZATION, COOKIE].iter().any(|h| headers.contains_key(h));
        let decided = self.check(&method, request.uri(), has_credentials).and_then(|d| refused_header(headers).map_or(Ok(d), Err));
        let destination = match decided {
            Ok(destination) => destination,
            Err(why) => {
                self.audit.record("http", method.as_str(), &target, Decision::Denied, &why);
                return Box::new(async { Err(HttpError::HttpRequestDenied) });
            }
        };
        let authorization = match destination {
            Destination::Sesame(_) => {
                let key = self.lead_key.as_ref().expect("checked above");
                let mut value = HeaderValue::from_str(&format!("Bearer {}", key.expose())).expect("API keys are header-safe");
                value.set_sensitive(true);
                Some(value)
            }
            Destination::Gateway(_) => None,
        };
        let rule = destination.rule(&self.sesame);
        let exchange = Exchange { destination, rule, target, authorization, run: self.run.clone(), audit: self.audit.clone() };
        Box::new(exchange.send(request, clamp(options)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A gate whose run may name the ids the tests below use.
    fn gate(ports: &[u16], key: bool) -> HttpGate {
        let gate = HttpGate::new(
            Origin::parse("https://api.sesame.space").unwrap(),
            key.then(|| Secret::new("lead-key").unwrap()),
            Arc::new(Mutex::new(ports.iter().copied().collect())),
            Arc::new(Audit::stderr_only()),
        );
        let members = [("0b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d", "7d3f1c2a-5b6e-4f80-9a1b-2c3d4e5f6a7b"), ("f-1", "p-1")];
        gate.bind_run(RunIds {
            members: members.iter().map(|(f, p)| (f.to_string(), p.to_string())).collect(),
            tasks: ["task-0001", "task_0001", "task-1", "t-1"].map(String::from).into(),
            channels: ["6f7a8b9c-0d1e-4f2a-b3c4-d5e6f7a8b9c0", "c-1"].map(String::from).into(),
            vaults: ["vault-0001", "v-1"].map(String::from).into(),
            creates_vault: true,
            ..RunIds::default()
        });
        gate
    }

    fn check(gate: &HttpGate, method: Method, url: &str) -> Result<Destination, String> {
        gate.check(&method, &url.parse().unwrap(), false)
    }

    fn endpoint(method: Method, template: &str) -> Destination {
        Destination::Sesame(SESAME_ENDPOINTS.iter().find(|e| e.method == method && e.template == template).unwrap())
    }

    #[test]
    fn sesame_origin_is_normalised_and_confined_to_the_spec_endpoints() {
        let g = gate(&[], true);
        assert_eq!(check(&g, Method::POST, "https://api.sesame.space/api/v1/vault/vaults"), Ok(endpoint(Method::POST, "vault/vaults")));
        assert_eq!(check(&g, Method::POST, "https://API.Sesame.Space:443/api/v1/vault/vaults"), Ok(endpoint(Method::POST, "vault/vaults")));
        for bad in [
            "https://api.sesame.space/api/v2/vault/vaults",
            "https://api.sesame.space/admin",
            "https://api.sesame.space:8443/api/v1/vault/vaults",
            "http://api.sesame.space/api/v1/vault/vaults",
            "https://evil.example/api/v1/vault/vaults",
            "https://api.sesame.space.evil.example/api/v1/vault/vaults",
            "https://user@api.sesame.space/api/v1/vault/vaults",
        ] {
            assert!(check(&g, Method::POST, bad).is_err(), "{bad} should be denied");
        }
    }

    #[test]
    fn every_endpoint_of_the_spec_is_allowed_with_its_method_only() {
        let g = gate(&[], true);
        let api = "https://api.sesame.space/api/v1";
        for (method, path, template) in [
            (Method::POST, "/vault/vaults", "vault/vaults"),
            (Method::POST, "/vault/vaults/vault-0001/members", "vault/vaults/{vault}/members"),
            (Method::PATCH, "/families/0b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d/members/7d3f1c2a-5b6e-4f80-9a1b-2c3d4e5f6a7b", "families/{family}/members/{principal}"),
            (Method::POST, "/tasks/task-0001/activity", "tasks/{task}/activity"),
            (Method::PATCH, "/tasks/task_0001", "tasks/{task}"),
            (Method::POST, "/channels/6f7a8b9c-0d1e-4f2a-b3c4-d5e6f7a8b9c0/messages", "channels/{channel}/messages"),
        ] {
            let url = format!("{api}{path}");
            assert_eq!(check(&g, method.clone(), &url), Ok(endpoint(method.clone(), template)), "{method} {url}");
            for other in [Method::GET, Method::HEAD, Method::PUT, Method::DELETE, Method::POST, Method::PATCH, Method::OPTIONS] {
                if other == method {
                    continue;
                }
                let err = check(&g, other.clone(), &url).unwrap_err();
                assert!(err.contains(&format!("/{template} takes {method} only")), "{other} {url}: {err}");
            }
        }
    }

    #[test]
    fn the_gate_covers_exactly_the_guests_sesame_catalogue() {
        use guest::sesame::Call;
        let g = gate(&[], true);
        let calls = [
            Call::CreateVault { name: "nova-main".into(), description: "d".into() },
            Call::AddVaultMember { vault_id: "vault-0001".into(), principal_id: "p".into(), role: "owner" },
            Call::SetMemberStatus { family_id: "f-1".into(), principal_id: "p-1".into(), status: "online" },
            Call::TaskActivity { task_id: "task-1".into(), kind: "progress", message: "m".into() },
            Call::SetTaskStatus { task_id: "task-1".into(), status: "done" },
            Call::PostMessage { channel_id: "c-1".into(), content: "hi".into(), intent: "chat" },
        ];
        let mut used = BTreeSet::new();
        for call in &calls {
            let (method, path, _) = call.request();
            let method: Method = method.as_str().parse().unwrap();
            match check(&g, method, &format!("https://api.sesame.space/api/v1{path}")) {
                Ok(Destination::Sesame(e)) => used.insert(e.describe()),
                other => panic!("{}: {other:?}", call.describe()),
            };
        }
        assert_eq!(used.len(), SESAME_ENDPOINTS.len(), "every endpoint of the table is one the guest uses");
    }

    #[test]
    fn other_paths_and_malformed_ids_are_denied_naming_the_endpoints() {
        let g = gate(&[], true);
        let api = "https://api.sesame.space/api/v1";
        for (method, path, expected) in [
            (Method::GET, "/vault/vaults/vault-0001", "is not one of the spec's Sesame endpoints (POST /vault/vaults, POST /vault/vaults/{vault}/members, PATCH /families/{family}/members/{principal}, POST /tasks/{task}/activity, PATCH /tasks/{task}, POST /channels/{channel}/messages)"),
            (Method::GET, "/admin", "GET /api/v1/admin is not one of the spec's Sesame endpoints"),
            (Method::POST, "/vault/vaults/v-1/members/extra", "is not one of the spec's Sesame endpoints"),
            (Method::POST, "/vault/vaults/", "is not one of the spec's Sesame endpoints"),
            (Method::POST, "/tasks/t-1/activity/", "is not one of the spec's Sesame endpoints"),
            (Method::PATCH, "/tasks//", "is not one of the spec's Sesame endpoints"),
            (Method::PATCH, "/tasks/", "the {task} segment \"\" is not an id"),
            (Method::POST, "/tasks/../activity", "the {task} segment \"..\" is not an id"),
            (Method::POST, "/tasks/./activity", "the {task} segment \".\" is not an id"),
            (Method::POST, "/tasks/%2e%2e/activity", "the {task} segment \"%2e%2e\" is not an id"),
            (Method::POST, "/vault/vaults/a%2Fb/members", "the {vault} segment"),
            (Method::POST, "/channels/c%20d/messages", "the {channel} segment"),
            (Method::PATCH, "/families/f:1/members/p", "the {family} segment"),
            (Method::POST, "/vault/vaults/../../admin", "is not one of the spec's Sesame endpoints"),
            (Method::POST, "/tasks/t-1/activity?as=admin", "no Sesame endpoint of the spec takes a query string"),
            (Method::POST, "/vault/vaults?", "no Sesame endpoint of the spec takes a query string"),
        ] {
            let err = check(&g, method.clone(), &format!("{api}{path}")).unwrap_err();
            assert!(err.contains(expected), "{method} {path}: {err}");
        }
        let long = "a".repeat(MAX_ID_LEN + 1);
        assert!(check(&g, Method::PATCH, &format!("{api}/tasks/{long}")).unwrap_err().contains("is not an id"));
        let err = check(&g, Method::PATCH, &format!("{api}/tasks/{}", &long[1..])).unwrap_err();
        assert!(err.contains("is not this run's"), "the longest id has the shape of one: {err}");
    }

    #[test]
    fn id_segments_are_plain() {
        for ok in ["a", "vault-0001", "7d3f1c2a-5b6e-4f80-9a1b-2c3d4e5f6a7b", "a.b_c~d", "..."] {
            assert!(is_id_segment(ok), "{ok}");
        }
        for bad in ["", ".", "..", "a/b", "a%2e", "a b", "a?b", "a#b", "é", "a\\b", "a;b"] {
            assert!(!is_id_segment(bad), "{bad}");
        }
    }

    #[test]
    fn sesame_calls_name_only_the_runs_ids() {
        let g = gate(&[], true);
        let api = "https://api.sesame.space/api/v1";
        for (method, path, says) in [
            (Method::POST, "/vault/vaults/vault-9999/members", "the vault id \"vault-9999\" is not this run's"),
            (Method::PATCH, "/tasks/task-9999", "the task id \"task-9999\" is not this run's"),
            (Method::POST, "/tasks/task-9999/activity", "the task id"),
            (Method::POST, "/channels/c-9/messages", "the channel id \"c-9\" is not this run's"),
            (Method::PATCH, "/families/f-9/members/p-1", "the family id \"f-9\""),
            (Method::PATCH, "/families/f-1/members/7d3f1c2a-5b6e-4f80-9a1b-2c3d4e5f6a7b", "the principal id"),
        ] {
            let err = check(&g, method.clone(), &format!("{api}{path}")).unwrap_err();
            assert!(err.contains(says) && err.contains(path), "{method} {path}: {err}");
        }
        g.bind_run(RunIds::default());
        let err = check(&g, Method::POST, &format!("{api}/vault/vaults")).unwrap_err();
        assert!(err.contains("only a provision creates a vault"), "{err}");
        assert!(check(&g, Method::PATCH, &format!("{api}/tasks/task-0001")).unwrap_err().contains("it has none"));
    }

    #[test]
    fn sesame_needs_a_lead_key() {
        let err = check(&gate(&[], false), Method::POST, "https://api.sesame.space/api/v1/vault/vaults").unwrap_err();
        assert!(err.contains("SESAME_API_KEY"), "{err}");
    }

    #[test]
    fn gateways_only_on_proven_ports_over_loopback_http_get_of_the_health_paths() {
        let g = gate(&[18790], true);
        assert_eq!(check(&g, Method::GET, "http://127.0.0.1:18790/healthz"), Ok(Destination::Gateway(18790)));
        assert_eq!(check(&g, Method::GET, "http://127.0.0.1:18790/"), Ok(Destination::Gateway(18790)));
        for host in ["localhost", "LOCALHOST", "[::1]", "127.0.0.1.", "localhost."] {
            let err = check(&g, Method::GET, &format!("http://{host}:18790/healthz")).unwrap_err();
            assert!(err.contains("sibling gateways are asked on http://127.0.0.1 only"), "{host}: {err}");
        }
        for host in ["127.1", "2130706433", "0x7f000001", "127.0.0.2", "[::ffff:127.0.0.1]", "0.0.0.0"] {
            assert!(check(&g, Method::GET, &format!("http://{host}:18790/healthz")).is_err(), "{host}");
        }
        assert_eq!(check(&g, Method::GET, "http://127.0.0.1:18790/readyz"), Ok(Destination::Gateway(18790)));
        let err = check(&g, Method::GET, "http://127.0.0.1:18791/healthz").unwrap_err();
        assert!(err.contains("port 18791 is not a sibling gateway port") && err.contains("18790"), "{err}");
        assert!(check(&g, Method::GET, "http://127.0.0.1:22/").unwrap_err().contains("port 22 is not a sibling gateway port"));
        assert!(check(&g, Method::GET, "https://127.0.0.1:18790/healthz").is_err());
        assert!(check(&g, Method::GET, "http://127.0.0.2:18790/healthz").is_err());
        for method in [Method::POST, Method::HEAD, Method::PUT, Method::DELETE] {
            assert!(check(&g, method.clone(), "http://127.0.0.1:18790/healthz").unwrap_err().contains("only GET"), "{method}");
        }
        for path in ["/api/config", "/healthz/", "/readyz/x", "/healthz?x=1", "/?token=t", "/../healthz", "//healthz", "/%68ealthz"] {
            let err = check(&g, Method::GET, &format!("http://127.0.0.1:18790{path}")).unwrap_err();
            assert!(err.contains("are asked for /healthz or /readyz or / only"), "{path}: {err}");
        }
    }

    #[test]
    fn a_port_nobody_started_is_not_reachable() {
        let ports = Arc::new(Mutex::new(BTreeSet::new()));
        let g = HttpGate::new(Origin::parse("https://api.sesame.space").unwrap(), None, ports.clone(), Arc::new(Audit::stderr_only()));
        let err = check(&g, Method::GET, "http://127.0.0.1:18930/healthz").unwrap_err();
        assert!(err.contains("no definition the host wrote and no service installed in this run uses it"), "{err}");
        assert!(err.contains("(none yet)"), "{err}");
        ports.lock().unwrap().insert(18930);
        assert_eq!(check(&g, Method::GET, "http://127.0.0.1:18930/healthz"), Ok(Destination::Gateway(18930)), "once the service capability proves it");
    }

    #[test]
    fn a_read_only_command_reaches_sibling_gateways_and_no_sesame_endpoint() {
        let g = gate(&[18790], true).with_access(Access::ReadOnly("list"));
        for (method, template) in SESAME_ENDPOINTS.iter().map(|e| (e.method.clone(), e.template)) {
            let url = format!("https://api.sesame.space{API_PREFIX}{}", template.replace(['{', '}'], ""));
            assert_eq!(check(&g, method, &url), Err("`list` changes nothing: a Sesame call is not granted to it".into()), "{template}");
        }
        assert_eq!(check(&g, Method::GET, "http://127.0.0.1:18790/healthz"), Ok(Destination::Gateway(18790)));
        assert!(g.describe()[0].ends_with("nothing (`list` changes nothing: no Sesame call)"), "{}", g.describe()[0]);
    }

    #[test]
    fn the_banner_lists_the_endpoints_and_the_gateway_rule() {
        let lines = gate(&[18790], true).describe();
        assert!(lines[0].starts_with("http: https://api.sesame.space:443/api/v1/* only the spec's Sesame endpoints: POST /vault/vaults, "), "{}", lines[0]);
        assert!(lines[0].contains("bodies one JSON object with Content-Length"), "{}", lines[0]);
        assert!(lines[0].contains("only this run's ids") && lines[0].contains("no method-override, hop-by-hop or forwarding headers"), "{}", lines[0]);
        assert!(lines[1].contains("GET http://127.0.0.1 /healthz or /readyz or / on sibling gateway ports 18790"), "{}", lines[1]);
        assert!(lines[1].contains("not localhost or [::1]"), "{}", lines[1]);
        assert!(lines[1].contains("never a port that was listening before its service was installed"), "{}", lines[1]);
    }

    #[test]
    fn content_length_is_read_from_the_headers() {
        let mut headers = HeaderMap::new();
        assert_eq!(exchange::declared_length(&headers), None);
        headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from_static("42"));
        assert_eq!(exchange::declared_length(&headers), Some(42));
    }

    #[test]
    fn credential_headers_from_the_guest_are_refused() {
        let g = gate(&[18790], true);
        let uri: Uri = "https://api.sesame.space/api/v1/vault/vaults".parse().unwrap();
        assert!(g.check(&Method::POST, &uri, true).unwrap_err().contains("Authorization"));
        assert!(is_forbidden(&AUTHORIZATION) && is_forbidden(&COOKIE));
        assert!(!is_forbidden(&http::header::CONTENT_TYPE));
    }

    #[test]
    fn method_overrides_hop_by_hop_and_forwarding_headers_are_refused() {
        for name in [
            "X-HTTP-Method-Override", "x-http-method", "X-Method-Override", "TE", "Trailer", "Proxy-Connection", "Proxy-Anything",
            "Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "Via",
        ] {
            let mut headers = HeaderMap::new();
            headers.insert(HeaderName::from_bytes(name.as_bytes()).unwrap(), HeaderValue::from_static("DELETE"));
            let refused = refused_header(&headers).unwrap_or_else(|| panic!("{name} passed"));
            assert!(refused.contains(&format!("may not set the {} header", name.to_ascii_lowercase())), "{refused}");
        }
        for name in ["connection", "keep-alive", "transfer-encoding", "upgrade", "host"] {
            assert!(is_forbidden(&HeaderName::from_static(name)), "wasmtime refuses {name} as the guest sets it");
        }
        for allowed in ["content-type", "content-length", "accept", "user-agent", "x-request-id"] {
            let mut headers = HeaderMap::new();
            headers.insert(HeaderName::from_static(allowed), HeaderValue::from_static("x"));
            assert!(!is_forbidden(&HeaderName::from_static(allowed)) && refused_header(&headers).is_none(), "{allowed}");
        }
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
