//! `actor-hops`: what the actors cost on the request path, with no network.
//!
//! A provider that answers at once stands in for the upstream. The same call
//! is made two ways, in one process and one run:
//!
//! - `direct`: the provider call and the response rewrite, as a handler
//!   would do them with no actors at all;
//! - `actor`: the real path — spawn a `RequestActor`, which picks the
//!   deployment, counts the call in flight, calls the provider, rewrites
//!   the body, answers on a oneshot and tells the `DeploymentActor` how
//!   the call ended.
//!
//! The difference is the price of the actor hops. Measured sequentially
//! (latency) and with 32 concurrent callers (throughput).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use chorus_actors::{
    AliasRoute, DeploymentHandle, DeploymentSpec, Ledger, NodeSupervisor, Provider, ProviderError,
    ReplyBody, RequestActor, RequestArgs, RequestTracker, RunId, SupervisorArgs, UpstreamCall,
    UpstreamReply,
};
use chorus_proto::rewrite::rewrite_model;
use chorus_proto::ChatRequest;
use clap::Parser;
use futures::future::BoxFuture;
use hdrhistogram::Histogram;
use tokio::sync::oneshot;

#[derive(Debug, Parser)]
#[command(
    name = "actor-hops",
    about = "Cost of the actor hops on the request path"
)]
struct Args {
    /// Calls per measurement.
    #[arg(long, default_value_t = 100_000)]
    calls: u64,
    /// Concurrent callers in the throughput measurement.
    #[arg(long, default_value_t = 32)]
    concurrency: u64,
    /// Runtime worker threads (the node uses one per core).
    #[arg(long, default_value_t = 2)]
    threads: usize,
}

const REQUEST: &[u8] =
    br#"{"model":"fast","messages":[{"role":"user","content":"Say hello to the benchmark"}]}"#;
const COMPLETION: &[u8] = br#"{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"mock","choices":[{"index":0,"message":{"role":"assistant","content":"hello benchmark"},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11}}"#;

/// Answers every call at once with the same completion.
struct Instant0;

impl Provider for Instant0 {
    fn send(&self, _: UpstreamCall) -> BoxFuture<'static, Result<UpstreamReply, ProviderError>> {
        Box::pin(async { Ok(UpstreamReply::Complete(Bytes::from_static(COMPLETION))) })
    }
}

/// The node keeps one tracker of the requests under way; so does the bench.
static REQUESTS: std::sync::LazyLock<RequestTracker> =
    std::sync::LazyLock::new(RequestTracker::default);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Path {
    Direct,
    Actor,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> Result<()> {
    let spec = DeploymentSpec {
        name: "instant/mock".into(),
        provider: "instant".into(),
        upstream_model: "mock".into(),
        price: chorus_proto::Price::default(),
        timeout: Duration::from_secs(5),
        quota: Default::default(),
        breaker: Default::default(),
    };
    let run = RunId {
        node_id: "bench".into(),
        generation: 1,
    };
    let ledger = Ledger::new(run, Vec::new());
    let deployment = DeploymentHandle::new(spec, Arc::new(Instant0), &ledger);
    let supervisor = NodeSupervisor::start(SupervisorArgs {
        deployments: vec![deployment.clone()],
        gossip: None,
        ledger: None,
        limiter: chorus_actors::Limiter::new(ledger.clone()),
    })
    .await?;
    let route = Arc::new(AliasRoute::with_defaults(
        "fast".into(),
        vec![deployment.clone()],
    ));

    println!(
        "actor-hops: {} calls each, {} runtime threads",
        args.calls, args.threads
    );
    println!(
        "| path | sequential p50 µs | p90 µs | p99 µs | {} callers, calls/s |",
        args.concurrency
    );
    println!("|---|---:|---:|---:|---:|");
    let mut medians = Vec::new();
    for path in [Path::Direct, Path::Actor] {
        // Warm up allocator and caches, then measure.
        sequential(path, &route, args.calls / 10).await?;
        let latencies = sequential(path, &route, args.calls).await?;
        let rate = concurrent(path, &route, args.calls, args.concurrency).await?;
        let name = if path == Path::Direct {
            "direct"
        } else {
            "actor"
        };
        let micros = |q: f64| latencies.value_at_quantile(q) as f64 / 1000.0;
        println!(
            "| {name} | {:.2} | {:.2} | {:.2} | {rate:.0} |",
            micros(0.5),
            micros(0.9),
            micros(0.99)
        );
        medians.push(micros(0.5));
    }
    println!(
        "\nactor hops add {:.2} µs at the median per request (spawn, in-flight guard, one cast, oneshot)",
        medians[1] - medians[0]
    );
    let stats = deployment.stats();
    anyhow::ensure!(stats.errors == 0, "calls failed");
    supervisor.stop().await;
    Ok(())
}

/// One call by `path`; returns when the rewritten body is in hand.
async fn call(path: Path, route: &Arc<AliasRoute>) -> Result<()> {
    let mut request = ChatRequest::parse(REQUEST).context("request")?;
    match path {
        Path::Direct => {
            let deployment = &route.targets.first().context("no deployment")?.deployment;
            let body = request.upstream_body(
                deployment.provider().format(),
                &deployment.spec().upstream_model,
                false,
            )?;
            let call = UpstreamCall {
                request_id: "bench".into(),
                endpoint: request.endpoint,
                body: body.bytes,
                format: body.format,
                client_headers: Vec::new(),
                stream: false,
            };
            match deployment.provider().send(call).await? {
                UpstreamReply::Complete(body) => {
                    let mut text = String::new();
                    rewrite_model(&body, &route.alias, false, &mut text)
                        .map_err(anyhow::Error::msg)?;
                }
                UpstreamReply::Stream(_) => anyhow::bail!("unexpected stream"),
            }
        }
        Path::Actor => {
            let (reply_tx, reply_rx) = oneshot::channel();
            RequestActor::start(RequestArgs {
                request_id: "bench".into(),
                request,
                route: route.clone(),
                received_at: Instant::now(),
                reply_tx,
                tracked: REQUESTS.track(),
                admission: None,
                fallbacks: Default::default(),
                observer: std::sync::Arc::new(chorus_actors::Unobserved),
                usage_chunk: chorus_actors::UsageChunk::Dropped,
            })
            .await?;
            match reply_rx.await?.map_err(|e| anyhow::anyhow!("{e}"))?.body {
                ReplyBody::Complete(_) => {}
                ReplyBody::Stream(_) => anyhow::bail!("unexpected stream"),
            }
        }
    }
    Ok(())
}

async fn sequential(path: Path, route: &Arc<AliasRoute>, calls: u64) -> Result<Histogram<u64>> {
    let mut latencies = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)?;
    for _ in 0..calls {
        let started = Instant::now();
        call(path, route).await?;
        latencies.saturating_record(started.elapsed().as_nanos() as u64);
    }
    Ok(latencies)
}

async fn concurrent(path: Path, route: &Arc<AliasRoute>, calls: u64, callers: u64) -> Result<f64> {
    let started = Instant::now();
    let per_caller = calls / callers.max(1);
    let tasks: Vec<_> = (0..callers)
        .map(|_| {
            let route = route.clone();
            tokio::spawn(async move {
                for _ in 0..per_caller {
                    call(path, &route).await?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    Ok((per_caller * callers) as f64 / started.elapsed().as_secs_f64())
}
