//! Open-loop, fixed-rate HTTP load generator (`xtask loadgen`), run by
//! `bench` as a separate process pinned to the load core.
//!
//! A pacer thread emits one scheduled send time every `1/rate` seconds,
//! whatever the server is doing; a pool of workers on a current-thread tokio
//! runtime takes the next scheduled time, sends `GET /` and records latency
//! from the *scheduled* time to the end of the response body. A slow server
//! therefore cannot slow the offered load down and hide its own delay
//! (coordinated omission): queueing behind a slow response is counted.
//!
//! Prints one JSON object on stdout.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::{http1, http2};
use hyper::{Request, header};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio::sync::{Mutex, mpsc};

/// Enough HTTP/1.1 connections that a request never waits for a free one at
/// the rates we offer (2,000/s at well under a millisecond each is about one
/// in flight); a waiting request would still be measured honestly, from its
/// scheduled time.
const HTTP1_CONNECTIONS: usize = 32;
const HTTP2_CONNECTIONS: usize = 2;
const HTTP2_WORKERS: usize = 32;

pub struct Args {
    pub addr: SocketAddr,
    pub http2: bool,
    pub rate: u32,
    pub warmup: Duration,
    pub duration: Duration,
}

impl Args {
    /// `--addr IP:PORT --proto h1|h2 --rate N --warmup-ms N --duration-ms N`
    pub fn parse(args: &[String]) -> Result<Self> {
        let mut addr = None;
        let mut http2 = false;
        let mut rate = 2000;
        let mut warmup = Duration::from_secs(1);
        let mut duration = Duration::from_secs(5);
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let value = it.next().with_context(|| format!("{flag} needs a value"))?;
            match flag.as_str() {
                "--addr" => addr = Some(value.parse().context("--addr")?),
                "--proto" => {
                    http2 = match value.as_str() {
                        "h1" => false,
                        "h2" => true,
                        other => bail!("--proto: expected h1 or h2, got {other}"),
                    }
                }
                "--rate" => rate = value.parse().context("--rate")?,
                "--warmup-ms" => {
                    warmup = Duration::from_millis(value.parse().context("--warmup-ms")?)
                }
                "--duration-ms" => {
                    duration = Duration::from_millis(value.parse().context("--duration-ms")?)
                }
                other => bail!("loadgen: unknown option {other}"),
            }
        }
        if rate == 0 {
            bail!("--rate must be positive");
        }
        Ok(Self {
            addr: addr.context("--addr is required")?,
            http2,
            rate,
            warmup,
            duration,
        })
    }

    pub fn to_args(&self) -> Vec<String> {
        vec![
            "--addr".into(),
            self.addr.to_string(),
            "--proto".into(),
            if self.http2 { "h2" } else { "h1" }.into(),
            "--rate".into(),
            self.rate.to_string(),
            "--warmup-ms".into(),
            self.warmup.as_millis().to_string(),
            "--duration-ms".into(),
            self.duration.as_millis().to_string(),
        ]
    }
}

pub fn run(args: &Args) -> Result<()> {
    // The pacer sleeps until each send time; the default 50 µs timer slack
    // would add that much to every measured latency. Threads inherit the
    // slack of their creator, so set it before any thread exists. Best
    // effort: without it results are just a little coarser.
    let _ = std::fs::write("/proc/self/timerslack_ns", "1");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let report = runtime.block_on(drive(args))?;
    println!("{report}");
    Ok(())
}

async fn drive(args: &Args) -> Result<serde_json::Value> {
    let clients = connect_all(args).await?;
    let (schedule_tx, schedule_rx) = mpsc::unbounded_channel::<Instant>();
    let schedule_rx = Arc::new(Mutex::new(schedule_rx));

    let start = Instant::now() + Duration::from_millis(10);
    let measure_from = start + args.warmup;
    let period = Duration::from_secs(1) / args.rate;
    let total = ((args.warmup + args.duration).as_secs_f64() * f64::from(args.rate)) as u64;

    let workers: Vec<_> = clients
        .into_iter()
        .map(|client| tokio::spawn(work(client, schedule_rx.clone(), measure_from)))
        .collect();
    let pacer = std::thread::spawn(move || pace(&schedule_tx, start, period, total));

    let mut latencies_us = Vec::new();
    let mut errors = 0u64;
    // Generous: every scheduled request has been handed out by then, and a
    // request still outstanding after this long has failed anyway.
    let deadline =
        tokio::time::Instant::now() + args.warmup + args.duration + Duration::from_secs(15);
    for worker in workers {
        let outcome = tokio::time::timeout_at(deadline, worker)
            .await
            .context("load generator: requests still outstanding long after the run")???;
        latencies_us.extend(outcome.latencies_us);
        errors += outcome.errors;
    }
    let Ok(mut pacer_late_us) = pacer.join() else {
        bail!("load generator: pacer thread panicked");
    };
    pacer_late_us.sort_unstable();
    let measured_seconds = args.duration.as_secs_f64();

    latencies_us.sort_unstable();
    let quantile = |q: f64| quantile_of(&latencies_us, q);
    Ok(serde_json::json!({
        "requests": latencies_us.len(),
        "errors": errors,
        "offered_rps": args.rate,
        "completed_rps": latencies_us.len() as f64 / measured_seconds.max(f64::EPSILON),
        "p50_us": quantile(0.50),
        "p90_us": quantile(0.90),
        "p99_us": quantile(0.99),
        "p999_us": quantile(0.999),
        "max_us": latencies_us.last(),
        // How late the pacer itself handed out send times: the part of the
        // latencies above that is the load generator's own scheduling.
        "pacer_late_p99_us": quantile_of(&pacer_late_us, 0.99),
        "pacer_late_max_us": pacer_late_us.last(),
    }))
}

