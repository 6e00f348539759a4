//! Is a sibling's gateway up? Probing, waiting for a new one, and saying why not.
//!
//! A gateway answers `GET /healthz` with 200 once it is live (older ones only serve their
//! web UI at `/`, which is the fallback). A new gateway counts as up only once it is also
//! ready: `GET /readyz` answers 200 (or 404, from a gateway too old to have it). OpenClaw
//! is live a few seconds before its start-up sidecars run, and one that cannot use its
//! credentials answers `/healthz` in that window and then exits. While waiting, the
//! service's state and its `stderr.log` are watched so a gateway that exits, or reports
//! its port taken, fails fast with the spec's diagnosis instead of after the whole timeout.

use crate::caps::{Caps, Files, Http, HttpError, HttpRequest, Level, Method, RunState};
use crate::layout::SiblingLayout;

/// The line a gateway logs once its Sesame channel is connected.
pub const SESAME_AUTHENTICATED: &str = "[sesame] Authenticated successfully";

/// How many bytes of a log's end are examined.
const LOG_TAIL_BYTES: usize = 64 * 1024;

/// The outcome of one probe.
#[derive(Clone, Debug, PartialEq)]
pub struct Probe {
    pub healthy: bool,
    /// In words: `200 OK`, `HTTP 503`, `timed out`, `connection refused`...
    pub words: String,
    pub millis: u64,
}

/// `http://127.0.0.1:<port><path>`.
fn url(port: u16, path: &str) -> String {
    format!("http://127.0.0.1:{port}{path}")
}

/// Probes every port at once (`/healthz`, then `/` where `/healthz` is 404), so N probes
/// take about one timeout, not N.
pub fn probe_all(http: &dyn Http, clock: &dyn crate::caps::Clock, ports: &[u16], timeout_ms: u32) -> Vec<Probe> {
    let get = |port: u16, path: &str| HttpRequest { method: Method::Get, url: url(port, path), json_body: None, timeout_ms };
    let started = clock.monotonic_ms();
    let first = http.send_all(&ports.iter().map(|&p| get(p, "/healthz")).collect::<Vec<_>>());
    let first_ms = clock.monotonic_ms() - started;
    let fallback: Vec<usize> =
        first.iter().enumerate().filter(|(_, r)| matches!(r, Ok(resp) if resp.status == 404)).map(|(i, _)| i).collect();
    let second = http.send_all(&fallback.iter().map(|&i| get(ports[i], "/")).collect::<Vec<_>>());
    let total_ms = clock.monotonic_ms() - started;
    let mut results: Vec<Probe> = first.into_iter().map(|r| describe(r, first_ms)).collect();
    for (index, response) in fallback.into_iter().zip(second) {
        results[index] = describe(response, total_ms);
    }
    results
}

fn describe(response: Result<crate::caps::HttpResponse, HttpError>, millis: u64) -> Probe {
    match response {
        Ok(r) if r.status == 200 => Probe { healthy: true, words: "200 OK".into(), millis },
        Ok(r) => Probe { healthy: false, words: format!("HTTP {}", r.status), millis },
        Err(e) => Probe { healthy: false, words: e.to_string(), millis },
    }
}

/// The end of a log file without terminal colour codes (empty when unreadable).
fn log_tail(files: &dyn Files, path: &str) -> String {
    let bytes = files.read(path).unwrap_or_default();
    let start = bytes.len().saturating_sub(LOG_TAIL_BYTES);
    strip_ansi(&String::from_utf8_lossy(&bytes[start..]))
}

/// `text` without ANSI escape sequences (OpenClaw colours its logs even into files).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            out.push(c);
            continue;
        }
        if chars.next() == Some('[') {
            // CSI: parameters and intermediates up to a final byte in @..~.
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) {
                    break;
                }
            }
        }
    }
    out
}

/// Whether the gateway's stdout shows the Sesame channel authenticated.
pub fn sesame_authenticated(files: &dyn Files, layout: &SiblingLayout) -> bool {
    log_tail(files, &layout.stdout_log).contains(SESAME_AUTHENTICATED)
}

/// Where a gateway that did not come up was left.
#[derive(Clone, Copy, Debug)]
enum Left {
    /// Its service stopped running, with this exit code when the backend knows it.
    Exited(Option<i32>),
    /// It still runs.
    Running,
}

