//! What one store may take: a total memory budget across all its linear memories, a cap on
//! table elements across all its tables, and small caps on how many instances, memories and
//! tables it may create.
//!
//! wasmtime's own `StoreLimits` caps each linear memory separately and allows 10,000 of
//! each kind of object, so a component with many memories could take many times its
//! `--memory-limit`. [`StoreBudget`] counts what the whole store holds instead. Linear
//! memories and tables never shrink and live as long as the store, so the sum of the sizes
//! granted is what the store holds (or, after a growth the OS then failed to back, slightly
//! more: the count errs on the safe side; the guest sees that growth fail, as it would
//! without a limiter).
//!
//! A refusal traps the guest (a Rust guest aborts on a failed allocation anyway; a trap at
//! the growth names the reason) and is kept as a [`Denial`], so the host can say which
//! limit the component ran into rather than only that it trapped.
//!
//! What the component may write to disk in one run is a [`WriteBudget`]: bytes through
//! `fs.write-atomic`, entries created through it and `fs.create-dir-all`. A call past it is
//! refused (the component sees `denied`, naming the budget), not trapped.

use std::fmt;
use std::sync::Mutex;
use wasmtime::ResourceLimiter;

/// Core instances a store may create. The provisioner component and the hostile test
/// fixture each instantiate 3 (measured with wasmtime 48); the rest is headroom for a
/// differently linked build of the same world (a WASI adapter adds one or two).
pub const MAX_INSTANCES: usize = 8;

/// Linear memories a store may create. Both components above create 1.
pub const MAX_MEMORIES: usize = 2;

/// Tables a store may create. Both components above create 2.
pub const MAX_TABLES: usize = 4;

/// Table elements across all tables of a store (each costs a pointer's worth of host
/// memory). The provisioner's tables hold 390 elements in all, the hostile fixture's 268
/// (measured).
pub const MAX_TABLE_ELEMENTS: usize = 10_000;

const MIB: usize = 1 << 20;

/// A limit the component ran into.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Denial {
    /// Growing (or creating) a memory would have taken the store past its budget.
    Memory {
        /// The budget, in bytes.
        budget: usize,
        /// What all memories would have held together after the growth, in bytes.
        wanted: usize,
    },
    /// Growing (or creating) a table would have taken the store past its element cap.
    TableElements {
        /// The cap, in elements.
        cap: usize,
        /// What all tables would have held together after the growth, in elements.
        wanted: usize,
    },
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Denial::Memory { budget, wanted } => write!(
                f,
                "the component exceeded its memory budget of {} MiB (its memories would have held {:.1} MiB together)",
                budget / MIB,
                *wanted as f64 / MIB as f64
            ),
            Denial::TableElements { cap, wanted } => write!(
                f,
                "the component exceeded its cap of {cap} table elements (its tables would have held {wanted} together)"
            ),
        }
    }
}

impl std::error::Error for Denial {}

/// What a store holds (memories and tables never shrink, so this is also its peak).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Bytes held by all linear memories together.
    pub memory_bytes: usize,
    /// Elements held by all tables together.
    pub table_elements: usize,
}

/// A [`ResourceLimiter`] that enforces totals across the whole store.
#[derive(Debug)]
pub struct StoreBudget {
    memory_budget: usize,
    table_element_cap: usize,
    used: Usage,
    denial: Option<Denial>,
}

impl StoreBudget {
    /// A budget of `memory_bytes` for all linear memories together, with the element,
    /// instance, memory and table caps above.
    pub fn new(memory_bytes: usize) -> Self {
        Self::with_table_elements(memory_bytes, MAX_TABLE_ELEMENTS)
    }

    /// As [`StoreBudget::new`], with `table_elements` for all tables together.
    fn with_table_elements(memory_bytes: usize, table_elements: usize) -> Self {
        Self { memory_budget: memory_bytes, table_element_cap: table_elements, used: Usage::default(), denial: None }
    }

    /// The first limit the component ran into, if any.
    pub fn denial(&self) -> Option<&Denial> {
        self.denial.as_ref()
    }

