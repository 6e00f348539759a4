//! Concurrent provisions for one lead: N at once against a stand-in gateway that answers
//! after 3 s — as N processes started together, and as one run of N tasks — and against
//! real OpenClaw gateways. Every provision asks for the same port with `--auto-port`, as a
//! lead provisioning a family would. With `BENCH_BASELINE=<an earlier agent-provisioner>`
//! the separate processes are also run with that binary, for a before and after.

use super::support::{self, SesameStandin, TestHome};
use super::{Measured, fmt, measure, stats};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// A home for one round: its gateways, a Sesame stand-in, and `n` tasks for one port.
struct Family {
    t: TestHome,
    _sesame: SesameStandin,
    tasks: Vec<PathBuf>,
}

impl Family {
    fn new(n: usize, gateway: impl FnOnce(&Path) -> PathBuf, extra: &[&str]) -> Self {
        let sesame = SesameStandin::start(Some(support::LEAD_KEY));
        let mut t = TestHome::new(&sesame.url);
        t.openclaw = gateway(t.temp.path());
        t.extra = ["--quiet", "--audit", "none", "--api-attempts", "1"].iter().chain(extra).map(|s| s.to_string()).collect();
        let tasks = (0..n).map(|i| t.task(&format!("sib{i}"), 20000, |_| {})).collect();
        Self { t, _sesame: sesame, tasks }
    }

    /// `provision` of `tasks` with this home's options, run by `bin`.
    fn command(&self, bin: &Path, tasks: &[PathBuf]) -> Command {
        let mut args: Vec<String> = ["--json", "provision", "--auto-port", "--port-range-start", "20000"].map(String::from).to_vec();
        tasks.iter().for_each(|t| args.extend(["--task".to_string(), t.display().to_string()]));
        let template = self.t.command(&args.iter().map(String::as_str).collect::<Vec<_>>());
        let mut cmd = Command::new(bin);
        cmd.args(template.get_args());
        template.get_envs().for_each(|(k, v)| match v {
            Some(v) => drop(cmd.env(k, v)),
            None => drop(cmd.env_remove(k)),
        });
        cmd
    }

    /// Every task as its own process, all started at once: the wall time from the first
    /// start to the last exit, and each process.
    fn separate(&self, bin: &Path) -> (f64, Vec<Measured>) {
        let started = Instant::now();
        let runs: Vec<_> = self.tasks.iter().map(|task| {
            let mut cmd = self.command(bin, std::slice::from_ref(task));
            std::thread::spawn(move || measure(&mut cmd))
        }).collect();
        let done: Vec<Measured> = runs.into_iter().map(|r| r.join().unwrap()).collect();
        for m in &done {
            assert_eq!(m.code, 0, "{}{}", m.stdout, m.stderr);
        }
        (started.elapsed().as_secs_f64() * 1000.0, done)
    }

    /// Every task in one run of this binary.
    fn together(&self) -> Measured {
        let m = measure(&mut self.command(Path::new(support::binary()), &self.tasks));
        assert_eq!(m.code, 0, "{}{}", m.stdout, m.stderr);
        m
    }
}

fn ratio(samples: &[f64], one: &[f64]) -> String {
    format!("{:.2}×", stats(samples).0 / stats(one).0)
}

/// The figures of one N: wall times of N processes at once, of one run of N tasks, of N
/// processes of the baseline binary, and each process's peak RSS.
#[derive(Default)]
struct Row {
    separate: Vec<f64>,
    together: Vec<f64>,
    before: Vec<f64>,
    rss: Vec<f64>,
}

/// `reps` rounds of N provisions at once against a gateway that answers after 3 s.
fn slow_rounds(n: usize, reps: usize, baseline: Option<&Path>) -> Row {
    let slow = || Family::new(n, |dir: &Path| support::fake_openclaw(dir, "slow-start:3000"), &["--health-interval-ms", "100"]);
    let mut row = Row::default();
    for _ in 0..reps {
        let (wall, runs) = slow().separate(Path::new(support::binary()));
        row.separate.push(wall);
        row.rss.extend(runs.iter().map(|m| m.rss_mb));
        row.together.push(slow().together().wall_ms);
        if let Some(bin) = baseline {
            row.before.push(slow().separate(bin).0);
        }
    }
    row
}

