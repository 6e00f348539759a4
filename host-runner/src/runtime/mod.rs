//! Running one command of the component in a fresh, limited store.
//!
//! The store holds the capabilities (files, services, ports, progress, the HTTP gate), each
//! WIT import linked straight to the capability that implements its generated `Host`
//! trait, a memory budget with caps on tables and instances ([`crate::runtime::limits`]) and a
//! wall-clock deadline. WASI gets
//! no preopened directories, no environment, no sockets and no stdin; its stderr (panic
//! messages) is kept in memory, bounded, and printed scrubbed when the call ends.

/// Host-side types generated from `wit/provisioner.wit`.
pub mod bindings;
/// The compiled-component cache: a private directory, artifacts checked by their recorded SHA-256.
pub mod component_cache;
/// The command's deadline (`--deadline`), which bounds host calls as well as guest code.
pub mod deadline;
/// The wasmtime engine and the precompiled-component cache.
pub mod engine;
/// What one store may take: memory, table elements, instances, memories and tables.
pub mod limits;

use crate::record::audit::{Audit, Decision};
use crate::caps::adoption::Adoption;
use crate::runtime::bindings::openclaw::provisioner::{adoption, family, fs, ports, progress, service, types};
use crate::runtime::bindings::{Provisioner, commands};
use crate::caps::family::FamilyCap;
use crate::caps::fs::FsCap;
use crate::caps::http::HttpGate;
use crate::runtime::limits::{Denial, StoreBudget};
use crate::caps::ports::PortsCap;
use crate::caps::progress::ProgressSink;
use crate::caps::service::ServiceCap;
use anyhow::{Result, anyhow};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime::error::Context as _;
use wasmtime::{Engine, Store, UpdateDeadline};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// Bounds on one guest call.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Wall-clock time for the whole call, host calls included.
    pub deadline: Duration,
    /// All linear memories of the guest together, in bytes (see [`crate::runtime::limits`] for
    /// the caps on tables, instances and memories).
    pub memory_bytes: usize,
}

/// The most the guest may write on its stderr (panic messages); more traps it.
const GUEST_STDERR_BYTES: usize = 64 << 10;

/// Prints what the guest wrote on its stderr, scrubbed of secrets and control characters
/// as a whole before it is cut into lines (a key split by a newline is still found).
fn print_guest_stderr(bytes: &[u8]) {
    for line in crate::sys::secret::scrub(&String::from_utf8_lossy(bytes)).lines() {
        crate::sys::secret::eprint_line(&format!("component: {line}"));
    }
}

/// The capabilities a store holds, one field per WIT import, each linked by `link_capabilities`.
pub struct Capabilities {
    pub fs: FsCap,
    pub services: ServiceCap,
    pub ports: PortsCap,
    /// The `wasi:http` hook: only the Sesame API and the siblings' gateway ports.
    pub gate: HttpGate,
    pub progress: ProgressSink,
    /// The lead's family lock and handle claims.
    pub family: FamilyCap,
    /// The adoption of the one sibling the operator named (`adopt HANDLE`).
    pub adoption: Adoption,
    /// Where a limit the component runs into is recorded.
    pub audit: Arc<Audit>,
}

/// `types` declares only types; it is linked so the guest's import resolves.
impl types::Host for Capabilities {}

/// Adoption needs the service capability too (to remove a new service when it puts an
/// adoption back), so it is linked on the whole set of capabilities.
impl adoption::Host for Capabilities {
    fn begin(&mut self, handle: String) -> Result<adoption::LegacySibling, String> {
        self.adoption.begin(&handle)
    }
    fn migrate_credentials(&mut self, handle: String) -> Result<Vec<String>, String> {
        self.adoption.migrate_credentials(&handle)
    }
    fn commit(&mut self, handle: String) -> Result<String, String> {
        self.adoption.commit(&handle)
    }
    fn abort(&mut self, handle: String) -> Result<Vec<String>, Vec<String>> {
        self.adoption.abort(&handle, &mut self.services)
    }
}

impl Capabilities {
    /// What a run leaves when it ends, however it ends: an adoption it did not commit is
    /// put back, then its family lock and claim are released.
    fn end_of_run(&mut self) {
        self.adoption.end_of_run(&mut self.services);
        self.family.end_of_run();
    }
}

