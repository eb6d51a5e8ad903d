//! A one-way signal: "stop taking new work and finish what you have".

use tokio::sync::watch;

/// The sending side; dropping it also counts as a drain.
#[derive(Debug)]
pub struct Drain {
    tx: watch::Sender<bool>,
}

/// The receiving side, cheap to clone into every connection.
#[derive(Debug, Clone)]
pub struct DrainWatch {
    rx: watch::Receiver<bool>,
}

impl Drain {
    pub fn new() -> (Drain, DrainWatch) {
        let (tx, rx) = watch::channel(false);
        (Drain { tx }, DrainWatch { rx })
    }

    /// Signals every watcher. Idempotent.
    pub fn signal(&self) {
        self.tx.send_replace(true);
    }

    pub fn watch(&self) -> DrainWatch {
        DrainWatch {
            rx: self.tx.subscribe(),
        }
    }
}

impl DrainWatch {
    /// Resolves once the drain is signalled (or its sender dropped).
    /// Cancel-safe.
    pub async fn signaled(mut self) {
        let _ = self.rx.wait_for(|d| *d).await;
    }

    pub fn is_signaled(&self) -> bool {
        *self.rx.borrow()
    }
}
