//! Plugin sandbox. The only wasmtime user: validates and precompiles the
//! admin-supplied plugin components (`strongroom:plugin/inspector@0.1.x`),
//! caches their native artifacts, and runs one instance per upload on a
//! small dedicated thread pool, each call under a deadline (epoch
//! interruption), a fuel budget and a memory cap. Never runs Wasm on the
//! reactor, never reuses a store after a trap, never loads native code it did
//! not compile itself, and never lets a plugin's failure escape as an error or
//! a panic: it becomes a [`Failure`] for the policy to judge.
//!
//! Lifecycle: [`Sandbox::install`] (admin action: validate, compile, cache) →
//! [`Sandbox::load`] (policy load: pin check, cached artifact, `InstancePre`)
//! → per upload [`Sandbox::start`] → [`Inspection::feed`] per chunk →
//! [`Inspection::finish`].
//!
//! Plugins get no WASI: their only imports are `strongroom:plugin/host`
//! (sha256, ed25519-verify, get-tenant-stats, log, config), checked against
//! an allow-list at install. The host functions are pure or bounded, so a
//! call's time is the plugin's own.

mod bindings;
mod cache;
mod host;
mod inspection;
mod pool;
mod ticker;
mod types;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use bindings::{Inspector, InspectorPre};
use cache::ArtifactCache;
use host::HostState;
use pool::Pool;
use ticker::Ticker;

pub use inspection::Inspection;
pub use types::{
    Failure, FailureKind, FeedResult, Finding, InspectionStats, InstalledPlugin, Outcome,
    PluginLimits, PluginResult, PluginSpec, SandboxConfig, Severity, Summary, TenantStats,
    UploadMeta, Verdict,
};

/// The interfaces a plugin may import: the host functions and the types
/// they use, at any 0.1.x version (a newer minor with functions this host
/// lacks is then refused by the linker with a precise message).
const ALLOWED_IMPORTS: [&str; 2] = ["strongroom:plugin/host", "strongroom:plugin/types"];

/// Core module instances one plugin component may contain. A component made
/// by `wasm-tools component new` from a Rust cdylib has a few (the plugin
/// plus small shims that wire its lowered imports); the rest is headroom.
const CORE_INSTANCES_PER_PLUGIN: u32 = 8;
/// Tables one plugin component may define (the plugin's own function table
/// and the import shim's).
const TABLES_PER_PLUGIN: u32 = 4;
/// Memory a freed instance slot keeps mapped and zeroes by hand instead of
/// returning to the kernel, so the next upload's instance does not fault it
/// back in: a Rust guest's shadow stack top, data and first heap pages.
/// Measured: instantiation 45 µs → 27-32 µs.
const KEEP_RESIDENT: usize = 2 << 20;
const TABLE_KEEP_RESIDENT: usize = 64 << 10;
/// Idle slots kept warm (and so resident, up to `KEEP_RESIDENT` each):
/// bounds the RSS an idle appliance holds for plugins to about 32 MiB.
const WARM_SLOTS: u32 = 16;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot set up the plugin engine: {0}")]
    Engine(String),

    #[error(
        "not a WebAssembly component ({found}); build plugins for wasm32-unknown-unknown \
         and wrap them with `wasm-tools component new`"
    )]
    NotAComponent { found: &'static str },

    #[error(
        "component imports `{import}`, which plugins may not use (allowed: strongroom:plugin/host@0.1.x)"
    )]
    ForbiddenImport { import: String },

    #[error("component does not fit the strongroom:plugin/inspector@0.1 world: {reason}")]
    WrongWorld { reason: String },

    #[error("component does not compile: {reason}")]
    Compile { reason: String },

    #[error("sha256 of {} is {actual}, but the policy pins {expected}", path.display())]
    PinMismatch {
        path: PathBuf,
        expected: String,
        actual: String,
    },

    #[error("{0}")]
    Limits(String),

    #[error(
        "plugin cache {path} has mode {mode:03o}, so others could plant native code in it; \
         refusing to use it (fix with `chmod go-w {path}`)",
        path = path.display()
    )]
    CachePermissions { path: PathBuf, mode: u32 },

    #[error("i/o error on {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },

    /// Any of the above, while loading the plugin a policy names.
    #[error("plugin {name}: {source}")]
    Plugin {
        name: String,
        #[source]
        source: Box<Error>,
    },
}

