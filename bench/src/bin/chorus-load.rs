//! `chorus-load`: the HTTP load driver of the overhead benchmark.
//!
//! It sends the same small chat completion request to one endpoint (the gateway, or the
//! mock upstream directly) and reports latency percentiles; the difference between a run
//! through the gateway and a run straight at the upstream is the gateway's overhead.
//! Load is applied in one of three ways:
//!
//! - `sequential`: one connection, one request at a time. The cleanest per-request
//!   latency, with no queueing anywhere.
//! - `closed`: N connections, each sends its next request as soon as the previous one
//!   finished. Good for throughput, but its latencies understate what users would see at
//!   that load: a slow response also holds back the requests that would have been sent
//!   meanwhile, so the stall is measured once instead of once per delayed request
//!   ("coordinated omission").
//! - `rate`: open loop at a fixed rate R. Request k is due at `start + k / R` whatever
//!   happened before; a pool of N connections takes the due requests in order. When a
//!   request is already overdue as a connection takes it (all connections were busy, the
//!   system under test fell behind), its latency counts from the due time, not from the
//!   actual send, so a stall shows in the latency of every request it delayed. When a
//!   connection takes a request ahead of time and sleeps until it is due, latency counts
//!   from the actual send: the tokio timer wakes up to ~2 ms late, and that lag is the
//!   driver's, not the system's. The lag between due time and actual send is reported on
//!   its own (`send-lag`); it grows when N connections are too few for the rate. The
//!   achieved rate divides the measured requests by the time from the end of the warm-up
//!   to the last measured response, so a backlog drained after the end lowers it.
//!
//! Latency runs until the whole response body has been read; with `--stream`, the time to
//! first token (TTFT) is the first body frame carrying an SSE `data:` line. Non-2xx
//! responses and transport errors count as errors and stay out of the histograms. The
//! gateway's own estimate of its overhead, the response header `x-chorus-overhead-ms`, is
//! collected in a histogram of its own. A warm-up phase runs the same load first and its
//! requests are not counted. No request is sent after the end of the measurement;
//! requests in flight then are awaited for up to 5 s, then abandoned and counted as errors.
//!
//! The driver uses hyper's connection API directly (one task per keep-alive connection)
//! and a single runtime thread by default, to take as little CPU as possible from the
//! system under test on a shared machine.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use bytes::Bytes;
use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use http::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, HOST};
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Response header in which the gateway reports its own overhead, in milliseconds.
const OVERHEAD_HEADER: &str = "x-chorus-overhead-ms";
/// The user message of every request.
const PROMPT: &str = "Say hello to the benchmark";
/// How long requests still in flight at the end of the run are awaited.
const DRAIN_GRACE: Duration = Duration::from_secs(5);
/// Pause after a transport error in the closed modes, so a dead server is not hammered.
const RECONNECT_BACKOFF: Duration = Duration::from_millis(50);
/// Highest value the histograms hold (one hour, in microseconds); larger values saturate.
const HISTOGRAM_MAX_MICROS: u64 = 3_600_000_000;

/// Command line of `chorus-load`.
#[derive(Debug, Parser)]
#[command(
    name = "chorus-load",
    about = "HTTP load driver of the Chorus overhead benchmark"
)]
struct Args {
    /// Full URL of the POST endpoint, e.g. `http://127.0.0.1:4000/v1/chat/completions`
    /// (http only).
    #[arg(long)]
    url: String,
    /// How load is applied.
    #[arg(long, value_enum, default_value_t = Mode::Closed)]
    mode: Mode,
    /// Number of keep-alive connections (`sequential` always uses one).
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Target rate in requests per second; required by `--mode rate`.
    #[arg(long)]
    rate: Option<f64>,
    /// Length of the measurement, in seconds.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Length of the warm-up before the measurement, in seconds; its results are discarded.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Ask for a streamed response and measure the time to first token.
    #[arg(long)]
    stream: bool,
    /// Extra request header, e.g. `Authorization: Bearer sk-...`; repeatable.
    #[arg(long = "header", value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// Model named in the request body.
    #[arg(long, default_value = "fast")]
    model: String,
    /// The body's API: `chat` (OpenAI chat completions) or `messages`
    /// (Anthropic's, with `max_tokens` 16; send `anthropic-version` with
    /// `--header`).
    #[arg(long, value_enum, default_value_t = BodyFormat::Chat)]
    body_format: BodyFormat,
    /// Free text printed with the result, to tell runs apart.
    #[arg(long)]
    label: Option<String>,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
    /// Worker threads of the tokio runtime.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

/// How load is applied; see the module documentation.
/// The API a request body is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BodyFormat {
    Chat,
    Messages,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    Sequential,
    Closed,
    Rate,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Sequential => "sequential",
            Mode::Closed => "closed",
            Mode::Rate => "rate",
        }
    }
}