/// The spec's diagnosis of a gateway that did not come up, most likely cause first:
/// port conflict, missing provider key, invalid config, missing extension; one sentence.
fn diagnose(files: &dyn Files, layout: &SiblingLayout, port: u16, left: Left) -> String {
    let stderr = log_tail(files, &layout.stderr_log);
    let lower = stderr.to_lowercase();
    let exited = match left {
        Left::Exited(Some(code)) => format!("the gateway exited with code {code}"),
        Left::Exited(None) => "the gateway stopped".into(),
        Left::Running => "the gateway is still running".into(),
    };
    let last_line = stderr.lines().rev().find(|l| !l.trim().is_empty()).map(str::trim).unwrap_or("");
    let quote = |line: &str| if line.is_empty() { String::new() } else { format!(" (stderr: {})", bounded(line)) };
    if lower.contains("already in use") || lower.contains("eaddrinuse") {
        let line = stderr.lines().find(|l| l.to_lowercase().contains("in use")).unwrap_or(last_line);
        return format!("port conflict: port {port} (or a port the gateway also claims) is already in use{}", quote(line));
    }
    let stdout = log_tail(files, &layout.stdout_log).to_lowercase();
    if [&lower, &stdout].iter().any(|log| log.contains("requires legacy credential migration") || log.contains("auth_profile_migration_required") || log.contains("authprofilemigrationrequired")) {
        return format!(
            "legacy credential files block the gateway (current OpenClaw asks for `openclaw doctor --fix`; its keys belong in .env: --credential-layout env-file, or adopt): {exited}{}",
            quote(last_line)
        );
    }
    if lower.contains("no api key found") {
        let line = stderr.lines().find(|l| l.to_lowercase().contains("no api key")).unwrap_or(last_line);
        return format!("missing provider credentials: {exited}{}", quote(line));
    }
    if lower.contains("invalid config") || lower.contains("config validation") || matches!(left, Left::Exited(Some(78))) {
        return format!("invalid openclaw.json: {exited}{}", quote(last_line));
    }
    let extension = crate::layout::join(&layout.extensions_sesame, "dist/index.js");
    if lower.contains("cannot find module") || !matches!(files.metadata(&extension), Ok(Some(_))) {
        return format!("missing Sesame extension ({extension}): {exited}{}", quote(last_line));
    }
    match left {
        Left::Exited(_) => format!("{exited} before it answered on port {port}{}", quote(last_line)),
        Left::Running => format!("{exited}{}", quote(last_line)),
    }
}

fn bounded(line: &str) -> String {
    let mut text: String = line.chars().take(240).collect();
    if text.len() < line.len() {
        text.push('…');
    }
    text
}

/// What a healthy new gateway looked like.
#[derive(Clone, Debug, PartialEq)]
pub struct Healthy {
    pub waited_ms: u64,
    pub sesame_authenticated: bool,
}

/// How often a wait for a gateway says it is still waiting.
const NOTE_EVERY_MS: u64 = 5_000;

/// Waits until the gateway of `label` answers on `port`, within the context's timeout.
/// Fails fast, with [`diagnose`], when the service stops running or its stderr reports
/// the port taken. Shows progress every few seconds.
pub fn wait_healthy(
    caps: &Caps,
    label: &str,
    port: u16,
    layout: &SiblingLayout,
    timing: &crate::wit::Timing,
) -> Result<Healthy, String> {
    let started = caps.clock.monotonic_ms();
    let deadline = started + u64::from(timing.health_timeout_ms);
    let mut next_note = started + NOTE_EVERY_MS;
    loop {
        let mut probe = probe_all(caps.http, caps.clock, &[port], timing.probe_timeout_ms).remove(0);
        let mut awaited = url(port, "/healthz");
        if probe.healthy {
            match readiness(caps.http, port, timing.probe_timeout_ms) {
                None => {
                    let now = caps.clock.monotonic_ms();
                    return Ok(Healthy { waited_ms: now - started, sesame_authenticated: wait_for_sesame(caps, layout, timing) });
                }
                Some(words) => {
                    probe.words = format!("live, not ready: {words}");
                    awaited = url(port, "/readyz");
                }
            }
        }
        let now = caps.clock.monotonic_ms();
        let status = caps.services.status(label).map_err(|e| format!("service status of {label}: {}", e.message()))?;
        if status.state != RunState::Running {
            return Err(diagnose(caps.files, layout, port, Left::Exited(status.last_exit_code)));
        }
        let stderr = log_tail(caps.files, &layout.stderr_log).to_lowercase();
        if stderr.contains("already in use") || stderr.contains("eaddrinuse") {
            return Err(diagnose(caps.files, layout, port, Left::Running));
        }
        if now >= deadline {
            let why = diagnose(caps.files, layout, port, Left::Running);
            return Err(format!("no answer on {awaited} within {} s (last probe: {}); {why}", timing.health_timeout_ms / 1000, probe.words));
        }
        if now >= next_note {
            let (waited, limit) = ((now - started) / 1000, timing.health_timeout_ms / 1000);
            let awaited = format!("{label} to answer on {awaited}");
            caps.progress.emit(Level::Info, &format!("still waiting for {awaited}: {waited} s of {limit} s so far (last probe: {})", probe.words));
            next_note = now + NOTE_EVERY_MS;
        }
        caps.clock.sleep_ms(u64::from(timing.health_interval_ms).min(deadline.saturating_sub(now)).max(1));
    }
}

