//! A metrics service for tests: tonic serving Envoy's
//! `MetricsService.StreamMetrics` on 127.0.0.1 port 0, recording every
//! `StreamMetricsMessage` with the stream it came on.
//!
//! The server runs on its own thread and runtime (as [`crate::xds_server`]
//! does), so it works from any test, sync or async.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex, PoisonError},
};

use envoy_types::pb::envoy::service::metrics::v3::{
    StreamMetricsMessage, StreamMetricsResponse,
    metrics_service_server::{MetricsService, MetricsServiceServer},
};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::sync::oneshot;
use tonic::{Request, Response, Status, Streaming};

/// One message as received: the stream it came on (0 for the first the
/// server accepted, counting up) and the message.
#[derive(Debug, Clone)]
pub struct Received {
    pub stream: usize,
    pub message: StreamMetricsMessage,
}

#[derive(Default)]
struct Recorder {
    received: Mutex<Vec<Received>>,
    streams: Mutex<usize>,
    /// Ends each stream (answering it) after this many messages.
    close_after: Option<usize>,
}

/// A running metrics service; stopped on drop.
pub struct MetricsServer {
    addr: SocketAddr,
    recorder: Arc<Recorder>,
    stop: Option<oneshot::Sender<()>>,
}

impl MetricsServer {
    /// Starts a server that keeps every stream open.
    pub fn start() -> MetricsServer {
        Self::with_recorder(Recorder::default())
    }

    /// Starts a server that answers (ends) each stream after `n` messages,
    /// as a restarting collector would, so the client must open a new one.
    pub fn closing_streams_after(n: usize) -> MetricsServer {
        Self::with_recorder(Recorder {
            close_after: Some(n),
            ..Recorder::default()
        })
    }

    fn with_recorder(recorder: Recorder) -> MetricsServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap_or_else(|e| panic!("metrics service bind: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("metrics service address: {e}"));
        let recorder = Arc::new(recorder);
        let (stop, stopped) = oneshot::channel::<()>();
        let service = MetricsServiceServer::from_arc(Arc::clone(&recorder));
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap_or_else(|e| panic!("metrics service runtime: {e}"));
            rt.block_on(async move {
                let _ = listener.set_nonblocking(true);
                let listener = tokio::net::TcpListener::from_std(listener)
                    .unwrap_or_else(|e| panic!("metrics service listener: {e}"));
                let serve = async {
                    loop {
                        let Ok((stream, _)) = listener.accept().await else {
                            continue;
                        };
                        let service = service.clone();
                        // The generated service is a plain tower service;
                        // hyper's HTTP/2 server drives it directly.
                        tokio::spawn(async move {
                            let svc = hyper::service::service_fn(move |req| {
                                let mut service = service.clone();
                                tonic::codegen::Service::call(&mut service, req)
                            });
                            let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                                .serve_connection(TokioIo::new(stream), svc)
                                .await;
                        });
                    }
                };
                tokio::select! {
                    () = serve => {}
                    _ = stopped => {}
                }
            });
            rt.shutdown_background();
        });
        MetricsServer {
            addr,
            recorder,
            stop: Some(stop),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every message received so far, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        self.recorder
            .received
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

#[tonic::async_trait]
impl MetricsService for Recorder {
    async fn stream_metrics(
        &self,
        request: Request<Streaming<StreamMetricsMessage>>,
    ) -> Result<Response<StreamMetricsResponse>, Status> {
        let stream = {
            let mut n = self.streams.lock().unwrap_or_else(PoisonError::into_inner);
            *n += 1;
            *n - 1
        };
        let mut inbound = request.into_inner();
        let mut count = 0;
        while let Some(message) = inbound.message().await? {
            self.received
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(Received { stream, message });
            count += 1;
            if self.close_after.is_some_and(|n| count >= n) {
                break;
            }
        }
        Ok(Response::new(StreamMetricsResponse {}))
    }
}