/// The sending half of one keep-alive connection.
type Connection = SendRequest<Full<Bytes>>;

/// Everything the workers share: where to connect, what to send, and when.
struct Plan {
    host: String,
    port: u16,
    path: Uri,
    headers: HeaderMap,
    body: Bytes,
    stream: bool,
    mode: Mode,
    /// Requests per second in `rate` mode.
    rate: f64,
    /// Next ticket of `rate` mode; ticket k is due at `start + k / rate`.
    next_ticket: AtomicU64,
    start: Instant,
    /// Requests due before this instant belong to the warm-up.
    measure_from: Instant,
    /// No request is due at or after this instant.
    deadline: Instant,
    /// Requests still running at this instant are abandoned.
    hard_stop: Instant,
}

impl Plan {
    /// When the calling worker's next request is due, or `None` once the run is over.
    fn next_due(&self) -> Option<Instant> {
        let due = match self.mode {
            Mode::Rate => {
                let ticket = self.next_ticket.fetch_add(1, Ordering::Relaxed);
                self.start + Duration::from_secs_f64(ticket as f64 / self.rate)
            }
            Mode::Sequential | Mode::Closed => Instant::now(),
        };
        (due < self.deadline).then_some(due)
    }

    fn request(&self) -> Request<Full<Bytes>> {
        let mut request = Request::new(Full::new(self.body.clone()));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = self.path.clone();
        *request.headers_mut() = self.headers.clone();
        request
    }
}

/// One request that got a complete response.
struct Exchange {
    status: StatusCode,
    latency: Duration,
    ttft: Option<Duration>,
    overhead_header_ms: Option<f64>,
    send_lag: Duration,
}

/// What one worker measured in the measurement window; merged across workers at the end.
struct Stats {
    latency: Histogram<u64>,
    ttft: Histogram<u64>,
    overhead_header: Histogram<u64>,
    send_lag: Histogram<u64>,
    /// Responses with a status other than 2xx.
    status_errors: u64,
    /// Failed connects, and connections that broke before the response was read.
    transport_errors: u64,
    /// Requests without an answer at the hard stop, 5 s after the end, and in `rate`
    /// mode, requests that were due but never sent by then.
    abandoned: u64,
    first_error: Option<String>,
    /// When the last measured response (or error) arrived.
    last_response: Option<Instant>,
}

impl Stats {
    fn try_new() -> Result<Self> {
        let histogram = || Histogram::new_with_bounds(1, HISTOGRAM_MAX_MICROS, 3);
        Ok(Self {
            latency: histogram()?,
            ttft: histogram()?,
            overhead_header: histogram()?,
            send_lag: histogram()?,
            status_errors: 0,
            transport_errors: 0,
            abandoned: 0,
            first_error: None,
            last_response: None,
        })
    }

    fn record(&mut self, exchange: &Exchange, mode: Mode) {
        self.last_response = Some(Instant::now());
        if !exchange.status.is_success() {
            self.status_errors += 1;
            self.first_error
                .get_or_insert_with(|| format!("status {}", exchange.status));
            return;
        }
        self.latency.saturating_record(micros(exchange.latency));
        if let Some(ttft) = exchange.ttft {
            self.ttft.saturating_record(micros(ttft));
        }
        if let Some(ms) = exchange
            .overhead_header_ms
            .filter(|ms| ms.is_finite() && *ms >= 0.0)
        {
            self.overhead_header
                .saturating_record((ms * 1000.0).round() as u64);
        }
        if mode == Mode::Rate {
            self.send_lag.saturating_record(micros(exchange.send_lag));
        }
    }

