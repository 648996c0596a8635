//! One upload seen by one plugin: its own store and instance, driven call by
//! call on the worker pool. A call that fails drops the store on the worker;
//! from then on every call returns that same failure without touching Wasm.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use wasmtime::component::ResourceAny;
use wasmtime::{PoolConcurrencyLimitError, Store, Trap};

use super::bindings::Inspector;
use super::bindings::strongroom::plugin::types as wit;
use super::host::HostState;
use super::types::{
    Failure, FailureKind, FeedResult, InspectionStats, Outcome, PluginResult, Summary, TenantStats,
    UploadMeta,
};
use super::{Plugin, Shared};

/// An instantiated plugin with its `inspection` resource.
struct Live {
    store: Store<HostState>,
    guest: Inspector,
    inspection: ResourceAny,
}

enum State {
    /// Instantiated and willing to see more; `enough` once it said so.
    Running {
        live: Box<Live>,
        enough: bool,
    },
    /// A verdict is in (early or from `finish`); the instance is gone.
    Done(Outcome),
    Failed(Failure),
    /// A call is on a worker. Seen only if that call's future was dropped.
    InFlight,
}

/// One upload being inspected by one plugin. Not shared: the upload's
/// pipeline drives it call by call.
pub struct Inspection {
    shared: Arc<Shared>,
    plugin: Arc<Plugin>,
    upload_id: String,
    state: State,
    stats: InspectionStats,
}

/// What a worker hands back from one call.
struct Ran<R> {
    /// `None` once the call failed or the inspection is done.
    live: Option<Box<Live>>,
    /// The instance of a call that finished the inspection (a verdict or a
    /// failure): freed on a worker after the answer is out, because freeing
    /// a slot resets its memory and that is no reason to make a client wait.
    finished: Option<Box<Live>>,
    result: Result<R, FailureKind>,
    busy: Duration,
    log: (u32, u32, u32),
}

impl Inspection {
    pub(super) async fn start(
        shared: Arc<Shared>,
        plugin: Arc<Plugin>,
        meta: UploadMeta,
        stats: TenantStats,
    ) -> Inspection {
        let mut inspection = Inspection {
            shared: Arc::clone(&shared),
            plugin: Arc::clone(&plugin),
            upload_id: meta.upload_id.clone(),
            state: State::InFlight,
            stats: InspectionStats::default(),
        };
        let engine = shared.engine.clone();
        let epoch_tick = shared.config.epoch_tick;
        let job = move || instantiate(&engine, epoch_tick, &plugin, meta, stats);
        let ran = shared.pool.run(job).await;
        let _ = inspection.settle(ran.map(|ran| Ran {
            live: ran.live,
            finished: ran.finished,
            result: ran.result.map(|()| ((), false)),
            busy: ran.busy,
            log: ran.log,
        }));
        inspection
    }

    /// Passes one chunk of plaintext, in upload order. After `Enough` the
    /// chunk is not passed on and `Enough` is answered again; after a verdict
    /// or a failure, that verdict or failure.
    pub async fn feed(&mut self, chunk: Bytes) -> FeedResult {
        match &self.state {
            State::Running { enough: true, .. } => return FeedResult::Enough,
            State::Running { .. } => {}
            State::Done(outcome) => return FeedResult::Decided(outcome.clone()),
            State::Failed(failure) => return FeedResult::Failed(failure.clone()),
            State::InFlight => return FeedResult::Failed(self.lost()),
        }
        let control = self
            .call(move |live| {
                let control = live
                    .guest
                    .strongroom_plugin_inspect()
                    .inspection()
                    .call_feed(&mut live.store, live.inspection, &chunk)?;
                let done = matches!(control, wit::FeedControl::Decided(_));
                Ok((control, done))
            })
            .await;
        match control {
            Ok(wit::FeedControl::NeedMore) => FeedResult::NeedMore,
            Ok(wit::FeedControl::Enough) => {
                if let State::Running { enough, .. } = &mut self.state {
                    *enough = true;
                }
                FeedResult::Enough
            }
            Ok(wit::FeedControl::Decided(outcome)) => {
                let outcome = Outcome::from(outcome);
                self.state = State::Done(outcome.clone());
                FeedResult::Decided(outcome)
            }
            Err(failure) => FeedResult::Failed(failure),
        }
    }

