//! Benchmarks of the real (release) binary and component; prints Markdown tables of
//! medians with min/max. Not a test: nothing here asserts on time.
//!
//!     cargo bench -p host-runner --bench bench            # full run (about 10 minutes)
//!     cargo bench -p host-runner --bench bench -- --quick # fewer runs and siblings
//!     cargo bench -p host-runner --bench bench -- --only health  # one section: start,
//!                                  # unreachable, provision, overhead, health, growth, concurrency, openclaw
//!
//! Sections: component start (cold vs warm), plan and provision (with a per-step
//! breakdown), sandbox overhead (the same guest logic native vs in the component), family
//! health at 10/100/300 siblings (all healthy, and 10% hanging), cost growth with the
//! size of the trees copied and archived, and concurrent provisions (a slow stand-in
//! gateway at N = 1, 2, 4, 8; real OpenClaw at N = 1, 2, 3).

use guest::caps::*;
use guest::wit::{Context, ProvisionRequest, Timing};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[path = "../../tests/support/mod.rs"]
mod support;

#[path = "sections/concurrency.rs"]
mod concurrency;

use support::{SesameStandin, TestHome, binary};

const GATEWAY: &str = env!("CARGO_BIN_EXE_gateway-standin");

/// Median, min and max of samples.
fn stats(samples: &[f64]) -> (f64, f64, f64) {
    let mut s = samples.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (s[s.len() / 2], s[0], s[s.len() - 1])
}

fn fmt(samples: &[f64], unit: &str) -> String {
    let (median, min, max) = stats(samples);
    format!("{median:.1} {unit} ({min:.1}–{max:.1})")
}

