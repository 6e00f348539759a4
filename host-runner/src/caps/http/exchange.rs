//! One allowed request on its way out and its answer on the way back: the body the gate
//! reads, checks and sends in its own serialisation, and the answer to the run's
//! `POST /vault/vaults`, from which it learns the run's vault.

use super::{Destination, MAX_SESAME_BODY, MAX_VAULT_ANSWER, is_id_segment};
use crate::record::audit::{Audit, Decision};
use crate::caps::http::sesame_ids::{Binds, RunIds};
use http::header::{AUTHORIZATION, CONTENT_LENGTH, HeaderMap, HeaderValue};
use http_body_util::BodyExt as _;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody};

/// The connection's own future, which the guest's side drives to the end.
pub type IoFuture = Box<dyn Future<Output = Result<(), HttpError>> + Send>;

/// A request the gate allowed, with what it needs to finish the decision.
pub struct Exchange {
    pub destination: Destination,
    /// The grant that allows it, for the audit.
    pub rule: String,
    /// `METHOD origin/path`, for the audit.
    pub target: String,
    pub authorization: Option<HeaderValue>,
    pub run: Arc<Mutex<RunIds>>,
    pub audit: Arc<Audit>,
}

impl Exchange {
    /// Checks the body, sends the request, and reads the vault from a create's answer.
    pub async fn send(self, request: http::Request<WasiBody>, options: RequestOptions) -> Result<(http::Response<WasiBody>, IoFuture), HttpError> {
        let (mut parts, body) = request.into_parts();
        let body = match self.outgoing(body, declared_length(&parts.headers)).await {
            Ok(body) => body,
            Err(BodyRefusal::Failed(e)) => return Err(e),
            Err(BodyRefusal::Denied(why)) => {
                self.audit.record("http", parts.method.as_str(), &self.target, Decision::Denied, &why);
                return Err(HttpError::HttpRequestDenied);
            }
        };
        parts.headers.remove(CONTENT_LENGTH);
        if let Some(bytes) = &body {
            parts.headers.insert(CONTENT_LENGTH, HeaderValue::from(bytes.len()));
        }
        if let Some(value) = self.authorization.clone() {
            parts.headers.insert(AUTHORIZATION, value);
        }
        self.audit.record("http", parts.method.as_str(), &self.target, Decision::Allowed, &self.rule);
        let body = match body {
            Some(bytes) => http_body_util::Full::from(bytes).map_err(|never| match never {}).boxed_unsync(),
            None => http_body_util::Empty::new().map_err(|never| match never {}).boxed_unsync(),
        };
        let (response, io) = wasmtime_wasi_http::default_send_request(http::Request::from_parts(parts, body), Some(options)).await?;
        let response = response.map(|b| b.boxed_unsync());
        match self.destination {
            Destination::Sesame(endpoint) if endpoint.binds == Binds::NewVault => self.learn_vault(response, Box::new(io)).await,
            _ => Ok((response, Box::new(io))),
        }
    }

