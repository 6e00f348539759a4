//! The plan as the WIT record the `plan` command returns.

use super::Provisioning;
use crate::file_ops::FileOp;
use crate::journal::Journal;
use crate::layout::join;
use crate::sesame::{self, Call};
use crate::wit::{Context, PlannedCall, PlannedFile, ProvisionPlan};

impl Provisioning {
    /// Every file, service action and Sesame call, secrets withheld.
    pub fn to_record(&self, ctx: &Context) -> ProvisionPlan {
        let mut warnings = self.warnings.clone();
        warnings.extend(self.conflicts.iter().map(|c| format!("port conflict: {c}; provision will refuse unless --auto-port is given")));
        ProvisionPlan {
            handle: self.task.handle.clone(),
            oc_home: self.layout.root.clone(),
            port: self.port,
            label: self.label.clone(),
            files: self.files.iter().flat_map(|(_, op)| self.planned_files(ctx, op)).collect(),
            services: super::service::planned(ctx, &self.service, &self.task.handle, &self.layout),
            calls: self.planned_calls(ctx),
            warnings,
            timings: self.timings.clone(),
        }
    }

    fn planned_files(&self, ctx: &Context, op: &FileOp) -> Vec<PlannedFile> {
        let file = |path: &String, action: &str, mode: u32, size: usize, source: Option<String>, secret: bool| PlannedFile {
            path: path.clone(),
            action: action.into(),
            mode,
            size: size as u64,
            source,
            secret,
        };
        match op {
            FileOp::Dir { path, mode } => vec![file(path, "dir", *mode, 0, None, false)],
            FileOp::Write { path, mode, contents, secret } => vec![file(path, "file", *mode, contents.len(), None, *secret)],
            FileOp::Credentials { key, path, .. } => {
                let source = match key {
                    Some(_) => "the task's llmApiKey, written by the host",
                    None => "the lead's key for this provider only, written by the host",
                };
                vec![file(path, "file", 0o600, 0, Some(source.into()), true)]
            }
            FileOp::LeadPlugins { relative, .. } => relative
                .iter()
                .map(|r| file(&join(&self.layout.root, r), "copy", 0, 0, Some(join(&ctx.lead_home, r)), false))
                .collect(),
        }
    }

    /// The vault calls, the report, and the rollback report sent only on failure.
    fn planned_calls(&self, ctx: &Context) -> Vec<PlannedCall> {
        let root = sesame::api_root(&ctx.api_url);
        let planned = |call: &Call, purpose: &str| {
            let (method, path, body) = call.request();
            PlannedCall { method: method.as_str().into(), url: format!("{root}{path}"), body: Some(body.to_string()), purpose: purpose.into() }
        };
        let t = &self.task;
        let mut calls = vec![planned(&sesame::create_vault(t, &self.vault_name), "vault")];
        calls.extend(sesame::vault_members(t, "<vault-id>").iter().map(|c| planned(c, "vault")));
        calls.extend(sesame::report_calls(t, self.port, true, &ctx.host_name).iter().map(|c| planned(c, "report")));
        let journal = Journal::start(t, self.port, String::new());
        calls.extend(sesame::rollback_calls(&journal, "<reason>").iter().map(|c| planned(c, "rollback, only on failure")));
        calls
    }
}