    /// Ends the upload: the plugin gets the natively computed summary and
    /// gives its verdict. Calling it again returns the same answer.
    pub async fn finish(&mut self, summary: Summary) -> PluginResult {
        match &self.state {
            State::Running { .. } => {}
            State::Done(outcome) => return Ok(outcome.clone()),
            State::Failed(failure) => return Err(failure.clone()),
            State::InFlight => return Err(self.lost()),
        }
        let summary = wit::UploadSummary::from(&summary);
        let outcome = self
            .call(move |live| {
                let outcome = live
                    .guest
                    .strongroom_plugin_inspect()
                    .inspection()
                    .call_finish(&mut live.store, live.inspection, &summary)?;
                Ok((outcome, true))
            })
            .await?;
        let outcome = Outcome::from(outcome);
        self.state = State::Done(outcome.clone());
        Ok(outcome)
    }

    pub fn plugin(&self) -> &Arc<Plugin> {
        &self.plugin
    }

    /// The failure, if the plugin failed.
    pub fn failure(&self) -> Option<&Failure> {
        match &self.state {
            State::Failed(failure) => Some(failure),
            _ => None,
        }
    }

    pub fn stats(&self) -> InspectionStats {
        self.stats
    }

    /// Runs `call` on a worker with the deadline and fuel re-armed. `call`
    /// returns its value and whether the inspection is done (then the store
    /// is dropped on the worker, freeing its slot).
    async fn call<R, F>(&mut self, call: F) -> Result<R, Failure>
    where
        F: FnOnce(&mut Live) -> wasmtime::Result<(R, bool)> + Send + 'static,
        R: Send + 'static,
    {
        let State::Running { live, enough } = std::mem::replace(&mut self.state, State::InFlight)
        else {
            unreachable!("call() is only reached from a running inspection");
        };
        let limits = self.plugin.limits;
        let epoch_tick = self.shared.config.epoch_tick;
        let job = move || {
            let mut live = live;
            let started = Instant::now();
            arm(&mut live.store, limits.deadline, epoch_tick, limits.fuel);
            let result = call(&mut live);
            let busy = started.elapsed();
            let log = log_counts(live.store.data());
            match result {
                Ok((value, true)) => Ran {
                    live: None,
                    finished: Some(live),
                    result: Ok((value, true)),
                    busy,
                    log,
                },
                Ok((value, false)) => Ran {
                    live: Some(live),
                    finished: None,
                    result: Ok((value, false)),
                    busy,
                    log,
                },
                Err(err) => Ran {
                    result: Err(classify(live.store.data(), &err)),
                    live: None,
                    finished: Some(live),
                    busy,
                    log,
                },
            }
        };
        let ran = self.shared.pool.run(job).await;
        let (value, done) = self.settle(ran)?;
        if !done && let State::Running { enough: now, .. } = &mut self.state {
            *now = enough;
        }
        Ok(value)
    }

    /// Records what a worker returned and moves to the next state.
    fn settle<R>(&mut self, ran: Option<Ran<(R, bool)>>) -> Result<(R, bool), Failure> {
        let Some(ran) = ran else {
            let failure = self.failure_of(FailureKind::Lost("its worker died".into()));
            self.state = State::Failed(failure.clone());
            return Err(failure);
        };
        if let Some(finished) = ran.finished {
            self.shared.pool.discard(finished);
        }
        self.stats.calls += 1;
        self.stats.busy += ran.busy;
        (
            self.stats.log_lines,
            self.stats.log_bytes,
            self.stats.log_dropped,
        ) = ran.log;
        match ran.result {
            Ok((value, done)) => {
                if let Some(live) = ran.live {
                    self.state = State::Running {
                        live,
                        enough: false,
                    };
                }
                Ok((value, done))
            }
            Err(kind) => {
                let failure = self.failure_of(kind);
                tracing::warn!(
                    target: super::host::GUEST_LOG_TARGET,
                    plugin = %self.plugin.name,
                    upload = %self.upload_id,
                    "{failure}"
                );
                self.state = State::Failed(failure.clone());
                Err(failure)
            }
        }
    }

    fn failure_of(&self, kind: FailureKind) -> Failure {
        Failure {
            plugin: Arc::clone(&self.plugin.name),
            kind,
        }
    }

    fn lost(&self) -> Failure {
        self.failure_of(FailureKind::Lost(
            "an earlier call was cancelled while the plugin ran".into(),
        ))
    }
}

