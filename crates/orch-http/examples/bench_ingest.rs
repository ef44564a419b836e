//! Ingest benchmark (`cargo xtask bench ingest`): signed deliveries to the real server.
//!
//! Serves `orch_http::serve` on 127.0.0.1:0 over `SqliteStore` (a temp-file database; inbox
//! commits use `synchronous=FULL`), or `MemStore` with `--store mem`, and measures, with a
//! hyper client in the same process (so client and server share the machine's cores):
//! 1. open-loop load at 500 deliveries/s: answered throughput, p50/p99/max latency;
//! 2. saturation: `--concurrency` closed-loop senders: throughput, p50/p99 latency;
//! 3. forged requests (wrong signature): p50/p99 time to the 401.
//!
//! Options: `--store sqlite|mem`, `--rate N` (500), `--seconds N` (5), `--saturation N`
//! (5000 deliveries), `--concurrency N` (16), `--forged N` (2000).

use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use orch_core::fakes::store::MemStore;
use orch_core::ports::{Clock, Store};
use orch_core::time::Timestamp;
use orch_http::{AppState, WebhookEvents, WebhookSecrets};
use sha2::Sha256;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

const SECRET: &str = "plane_wh_0123456789abcdef0123456789abcdef";
/// The body of the Plane contract sample, with a counter spliced in so each delivery is
/// distinct (1.8 KB, like real Plane deliveries).
const SAMPLE_BODY_PREFIX: &str = r#"{"event": "issue", "action": "updated", "webhook_id": "6d1f0c52-8a3b-4c1e-9f27-3e5d7a9b1c04", "workspace_id": "c3a7e2b1-5d4f-4a6e-8b9c-0d1e2f3a4b5c", "data": {"id": "9b0a6f2e-3c1d-4e5f-8a7b-6c5d4e3f2a1b", "name": "Add retry backoff to the sync worker", "description_html": "<p>The sync worker retries immediately on 5xx; add exponential backoff with jitter, capped at 5 minutes.</p>", "priority": "medium", "sequence_id": "#;
const SAMPLE_BODY_SUFFIX: &str = r##", "state": {"id": "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d", "name": "In Progress", "color": "#F59E0B", "group": "started"}, "labels": [], "assignees": [], "created_at": "2026-05-18T09:12:44.318203Z", "updated_at": "2026-05-19T10:15:30.482117Z"}, "activity": {"field": "state_id", "new_value": "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d", "old_value": "f0e1d2c3-b4a5-4968-8778-695a4b3c2d1e", "actor": {"id": "5e4d3c2b-1a09-4f8e-9d7c-6b5a49382716", "first_name": "Ana", "last_name": "Ruiz", "display_name": "ana"}, "old_identifier": null, "new_identifier": null}}"##;

struct Options {
    store: String,
    rate: u64,
    seconds: u64,
    saturation: usize,
    concurrency: usize,
    forged: usize,
}

fn options() -> Result<Options, String> {
    let mut options = Options {
        store: "sqlite".to_owned(),
        rate: 500,
        seconds: 5,
        saturation: 5000,
        concurrency: 16,
        forged: 2000,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = || {
            value
                .parse::<u64>()
                .map_err(|_| format!("{flag}: expected a number, got {value:?}"))
        };
        match flag.as_str() {
            "--store" if value == "sqlite" || value == "mem" => options.store = value.clone(),
            "--rate" => options.rate = number()?.max(1),
            "--seconds" => options.seconds = number()?.max(1),
            "--saturation" => options.saturation = number()? as usize,
            "--concurrency" => options.concurrency = number()?.max(1) as usize,
            "--forged" => options.forged = number()? as usize,
            _ => return Err(format!("unknown option {flag} {value}")),
        }
    }
    Ok(options)
}

struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp::from_millis(since_epoch.as_millis() as i64)
    }
}

type HttpClient = Client<HttpConnector, Full<Bytes>>;

#[derive(Clone)]
struct Target {
    client: HttpClient,
    url: String,
}