    /// Keeps the first denial and traps with it.
    fn deny(&mut self, denial: Denial) -> wasmtime::Result<bool> {
        self.denial.get_or_insert_with(|| denial.clone());
        Err(wasmtime::Error::new(denial))
    }
}

/// The store's total after one object grows from `current` to `desired`, or `Err(total)`
/// when that total is over `cap`.
fn grown_total(held: usize, current: usize, desired: usize, cap: usize) -> Result<usize, usize> {
    let total = held.saturating_sub(current).saturating_add(desired);
    if total > cap { Err(total) } else { Ok(total) }
}

/// Growth past the maximum an object's own type declares is refused the ordinary way
/// (`memory.grow`/`table.grow` return -1); it is not a budget matter and is not counted.
fn past_type_maximum(desired: usize, maximum: Option<usize>) -> bool {
    maximum.is_some_and(|maximum| desired > maximum)
}

impl ResourceLimiter for StoreBudget {
    fn memory_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        if past_type_maximum(desired, maximum) {
            return Ok(false);
        }
        match grown_total(self.used.memory_bytes, current, desired, self.memory_budget) {
            Ok(total) => {
                self.used.memory_bytes = total;
                Ok(true)
            }
            Err(wanted) => self.deny(Denial::Memory { budget: self.memory_budget, wanted }),
        }
    }

    fn table_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        if past_type_maximum(desired, maximum) {
            return Ok(false);
        }
        match grown_total(self.used.table_elements, current, desired, self.table_element_cap) {
            Ok(total) => {
                self.used.table_elements = total;
                Ok(true)
            }
            Err(wanted) => self.deny(Denial::TableElements { cap: self.table_element_cap, wanted }),
        }
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}

/// Bytes and entries the component writes (or may write) in one run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Written {
    pub bytes: u64,
    pub entries: u64,
}

/// The write budget of one run. An honest provision of the example lead leaves about 7 KB
/// in 19 entries (its workspace notes, `openclaw.json`, the registry) and rewrites its
/// journal a few times; 64 MiB and 10,000 entries leave room for a lead with long notes,
/// and bound what a hostile component can leave on the disk in one run. Copies the host
/// makes itself (the lead's plugins, a restore, an archive) have caps of their own.
pub const WRITE_BUDGET: Written = Written { bytes: 64 << 20, entries: 10_000 };

/// What the component has written so far in this run, against a cap.
#[derive(Debug)]
pub struct WriteBudget {
    cap: Written,
    used: Mutex<Written>,
}

impl WriteBudget {
    pub fn new(cap: Written) -> Self {
        Self { cap, used: Mutex::new(Written::default()) }
    }

    /// Takes `wanted` from the budget, or, when it does not fit, takes nothing and says
    /// which budget it would exceed.
    pub fn take(&self, wanted: Written) -> Result<(), String> {
        let mut used = self.used.lock().expect("budget lock");
        let bytes = used.bytes.saturating_add(wanted.bytes);
        let entries = used.entries.saturating_add(wanted.entries);
        if bytes > self.cap.bytes {
            return Err(format!(
                "the component's write budget of {} MiB per run is spent ({} bytes written, {} more asked)",
                self.cap.bytes / MIB as u64,
                used.bytes,
                wanted.bytes
            ));
        }
        if entries > self.cap.entries {
            return Err(format!("the component's budget of {} new entries per run is spent ({} created)", self.cap.entries, used.entries));
        }
        *used = Written { bytes, entries };
        Ok(())
    }