/// One run of a process: wall time, peak RSS, output.
struct Measured {
    wall_ms: f64,
    rss_mb: f64,
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `cmd` to completion, measuring its wall time and peak RSS (wait4's rusage).
#[allow(clippy::zombie_processes, reason = "reaped by wait4, which also gives its rusage")]
fn measure(cmd: &mut Command) -> Measured {
    let started = Instant::now();
    let child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
    let pid = child.id() as i32;
    let out_handle = child.stdout.unwrap();
    let err_handle = child.stderr.unwrap();
    let stdout = std::thread::spawn(move || std::io::read_to_string(out_handle).unwrap_or_default());
    let stderr = std::thread::spawn(move || std::io::read_to_string(err_handle).unwrap_or_default());
    let mut status = 0;
    // SAFETY: plain wait4 on our own child with valid out-pointers.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall_ms = started.elapsed().as_secs_f64() * 1000.0;
    Measured {
        wall_ms,
        rss_mb: usage.ru_maxrss as f64 / 1024.0,
        code: libc::WEXITSTATUS(status),
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

/// A temporary home with the example lead and an instant stand-in gateway (the tests'
/// [`TestHome`], which kills every gateway it started when dropped), and a Sesame stand-in.
struct Bench {
    t: TestHome,
    _sesame: SesameStandin,
}

impl Bench {
    fn new() -> Self {
        let sesame = SesameStandin::start(Some(support::LEAD_KEY));
        let mut t = TestHome::new(&sesame.url);
        t.extra = ["--quiet", "--audit", "none", "--health-interval-ms", "20", "--api-attempts", "1"].map(String::from).to_vec();
        let bench = Self { t, _sesame: sesame };
        bench.run(&["provision", "--plan", "--task", bench.task("warmup").to_str().unwrap()]); // a warm component cache
        bench
    }

    fn cmd(&self, args: &[&str]) -> Command {
        self.t.command(args)
    }

    /// The example task for `handle` (its port is taken by --auto-port from 20000 on).
    fn task(&self, handle: &str) -> PathBuf {
        self.t.task(handle, 20000, |_| {})
    }

    fn provision(&self, handle: &str) -> Measured {
        let task = self.task(handle);
        let m = measure(&mut self.cmd(&["--json", "provision", "--auto-port", "--port-range-start", "20000", "--task", task.to_str().unwrap()]));
        assert_eq!(m.code, 0, "provision {handle}: {}{}", m.stdout, m.stderr);
        m
    }

    fn run(&self, args: &[&str]) -> Measured {
        let m = measure(&mut self.cmd(args));
        assert!(m.code == 0, "{args:?}: {}{}", m.stdout, m.stderr);
        m
    }
}

fn timings(stderr: &str) -> Value {
    stderr.lines().find_map(|l| l.strip_prefix("timings: ")).map(|t| serde_json::from_str(t).unwrap()).expect("--timings line")
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpu.lines().find_map(|l| l.strip_prefix("model name")).map(|m| m.trim_start_matches([' ', '\t', ':']).to_string()).unwrap_or_default();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gb = mem.lines().next().and_then(|l| l.split_whitespace().nth(1)).and_then(|k| k.parse::<f64>().ok()).unwrap_or(0.0) / 1024.0 / 1024.0;
    let rustc = Command::new("rustc").arg("--version").output().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()).unwrap_or_default();
    format!("{cores} cores ({model}), {mem_gb:.0} GiB, {rustc}, wasmtime 48, release build")
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let [_, flag, home, api_url, task] = &args[..]
        && flag == "--native-plan"
    {
        println!("{}", native::plan_timings(Path::new(home), api_url, Path::new(task)));
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let only = args.iter().position(|a| a == "--only").and_then(|i| args.get(i + 1));
    let runs = if quick { 5 } else { 20 };
    println!("# agent-provisioner benchmarks\n\nMachine: {}\n\nRuns per figure: {runs}; figures are median (min–max).\n", machine());
    let sections: [(&str, &dyn Fn()); 8] = [
        ("start", &|| start_and_plan(runs)),
        ("unreachable", &|| unreachable(runs.min(5))),
        ("provision", &|| provision(runs)),
        ("overhead", &|| overhead(runs)),
        ("health", &|| health(quick)),
        ("growth", &|| growth(quick)),
        ("concurrency", &|| concurrency::stand_in(quick)),
        ("openclaw", &|| concurrency::real(quick)),
    ];
    for (name, run) in sections {
        if only.is_none_or(|o| o == name) {
            run();
        }
    }
}

/// A provision against a Sesame that cannot be reached (a closed loopback port): the exit
/// code, the time to fail, and what it wrote (nothing, or the check does not hold).
fn unreachable(runs: usize) {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let (mut wall, mut codes, mut written) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..runs {
        let mut t = TestHome::new(&url);
        t.extra = ["--quiet", "--audit", "none"].map(String::from).to_vec();
        let task = t.task(&format!("u{i}"), 20000, |_| {});
        let before = support::files_under(&t.home);
        let m = measure(&mut t.command(&["provision", "--task", task.to_str().unwrap()]));
        let after = support::files_under(&t.home);
        wall.push(m.wall_ms);
        codes.push(m.code);
        written.push(after.keys().filter(|k| !before.contains_key(*k)).count() as f64);
    }
    println!("## Sesame unreachable (a closed loopback port)\n");
    println!("| measure | median (min–max) |\n|---|---|");
    println!("| exit codes | {codes:?} |");
    println!("| time to fail, process wall | {} |", fmt(&wall, "ms"));
    println!("| new paths under $HOME | {} |", fmt(&written, ""));
    println!();
}

/// Component start, cold vs warm, and the plan.
fn start_and_plan(runs: usize) {
    let b = Bench::new();
    let task = b.task("nova");
    let plan = ["--timings", "--json", "provision", "--plan", "--task", task.to_str().unwrap()];
    let version: Vec<f64> = (0..runs).map(|_| measure(Command::new(binary()).arg("--version")).wall_ms).collect();
    let (mut cold_wall, mut cold_first, mut cold_load, mut cold_rss) = (vec![], vec![], vec![], vec![]);
    let cold_cache = b.t.temp.path().join("cold-cache");
    for _ in 0..runs.min(10) {
        let _ = std::fs::remove_dir_all(&cold_cache);
        let mut args = vec!["--cache-dir", cold_cache.to_str().unwrap()];
        args.extend_from_slice(&plan);
        let m = b.run(&args);
        let t = timings(&m.stderr);
        assert_eq!(t["component"], "compiled");
        cold_wall.push(m.wall_ms);
        cold_rss.push(m.rss_mb);
        cold_first.push(t["first_guest_instruction_us"].as_f64().unwrap() / 1000.0);
        cold_load.push(t["component_load_us"].as_f64().unwrap() / 1000.0);
    }
    // The first command after `skill install`, which compiles the component into the cache.
    let (mut install_wall, mut installed_wall) = (vec![], vec![]);
    for _ in 0..runs.min(10) {
        let _ = std::fs::remove_dir_all(&cold_cache);
        install_wall.push(b.run(&["--cache-dir", cold_cache.to_str().unwrap(), "skill", "install", "--no-bin-link"]).wall_ms);
        let mut args = vec!["--cache-dir", cold_cache.to_str().unwrap()];
        args.extend_from_slice(&plan);
        let m = b.run(&args);
        assert_eq!(timings(&m.stderr)["component"], "cached", "skill install left a compiled component");
        installed_wall.push(m.wall_ms);
    }
    let (mut wall, mut first, mut load, mut call, mut rss) = (vec![], vec![], vec![], vec![], vec![]);
    for _ in 0..runs {
        let m = b.run(&plan);
        let t = timings(&m.stderr);
        assert_eq!(t["component"], "cached");
        wall.push(m.wall_ms);
        first.push(t["first_guest_instruction_us"].as_f64().unwrap() / 1000.0);
        load.push(t["component_load_us"].as_f64().unwrap() / 1000.0);
        call.push(t["call_us"].as_f64().unwrap() / 1000.0);
        rss.push(m.rss_mb);
    }
    println!("## Component start and `provision --plan`\n");
    println!("| measure | cold (empty cache: compile) | warm (precompiled artifact) | target |");
    println!("|---|---|---|---|");
    println!("| `--version` (no component), process wall | {} | {} | |", fmt(&version, "ms"), fmt(&version, "ms"));
    println!("| component load | {} | {} | |", fmt(&cold_load, "ms"), fmt(&load, "ms"));
    println!("| process start → first guest instruction | {} | {} | warm ≤ 20 ms |", fmt(&cold_first, "ms"), fmt(&first, "ms"));
    println!("| `provision --plan`, guest call | | {} | |", fmt(&call, "ms"));
    println!("| `provision --plan`, process wall | {} | {} | warm ≤ 50 ms |", fmt(&cold_wall, "ms"), fmt(&wall, "ms"));
    println!("| `provision --plan`, peak RSS | {} | {} | ≤ 100 MB |", fmt(&cold_rss, "MB"), fmt(&rss, "MB"));
    println!("| `skill install` (compiles into the cache), process wall | {} | | |", fmt(&install_wall, "ms"));
    println!("| first `provision --plan` after `skill install`, process wall | | {} | ≤ 50 ms |", fmt(&installed_wall, "ms"));
    println!();
}

/// A full provision with an instant gateway, per step.
fn provision(runs: usize) {
    let b = Bench::new();
    // Wall times and peak RSS of each command, in the order a sibling's life runs them.
    let commands = ["provision", "list", "ports", "health", "stop", "start", "restart", "deprovision"];
    let mut wall: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut rss: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut steps: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for i in 0..runs {
        let handle = format!("p{i}");
        for command in commands {
            let m = match command {
                "provision" => b.provision(&handle),
                "list" | "ports" | "health" => b.run(&["--json", command]),
                _ => b.run(&["--json", command, &handle]),
            };
            if command == "provision" {
                let out: Value = serde_json::from_str(&m.stdout).unwrap();
                for s in out["outcome"]["steps"].as_array().unwrap() {
                    steps.entry(s["step"].as_str().unwrap().to_string()).or_default().push(s["millis"].as_f64().unwrap());
                }
            }
            wall.entry(command).or_default().push(m.wall_ms);
            rss.entry(command).or_default().push(m.rss_mb);
        }
    }
    println!("## Full provision (loopback Sesame stand-in, instant stand-in gateway)\n");
    println!("| measure | median (min–max) | target |\n|---|---|---|");
    println!("| `provision`, process wall | {} | ≤ 250 ms |", fmt(&wall["provision"], "ms"));
    for (step, ms) in &steps {
        println!("| step `{step}` | {} | |", fmt(ms, "ms"));
    }
    println!();
    println!("### Every command of a sibling's life (one sibling registered)\n");
    println!("| command | process wall | peak RSS (target ≤ 100 MB) |\n|---|---|---|");
    for command in commands {
        println!("| `{command}` | {} | {} |", fmt(&wall[command], "ms"), fmt(&rss[command], "MB"));
    }
    println!();
}

/// The same plan logic natively (over the real disk) and in the component.
///
/// The component runs once per process (as users run it), so the native side is measured
/// the same way — first call in a fresh process (this bench binary re-run with
/// `--native-plan`) — and also warm, repeated in one process.
fn overhead(runs: usize) {
    let b = Bench::new();
    let task_path = b.task("nova");
    let task = task_path.to_str().unwrap();
    let mut wasm: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut fresh: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut warm: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let record = |into: &mut BTreeMap<String, Vec<f64>>, timings: &Value| {
        for t in timings.as_array().unwrap() {
            into.entry(t["phase"].as_str().unwrap().into()).or_default().push(t["micros"].as_f64().unwrap());
        }
    };
    for _ in 0..runs {
        let m = b.run(&["--json", "provision", "--plan", "--task", task]);
        record(&mut wasm, &serde_json::from_str::<Value>(&m.stdout).unwrap()["plan"]["timings"]);
        let home = b.t.home.to_str().unwrap();
        let m = measure(Command::new(std::env::current_exe().unwrap()).args(["--native-plan", home, &b.t.api_url, task]));
        assert_eq!(m.code, 0, "{}", m.stderr);
        record(&mut fresh, &serde_json::from_str(&m.stdout).unwrap());
    }
    for _ in 0..runs {
        record(&mut warm, &native::plan_timings(&b.t.home, &b.t.api_url, &task_path));
    }
    println!("## Sandbox overhead: the same guest code native vs in the component\n");
    println!("All run `plan` on the example over the real disk, timed inside the guest code (host calls count, instantiation does not). The ratio compares like with like: the first call in a fresh process, which is how the tool runs. `validate` includes probing the 103 ports the gateway would claim, which is host work on both sides; `render` (template rendering) is pure computation.\n");
    println!("| phase | native, fresh process | component, fresh process | ratio | native, warm (repeated in one process) | target |\n|---|---|---|---|---|---|");
    for phase in ["validate", "lead context", "config", "render", "plan"] {
        let (n, c, w) = (&fresh[phase], &wasm[phase], &warm[phase]);
        let ratio = stats(c).0 / stats(n).0;
        let target = if phase == "plan" { "≤ 1.5×" } else { "" };
        println!("| {phase} | {} | {} | {ratio:.2}× | {} | {target} |", fmt(n, "µs"), fmt(c, "µs"), fmt(w, "µs"));
    }
    println!();
}

/// Family health at scale: all healthy, then with 10% hanging.
fn health(quick: bool) {
    let sizes: &[usize] = if quick { &[10, 30] } else { &[10, 100, 300] };
    let b = Bench::new();
    let probe_ms = 2000;
    let probe = probe_ms.to_string();
    println!("## Family health (`health --json`, probe timeout {probe_ms} ms)\n");
    println!("| siblings | all healthy: wall | peak RSS | 10% hanging: wall | peak RSS | targets |\n|---|---|---|---|---|---|");
    let mut count = 0;
    let mut hangers: Vec<support::ProcessGuard> = Vec::new();
    for &size in sizes {
        while count < size {
            b.provision(&format!("s{count}"));
            count += 1;
        }
        let healthy: Vec<Measured> = (0..5).map(|_| b.run(&["--json", "--probe-timeout-ms", &probe, "health"])).collect();
        let out: Value = serde_json::from_str(&healthy[0].stdout).unwrap();
        assert!(out["health"]["siblings"].as_array().unwrap().iter().all(|s| s["healthy"] == true));
        // 10% hang: their gateways stop, and something that accepts and never answers takes the port.
        let registry: Value = serde_json::from_str(&std::fs::read_to_string(b.t.home.join(".openclaw/agent-provisioner/family.json")).unwrap()).unwrap();
        let members = registry["siblings"].as_array().unwrap().clone();
        let hanging: Vec<&Value> = members.iter().step_by(10).collect();
        for m in &hanging {
            b.run(&["stop", m["handle"].as_str().unwrap()]);
            let home = b.t.home.join(format!(".openclaw-{}", m["handle"].as_str().unwrap()));
            let child = Command::new(GATEWAY)
                .args(["--mode", "hang", "--profile", "x", "gateway", "run", "--port", &m["port"].to_string()])
                .env("OPENCLAW_STATE_DIR", &home)
                .env("OPENCLAW_CONFIG_PATH", home.join("openclaw.json"))
                .stdout(Stdio::null())
                .spawn()
                .unwrap();
            hangers.push(support::ProcessGuard(child));
        }
        std::thread::sleep(Duration::from_millis(300));
        let hung: Vec<Measured> = (0..5).map(|_| b.run(&["--json", "--probe-timeout-ms", &probe, "health"])).collect();
        let out: Value = serde_json::from_str(&hung[0].stdout).unwrap();
        let down = out["health"]["siblings"].as_array().unwrap().iter().filter(|s| s["healthy"] == false).count();
        assert_eq!(down, hanging.len());
        let wall = |ms: &[Measured]| ms.iter().map(|m| m.wall_ms).collect::<Vec<_>>();
        let rss = |ms: &[Measured]| ms.iter().map(|m| m.rss_mb).collect::<Vec<_>>();
        println!(
            "| {size} | {} | {} | {} ({down} hung) | {} | healthy 100 ≤ 1 s; hanging ≤ {:.0} ms |",
            fmt(&wall(&healthy), "ms"),
            fmt(&rss(&healthy), "MB"),
            fmt(&wall(&hung), "ms"),
            fmt(&rss(&hung), "MB"),
            probe_ms as f64 * 1.2
        );
        // Bring the hung ones back for the next size.
        hangers.clear();
        std::thread::sleep(Duration::from_millis(200));
        for m in &hanging {
            b.run(&["start", m["handle"].as_str().unwrap()]);
        }
    }
    println!();
}

/// Plan and provision vs the size of the lead's trees copied; deprovision vs home size.
fn growth(quick: bool) {
    println!("## Cost growth\n");
    println!("| lead's extension tree | `provision --plan` wall | `provision` wall | step `config` (copies) | copy rate |\n|---|---|---|---|---|");
    let sizes: &[usize] = if quick { &[10, 1000] } else { &[10, 1000, 10000] };
    for &files in sizes {
        let b = Bench::new();
        let ext = b.t.home.join(".openclaw/extensions/sesame/lib");
        std::fs::create_dir_all(&ext).unwrap();
        let body = vec![b'x'; 1024];
        for i in 0..files {
            let dir = ext.join(format!("d{}", i / 100));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(format!("f{i}.js")), &body).unwrap();
        }
        let task = b.task("grow");
        let plans: Vec<f64> = (0..5).map(|_| b.run(&["--json", "provision", "--plan", "--task", task.to_str().unwrap()]).wall_ms).collect();
        let (mut walls, mut configs) = (vec![], vec![]);
        for i in 0..3 {
            let handle = format!("grow{i}");
            let m = b.provision(&handle);
            let out: Value = serde_json::from_str(&m.stdout).unwrap();
            let config = out["outcome"]["steps"].as_array().unwrap().iter().find(|s| s["step"] == "config").unwrap()["millis"].as_f64().unwrap();
            walls.push(m.wall_ms);
            configs.push(config);
            b.run(&["deprovision", &handle]);
        }
        let mb = files as f64 / 1024.0;
        let rate = mb / (stats(&configs).0.max(1.0) / 1000.0);
        println!("| {files} files of 1 KiB | {} | {} | {} | {rate:.1} MB/s |", fmt(&plans, "ms"), fmt(&walls, "ms"), fmt(&configs, "ms"));
    }
    println!();
    println!("| sibling home size | `deprovision` wall (archive, verify, remove) | rate |\n|---|---|---|");
    let homes: &[usize] = if quick { &[10] } else { &[10, 200] };
    for &mb in homes {
        let b = Bench::new();
        let mut walls = vec![];
        for i in 0..3 {
            let handle = format!("big{i}");
            b.provision(&handle);
            let dir = b.t.home.join(format!(".openclaw-{handle}/workspace/data"));
            std::fs::create_dir_all(&dir).unwrap();
            // Incompressible data: a simple xorshift stream.
            let mut x: u64 = 0x9E3779B97F4A7C15 ^ i as u64;
            let mut chunk = vec![0u8; 1 << 20];
            for n in 0..mb {
                for byte in chunk.iter_mut() {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    *byte = x as u8;
                }
                std::fs::write(dir.join(format!("blob{n}")), &chunk).unwrap();
            }
            walls.push(b.run(&["deprovision", &handle]).wall_ms);
        }
        let rate = mb as f64 / (stats(&walls).0 / 1000.0);
        println!("| {mb} MB | {} | {rate:.0} MB/s |", fmt(&walls, "ms"));
    }
    println!();
}

/// The guest's capabilities implemented natively over the real disk, for the overhead
/// comparison (no grants, no audit: the raw work).
mod native {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// Runs `plan` natively once; its phase timings as JSON.
    pub fn plan_timings(home: &Path, api_url: &str, task: &Path) -> Value {
        let request = ProvisionRequest { task_json: std::fs::read_to_string(task).unwrap(), auto_port: false, port_range_start: 18790, resume: false };
        let plan = guest::commands::plan(World.caps(), &context(home, api_url), &request).expect("native plan");
        plan.timings.iter().map(|t| serde_json::json!({ "phase": t.phase, "micros": t.micros })).collect()
    }

    fn context(home: &Path, api_url: &str) -> Context {
        Context {
            home: home.display().to_string(),
            lead_home: home.join(".openclaw").display().to_string(),
            lead_handles: vec![],
            lead_plugins: vec!["extensions/sesame".into(), "skills/sesame".into()],
            lead_provider_keys: vec!["anthropic".into()],
            lead_workspace_id: None,
            api_url: api_url.into(),
            host_name: "bench".into(),
            host_os: "linux".into(),
            host_arch: "x86_64".into(),
            openclaw_bin: "/usr/bin/openclaw".into(),
            service_backend: ServiceBackend::Direct,
            credential_layout: CredentialLayout::EnvFile,
            timing: Timing { health_timeout_ms: 60000, health_interval_ms: 500, probe_timeout_ms: 2000, api_timeout_ms: 15000, api_attempts: 4, api_backoff_ms: 500 },
        }
    }

    fn io(path: &str, e: std::io::Error) -> FsError {
        match e.kind() {
            std::io::ErrorKind::NotFound => FsError::NotFound(path.into()),
            _ => FsError::Io(format!("{path}: {e}")),
        }
    }

    fn meta(m: &std::fs::Metadata) -> EntryMeta {
        let kind = if m.is_symlink() { EntryKind::Symlink } else if m.is_dir() { EntryKind::Directory } else { EntryKind::File };
        EntryMeta { kind, size: m.len(), mode: m.permissions().mode() & 0o7777 }
    }

    pub struct World;

    impl World {
        pub fn caps(&self) -> Caps<'_> {
            Caps { files: self, services: self, http: self, clock: self, ports: self, progress: self, random: self, family: self, adoption: self }
        }
    }

    impl Files for World {
        fn read(&self, path: &str) -> Result<Vec<u8>, FsError> {
            std::fs::read(path).map_err(|e| io(path, e))
        }
        fn write_atomic(&self, path: &str, _: &[u8], _: u32) -> Result<(), FsError> {
            Err(FsError::Denied(format!("{path}: a plan writes nothing")))
        }
        fn create_dir_all(&self, path: &str, _: u32) -> Result<(), FsError> {
            Err(FsError::Denied(format!("{path}: a plan writes nothing")))
        }
        fn metadata(&self, path: &str) -> Result<Option<EntryMeta>, FsError> {
            match std::fs::symlink_metadata(path) {
                Ok(m) => Ok(Some(meta(&m))),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(io(path, e)),
            }
        }
        /// One level (the journals' directory, which a plan lists), sorted.
        fn walk_tree(&self, path: &str) -> Result<Vec<String>, FsError> {
            let entries = std::fs::read_dir(path).map_err(|e| io(path, e))?;
            let mut names: Vec<String> = entries.map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned())).collect::<Result<_, _>>().map_err(|e| io(path, e))?;
            names.sort();
            Ok(names)
        }
        fn remove_tree(&self, path: &str) -> Result<(), FsError> {
            Err(FsError::Denied(path.into()))
        }
        fn archive_tree(&self, source: &str, _: &str) -> Result<TreeStats, FsError> {
            Err(FsError::Denied(source.into()))
        }
        fn check_archivable(&self, source: &str) -> Result<TreeStats, FsError> {
            Err(FsError::Denied(source.into()))
        }
        fn list_archive(&self, archive: &str) -> Result<Vec<String>, FsError> {
            Err(FsError::Denied(archive.into()))
        }
        fn restore_archive(&self, archive: &str, _: &str) -> Result<RestoredTree, FsError> {
            Err(FsError::Denied(archive.into()))
        }
        fn copy_lead_plugins(&self, handle: &str) -> Result<Vec<String>, FsError> {
            Err(FsError::Denied(handle.into()))
        }
        fn write_credentials(&self, handle: &str, _: &str, _: CredentialLayout, _: Option<&str>) -> Result<String, FsError> {
            Err(FsError::Denied(handle.into()))
        }
    }