    /// The bytes that go out: none to a gateway; for Sesame, the body as one JSON object,
    /// checked against the run's ids and the registered secrets, in the host's own
    /// serialisation.
    async fn outgoing(&self, body: WasiBody, declared: Option<u64>) -> Result<Option<Vec<u8>>, BodyRefusal> {
        let bytes = read_body(body, declared, &self.destination).await?;
        let Destination::Sesame(endpoint) = self.destination else { return Ok(None) };
        if bytes.is_empty() {
            return Ok(None);
        }
        let value: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| BodyRefusal::Denied(format!("a Sesame body is one JSON object; this one is not JSON ({e})")))?;
        if !value.is_object() {
            return Err(BodyRefusal::Denied("a Sesame body is one JSON object".into()));
        }
        self.run.lock().expect("run ids lock").check_body(endpoint.binds, &value).map_err(BodyRefusal::Denied)?;
        Ok(Some(serde_json::to_vec(&value).expect("a JSON value serialises")))
    }

    /// Reads the answer to the run's `POST /vault/vaults` (at most [`MAX_VAULT_ANSWER`]
    /// bytes, driving the connection meanwhile), records the id of a 2xx answer's `data` as
    /// the run's vault, and hands the guest the same answer.
    async fn learn_vault(&self, response: http::Response<WasiBody>, io: IoFuture) -> Result<(http::Response<WasiBody>, IoFuture), HttpError> {
        let (parts, body) = response.into_parts();
        let mut io = Box::into_pin(io);
        let mut finished = None;
        let mut collect = std::pin::pin!(http_body_util::Limited::new(body, MAX_VAULT_ANSWER).collect());
        let collected = std::future::poll_fn(|cx| {
            if finished.is_none()
                && let Poll::Ready(result) = io.as_mut().poll(cx)
            {
                finished = Some(result);
            }
            collect.as_mut().poll(cx)
        })
        .await;
        let bytes = collected
            .map_err(|e| match e.downcast::<HttpError>() {
                Ok(e) => *e,
                Err(_) => HttpError::HttpResponseBodySize(Some(MAX_VAULT_ANSWER as u64)),
            })?
            .to_bytes();
        if parts.status.is_success() {
            let learned = vault_id(&bytes);
            let rule = match &learned {
                Some(id) => format!("the vault {id} this run created: its members may be added"),
                None => "the answer names no vault id; no vault is this run's".into(),
            };
            self.audit.record("http", "vault-created", &self.target, Decision::Allowed, &rule);
            if let Some(id) = learned {
                self.run.lock().expect("run ids lock").learned_vault(id);
            }
        }
        let io: IoFuture = match finished {
            Some(result) => Box::new(async move { result }),
            None => Box::new(io),
        };
        Ok((http::Response::from_parts(parts, http_body_util::Full::new(bytes).map_err(|never| match never {}).boxed_unsync()), io))
    }
}

/// The vault id of a create's answer: `data.id`, a plain id segment.
fn vault_id(answer: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(answer).ok()?;
    let id = value.get("data")?.get("id")?.as_str()?;
    is_id_segment(id).then(|| id.to_string())
}

/// The `Content-Length` the guest declared (wasmtime has checked its syntax and holds the
/// body to it), or `None`.
pub fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

/// Why a body cannot go out as it is.
enum BodyRefusal {
    /// A rule of the gate: denied, with the reason.
    Denied(String),
    /// The guest's body stream failed.
    Failed(HttpError),
}