/// N = 1, 2, 4, 8 provisions at once against a gateway that answers after 3 s.
pub fn stand_in(quick: bool) {
    let reps = if quick { 3 } else { 5 };
    let baseline = std::env::var_os("BENCH_BASELINE").map(PathBuf::from);
    let rows: Vec<(usize, Row)> = [1usize, 2, 4, 8].into_iter().map(|n| (n, slow_rounds(n, reps, baseline.as_deref()))).collect();
    println!("## Concurrent provisions (stand-in gateway answering after 3 s)\n");
    println!("{reps} rounds per figure, each in a fresh home; every provision asks for port 20000 with `--auto-port`.\n");
    println!("| N | N processes at once: wall | ratio to N = 1 | one run of N tasks: wall | ratio | provisioner peak RSS | baseline, N processes | ratio |");
    println!("|---|---|---|---|---|---|---|---|");
    let one = &rows[0].1;
    for (n, r) in &rows {
        let (base, base_ratio) = if r.before.is_empty() { ("–".into(), "–".into()) } else { (fmt(&r.before, "ms"), ratio(&r.before, &one.before)) };
        let (separate, together) = ((fmt(&r.separate, "ms"), ratio(&r.separate, &one.separate)), (fmt(&r.together, "ms"), ratio(&r.together, &one.together)));
        println!("| {n} | {} | {} | {} | {} | {} | {base} | {base_ratio} |", separate.0, separate.1, together.0, together.1, fmt(&r.rss, "MB"));
    }
    println!();
}

/// Peak RSS (VmHWM, summed) of the processes whose environment makes `home` their
/// OpenClaw state directory (a sibling's gateway), in MB, and how many there are.
fn gateway_rss(home: &Path) -> (f64, usize) {
    let needle = format!("OPENCLAW_STATE_DIR={}", home.display());
    let pids = std::fs::read_dir("/proc").unwrap().flatten().filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok());
    let peaks: Vec<f64> = pids
        .filter(|pid| std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|env| env.split(|b| *b == 0).any(|v| v == needle.as_bytes())))
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
        .filter_map(|status| status.lines().find_map(|l| l.strip_prefix("VmHWM:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok()))
        .collect();
    (peaks.iter().sum::<f64>() / 1024.0, peaks.len())
}

/// The installed real OpenClaw (`scripts/install-openclaw.sh`), wrapped to stay offline.
fn real_openclaw(dir: &Path) -> PathBuf {
    let real = support::repo().join(".tools/bin/openclaw");
    let path = dir.join("openclaw-offline");
    let script = format!("#!/bin/sh\nexport OPENCLAW_DISABLE_BONJOUR=1 OPENCLAW_OFFLINE=1\nexec '{}' \"$@\"\n", real.display());
    std::fs::write(&path, script).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// N = 1, 2, 3 real OpenClaw siblings at once (separate processes): wall, each sibling's
/// time from its provision's start to healthy, peak RSS of the provisioners and gateways.
pub fn real(quick: bool) {
    if !support::repo().join(".tools/bin/openclaw").exists() {
        println!("## Concurrent provisions of real OpenClaw siblings\n\nSkipped: run scripts/install-openclaw.sh first.\n");
        return;
    }
    let reps = if quick { 1 } else { 3 };
    println!("## Concurrent provisions of real OpenClaw siblings (openclaw 2026.9.6, direct backend)\n");
    println!("{reps} round(s) per row, each in a fresh home; N processes started at once.\n");
    println!("| N | wall | per sibling: provision → healthy | of which health wait | provisioner peak RSS | gateway peak RSS (per sibling, all its processes) |");
    println!("|---|---|---|---|---|---|");
    for n in [1usize, 2, 3] {
        let (mut wall, mut healthy, mut health, mut rss, mut gateways, mut processes) = (vec![], vec![], vec![], vec![], vec![], 0);
        for _ in 0..reps {
            let f = Family::new(n, real_openclaw, &["--health-timeout", "180", "--health-interval-ms", "500", "--probe-timeout-ms", "2000"]);
            let (w, runs) = f.separate(Path::new(support::binary()));
            wall.push(w);
            for m in &runs {
                let steps: Value = serde_json::from_str::<Value>(&m.stdout).unwrap()["outcome"]["steps"].clone();
                let ms = |step: &str| steps.as_array().unwrap().iter().filter(|s| step.is_empty() || s["step"] == step).map(|s| s["millis"].as_f64().unwrap()).sum::<f64>();
                healthy.push(ms("") / 1000.0);
                health.push(ms("health") / 1000.0);
                rss.push(m.rss_mb);
            }
            for i in 0..n {
                let (mb, count) = gateway_rss(&f.t.sibling(&format!("sib{i}")));
                gateways.push(mb);
                processes = processes.max(count);
            }
        }
        let wall: Vec<f64> = wall.iter().map(|w| w / 1000.0).collect();
        println!("| {n} | {} | {} | {} | {} | {} ({processes} processes) |", fmt(&wall, "s"), fmt(&healthy, "s"), fmt(&health, "s"), fmt(&rss, "MB"), fmt(&gateways, "MB"));
    }
    println!();
}