    impl Services for World {
        fn install(&self, spec: &ServiceSpec) -> Result<Installed, ServiceError> {
            Err(ServiceError::Denied(spec.label.clone()))
        }
        fn start(&self, label: &str) -> Result<(), ServiceError> {
            Err(ServiceError::Denied(label.into()))
        }
        fn stop(&self, label: &str) -> Result<(), ServiceError> {
            Err(ServiceError::Denied(label.into()))
        }
        fn uninstall(&self, label: &str) -> Result<(), ServiceError> {
            Err(ServiceError::Denied(label.into()))
        }
        fn status(&self, _: &str) -> Result<ServiceStatus, ServiceError> {
            // Nothing is installed: a plan asks, and a new sibling has no service yet.
            Ok(ServiceStatus { state: RunState::NotInstalled, pid: None, last_exit_code: None, uptime_seconds: None, restarts: None, detail: "not installed".into() })
        }
    }

    impl Http for World {
        fn send_all(&self, requests: &[HttpRequest]) -> Vec<Result<HttpResponse, HttpError>> {
            requests.iter().map(|_| Err(HttpError::Denied)).collect()
        }
    }

    impl Clock for World {
        fn now_unix_ms(&self) -> u64 {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
        }
        fn monotonic_us(&self) -> u64 {
            static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
            START.get_or_init(Instant::now).elapsed().as_micros() as u64
        }
        fn sleep_ms(&self, ms: u64) {
            std::thread::sleep(Duration::from_millis(ms));
        }
    }

