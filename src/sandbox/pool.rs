//! The threads that run plugin calls, so Wasm never runs on the reactor. A
//! bounded queue in front: when every worker is busy and the queue is full,
//! callers wait (asynchronously) for room instead of piling up work.

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::thread;

use tokio::sync::{mpsc, oneshot};

type Job = Box<dyn FnOnce() + Send>;

/// Native stack of a worker. Wasm runs on it too (`max_wasm_stack`, 512 KiB
/// by default), with the host functions and wasmtime's frames on top.
const WORKER_STACK: usize = 4 << 20;

pub(super) struct Pool {
    jobs: mpsc::Sender<Job>,
}

impl Pool {
    /// Starts `workers` threads. They exit once every `Pool` handle is gone
    /// and the queue is drained.
    pub(super) fn start(workers: usize, queue_depth: usize) -> std::io::Result<Pool> {
        let (jobs, queue) = mpsc::channel::<Job>(queue_depth.max(1));
        let queue = Arc::new(Mutex::new(queue));
        for index in 0..workers.max(1) {
            let queue = Arc::clone(&queue);
            thread::Builder::new()
                .name(format!("sandbox-{index}"))
                .stack_size(WORKER_STACK)
                .spawn(move || work(&queue))?;
        }
        Ok(Pool { jobs })
    }

    /// Runs `job` on a worker and waits for its result. `None` if the job
    /// panicked or the pool is gone. If the caller stops waiting, the job
    /// still runs to the end (it is bounded by its deadline) and its result
    /// is dropped on the worker.
    pub(super) async fn run<R, F>(&self, job: F) -> Option<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let (done, result) = oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = done.send(job());
        });
        self.jobs.send(job).await.ok()?;
        result.await.ok()
    }

    /// Drops `value` on a worker if the queue has room, else here. For
    /// stores: freeing an instance slot zeroes up to `KEEP_RESIDENT` bytes,
    /// which is not reactor work.
    pub(super) fn discard<T: Send + 'static>(&self, value: T) {
        if let Err(full) = self.jobs.try_send(Box::new(move || drop(value))) {
            drop(full.into_inner());
        }
    }
}

fn work(queue: &Mutex<mpsc::Receiver<Job>>) {
    loop {
        // The lock is held only while waiting for the next job, never while
        // running one.
        let job = match queue.lock() {
            Ok(mut queue) => queue.blocking_recv(),
            Err(_) => return,
        };
        let Some(job) = job else { return };
        // A panic in host code must not take the worker down with it; the
        // caller sees its result channel close and reports the call lost.
        if std::panic::catch_unwind(AssertUnwindSafe(job)).is_err() {
            tracing::error!("a plugin call panicked in the host; its inspection is lost");
        }
    }
}
