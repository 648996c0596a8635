//! The epoch ticker: advances the engine's epoch every tick so running Wasm
//! can notice its deadline. One thread, stopped and joined on drop.

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use wasmtime::Engine;

pub(super) struct Ticker {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Ticker {
    pub(super) fn start(engine: Engine, tick: Duration) -> std::io::Result<Ticker> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = thread::Builder::new()
            .name("sandbox-epoch".into())
            .spawn(move || {
                // Waiting on the channel doubles as the sleep: dropping the
                // sender wakes it at once.
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(tick) {
                    engine.increment_epoch();
                }
            })?;
        Ok(Ticker {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
