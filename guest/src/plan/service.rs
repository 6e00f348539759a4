//! The service step: the gateway service to install and start, and how a plan shows it.

use crate::caps::ServiceSpec;
use crate::layout::SiblingLayout;
use crate::wit::{Context, PlannedService};

/// The service of `label`, its gateway on `port` (the host renders the definition).
pub fn spec(label: &str, port: u16) -> ServiceSpec {
    ServiceSpec { label: label.into(), port }
}

/// The service actions of a provision of `handle`: install, start, wait until healthy.
pub fn planned(ctx: &Context, spec: &ServiceSpec, handle: &str, layout: &SiblingLayout) -> Vec<PlannedService> {
    let command = format!("{} --profile {handle} gateway run --port {}", ctx.openclaw_bin, spec.port);
    let logs = layout.stdout_log.rsplit_once('/').map_or("", |(dir, _)| dir);
    let action = |action: &str, detail: String| PlannedService { action: action.into(), label: spec.label.clone(), detail };
    vec![
        action("install", format!("{command} (logs in {logs})")),
        action("start", format!("{} backend", ctx.service_backend.name())),
        action(
            "wait",
            format!("until http://127.0.0.1:{}/healthz answers 200 (at most {} s)", spec.port, ctx.timing.health_timeout_ms / 1000),
        ),
    ]
}