/// The `q` quantile (nearest rank) of sorted samples.
fn quantile_of(sorted: &[u64], q: f64) -> Option<u64> {
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len().max(1)) - 1).copied()
}

/// Emits scheduled send times at exactly `period` apart, never catching up
/// by skipping: if the thread wakes late, the late sends carry their
/// original, earlier schedule and so their lateness is measured. Returns
/// how late each send time was handed out, in µs.
fn pace(
    schedule: &mpsc::UnboundedSender<Instant>,
    start: Instant,
    period: Duration,
    total: u64,
) -> Vec<u64> {
    let mut late_us = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    for i in 0..total {
        let due = start + Duration::from_nanos(period.as_nanos() as u64 * i);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        if schedule.send(due).is_err() {
            break;
        }
        late_us.push(due.elapsed().as_micros() as u64);
    }
    late_us
}

struct Outcome {
    latencies_us: Vec<u64>,
    errors: u64,
}

async fn work(
    mut client: Client,
    schedule: Arc<Mutex<mpsc::UnboundedReceiver<Instant>>>,
    measure_from: Instant,
) -> Result<Outcome> {
    let mut outcome = Outcome {
        latencies_us: Vec::new(),
        errors: 0,
    };
    loop {
        let next = { schedule.lock().await.recv().await };
        let Some(scheduled) = next else {
            return Ok(outcome);
        };
        let ok = client.get().await.is_ok();
        let latency = scheduled.elapsed();
        if scheduled < measure_from {
            continue;
        }
        if ok {
            outcome.latencies_us.push(latency.as_micros() as u64);
        } else {
            outcome.errors += 1;
        }
    }
}

/// One worker's way to send a request: its own HTTP/1.1 connection, or a
/// handle on a shared HTTP/2 connection.
enum Client {
    Http1 {
        addr: SocketAddr,
        sender: Option<http1::SendRequest<Empty<Bytes>>>,
    },
    Http2 {
        uri: String,
        sender: http2::SendRequest<Empty<Bytes>>,
    },
}

async fn connect_all(args: &Args) -> Result<Vec<Client>> {
    let mut clients = Vec::new();
    if args.http2 {
        let uri = format!("http://{}/", args.addr);
        let mut senders = Vec::new();
        for _ in 0..HTTP2_CONNECTIONS {
            let io = TokioIo::new(tcp(args.addr).await?);
            let (sender, connection) = http2::handshake(TokioExecutor::new(), io)
                .await
                .context("h2c handshake")?;
            tokio::spawn(connection);
            senders.push(sender);
        }
        for i in 0..HTTP2_WORKERS {
            clients.push(Client::Http2 {
                uri: uri.clone(),
                sender: senders[i % senders.len()].clone(),
            });
        }
    } else {
        for _ in 0..HTTP1_CONNECTIONS {
            clients.push(Client::Http1 {
                addr: args.addr,
                sender: Some(http1_connect(args.addr).await?),
            });
        }
    }
    Ok(clients)
}

async fn tcp(addr: SocketAddr) -> Result<TcpStream> {
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

async fn http1_connect(addr: SocketAddr) -> Result<http1::SendRequest<Empty<Bytes>>> {
    let io = TokioIo::new(tcp(addr).await?);
    let (sender, connection) = http1::handshake(io).await.context("HTTP/1.1 handshake")?;
    tokio::spawn(connection);
    Ok(sender)
}

impl Client {
    /// `GET /`, reading the whole body; Ok only for a 200.
    async fn get(&mut self) -> Result<()> {
        let response = match self {
            Client::Http1 { addr, sender } => {
                // A failed request leaves its connection unusable; reconnect
                // lazily on the next one.
                if sender.as_ref().is_none_or(|s| s.is_closed()) {
                    *sender = Some(http1_connect(*addr).await?);
                }
                let Some(conn) = sender.as_mut() else {
                    bail!("no connection");
                };
                let request = Request::get("/")
                    .header(header::HOST, addr.to_string())
                    .body(Empty::new())?;
                let result = async {
                    conn.ready().await?;
                    conn.send_request(request).await
                }
                .await;
                if result.is_err() {
                    *sender = None;
                }
                result?
            }
            Client::Http2 { uri, sender } => {
                let request = Request::get(uri.as_str()).body(Empty::new())?;
                sender.ready().await?;
                sender.send_request(request).await?
            }
        };
        let status = response.status();
        response.into_body().collect().await?;
        if status != hyper::StatusCode::OK {
            bail!("status {status}");
        }
        Ok(())
    }
}