/// The appliance's one plugin engine. Cheap to share behind an `Arc`; its
/// epoch ticker and worker threads stop once it and every [`Inspection`]
/// are dropped.
pub struct Sandbox {
    shared: Arc<Shared>,
}

/// What inspections need after `start`: they keep it (and so the workers
/// and the ticker) alive.
struct Shared {
    engine: Engine,
    linker: Linker<HostState>,
    cache: ArtifactCache,
    pool: Pool,
    config: SandboxConfig,
    _ticker: Ticker,
}

/// A loaded plugin: validated, compiled, linked, ready to instantiate per
/// upload. Shared by every inspection that uses it.
pub struct Plugin {
    name: Arc<str>,
    sha256: [u8; 32],
    limits: PluginLimits,
    config_json: Arc<str>,
    pre: InspectorPre<HostState>,
    cached: bool,
    load_time: Duration,
}

impl Plugin {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn sha256(&self) -> &[u8; 32] {
        &self.sha256
    }

    pub fn limits(&self) -> PluginLimits {
        self.limits
    }

    /// Whether loading reused a precompiled artifact instead of compiling.
    pub fn was_cached(&self) -> bool {
        self.cached
    }

    /// How long `load` took (read, hash, compile or map, link).
    pub fn load_time(&self) -> Duration {
        self.load_time
    }
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.name)
            .field("sha256", &hex::encode(self.sha256))
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// A compiled, validated, linked component.
struct Prepared {
    pre: InspectorPre<HostState>,
    imports: Vec<String>,
    artifact_bytes: usize,
    cached: bool,
}

impl Sandbox {
    /// Builds the engine (pooling allocator sized for
    /// `config.max_inspections`), opens the artifact cache and starts the
    /// epoch ticker and the workers.
    pub fn new(mut config: SandboxConfig) -> Result<Sandbox, Error> {
        // A zero tick would spin the ticker thread.
        config.epoch_tick = config.epoch_tick.max(Duration::from_millis(1));
        let engine_error = |err: wasmtime::Error| Error::Engine(format!("{err:#}"));
        let slots = config.max_inspections.max(1);
        let max_memory = usize::try_from(config.max_memory)
            .map_err(|_| Error::Engine(format!("max_memory {} is too large", config.max_memory)))?;
        let mut pooling = PoolingAllocationConfig::new();
        pooling
            .total_component_instances(slots)
            .total_core_instances(slots.saturating_mul(CORE_INSTANCES_PER_PLUGIN))
            .max_core_instances_per_component(CORE_INSTANCES_PER_PLUGIN)
            .total_memories(slots)
            .max_memories_per_component(1)
            .total_tables(slots.saturating_mul(TABLES_PER_PLUGIN))
            .max_tables_per_component(TABLES_PER_PLUGIN)
            .max_memory_size(max_memory)
            .linear_memory_keep_resident(KEEP_RESIDENT)
            .table_keep_resident(TABLE_KEEP_RESIDENT)
            .max_unused_warm_slots(WARM_SLOTS)
            // Where the kernel has PAGEMAP_SCAN (Linux 6.7+), a freed slot
            // resets only the pages the plugin touched instead of the whole
            // `KEEP_RESIDENT` prefix (mostly an untouched 1 MiB shadow
            // stack): measured ~4 MiB of memset per upload without it.
            .pagemap_scan(Enabled::Auto);

        let mut wasm = Config::new();
        wasm.wasm_component_model(true)
            .epoch_interruption(true)
            .consume_fuel(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pooling));
        let engine = Engine::new(&wasm).map_err(engine_error)?;