fn sign(body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).expect("any key length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

fn delivery(sequence: u64, forged: bool) -> (Bytes, String, String) {
    let body = format!("{SAMPLE_BODY_PREFIX}{sequence}{SAMPLE_BODY_SUFFIX}");
    let signature = if forged {
        sign(b"not this body")
    } else {
        sign(body.as_bytes())
    };
    (Bytes::from(body), signature, format!("bench-{sequence}"))
}

/// Sends one delivery; returns its status and the time to the whole answer.
async fn send(target: &Target, sequence: u64, forged: bool) -> Result<(u16, Duration), String> {
    let (body, signature, delivery_id) = delivery(sequence, forged);
    let request = hyper::Request::post(&target.url)
        .header("content-type", "application/json")
        .header("x-plane-event", "issue")
        .header("x-plane-delivery", delivery_id)
        .header("x-plane-signature", signature)
        .body(Full::new(body))
        .map_err(|err| err.to_string())?;
    let started = Instant::now();
    let response = target
        .client
        .request(request)
        .await
        .map_err(|err| err.to_string())?;
    let status = response.status().as_u16();
    response
        .into_body()
        .collect()
        .await
        .map_err(|err| err.to_string())?;
    Ok((status, started.elapsed()))
}

struct Figures {
    answered: usize,
    errors: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Figures {
    fn percentile(&self, fraction: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let index = ((self.latencies.len() as f64 * fraction).ceil() as usize)
            .clamp(1, self.latencies.len())
            - 1;
        self.latencies[index]
    }

    fn line(&self, title: &str) -> String {
        format!(
            "{title}: {} answered ({} errors) in {:.2} s = {:.0}/s; latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            self.answered,
            self.errors,
            self.elapsed.as_secs_f64(),
            self.answered as f64 / self.elapsed.as_secs_f64(),
            ms(self.percentile(0.50)),
            ms(self.percentile(0.99)),
            ms(self.latencies.last().copied().unwrap_or_default()),
        )
    }
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn figures(
    results: Vec<Result<(u16, Duration), String>>,
    expected_status: u16,
    elapsed: Duration,
) -> Figures {
    let mut latencies = Vec::with_capacity(results.len());
    let mut errors = 0;
    for result in results {
        match result {
            Ok((status, latency)) if status == expected_status => latencies.push(latency),
            _ => errors += 1,
        }
    }
    latencies.sort();
    Figures {
        answered: latencies.len(),
        errors,
        elapsed,
        latencies,
    }
}

/// Open loop: one delivery every `1/rate` s for `seconds`, whatever the answers do.
async fn paced(target: &Target, first: u64, rate: u64, seconds: u64) -> Figures {
    let total = rate * seconds;
    let mut ticker = tokio::time::interval(Duration::from_nanos(1_000_000_000 / rate));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(total as usize);
    for sequence in first..first + total {
        ticker.tick().await;
        let target = target.clone();
        tasks.push(tokio::spawn(
            async move { send(&target, sequence, false).await },
        ));
    }
    let mut results = Vec::with_capacity(tasks.len());
    for task in tasks {
        results.push(
            task.await
                .map_err(|err| err.to_string())
                .and_then(|result| result),
        );
    }
    figures(results, 202, started.elapsed())
}

/// Closed loop: `concurrency` senders, each sending its next delivery after an answer.
async fn saturated(
    target: &Target,
    first: u64,
    total: usize,
    concurrency: usize,
    forged: bool,
) -> Figures {
    let next = Arc::new(std::sync::atomic::AtomicU64::new(first));
    let last = first + total as u64;
    let started = Instant::now();
    let mut senders = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let (target, next) = (target.clone(), next.clone());
        senders.push(tokio::spawn(async move {
            let mut results = Vec::new();
            loop {
                let sequence = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if sequence >= last {
                    return results;
                }
                results.push(send(&target, sequence, forged).await);
            }
        }));
    }
    let mut results = Vec::with_capacity(total);
    for sender in senders {
        results.extend(sender.await.expect("sender task"));
    }
    figures(results, if forged { 401 } else { 202 }, started.elapsed())
}

fn say(line: &str) {
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let options = options()?;
    let database = tempfile::tempdir()?;
    let store: Arc<dyn Store> = match options.store.as_str() {
        "mem" => Arc::new(MemStore::new()),
        _ => {
            let path = database.path().join("bench.db");
            Arc::new(
                tokio::task::spawn_blocking(move || orch_sqlite::SqliteStore::open(path)).await??,
            )
        }
    };
    let events = WebhookEvents {
        plane: orch_plane::webhook::WEBHOOK_EVENTS,
        gitea: orch_gitea::webhook::WEBHOOK_EVENTS,
    };
    let mut state = AppState::new(store.clone(), Arc::new(SystemClock), events);
    state.plane_secrets = WebhookSecrets::from_strings(&[SECRET]);
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let url = format!("http://{}/webhooks/plane", listener.local_addr()?);
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(orch_http::serve(listener, state, async move {
        let _ = stopped.await;
    }));
    let client = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(64)
        .build_http();
    let target = Target { client, url };

    say(&format!(
        "bench ingest: store {}, {} cores available, client and server in one process",
        options.store,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    ));
    // Warm up connections and the database.
    let _ = saturated(&target, 0, 200, 8, false).await;

    let paced_figures = paced(&target, 1_000_000, options.rate, options.seconds).await;
    say(&paced_figures.line(&format!(
        "paced {}/s for {} s",
        options.rate, options.seconds
    )));

    let saturation = saturated(
        &target,
        2_000_000,
        options.saturation,
        options.concurrency,
        false,
    )
    .await;
    say(&saturation.line(&format!(
        "saturation, {} concurrent senders",
        options.concurrency
    )));

    let forged = saturated(&target, 3_000_000, options.forged, 1, true).await;
    say(&forged.line("forged (wrong signature, one sender)"));

    let stored = store.inbox_stats(SystemClock.now()).await?.pending;
    say(&format!(
        "stored deliveries: {stored} (forged ones stored: none expected)"
    ));
    let _ = stop.send(());
    server.await??;
    Ok(())
}