    fn record_transport_error(&mut self, error: &anyhow::Error) {
        self.last_response = Some(Instant::now());
        self.transport_errors += 1;
        self.first_error.get_or_insert_with(|| format!("{error:#}"));
    }

    fn errors(&self) -> u64 {
        self.status_errors + self.transport_errors + self.abandoned
    }

    fn merge(&mut self, other: Stats) -> Result<()> {
        self.latency.add(&other.latency)?;
        self.ttft.add(&other.ttft)?;
        self.overhead_header.add(&other.overhead_header)?;
        self.send_lag.add(&other.send_lag)?;
        self.status_errors += other.status_errors;
        self.transport_errors += other.transport_errors;
        self.abandoned += other.abandoned;
        self.first_error = self.first_error.take().or(other.first_error);
        self.last_response = self.last_response.max(other.last_response);
        Ok(())
    }
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

/// One connection's loop: take the next due time, send, record, until the run is over.
async fn run_worker(plan: Arc<Plan>, mut stats: Stats) -> Stats {
    let mut connection = None;
    while let Some(due) = plan.next_due() {
        let overdue = plan.mode == Mode::Rate && due <= Instant::now();
        // Only sleep for a request that is not due yet: tokio's timer rounds
        // up to whole milliseconds, so even sleeping until "now" costs ~1 ms.
        if due > Instant::now() {
            tokio::time::sleep_until(due).await;
        }
        let measured = due >= plan.measure_from;
        let attempt = send_one(&plan, connection.take(), due, overdue);
        match tokio::time::timeout_at(plan.hard_stop, attempt).await {
            Ok(Ok((kept_connection, exchange))) => {
                connection = Some(kept_connection);
                if measured {
                    stats.record(&exchange, plan.mode);
                }
            }
            Ok(Err(error)) => {
                if measured {
                    stats.record_transport_error(&error);
                }
                if plan.mode != Mode::Rate {
                    tokio::time::sleep(RECONNECT_BACKOFF).await;
                }
            }
            Err(_elapsed) => {
                if measured {
                    stats.abandoned += 1;
                }
                break;
            }
        }
    }
    stats
}

/// Sends one request on `connection` (or a new one) and reads the whole response.
///
/// Latency counts from `due` when the request was `overdue` (see the module
/// documentation) and from the actual send otherwise. Returns the connection for reuse;
/// on error it is dropped, and the next request reconnects.
async fn send_one(
    plan: &Plan,
    connection: Option<Connection>,
    due: Instant,
    overdue: bool,
) -> Result<(Connection, Exchange)> {
    let mut connection = ready_connection(plan, connection).await?;
    let sent_at = Instant::now();
    let origin = if overdue { due } else { sent_at };
    let response = connection
        .send_request(plan.request())
        .await
        .context("failed to send request")?;
    let status = response.status();
    let overhead_header_ms = response
        .headers()
        .get(OVERHEAD_HEADER)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<f64>().ok());
    let mut body = response.into_body();
    let mut ttft = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.context("failed to read response body")?;
        let carries_data = || frame.data_ref().is_some_and(|data| contains_sse_data(data));
        if plan.stream && ttft.is_none() && carries_data() {
            ttft = Some(origin.elapsed());
        }
    }
    let latency = origin.elapsed();
    let exchange = Exchange {
        status,
        latency,
        ttft,
        overhead_header_ms,
        send_lag: sent_at.saturating_duration_since(due),
    };
    Ok((connection, exchange))
}

fn contains_sse_data(chunk: &[u8]) -> bool {
    chunk.windows(5).any(|window| window == b"data:")
}

/// Returns `previous` once it can take a request, or a new connection if it has closed.
async fn ready_connection(plan: &Plan, previous: Option<Connection>) -> Result<Connection> {
    if let Some(mut connection) = previous {
        if connection.ready().await.is_ok() {
            return Ok(connection);
        }
    }
    connect(plan).await
}