        let mut linker = Linker::new(&engine);
        Inspector::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |state| state)
            .map_err(engine_error)?;

        let cache = ArtifactCache::open(&config.cache_dir, &engine)?;
        let spawn_error =
            |err: std::io::Error| Error::Engine(format!("cannot start a thread: {err}"));
        let pool = Pool::start(config.workers, config.queue_depth).map_err(spawn_error)?;
        let ticker = Ticker::start(engine.clone(), config.epoch_tick).map_err(spawn_error)?;
        Ok(Sandbox {
            shared: Arc::new(Shared {
                engine,
                linker,
                cache,
                pool,
                config,
                _ticker: ticker,
            }),
        })
    }

    /// Validates a plugin an admin supplied and precompiles it into the
    /// cache: it must be a component, import nothing outside the allow-list
    /// and export `strongroom:plugin/inspect`. Blocking (compiling a 200 KiB
    /// plugin takes about a second): call it from a blocking context.
    pub fn install(&self, wasm: &[u8]) -> Result<InstalledPlugin, Error> {
        let started = Instant::now();
        let sha256 = crate::crypto::sha256(wasm);
        let prepared = self.prepare(wasm, &sha256)?;
        Ok(InstalledPlugin {
            sha256,
            wasm_bytes: wasm.len(),
            artifact_bytes: prepared.artifact_bytes,
            imports: prepared.imports,
            cached: prepared.cached,
            elapsed: started.elapsed(),
        })
    }

    /// Loads the plugin a policy names: reads the `.wasm`, checks the pin,
    /// then uses the cached artifact (compiling on a miss). Blocking: call it
    /// from a blocking context.
    pub fn load(&self, spec: PluginSpec) -> Result<Arc<Plugin>, Error> {
        let name = spec.name.clone();
        self.load_inner(spec).map_err(|source| Error::Plugin {
            name,
            source: Box::new(source),
        })
    }

    fn load_inner(&self, spec: PluginSpec) -> Result<Arc<Plugin>, Error> {
        let started = Instant::now();
        self.check_limits(&spec.limits)?;
        let wasm = std::fs::read(&spec.wasm).map_err(|source| Error::Io {
            path: spec.wasm.clone(),
            source,
        })?;
        let sha256 = crate::crypto::sha256(&wasm);
        if sha256 != spec.sha256 {
            return Err(Error::PinMismatch {
                path: spec.wasm,
                expected: hex::encode(spec.sha256),
                actual: hex::encode(sha256),
            });
        }
        let prepared = self.prepare(&wasm, &sha256)?;
        Ok(Arc::new(Plugin {
            name: spec.name.into(),
            sha256,
            limits: spec.limits,
            config_json: spec.config_json.into(),
            pre: prepared.pre,
            cached: prepared.cached,
            load_time: started.elapsed(),
        }))
    }

    fn check_limits(&self, limits: &PluginLimits) -> Result<(), Error> {
        let max = self.shared.config.max_memory;
        if limits.memory == 0 || limits.memory > max {
            return Err(Error::Limits(format!(
                "memory cap {} bytes is outside 1..={max} (the sandbox's max_memory)",
                limits.memory
            )));
        }
        if limits.deadline.is_zero() || limits.fuel == 0 {
            return Err(Error::Limits("deadline and fuel must be above zero".into()));
        }
        Ok(())
    }

    /// Compiles (or maps the cached artifact of) `wasm`, checks its imports
    /// and exports, and links it.
    fn prepare(&self, wasm: &[u8], sha256: &[u8; 32]) -> Result<Prepared, Error> {
        check_header(wasm)?;
        let shared = &self.shared;
        let (component, cached, artifact) = match shared.cache.get(&shared.engine, sha256)? {
            Some(component) => (component, true, None),
            None => {
                let component =
                    Component::new(&shared.engine, wasm).map_err(|err| Error::Compile {
                        reason: format!("{err:#}"),
                    })?;
                let artifact = component
                    .serialize()
                    .map_err(|err| Error::Engine(format!("cannot serialize artifact: {err:#}")))?;
                (component, false, Some(artifact))
            }
        };
        let imports = check_imports(&shared.engine, &component)?;
        let wrong_world = |err: wasmtime::Error| Error::WrongWorld {
            reason: format!("{err:#}"),
        };
        let instance_pre = shared
            .linker
            .instantiate_pre(&component)
            .map_err(wrong_world)?;
        let pre = InspectorPre::new(instance_pre).map_err(wrong_world)?;
        // Only a component that passed every check is cached.
        let artifact_bytes = match artifact {
            Some(artifact) => {
                shared.cache.put(sha256, &artifact)?;
                artifact.len()
            }
            None => {
                let image = component.image_range();
                image.end.addr() - image.start.addr()
            }
        };
        Ok(Prepared {
            pre,
            imports,
            artifact_bytes,
            cached,
        })
    }

    /// Starts inspecting one upload: instantiates the plugin and calls its
    /// constructor on a worker. Never fails: an inspection that could not
    /// start carries its failure and reports it from every call.
    pub async fn start(
        &self,
        plugin: &Arc<Plugin>,
        meta: UploadMeta,
        stats: TenantStats,
    ) -> Inspection {
        Inspection::start(Arc::clone(&self.shared), Arc::clone(plugin), meta, stats).await
    }
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