    impl Ports for World {
        /// The host's own probe (bind test), in a search window from 1024, without an audit file.
        fn taken(&self, ports: &[u16]) -> Vec<u16> {
            let mut scope = host_runner::caps::ports::PortScope::new([], Some(1024));
            host_runner::caps::ports::taken(ports, &host_runner::record::audit::Audit::stderr_only(), &mut scope)
        }
    }

    impl Progress for World {
        fn emit(&self, _: Level, _: &str) {}
    }

    impl Random for World {
        fn fill(&self, buf: &mut [u8]) {
            buf.fill(7);
        }
    }

    /// A plan takes no lock and only checks its claim: nothing to do alone.
    impl Family for World {
        fn lock(&self) -> Result<(), String> {
            Ok(())
        }
        fn unlock(&self) {}
        fn claim(&self, _: &str) -> Result<(), String> {
            Ok(())
        }
    }

    /// A plan adopts nothing.
    impl Adoption for World {
        fn begin(&self, handle: &str) -> Result<LegacySibling, String> {
            Err(format!("a plan adopts nothing ({handle})"))
        }
        fn migrate_credentials(&self, handle: &str) -> Result<Vec<String>, String> {
            Err(format!("a plan adopts nothing ({handle})"))
        }
        fn commit(&self, handle: &str) -> Result<String, String> {
            Err(format!("a plan adopts nothing ({handle})"))
        }
        fn abort(&self, handle: &str) -> Result<Vec<String>, Vec<String>> {
            Err(vec![format!("a plan adopts nothing ({handle})")])
        }
    }
}