/// Links each WIT import to the capability that implements it.
fn link_capabilities(linker: &mut Linker<StoreData>) -> wasmtime::Result<()> {
    types::add_to_linker::<_, HasSelf<Capabilities>>(linker, |s| &mut s.caps)?;
    adoption::add_to_linker::<_, HasSelf<Capabilities>>(linker, |s| &mut s.caps)?;
    fs::add_to_linker::<_, HasSelf<FsCap>>(linker, |s| &mut s.caps.fs)?;
    service::add_to_linker::<_, HasSelf<ServiceCap>>(linker, |s| &mut s.caps.services)?;
    ports::add_to_linker::<_, HasSelf<PortsCap>>(linker, |s| &mut s.caps.ports)?;
    family::add_to_linker::<_, HasSelf<FamilyCap>>(linker, |s| &mut s.caps.family)?;
    progress::add_to_linker::<_, HasSelf<ProgressSink>>(linker, |s| &mut s.caps.progress)
}

/// The data of a store: WASI state plus our capabilities.
pub struct StoreData {
    wasi: WasiCtx,
    table: ResourceTable,
    http: WasiHttpCtx,
    caps: Capabilities,
    limits: StoreBudget,
}

impl WasiView for StoreData {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl WasiHttpView for StoreData {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: &mut self.caps.gate }
    }
}

/// A command for the component.
#[derive(Debug)]
pub enum Command {
    Plan(commands::ProvisionRequest),
    Provision(commands::ProvisionRequest),
    Start(String),
    Stop(String),
    Restart(String),
    Deprovision(commands::DeprovisionRequest),
    Restore(commands::RestoreRequest),
    AdoptPlan(commands::AdoptRequest),
    Adopt(commands::AdoptRequest),
    Health(commands::HealthRequest),
    Rollback(String),
    Members,
    Ports(u16),
}

/// What the component answered.
#[derive(Debug)]
pub enum Answer {
    Plan(Result<commands::ProvisionPlan, commands::CommandError>),
    Provision(Result<commands::ProvisionOutcome, commands::CommandError>),
    Lifecycle(Result<commands::LifecycleOutcome, commands::CommandError>),
    Health(Result<commands::HealthReport, commands::CommandError>),
    Rollback(Result<commands::RollbackOutcome, commands::CommandError>),
    Restore(Result<commands::RestoreOutcome, commands::CommandError>),
    AdoptPlan(Result<Vec<commands::AdoptionPlan>, commands::CommandError>),
    Adopt(Result<commands::AdoptOutcome, commands::CommandError>),
    Members(Result<Vec<commands::FamilyMember>, commands::CommandError>),
    Ports(Result<commands::PortReport, commands::CommandError>),
}

/// Where the time of one call went, in microseconds.
#[derive(Clone, Copy, Debug, Default)]
pub struct CallTimings {
    /// Creating the store and instantiating the component.
    pub instantiate_us: u128,
    /// The exported function, from its first guest instruction to its return.
    pub call_us: u128,
}

/// A compiled component with its linker, ready to run commands.
pub struct Sandbox {
    engine: Engine,
    linker: Linker<StoreData>,
    component: wasmtime::component::Component,
}