/// Whether a live gateway is ready: `None` when `/readyz` answers 200 (or 404: a gateway
/// without it), else the probe in words.
fn readiness(http: &dyn Http, port: u16, timeout_ms: u32) -> Option<String> {
    let request = HttpRequest { method: Method::Get, url: url(port, "/readyz"), json_body: None, timeout_ms };
    match http.send(&request) {
        Ok(r) if r.status == 200 || r.status == 404 => None,
        Ok(r) => Some(format!("HTTP {}", r.status)),
        Err(e) => Some(e.to_string()),
    }
}

/// The Sesame line may follow the first 200 by a moment: look for a few intervals.
fn wait_for_sesame(caps: &Caps, layout: &SiblingLayout, timing: &crate::wit::Timing) -> bool {
    for attempt in 0..6 {
        if sesame_authenticated(caps.files, layout) {
            return true;
        }
        if attempt < 5 {
            caps.clock.sleep_ms(u64::from(timing.health_interval_ms));
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::caps::{HttpResponse, ServiceSpec, Services};
    use crate::wit::Timing;
    use crate::testing::*;
    use std::cell::Cell;

    const TIMING: Timing = Timing {
        health_timeout_ms: 60_000,
        health_interval_ms: 500,
        probe_timeout_ms: 2000,
        api_timeout_ms: 1000,
        api_attempts: 3,
        api_backoff_ms: 10,
    };

    fn ok(status: u16) -> Result<HttpResponse, HttpError> {
        Ok(HttpResponse { status, retry_after: None, body: vec![] })
    }

    fn world(http: FakeHttp) -> (World, SiblingLayout) {
        let world = World::new(http);
        let layout = SiblingLayout::new("/h", "nova");
        world.fs.add_file(&layout.stdout_log, "");
        world.fs.add_file(&layout.stderr_log, "");
        world.fs.add_file(&format!("{}/dist/index.js", layout.extensions_sesame), "");
        let spec = ServiceSpec { label: "com.openclaw.nova".into(), port: 18790 };
        world.services.install(&spec).unwrap();
        world.services.start("com.openclaw.nova").unwrap();
        (world, layout)
    }

    #[test]
    fn waits_until_healthz_answers_and_sees_sesame() {
        let n = Cell::new(0);
        let (world, layout) = world(FakeHttp::new(move |r| {
            if r.url.ends_with("/readyz") {
                return ok(200);
            }
            assert_eq!(r.url, "http://127.0.0.1:18790/healthz");
            n.set(n.get() + 1);
            if n.get() < 4 { Err(HttpError::ConnectionRefused) } else { ok(200) }
        }));
        world.fs.add_file(&layout.stdout_log, "[gateway] up\n[sesame] Authenticated successfully\n");
        let healthy = wait_healthy(&world.caps(), "com.openclaw.nova", 18790, &layout, &TIMING).unwrap();
        assert_eq!(healthy, Healthy { waited_ms: 1500, sesame_authenticated: true });
    }

    #[test]
    fn a_live_gateway_that_never_gets_ready_and_exits_is_a_failure_with_the_diagnosis() {
        let (world, layout) = world(FakeHttp::new(|r| if r.url.ends_with("/readyz") { ok(503) } else { ok(200) }));
        world.fs.add_file(&layout.stderr_log, "Gateway failed to start: Auth profile store requires legacy credential migration; run openclaw doctor --fix.\n");
        // Live but not ready when it is probed, and then gone (as OpenClaw gives up).
        world.services.stop("com.openclaw.nova").unwrap();
        world.services.exits_at_once.borrow_mut().insert("com.openclaw.nova".into(), 1);
        let err = wait_healthy(&world.caps(), "com.openclaw.nova", 18790, &layout, &TIMING).unwrap_err();
        assert!(err.starts_with("legacy credential files block the gateway"), "{err}");
        assert!(err.contains("the gateway exited with code 1"), "{err}");
        assert_eq!(world.http.lines(), ["GET http://127.0.0.1:18790/healthz", "GET http://127.0.0.1:18790/readyz"]);
    }

    #[test]
    fn a_gateway_without_readyz_is_up_once_live() {
        let (world, layout) = world(FakeHttp::new(|r| if r.url.ends_with("/readyz") { ok(404) } else { ok(200) }));
        assert!(wait_healthy(&world.caps(), "com.openclaw.nova", 18790, &layout, &TIMING).is_ok());
        assert_eq!(world.http.lines(), ["GET http://127.0.0.1:18790/healthz", "GET http://127.0.0.1:18790/readyz"]);
    }

    #[test]
    fn a_gateway_live_but_never_ready_times_out_naming_readyz() {
        let (world, layout) = world(FakeHttp::new(|r| if r.url.ends_with("/readyz") { ok(503) } else { ok(200) }));
        let err = wait_healthy(&world.caps(), "com.openclaw.nova", 18790, &layout, &TIMING).unwrap_err();
        assert!(err.starts_with("no answer on http://127.0.0.1:18790/readyz within 60 s (last probe: live, not ready: HTTP 503)"), "{err}");
    }

    #[test]
    fn falls_back_to_the_web_ui_when_healthz_is_missing() {
        let (world, _) = world(FakeHttp::new(|r| if r.url.ends_with("/healthz") { ok(404) } else { ok(200) }));
        let probes = probe_all(&world.http, &world.clock, &[18790], 100);
        assert!(probes[0].healthy);
        assert_eq!(world.http.lines(), ["GET http://127.0.0.1:18790/healthz", "GET http://127.0.0.1:18790/"]);
    }

    #[test]
    fn an_exited_gateway_fails_fast_with_the_diagnosis() {
        let (world, layout) = world(FakeHttp::new(|_| Err(HttpError::ConnectionRefused)));
        world.services.stop("com.openclaw.nova").unwrap();
        world.services.exits_at_once.borrow_mut().insert("com.openclaw.nova".into(), 78);
        world.fs.add_file(&layout.stderr_log, "Invalid config at /h/.openclaw-nova/openclaw.json: gateway.mode: required\n");
        let err = wait_healthy(&world.caps(), "com.openclaw.nova", 18790, &layout, &TIMING).unwrap_err();
        assert!(err.starts_with("invalid openclaw.json: the gateway exited with code 78"), "{err}");
        assert_eq!(world.http.lines().len(), 1);
    }

    #[test]
    fn a_port_conflict_in_stderr_fails_fast_even_while_running() {
        let (world, layout) = world(FakeHttp::new(|_| Err(HttpError::ConnectionRefused)));
        world.fs.add_file(&layout.stderr_log, "Error: Port 18790 is already in use\n");
        let err = wait_healthy(&world.caps(), "com.openclaw.nova", 18790, &layout, &TIMING).unwrap_err();
        assert!(err.starts_with("port conflict: port 18790"), "{err}");
        assert!(err.contains("Port 18790 is already in use"), "{err}");
    }

    #[test]
    fn gives_up_at_the_timeout_and_reports_progress() {
        let (world, layout) = world(FakeHttp::new(|_| Err(HttpError::Timeout)));
        let err = wait_healthy(&world.caps(), "com.openclaw.nova", 18790, &layout, &TIMING).unwrap_err();
        assert!(err.starts_with("no answer on http://127.0.0.1:18790/healthz within 60 s (last probe: timed out)"), "{err}");
        let notes: Vec<String> = world.progress.lines.borrow().iter().filter(|l| l.contains("still waiting")).cloned().collect();
        assert_eq!(notes.len(), 11, "one every 5 s of the 60: {notes:#?}");
        assert!(
            notes[1].ends_with("still waiting for com.openclaw.nova to answer on http://127.0.0.1:18790/healthz: 10 s of 60 s so far (last probe: timed out)"),
            "{notes:#?}"
        );
        assert!(err.ends_with("; the gateway is still running"), "{err}");
    }

    #[test]
    fn colour_codes_do_not_hide_log_lines() {
        let (world, layout) = world(FakeHttp::new(|_| ok(200)));
        world.fs.add_file(&layout.stdout_log, "\u{1b}[90m2026\u{1b}[39m \u{1b}[35m[sesame] Authenticated successfully\u{1b}[39m\n");
        assert!(sesame_authenticated(&world.fs, &layout));
        assert_eq!(strip_ansi("\u{1b}[33mwarn\u{1b}[0m done"), "warn done");
    }

    #[test]
    fn diagnosis_order_follows_the_spec() {
        let (world, layout) = world(FakeHttp::new(|_| ok(200)));
        let d = |stderr: &str, code| {
            world.fs.add_file(&layout.stderr_log, stderr);
            diagnose(&world.fs, &layout, 18790, Left::Exited(code))
        };
        assert!(d("No API key found for provider anthropic\n", Some(1)).starts_with("missing provider credentials"));
        assert!(d("boom\n", Some(78)).starts_with("invalid openclaw.json"));
        assert_eq!(d("whatever\n", Some(1)), "the gateway exited with code 1 before it answered on port 18790 (stderr: whatever)");
        assert_eq!(d("", None), "the gateway stopped before it answered on port 18790");
        world.fs.remove_tree(&layout.extensions_sesame).unwrap();
        assert!(d("whatever\n", Some(1)).starts_with("missing Sesame extension"));
    }
}
