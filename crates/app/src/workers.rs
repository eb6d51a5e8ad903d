//! Worker runtimes: one single-threaded tokio runtime per worker thread, as
//! Envoy runs one event loop per worker (see docs/decisions/0001-workers.md).
//! Connections stay on the worker that accepted them, so a request never
//! crosses threads and needs no locks.

use std::thread::JoinHandle;

use tokio::{runtime::Handle, sync::watch};

/// How connections are spread over threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeModel {
    /// One current-thread runtime per worker, each accepting on the shared
    /// listening socket (the default; Envoy's model).
    PerCore,
    /// One multi-threaded work-stealing runtime with `concurrency` threads.
    Shared,
}

/// The worker threads and a handle to spawn onto each.
#[derive(Debug)]
pub(crate) struct Workers {
    handles: Vec<Handle>,
    threads: Vec<JoinHandle<()>>,
    stop: watch::Sender<bool>,
}

impl Workers {
    pub(crate) fn start(count: usize, model: RuntimeModel) -> std::io::Result<Workers> {
        let (stop, _) = watch::channel(false);
        if model == RuntimeModel::Shared {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(count.max(1))
                .thread_name("strait-worker")
                .enable_all()
                .build()?;
            let handles = vec![rt.handle().clone()];
            let mut rx = stop.subscribe();
            let thread = std::thread::Builder::new()
                .name("strait-workers".into())
                .spawn(move || {
                    rt.block_on(async move {
                        let _ = rx.wait_for(|s| *s).await;
                    });
                })?;
            return Ok(Workers {
                handles,
                threads: vec![thread],
                stop,
            });
        }
        let mut handles = Vec::with_capacity(count);
        let mut threads = Vec::with_capacity(count);
        for i in 0..count.max(1) {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            handles.push(rt.handle().clone());
            let mut rx = stop.subscribe();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("strait-worker-{i}"))
                    .spawn(move || {
                        rt.block_on(async move {
                            let _ = rx.wait_for(|s| *s).await;
                        });
                    })?,
            );
        }
        Ok(Workers {
            handles,
            threads,
            stop,
        })
    }

    pub(crate) fn handles(&self) -> &[Handle] {
        &self.handles
    }

    /// Stops every worker runtime (dropping its remaining tasks) and joins.
    pub(crate) fn stop(self) {
        self.stop.send_replace(true);
        for t in self.threads {
            let _ = t.join();
        }
    }
}
