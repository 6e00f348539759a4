//! The thin adapter between the WIT world and the logic: capability traits over the
//! imports, and the `commands` export over [`crate::commands`], one function per export.

use crate::bindings::openclaw::provisioner::{adoption, family, fs, ports, progress, service};
use crate::caps::*;
use crate::commands;
use crate::wit;
use waki::bindings::wasi::http::outgoing_handler;
use waki::bindings::wasi::http::types::{
    ErrorCode, FutureIncomingResponse, Headers, Method as WasiMethod, OutgoingBody,
    OutgoingRequest, RequestOptions, Scheme,
};
use waki::bindings::wasi::io::poll;
use waki::bindings::wasi::io::streams::StreamError;

struct Component;
crate::bindings::export!(Component with_types_in crate::bindings);

/// The imports, as capability traits.
struct Imports;

impl Files for Imports {
    fn read(&self, path: &str) -> Result<Vec<u8>, FsError> {
        fs::read(path)
    }
    fn write_atomic(&self, path: &str, contents: &[u8], mode: u32) -> Result<(), FsError> {
        fs::write_atomic(path, contents, mode)
    }
    fn create_dir_all(&self, path: &str, mode: u32) -> Result<(), FsError> {
        fs::create_dir_all(path, mode)
    }
    fn metadata(&self, path: &str) -> Result<Option<EntryMeta>, FsError> {
        fs::metadata(path)
    }
    fn walk_tree(&self, path: &str) -> Result<Vec<String>, FsError> {
        fs::walk_tree(path)
    }
    fn remove_tree(&self, path: &str) -> Result<(), FsError> {
        fs::remove_tree(path)
    }
    fn archive_tree(&self, source: &str, archive: &str) -> Result<TreeStats, FsError> {
        fs::archive_tree(source, archive)
    }
    fn check_archivable(&self, source: &str) -> Result<TreeStats, FsError> {
        fs::check_archivable(source)
    }
    fn list_archive(&self, archive: &str) -> Result<Vec<String>, FsError> {
        fs::list_archive(archive)
    }
    fn restore_archive(&self, archive: &str, handle: &str) -> Result<RestoredTree, FsError> {
        fs::restore_archive(archive, handle)
    }
    fn copy_lead_plugins(&self, handle: &str) -> Result<Vec<String>, FsError> {
        fs::copy_lead_plugins(handle)
    }
    fn write_credentials(&self, handle: &str, provider: &str, layout: CredentialLayout, key: Option<&str>) -> Result<String, FsError> {
        fs::write_credentials(handle, provider, layout, key)
    }
}

impl Services for Imports {
    fn install(&self, spec: &ServiceSpec) -> Result<Installed, ServiceError> {
        service::install(spec)
    }
    fn start(&self, label: &str) -> Result<(), ServiceError> {
        service::start(label)
    }
    fn stop(&self, label: &str) -> Result<(), ServiceError> {
        service::stop(label)
    }
    fn uninstall(&self, label: &str) -> Result<(), ServiceError> {
        service::uninstall(label)
    }
    fn status(&self, label: &str) -> Result<ServiceStatus, ServiceError> {
        service::status(label)
    }
}

impl Ports for Imports {
    fn taken(&self, list: &[u16]) -> Vec<u16> {
        ports::taken(list)
    }
}

impl Progress for Imports {
    fn emit(&self, level: Level, message: &str) {
        progress::emit(level, message)
    }
}

impl Family for Imports {
    fn lock(&self) -> Result<(), String> {
        family::lock()
    }
    fn unlock(&self) {
        family::unlock()
    }
    fn claim(&self, handle: &str) -> Result<(), String> {
        family::claim(handle)
    }
}

impl Random for Imports {
    fn fill(&self, buf: &mut [u8]) {
        let bytes = waki::bindings::wasi::random::random::get_random_bytes(buf.len() as u64);
        buf.copy_from_slice(&bytes);
    }
}