/// The body of a request to `destination`, read whole: Sesame bodies must be declared and
/// at most [`MAX_SESAME_BODY`]; a gateway `GET` has none. A body stream without a declared
/// length is read up to its first byte: empty, it is no body (never chunked); with data,
/// it is refused.
async fn read_body(body: WasiBody, declared: Option<u64>, destination: &Destination) -> Result<Vec<u8>, BodyRefusal> {
    match (declared, destination) {
        (Some(length), Destination::Gateway(_)) if length > 0 => {
            return Err(BodyRefusal::Denied(format!("a GET to a sibling gateway carries no body (Content-Length {length})")));
        }
        (Some(length), Destination::Sesame(_)) if length > MAX_SESAME_BODY => {
            return Err(BodyRefusal::Denied(format!("a Sesame body of {length} bytes is more than the {MAX_SESAME_BODY}-byte limit")));
        }
        (Some(_), _) => return body.collect().await.map(|c| c.to_bytes().to_vec()).map_err(BodyRefusal::Failed),
        (None, _) => {}
    }
    let mut body = body;
    loop {
        match body.frame().await {
            None => return Ok(Vec::new()),
            Some(Err(e)) => return Err(BodyRefusal::Failed(e)),
            Some(Ok(frame)) if frame.data_ref().is_some_and(|d| d.is_empty()) => continue,
            Some(Ok(_)) => {
                return Err(BodyRefusal::Denied(match destination {
                    Destination::Sesame(_) => "the request has a body but no Content-Length: Sesame requests declare their body length (no chunked bodies)".into(),
                    Destination::Gateway(_) => "a GET to a sibling gateway carries no body".into(),
                }));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::caps::http::SESAME_ENDPOINTS;

    fn endpoint(template: &str) -> Destination {
        Destination::Sesame(SESAME_ENDPOINTS.iter().find(|e| e.template == template).unwrap())
    }

    /// A body holding `data` (none at all when `None`).
    fn body(data: Option<&[u8]>) -> WasiBody {
        match data {
            None => http_body_util::Empty::new().map_err(|never| match never {}).boxed_unsync(),
            Some(data) => http_body_util::Full::from(data.to_vec()).map_err(|never| match never {}).boxed_unsync(),
        }
    }

    fn block_on<T>(future: impl Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(future)
    }

    /// [`read_body`], run to completion: the bytes that would be read, or the denial.
    fn settle(data: Option<&[u8]>, declared: Option<u64>, destination: Destination) -> Result<Vec<u8>, String> {
        block_on(async {
            match read_body(body(data), declared, &destination).await {
                Ok(bytes) => Ok(bytes),
                Err(BodyRefusal::Denied(why)) => Err(why),
                Err(BodyRefusal::Failed(e)) => Err(format!("failed: {e}")),
            }
        })
    }

    #[test]
    fn sesame_bodies_need_a_content_length_and_empty_ones_go_out_as_none() {
        let activity = || endpoint("tasks/{task}/activity");
        assert_eq!(settle(Some(b"{}"), Some(2), activity()), Ok(b"{}".to_vec()), "declared: read as is");
        let err = settle(Some(b"{}"), None, activity()).unwrap_err();
        assert!(err.contains("has a body but no Content-Length"), "{err}");
        assert_eq!(settle(Some(b""), None, activity()), Ok(vec![]), "an empty stream is no body");
        assert_eq!(settle(None, None, activity()), Ok(vec![]));
        let err = settle(Some(b"{}"), Some(MAX_SESAME_BODY + 1), activity()).unwrap_err();
        assert!(err.contains("more than the 262144-byte limit"), "{err}");
    }

    #[test]
    fn a_gateway_get_carries_no_body() {
        assert_eq!(settle(None, None, Destination::Gateway(18790)), Ok(vec![]));
        assert_eq!(settle(Some(b""), Some(0), Destination::Gateway(18790)), Ok(vec![]));
        assert!(settle(Some(b"x"), Some(1), Destination::Gateway(18790)).unwrap_err().contains("carries no body"));
        assert!(settle(Some(b"x"), None, Destination::Gateway(18790)).unwrap_err().contains("carries no body"));
    }

    fn exchange(template: &str, run: RunIds) -> Exchange {
        Exchange {
            destination: endpoint(template),
            rule: String::new(),
            target: "POST x".into(),
            authorization: None,
            run: Arc::new(Mutex::new(run)),
            audit: Arc::new(Audit::stderr_only()),
        }
    }

    fn outgoing(exchange: &Exchange, data: &[u8]) -> Result<Option<Vec<u8>>, String> {
        block_on(exchange.outgoing(body(Some(data)), Some(data.len() as u64))).map_err(|e| match e {
            BodyRefusal::Denied(why) => why,
            BodyRefusal::Failed(e) => format!("failed: {e}"),
        })
    }

    #[test]
    fn what_goes_to_sesame_is_the_checked_object_in_the_hosts_serialisation() {
        let run = RunIds { vault_principals: ["p-1".into()].into(), vaults: ["v-1".into()].into(), ..RunIds::default() };
        let members = exchange("vault/vaults/{vault}/members", run);
        // A duplicate key: the server may read either; the host sends only the one it checked.
        let sent = outgoing(&members, br#"{"principalId":"p-1","principalId":"p-2","role":"admin"}"#);
        assert!(sent.unwrap_err().contains("principalId \"p-2\""), "the last one is the one checked");
        let sent = outgoing(&members, br#"{"principalId":"p-2","principalId":"p-1","role":"admin"}"#).unwrap().unwrap();
        assert_eq!(String::from_utf8(sent).unwrap(), r#"{"principalId":"p-1","role":"admin"}"#);
        let escaped = outgoing(&members, br#"{"principalId":"p\u002d1"}"#).unwrap().unwrap();
        assert_eq!(String::from_utf8(escaped).unwrap(), r#"{"principalId":"p-1"}"#, "escapes are decoded before the check");
        for bad in [&b"[1]"[..], b"not json", b"\"p-1\""] {
            assert!(outgoing(&members, bad).unwrap_err().contains("one JSON object"), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn the_vault_id_is_read_from_data_id() {
        assert_eq!(vault_id(br#"{"data":{"id":"v-1","name":"nova-main"}}"#).as_deref(), Some("v-1"));
        for answer in [&br#"{"data":{"id":"../admin"}}"#[..], br#"{"id":"v-1"}"#, br#"{"data":{"id":7}}"#, b"<html>"] {
            assert_eq!(vault_id(answer), None, "{}", String::from_utf8_lossy(answer));
        }
    }
}