    /// What was taken so far.
    pub fn used(&self) -> Written {
        *self.used.lock().expect("budget lock")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::{Engine, Instance, Module, Store};

    const PAGE: usize = 64 << 10;

    fn store(engine: &Engine, budget: StoreBudget) -> Store<StoreBudget> {
        let mut store = Store::new(engine, budget);
        store.limiter(|budget| budget);
        store
    }

    fn instantiate(wat: &str, budget: StoreBudget) -> (Store<StoreBudget>, wasmtime::Result<Instance>) {
        let engine = Engine::default();
        let module = Module::new(&engine, wat).expect("the test module compiles");
        let mut store = store(&engine, budget);
        let instance = Instance::new(&mut store, &module, &[]);
        (store, instance)
    }

    fn call(store: &mut Store<StoreBudget>, instance: &Instance, name: &str, arg: i32) -> wasmtime::Result<i32> {
        instance.get_typed_func::<i32, i32>(&mut *store, name)?.call(&mut *store, arg)
    }

    const TWO_MEMORIES: &str = r#"(module
        (memory $a 1)
        (memory $b 1)
        (func (export "grow_a") (param i32) (result i32) (memory.grow $a (local.get 0)))
        (func (export "grow_b") (param i32) (result i32) (memory.grow $b (local.get 0))))"#;

    #[test]
    fn the_write_budget_refuses_what_does_not_fit_and_takes_nothing_then() {
        let budget = WriteBudget::new(Written { bytes: 2 << 20, entries: 3 });
        budget.take(Written { bytes: 1 << 20, entries: 1 }).unwrap();
        let err = budget.take(Written { bytes: (1 << 20) + 1, entries: 1 }).unwrap_err();
        assert_eq!(err, "the component's write budget of 2 MiB per run is spent (1048576 bytes written, 1048577 more asked)");
        budget.take(Written { bytes: 1 << 20, entries: 2 }).unwrap();
        assert_eq!(budget.used(), Written { bytes: 2 << 20, entries: 3 }, "up to the cap is fine");
        let err = budget.take(Written { bytes: 0, entries: 1 }).unwrap_err();
        assert_eq!(err, "the component's budget of 3 new entries per run is spent (3 created)");
        assert_eq!(budget.used(), Written { bytes: 2 << 20, entries: 3 }, "a refusal takes nothing");
    }

    #[test]
    fn two_memories_each_under_the_budget_cannot_exceed_it_together() {
        let budget = 64 * PAGE; // 4 MiB
        let (mut store, instance) = instantiate(TWO_MEMORIES, StoreBudget::new(budget));
        let instance = instance.unwrap();
        assert_eq!(call(&mut store, &instance, "grow_a", 40).unwrap(), 1, "41 pages fit in 64");
        let err = call(&mut store, &instance, "grow_b", 40).unwrap_err();
        let wanted = 82 * PAGE;
        assert_eq!(store.data().denial(), Some(&Denial::Memory { budget, wanted }));
        let text = format!("{err:?}");
        assert!(text.contains("the component exceeded its memory budget of 4 MiB"), "{text}");
        assert_eq!(store.data().used.memory_bytes, 42 * PAGE, "the refused growth is not counted");
        // What was granted stays usable: memory a can still grow within the budget.
        assert_eq!(call(&mut store, &instance, "grow_a", 22).unwrap(), 41);
    }

    #[test]
    fn memories_created_over_the_budget_fail_instantiation() {
        let wat = r#"(module (memory 40) (memory 40))"#;
        let (store, instance) = instantiate(wat, StoreBudget::new(64 * PAGE));
        let err = instance.unwrap_err();
        assert!(format!("{err:?}").contains("memory budget of 4 MiB"), "{err:?}");
        assert!(matches!(store.data().denial(), Some(Denial::Memory { wanted, .. }) if *wanted == 80 * PAGE));
    }