impl Clock for Imports {
    fn now_unix_ms(&self) -> u64 {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        now.map(|d| d.as_millis() as u64).unwrap_or(0)
    }
    fn monotonic_us(&self) -> u64 {
        waki::bindings::wasi::clocks::monotonic_clock::now() / 1_000
    }
    fn sleep_ms(&self, ms: u64) {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
}

impl Http for Imports {
    /// Starts every request, then waits on all of them together with `wasi:io/poll`.
    fn send_all(&self, requests: &[HttpRequest]) -> Vec<Result<HttpResponse, HttpError>> {
        let mut results: Vec<Option<Result<HttpResponse, HttpError>>> = vec![None; requests.len()];
        let mut pending: Vec<(usize, FutureIncomingResponse)> = Vec::new();
        for (index, request) in requests.iter().enumerate() {
            match start_request(request) {
                Ok(future) => pending.push((index, future)),
                Err(error) => results[index] = Some(Err(error)),
            }
        }
        while !pending.is_empty() {
            let pollables: Vec<_> = pending.iter().map(|(_, f)| f.subscribe()).collect();
            let ready = poll::poll(&pollables.iter().collect::<Vec<_>>());
            drop(pollables);
            let mut ready: Vec<usize> = ready.into_iter().map(|i| i as usize).collect();
            ready.sort_unstable_by(|a, b| b.cmp(a));
            for position in ready {
                let (index, future) = pending.swap_remove(position);
                results[index] = Some(finish_request(future));
            }
        }
        results.into_iter().map(|r| r.expect("every request finished")).collect()
    }
}

/// Starts `request`. A JSON body goes out with `Content-Type: application/json` and its
/// `Content-Length` (the host refuses bodies without one, and wasmtime holds the bytes
/// written to it); a request without a body opens none, so nothing is sent chunked.
fn start_request(request: &HttpRequest) -> Result<FutureIncomingResponse, HttpError> {
    let url: http::Uri = request
        .url
        .parse()
        .map_err(|e| HttpError::Other(format!("bad URL {}: {e}", request.url)))?;
    let headers = Headers::new();
    if let Some(body) = &request.json_body {
        for (name, value) in [("content-type", b"application/json".to_vec()), ("content-length", body.len().to_string().into_bytes())] {
            headers
                .append(&name.to_string(), &value)
                .map_err(|e| HttpError::Other(format!("{name} header: {e:?}")))?;
        }
    }
    let outgoing = OutgoingRequest::new(headers);
    let method = match request.method {
        Method::Get => WasiMethod::Get,
        Method::Post => WasiMethod::Post,
        Method::Patch => WasiMethod::Patch,
    };
    let scheme = match url.scheme_str() {
        Some("https") => Scheme::Https,
        _ => Scheme::Http,
    };
    let bad = |what: &str| HttpError::Other(format!("cannot set {what} of {}", request.url));
    outgoing.set_method(&method).map_err(|()| bad("method"))?;
    outgoing.set_scheme(Some(&scheme)).map_err(|()| bad("scheme"))?;
    outgoing.set_authority(url.authority().map(|a| a.as_str())).map_err(|()| bad("authority"))?;
    outgoing
        .set_path_with_query(url.path_and_query().map(|p| p.as_str()))
        .map_err(|()| bad("path"))?;
    let timeout_ns = Some(u64::from(request.timeout_ms) * 1_000_000);
    let options = RequestOptions::new();
    let _ = options.set_connect_timeout(timeout_ns);
    let _ = options.set_first_byte_timeout(timeout_ns);
    let _ = options.set_between_bytes_timeout(timeout_ns);
    let Some(json) = &request.json_body else {
        return outgoing_handler::handle(outgoing, Some(options)).map_err(map_error);
    };
    let body = outgoing.body().map_err(|()| bad("body"))?;
    let future = outgoing_handler::handle(outgoing, Some(options)).map_err(map_error)?;
    match write_body(body, json) {
        Ok(()) => Ok(future),
        // The body stream closes when the request itself failed (a refused connection, a
        // denial): that failure is the one to tell.
        Err(error) => {
            future.subscribe().block();
            Err(match future.get() {
                Some(Ok(Err(code))) => map_error(code),
                _ => error,
            })
        }
    }
}

/// Writes all of `bytes` into `body` and finishes it.
fn write_body(body: OutgoingBody, bytes: &[u8]) -> Result<(), HttpError> {
    let stream = body.write().map_err(|()| HttpError::Other("cannot open the body stream".into()))?;
    for chunk in bytes.chunks(4096) {
        stream
            .blocking_write_and_flush(chunk)
            .map_err(|e| HttpError::Other(match e {
                StreamError::Closed => "the connection closed while the request body was being sent".into(),
                StreamError::LastOperationFailed(e) => format!("sending the request body failed: {}", e.to_debug_string()),
            }))?;
    }
    drop(stream);
    OutgoingBody::finish(body, None).map_err(map_error)
}

fn finish_request(future: FutureIncomingResponse) -> Result<HttpResponse, HttpError> {
    let response = match future.get() {
        Some(Ok(Ok(response))) => response,
        Some(Ok(Err(code))) => return Err(map_error(code)),
        Some(Err(())) | None => return Err(HttpError::Other("response lost".into())),
    };
    let retry_after = response
        .headers()
        .get(&"retry-after".to_string())
        .first()
        .map(|v| String::from_utf8_lossy(v).into_owned());
    let response = waki::Response::try_from(response).map_err(|e| HttpError::Other(e.to_string()))?;
    let status = response.status_code();
    let body = response.body().map_err(|e| HttpError::Other(format!("reading body: {e}")))?;
    Ok(HttpResponse { status, retry_after, body })
}

fn map_error(code: ErrorCode) -> HttpError {
    match code {
        ErrorCode::HttpRequestDenied => HttpError::Denied,
        ErrorCode::ConnectionRefused => HttpError::ConnectionRefused,
        ErrorCode::ConnectionTimeout
        | ErrorCode::ConnectionReadTimeout
        | ErrorCode::HttpResponseTimeout => HttpError::Timeout,
        ErrorCode::DnsTimeout | ErrorCode::DnsError(_) => HttpError::Other("the host name did not resolve".into()),
        ErrorCode::DestinationNotFound | ErrorCode::DestinationUnavailable | ErrorCode::DestinationIpUnroutable => {
            HttpError::Other("the destination cannot be reached".into())
        }
        ErrorCode::ConnectionTerminated => HttpError::Other("the connection was closed before an answer came".into()),
        ErrorCode::TlsProtocolError | ErrorCode::TlsCertificateError | ErrorCode::TlsAlertReceived(_) => {
            HttpError::Other("the TLS handshake with the server failed".into())
        }
        other => HttpError::Other(format!("the request failed ({other:?})")),
    }
}

fn caps() -> Caps<'static> {
    Caps {
        files: &Imports,
        services: &Imports,
        http: &Imports,
        clock: &Imports,
        ports: &Imports,
        progress: &Imports,
        random: &Imports,
        family: &Imports,
        adoption: &Imports,
    }
}

