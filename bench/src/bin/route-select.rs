//! `route-select`: what choosing a deployment costs a request, for each
//! strategy, over 2, 10 and 50 deployments.
//!
//! Each measured selection is what the request path does before its first
//! call: build the request's attempt plan (its token estimate when the
//! strategy reads one) and take its first attempt — the usable filter
//! (breaker, cooldown, quota), the balancer's pick and the breaker claim.
//! The deployments have live latency samples, fed through their actors,
//! and every second one has `rpm`/`tpm` quotas with some use counted, so
//! every strategy reads real figures.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use chorus_actors::clock::unix_millis;
use chorus_actors::routing::balance::STRATEGIES;
use chorus_actors::routing::{AttemptPlan, Fallbacks, Target};
use chorus_actors::{
    AliasRoute, CallEnded, CallOutcome, DeploymentHandle, DeploymentSpec, Ledger, NodeSupervisor,
    Provider, ProviderError, Quota, RouteOptions, RunId, SupervisorArgs, UpstreamCall,
    UpstreamReply,
};
use chorus_proto::{ChatRequest, Price, Usage};
use clap::Parser;
use futures::future::BoxFuture;
use hdrhistogram::Histogram;

#[derive(Debug, Parser)]
#[command(
    name = "route-select",
    about = "Cost of choosing a deployment, per strategy and deployment count"
)]
struct Args {
    /// Selections measured per strategy and deployment count.
    #[arg(long, default_value_t = 20_000)]
    selections: u64,
}

const REQUEST: &[u8] = br#"{"model":"bench","max_tokens":256,"messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Say hello to the benchmark, in one short sentence."}]}"#;

/// Never called: selection stops before the upstream.
struct Unused;

impl Provider for Unused {
    fn send(&self, _: UpstreamCall) -> BoxFuture<'static, Result<UpstreamReply, ProviderError>> {
        Box::pin(async { Ok(UpstreamReply::Complete(Bytes::new())) })
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> Result<()> {
    let request = ChatRequest::parse(REQUEST).context("request")?;
    println!(
        "route-select: {} selections per row, one thread",
        args.selections
    );
    println!("| strategy | deployments | p50 µs | p99 µs |");
    println!("|---|---:|---:|---:|");
    for count in [2usize, 10, 50] {
        let ledger = Ledger::new(
            RunId {
                node_id: "bench".into(),
                generation: 1,
            },
            Vec::new(),
        );
        let deployments: Vec<DeploymentHandle> =
            (0..count).map(|index| deployment(index, &ledger)).collect();
        let supervisor = NodeSupervisor::start(SupervisorArgs {
            deployments: deployments.clone(),
            gossip: None,
            ledger: None,
            limiter: chorus_actors::Limiter::new(ledger.clone()),
        })
        .await?;
        feed_samples(&deployments).await;
        for (strategy, _) in STRATEGIES {
            let route = Arc::new(route(strategy, &deployments).context("strategy")?);
            let histogram = measure(&route, &request, args.selections)?;
            let micros = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
            println!(
                "| {strategy} | {count} | {:.2} | {:.2} |",
                micros(0.5),
                micros(0.99)
            );
        }
        supervisor.stop().await;
    }
    Ok(())
}

/// Deployment `index`: prices rising with it; every second one with quotas.
fn deployment(index: usize, ledger: &Ledger) -> DeploymentHandle {
    let step = index as u64 + 1;
    let quota = if index.is_multiple_of(2) {
        Quota {
            rpm: Some(10_000),
            tpm: Some(10_000_000),
        }
    } else {
        Quota::default()
    };
    let spec = DeploymentSpec {
        name: format!("bench/m{index}"),
        provider: "bench".into(),
        upstream_model: format!("m{index}"),
        price: Price {
            input_micros_per_mtok: 100_000 * step,
            output_micros_per_mtok: 400_000 * step,
            ..Price::default()
        },
        timeout: Duration::from_secs(5),
        quota,
        breaker: Default::default(),
    };
    DeploymentHandle::new(spec, Arc::new(Unused), ledger)
}

/// Ten finished calls per deployment, latencies spread over them, so the
/// latency figures exist; and some quota use.
async fn feed_samples(deployments: &[DeploymentHandle]) {
    let now = unix_millis();
    for (index, deployment) in deployments.iter().enumerate() {
        for call in 0..10u64 {
            drop(deployment.start_call(now));
            deployment.record(
                CallEnded {
                    outcome: CallOutcome::Completed,
                    latency: Duration::from_millis(100 + 10 * index as u64 + call),
                    ttft: Some(Duration::from_millis(20 + index as u64)),
                    usage: Some(Usage::new(50, 100)),
                },
                now,
            );
        }
    }
    // Let the actors publish their averages.
    tokio::time::sleep(Duration::from_millis(200)).await;
}

fn route(strategy: &'static str, deployments: &[DeploymentHandle]) -> Option<AliasRoute> {
    let targets = deployments
        .iter()
        .enumerate()
        .map(|(index, deployment)| Target {
            deployment: deployment.clone(),
            weight: 1 + index as u32 % 3,
        })
        .collect();
    let options = RouteOptions {
        strategy,
        ..RouteOptions::default()
    };
    AliasRoute::new("bench".into(), targets, options)
}

fn measure(
    route: &Arc<AliasRoute>,
    request: &ChatRequest,
    selections: u64,
) -> Result<Histogram<u64>> {
    let mut histogram = Histogram::<u64>::new(3)?;
    // Warm up, then measure.
    for round in 0..selections / 10 + selections {
        let started = Instant::now();
        let mut plan = AttemptPlan::new(Arc::clone(route), request, Fallbacks::default());
        let attempt = plan.first(request, unix_millis());
        let elapsed = started.elapsed();
        anyhow::ensure!(attempt.is_ok(), "no deployment chosen");
        if round >= selections / 10 {
            histogram.record(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX))?;
        }
    }
    Ok(histogram)
}