    #[test]
    fn growth_past_a_declared_maximum_fails_the_ordinary_way() {
        let wat = r#"(module (memory 1 2)
            (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0))))"#;
        let (mut store, instance) = instantiate(wat, StoreBudget::new(64 * PAGE));
        let instance = instance.unwrap();
        assert_eq!(call(&mut store, &instance, "grow", 5).unwrap(), -1);
        assert_eq!(store.data().denial(), None);
        assert_eq!(call(&mut store, &instance, "grow", 1).unwrap(), 1);
    }

    #[test]
    fn table_growth_past_the_element_cap_fails() {
        let wat = r#"(module
            (table $t 10 funcref)
            (table $u 10 funcref)
            (func (export "grow_t") (param i32) (result i32) (table.grow $t (ref.null func) (local.get 0)))
            (func (export "grow_u") (param i32) (result i32) (table.grow $u (ref.null func) (local.get 0))))"#;
        let (mut store, instance) = instantiate(wat, StoreBudget::with_table_elements(64 * PAGE, 100));
        let instance = instance.unwrap();
        assert_eq!(call(&mut store, &instance, "grow_t", 50).unwrap(), 10);
        let err = call(&mut store, &instance, "grow_u", 31).unwrap_err();
        assert_eq!(store.data().denial(), Some(&Denial::TableElements { cap: 100, wanted: 101 }));
        assert!(format!("{err:?}").contains("cap of 100 table elements"), "{err:?}");
        assert_eq!(call(&mut store, &instance, "grow_u", 30).unwrap(), 10, "up to the cap is fine");
    }

    #[test]
    fn the_default_table_cap_applies() {
        let wat = format!("(module (table {} funcref))", MAX_TABLE_ELEMENTS + 1);
        let (store, instance) = instantiate(&wat, StoreBudget::new(64 * PAGE));
        assert!(instance.is_err());
        assert!(matches!(store.data().denial(), Some(Denial::TableElements { cap: MAX_TABLE_ELEMENTS, .. })));
    }

    #[test]
    fn too_many_memories_or_tables_fail_instantiation() {
        let memories = format!("(module {})", "(memory 0) ".repeat(MAX_MEMORIES + 1));
        let (_, instance) = instantiate(&memories, StoreBudget::new(64 * PAGE));
        assert!(format!("{:?}", instance.unwrap_err()).contains("memory"));
        let (_, instance) = instantiate(&format!("(module {})", "(memory 0) ".repeat(MAX_MEMORIES)), StoreBudget::new(64 * PAGE));
        instance.unwrap();
        let tables = format!("(module {})", "(table 0 funcref) ".repeat(MAX_TABLES + 1));
        let (_, instance) = instantiate(&tables, StoreBudget::new(64 * PAGE));
        assert!(format!("{:?}", instance.unwrap_err()).contains("table"));
    }

    #[test]
    fn too_many_instances_fail() {
        let engine = Engine::default();
        let module = Module::new(&engine, "(module)").unwrap();
        let mut store = store(&engine, StoreBudget::new(64 * PAGE));
        for _ in 0..MAX_INSTANCES {
            Instance::new(&mut store, &module, &[]).unwrap();
        }
        let err = Instance::new(&mut store, &module, &[]).unwrap_err();
        assert!(format!("{err:?}").contains("instance"), "{err:?}");
    }

    /// The caps leave room for the components this host runs: the provisioner and the
    /// hostile test fixture instantiate (imports stubbed) within them.
    #[test]
    fn the_real_components_instantiate_within_the_caps() {
        let engine = crate::runtime::engine::engine().unwrap();
        for (name, wasm) in [
            ("provisioner", crate::runtime::engine::EMBEDDED_COMPONENT.to_vec()),
            ("hostile fixture", std::fs::read(env!("HOSTILE_GUEST_WASM")).unwrap()),
        ] {
            let component = wasmtime::component::Component::new(&engine, &wasm).unwrap();
            let mut linker = wasmtime::component::Linker::new(&engine);
            linker.define_unknown_imports_as_traps(&component).unwrap();
            let mut store = store(&engine, StoreBudget::new(256 << 20));
            store.set_epoch_deadline(1_000_000);
            linker.instantiate(&mut store, &component).unwrap_or_else(|e| panic!("{name}: {e:?}"));
            let used = store.data().used;
            eprintln!("{name}: {used:?}");
            assert!(used.table_elements < MAX_TABLE_ELEMENTS / 4, "{name}: {used:?}");
            assert!(used.memory_bytes < 16 << 20, "{name}: {used:?}");
        }
    }
}