impl Adoption for Imports {
    fn begin(&self, handle: &str) -> Result<LegacySibling, String> {
        adoption::begin(handle)
    }
    fn migrate_credentials(&self, handle: &str) -> Result<Vec<String>, String> {
        adoption::migrate_credentials(handle)
    }
    fn commit(&self, handle: &str) -> Result<String, String> {
        adoption::commit(handle)
    }
    fn abort(&self, handle: &str) -> Result<Vec<String>, Vec<String>> {
        adoption::abort(handle)
    }
}

impl wit::Guest for Component {
    fn plan(ctx: wit::Context, request: wit::ProvisionRequest) -> Result<wit::ProvisionPlan, wit::CommandError> {
        commands::plan(caps(), &ctx, &request)
    }
    fn provision(
        ctx: wit::Context,
        request: wit::ProvisionRequest,
    ) -> Result<wit::ProvisionOutcome, wit::CommandError> {
        commands::provision(caps(), &ctx, &request)
    }
    fn start(ctx: wit::Context, handle: String) -> Result<wit::LifecycleOutcome, wit::CommandError> {
        commands::start(caps(), &ctx, &handle)
    }
    fn stop(ctx: wit::Context, handle: String) -> Result<wit::LifecycleOutcome, wit::CommandError> {
        commands::stop(caps(), &ctx, &handle)
    }
    fn restart(ctx: wit::Context, handle: String) -> Result<wit::LifecycleOutcome, wit::CommandError> {
        commands::restart(caps(), &ctx, &handle)
    }
    fn deprovision(ctx: wit::Context, request: wit::DeprovisionRequest) -> Result<wit::LifecycleOutcome, wit::CommandError> {
        commands::deprovision(caps(), &ctx, &request)
    }
    fn health(ctx: wit::Context, request: wit::HealthRequest) -> Result<wit::HealthReport, wit::CommandError> {
        commands::health(caps(), &ctx, &request)
    }
    fn restore(ctx: wit::Context, request: wit::RestoreRequest) -> Result<wit::RestoreOutcome, wit::CommandError> {
        commands::restore(caps(), &ctx, &request)
    }
    fn adopt_plan(ctx: wit::Context, request: wit::AdoptRequest) -> Result<Vec<wit::AdoptionPlan>, wit::CommandError> {
        commands::adopt_plan(caps(), &ctx, &request)
    }
    fn adopt(ctx: wit::Context, request: wit::AdoptRequest) -> Result<wit::AdoptOutcome, wit::CommandError> {
        commands::adopt(caps(), &ctx, &request)
    }
    fn rollback(ctx: wit::Context, handle: String) -> Result<wit::RollbackOutcome, wit::CommandError> {
        commands::rollback(caps(), &ctx, &handle)
    }
    fn members(ctx: wit::Context) -> Result<Vec<wit::FamilyMember>, wit::CommandError> {
        commands::members(caps(), &ctx)
    }
    fn ports(ctx: wit::Context, range_start: u16) -> Result<wit::PortReport, wit::CommandError> {
        commands::ports(caps(), &ctx, range_start)
    }
}