/// A friendly refusal for what is plainly not a component: a core module
/// (the usual mistake), or not Wasm at all.
fn check_header(wasm: &[u8]) -> Result<(), Error> {
    const MAGIC: &[u8] = b"\0asm";
    let found = match wasm.get(..8) {
        Some(header) if header.starts_with(MAGIC) => match header[6..8] {
            [1, 0] => return Ok(()),
            [0, 0] => "a core WebAssembly module",
            _ => "an unknown WebAssembly layer",
        },
        _ => "not WebAssembly at all",
    };
    Err(Error::NotAComponent { found })
}

fn check_imports(engine: &Engine, component: &Component) -> Result<Vec<String>, Error> {
    let ty = component.component_type();
    ty.imports(engine)
        .map(|(name, _)| {
            if is_allowed_import(name) {
                Ok(name.to_owned())
            } else {
                Err(Error::ForbiddenImport {
                    import: name.to_owned(),
                })
            }
        })
        .collect()
}

fn is_allowed_import(name: &str) -> bool {
    let Some((interface, version)) = name.split_once('@') else {
        return false;
    };
    let mut parts = version.split('.');
    ALLOWED_IMPORTS.contains(&interface)
        && parts.next() == Some("0")
        && parts.next() == Some("1")
        && parts.next().is_some_and(|patch| !patch.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_check_names_what_it_found() {
        assert!(check_header(b"\0asm\x0d\0\x01\0").is_ok());
        let core = check_header(b"\0asm\x01\0\0\0").unwrap_err();
        assert!(
            core.to_string().contains("a core WebAssembly module"),
            "{core}"
        );
        let text = check_header(b"(module)").unwrap_err();
        assert!(
            text.to_string().contains("not WebAssembly at all"),
            "{text}"
        );
        assert!(check_header(b"").is_err());
    }

    #[test]
    fn only_host_and_types_at_0_1_are_allowed() {
        assert!(is_allowed_import("strongroom:plugin/host@0.1.0"));
        assert!(is_allowed_import("strongroom:plugin/host@0.1.7"));
        assert!(is_allowed_import("strongroom:plugin/types@0.1.0"));
        assert!(!is_allowed_import("strongroom:plugin/host@0.2.0"));
        assert!(!is_allowed_import("strongroom:plugin/host@1.1.0"));
        assert!(!is_allowed_import("strongroom:plugin/host"));
        assert!(!is_allowed_import("strongroom:plugin/host@0.1"));
        assert!(!is_allowed_import("wasi:filesystem/types@0.2.0"));
        assert!(!is_allowed_import("strongroom:plugin/inspect@0.1.0"));
        assert!(!is_allowed_import("host"));
    }
}