impl Sandbox {
    pub fn new(engine: Engine, component: wasmtime::component::Component) -> Result<Self> {
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).context("linking WASI")?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).context("linking wasi:http")?;
        link_capabilities(&mut linker).context("linking the provisioner imports")?;
        Ok(Self { engine, linker, component })
    }

    /// Runs one command in a fresh store with `caps`, within `limits`.
    pub async fn run(&self, caps: Capabilities, ctx: commands::Context, command: Command, limits: Limits) -> Result<(Answer, CallTimings)> {
        let started = Instant::now();
        let stderr = MemoryOutputPipe::new(GUEST_STDERR_BYTES);
        let deadline = Instant::now() + limits.deadline;
        let mut store = self.store(caps, &stderr, limits.memory_bytes, deadline);
        let ticker = self.tick_epochs();
        // The epoch callback stops a guest that computes past the deadline; the timeout
        // stops one that waits in a host call past it.
        let call = self.call(&mut store, &ctx, command, started);
        let result = tokio::time::timeout(limits.deadline + Duration::from_secs(1), call).await;
        ticker.abort();
        // Whatever the component did, an adoption it began is kept only if committed, and
        // its lock and claim end with its run.
        store.data_mut().caps.end_of_run();
        print_guest_stderr(&stderr.contents());
        match result {
            Err(_) => Err(anyhow!("the component ran past its deadline of {:?}", limits.deadline)),
            Ok(Err(e)) if Instant::now() >= deadline => {
                Err(anyhow!("the component ran past its deadline of {:?} ({e})", limits.deadline))
            }
            Ok(Err(e)) => Err(trapped(store.data(), e)),
            Ok(Ok((answer, instantiate_us))) => {
                Ok((answer, CallTimings { instantiate_us, call_us: started.elapsed().as_micros() - instantiate_us }))
            }
        }
    }

    /// A fresh store holding `caps`, with its memory budget and an epoch deadline; the
    /// guest's stderr goes to `stderr`.
    fn store(&self, caps: Capabilities, stderr: &MemoryOutputPipe, memory_bytes: usize, deadline: Instant) -> Store<StoreData> {
        let mut wasi = WasiCtx::builder();
        wasi.stderr(stderr.clone());
        let state = StoreData {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            http: WasiHttpCtx::new(),
            caps,
            limits: StoreBudget::new(memory_bytes),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            if Instant::now() >= deadline { Ok(UpdateDeadline::Interrupt) } else { Ok(UpdateDeadline::Yield(1)) }
        });
        store
    }

    /// Advances the engine's epoch every 20 ms until aborted.
    fn tick_epochs(&self) -> tokio::task::JoinHandle<()> {
        let engine = self.engine.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(20)).await;
                engine.increment_epoch();
            }
        })
    }

    /// Instantiates the component and calls the export for `command`; returns the
    /// answer and when (since `started`) the instance was ready, in microseconds.
    async fn call(&self, store: &mut Store<StoreData>, ctx: &commands::Context, command: Command, started: Instant) -> wasmtime::Result<(Answer, u128)> {
        let instance = Provisioner::instantiate_async(&mut *store, &self.component, &self.linker)
            .await
            .context("instantiating the component")?;
        let c = instance.openclaw_provisioner_commands();
        let s = store;
        let instantiate_us = started.elapsed().as_micros();
        let answer = match command {
            Command::Plan(r) => Answer::Plan(c.call_plan(s, ctx, &r).await?),
            Command::Provision(r) => Answer::Provision(c.call_provision(s, ctx, &r).await?),
            Command::Start(h) => Answer::Lifecycle(c.call_start(s, ctx, &h).await?),
            Command::Stop(h) => Answer::Lifecycle(c.call_stop(s, ctx, &h).await?),
            Command::Restart(h) => Answer::Lifecycle(c.call_restart(s, ctx, &h).await?),
            Command::Deprovision(r) => Answer::Lifecycle(c.call_deprovision(s, ctx, &r).await?),
            Command::Restore(r) => Answer::Restore(c.call_restore(s, ctx, &r).await?),
            Command::AdoptPlan(r) => Answer::AdoptPlan(c.call_adopt_plan(s, ctx, &r).await?),
            Command::Adopt(r) => Answer::Adopt(c.call_adopt(s, ctx, &r).await?),
            Command::Health(r) => Answer::Health(c.call_health(s, ctx, &r).await?),
            Command::Rollback(h) => Answer::Rollback(c.call_rollback(s, ctx, &h).await?),
            Command::Members => Answer::Members(c.call_members(s, ctx).await?),
            Command::Ports(start) => Answer::Ports(c.call_ports(s, ctx, start).await?),
        };
        Ok((answer, instantiate_us))
    }
}

/// The error for a call that trapped: a limit the component ran into is audited and
/// named first.
fn trapped(state: &StoreData, e: wasmtime::Error) -> anyhow::Error {
    let Some(denial) = state.limits.denial() else {
        return anyhow::Error::from(e).context("the component trapped");
    };
    let (op, rule) = match denial {
        Denial::Memory { budget, .. } => ("memory.grow", format!("memory budget {} MiB (--memory-limit)", budget >> 20)),
        Denial::TableElements { cap, .. } => ("table.grow", format!("table element cap {cap}")),
    };
    let denial = denial.to_string();
    state.caps.audit.record("limits", op, &denial, Decision::Denied, &rule);
    anyhow::Error::from(e).context(denial)
}