async fn connect(plan: &Plan) -> Result<Connection> {
    let stream = TcpStream::connect((plan.host.as_str(), plan.port))
        .await
        .with_context(|| format!("failed to connect to `{}:{}`", plan.host, plan.port))?;
    stream
        .set_nodelay(true)
        .context("failed to set TCP_NODELAY")?;
    let (connection, driver) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .context("failed the http/1 handshake")?;
    // A broken connection surfaces as an error of the request in flight.
    tokio::spawn(async move {
        let _ = driver.await;
    });
    Ok(connection)
}

/// Builds the plan from the command line; the run starts now.
fn plan_from_args(args: &Args) -> Result<Plan> {
    let uri: Uri = args
        .url
        .parse()
        .with_context(|| format!("invalid url `{}`", args.url))?;
    ensure!(
        uri.scheme_str() == Some("http"),
        "url `{}` must start with `http://`",
        args.url
    );
    let authority = uri
        .authority()
        .with_context(|| format!("url `{}` has no host", args.url))?;
    let path: Uri = uri
        .path_and_query()
        .map_or("/", |path| path.as_str())
        .parse()?;

    let headers = request_headers(&args.headers, authority.as_str())?;
    let mut body = json!({
        "model": args.model,
        "messages": [{"role": "user", "content": PROMPT}],
        "stream": args.stream,
    });
    if args.body_format == BodyFormat::Messages {
        // The mock's default reply length, which a Messages body must state.
        body["max_tokens"] = 16.into();
    }

    let warmup = Duration::try_from_secs_f64(args.warmup).context("`--warmup` must be >= 0")?;
    let duration =
        Duration::try_from_secs_f64(args.duration).context("`--duration` must be > 0")?;
    ensure!(!duration.is_zero(), "`--duration` must be > 0");
    let rate = match args.mode {
        Mode::Rate => args.rate.context("`--mode rate` needs `--rate`")?,
        Mode::Sequential | Mode::Closed => 1.0,
    };
    ensure!(rate.is_finite() && rate > 0.0, "`--rate` must be > 0");

    let start = Instant::now();
    Ok(Plan {
        host: authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned(),
        port: authority.port_u16().unwrap_or(80),
        path,
        headers,
        body: Bytes::from(serde_json::to_vec(&body)?),
        stream: args.stream,
        mode: args.mode,
        rate,
        next_ticket: AtomicU64::new(0),
        start,
        measure_from: start + warmup,
        deadline: start + warmup + duration,
        hard_stop: start + warmup + duration + DRAIN_GRACE,
    })
}

/// The headers of every request: the `--header` lines, then `host` and `content-type`
/// unless given there.
fn request_headers(lines: &[String], authority: &str) -> Result<HeaderMap> {
    let mut headers = HeaderMap::new();
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .with_context(|| format!("header `{line}` must look like `Name: value`"))?;
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .with_context(|| format!("invalid header name in `{line}`"))?;
        let value = HeaderValue::from_str(value.trim())
            .with_context(|| format!("invalid header value in `{line}`"))?;
        headers.append(name, value);
    }
    headers
        .entry(HOST)
        .or_insert(HeaderValue::from_str(authority)?);
    headers
        .entry(CONTENT_TYPE)
        .or_insert(HeaderValue::from_static("application/json"));
    Ok(headers)
}

/// Number of connections the mode really uses.
fn connection_count(args: &Args) -> usize {
    match args.mode {
        Mode::Sequential => 1,
        Mode::Closed | Mode::Rate => args.connections,
    }
}

/// Runs the warm-up and the measurement; returns what the workers measured, merged, and
/// the seconds from the end of the warm-up to the last measured response (at least the
/// requested duration).
async fn run(args: &Args) -> Result<(Stats, f64)> {
    let plan = Arc::new(plan_from_args(args)?);
    let mut workers = Vec::new();
    for _ in 0..connection_count(args) {
        let stats = Stats::try_new()?;
        workers.push(tokio::spawn(run_worker(Arc::clone(&plan), stats)));
    }
    let mut total = Stats::try_new()?;
    for worker in futures::future::join_all(workers).await {
        total.merge(worker.context("a load worker panicked")?)?;
    }
    // In `rate` mode, requests still due when the workers gave up were never sent.
    while let Some(due) = plan.next_due() {
        if due >= plan.measure_from {
            total.abandoned += 1;
        }
    }
    let last_response = total.last_response.unwrap_or(plan.deadline);
    let elapsed = last_response.max(plan.deadline) - plan.measure_from;
    Ok((total, elapsed.as_secs_f64()))
}