impl Drop for Inspection {
    /// An inspection dropped mid-upload (the upload was cancelled, or another
    /// plugin already rejected it) frees its instance on a worker.
    fn drop(&mut self) {
        if let State::Running { live, .. } = std::mem::replace(&mut self.state, State::InFlight) {
            self.shared.pool.discard(live);
        }
    }
}

impl std::fmt::Debug for Inspection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &self.state {
            State::Running { enough, .. } => format!("running (enough: {enough})"),
            State::Done(outcome) => format!("done ({:?})", outcome.verdict),
            State::Failed(failure) => format!("failed ({failure})"),
            State::InFlight => "lost".into(),
        };
        f.debug_struct("Inspection")
            .field("plugin", &self.plugin.name)
            .field("upload", &self.upload_id)
            .field("state", &state)
            .finish()
    }
}

/// Creates the store, instantiates and constructs the guest's `inspection`,
/// on a worker.
fn instantiate(
    engine: &wasmtime::Engine,
    epoch_tick: Duration,
    plugin: &Plugin,
    meta: UploadMeta,
    stats: TenantStats,
) -> Ran<()> {
    let started = Instant::now();
    let limits = plugin.limits;
    // Checked against the sandbox's max_memory (a usize) at load.
    let memory_cap = usize::try_from(limits.memory).unwrap_or(usize::MAX);
    let state = HostState::new(
        Arc::clone(&plugin.name),
        meta.upload_id.clone(),
        meta.tenant.clone(),
        stats,
        Arc::clone(&plugin.config_json),
        memory_cap,
    );
    let mut store = Store::new(engine, state);
    store.limiter(|state| &mut state.limiter);
    arm(&mut store, limits.deadline, epoch_tick, limits.fuel);
    let result = plugin
        .pre
        .instantiate(&mut store)
        .map_err(|err| classify_instantiation(store.data(), &err))
        .and_then(|guest| {
            let meta = wit::UploadMetadata::from(&meta);
            guest
                .strongroom_plugin_inspect()
                .inspection()
                .call_constructor(&mut store, &meta)
                .map(|inspection| (guest, inspection))
                .map_err(|err| classify(store.data(), &err))
        });
    let busy = started.elapsed();
    let log = log_counts(store.data());
    match result {
        Ok((guest, inspection)) => Ran {
            live: Some(Box::new(Live {
                store,
                guest,
                inspection,
            })),
            finished: None,
            result: Ok(()),
            busy,
            log,
        },
        Err(kind) => Ran {
            live: None,
            finished: None,
            result: Err(kind),
            busy,
            log,
        },
    }
}

/// Re-arms the per-call budgets: the deadline in epoch ticks (the call is
/// stopped within one tick after it) and the fuel backstop.
fn arm(store: &mut Store<HostState>, deadline: Duration, tick: Duration, fuel: u64) {
    let ticks = deadline.as_nanos().div_ceil(tick.as_nanos().max(1)).max(1);
    store.set_epoch_deadline(u64::try_from(ticks).unwrap_or(u64::MAX));
    store
        .set_fuel(fuel)
        .expect("fuel is enabled on the sandbox engine");
}

fn log_counts(state: &HostState) -> (u32, u32, u32) {
    (state.log.lines, state.log.bytes, state.log.dropped)
}

/// Names what stopped a call. Order matters: a refused memory grow and a
/// guest panic both end in a trap whose code says less than we know.
fn classify(state: &HostState, err: &wasmtime::Error) -> FailureKind {
    if state.limiter.hit {
        return FailureKind::MemoryLimit;
    }
    match err.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => FailureKind::Timeout,
        Some(Trap::OutOfFuel) => FailureKind::FuelExhausted,
        trap => match (&state.log.panic, trap) {
            (Some(message), _) => FailureKind::Panic(message.clone()),
            (None, Some(trap)) => FailureKind::Trap(trap.to_string()),
            // Not a trap code: e.g. the guest returned an invalid string or
            // list, which the canonical ABI refuses while lifting.
            (None, None) => FailureKind::Trap(format!("{err:#}")),
        },
    }
}

fn classify_instantiation(state: &HostState, err: &wasmtime::Error) -> FailureKind {
    if err.downcast_ref::<PoolConcurrencyLimitError>().is_some() {
        FailureKind::Busy
    } else if state.limiter.hit || err.downcast_ref::<Trap>().is_some() {
        classify(state, err)
    } else {
        FailureKind::Instantiation(format!("{err:#}"))
    }
}