/// Percentiles and mean of a histogram in milliseconds, `null` when it holds no value.
fn summary_json(histogram: &Histogram<u64>) -> Value {
    if histogram.is_empty() {
        return Value::Null;
    }
    let ms = |micros: u64| micros as f64 / 1000.0;
    json!({
        "p50": ms(histogram.value_at_quantile(0.50)),
        "p90": ms(histogram.value_at_quantile(0.90)),
        "p99": ms(histogram.value_at_quantile(0.99)),
        "max": ms(histogram.max()),
        "mean": histogram.mean().round() / 1000.0,
    })
}

/// The result of a run; printed as is with `--json`, as a table otherwise.
fn report_json(args: &Args, stats: &Stats, elapsed_s: f64) -> Value {
    let requests = stats.latency.len();
    json!({
        "label": args.label,
        "mode": args.mode.name(),
        "connections": connection_count(args),
        "stream": args.stream,
        "requests": requests,
        "errors": stats.errors(),
        "errors_by_kind": {
            "status": stats.status_errors,
            "transport": stats.transport_errors,
            "abandoned": stats.abandoned,
        },
        "warmup_s": args.warmup,
        "duration_s": args.duration,
        "elapsed_s": (elapsed_s * 1000.0).round() / 1000.0,
        "rps": (requests as f64 / elapsed_s * 10.0).round() / 10.0,
        "target_rps": args.rate.filter(|_| args.mode == Mode::Rate),
        "latency_ms": summary_json(&stats.latency),
        "ttft_ms": summary_json(&stats.ttft),
        "overhead_header_ms": summary_json(&stats.overhead_header),
        "send_lag_ms": summary_json(&stats.send_lag),
        "first_error": stats.first_error,
    })
}

/// Prints the report as a small aligned block, one line per metric.
fn print_table(report: &Value) {
    let target = report["target_rps"]
        .as_f64()
        .map_or(String::new(), |rate| format!(" (target {rate:.1})"));
    println!(
        "{}  mode {}  connections {}  stream {}  duration {} s (+{} s warm-up)",
        report["label"].as_str().unwrap_or("chorus-load"),
        report["mode"].as_str().unwrap_or_default(),
        report["connections"],
        report["stream"],
        report["duration_s"],
        report["warmup_s"],
    );
    let errors = &report["errors_by_kind"];
    println!(
        "  requests {}  errors {} (status {}, transport {}, abandoned {})  {} req/s{target}",
        report["requests"],
        report["errors"],
        errors["status"],
        errors["transport"],
        errors["abandoned"],
        report["rps"],
    );
    let columns = ["p50", "p90", "p99", "max", "mean"];
    print!("  {:<14}", "(ms)");
    columns.iter().for_each(|column| print!("{column:>9}"));
    println!();
    let rows = [
        ("latency", "latency_ms"),
        ("ttft", "ttft_ms"),
        ("overhead-hdr", "overhead_header_ms"),
        ("send-lag", "send_lag_ms"),
    ];
    for (name, key) in rows {
        print!("  {name:<14}");
        for column in columns {
            match report[key][column].as_f64() {
                Some(ms) => print!("{ms:>9.3}"),
                None => print!("{:>9}", "-"),
            }
        }
        println!();
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    ensure!(args.connections >= 1, "`--connections` must be >= 1");
    ensure!(args.threads >= 1, "`--threads` must be >= 1");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads)
        .enable_all()
        .build()
        .context("failed to start the tokio runtime")?;
    let (stats, elapsed_s) = runtime.block_on(run(&args))?;
    runtime.shutdown_background();

    let report = report_json(&args, &stats, elapsed_s);
    if args.json {
        println!("{report}");
    } else {
        print_table(&report);
        if let Some(error) = &stats.first_error {
            println!("  first error: {error}");
        }
    }
    Ok(())
}
