//! Start-up and shutdown: config to providers, deployments and routes; the
//! supervisor and its actors; the HTTP listener.

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chorus_actors::clock::unix_millis;
use chorus_actors::routing::breaker::BreakerPolicy;
use chorus_actors::routing::Target;
use chorus_actors::{
    AdminRegistry, AdminStore, AliasRoute, DeploymentHandle, DeploymentSpec, GossipArgs, Ledger,
    LedgerArgs, Limiter, NodeSupervisor, RequestTracker, Routes, RunId, SupervisorArgs,
};

use crate::cache::ResponseCache;
use crate::cli::ServeArgs;
use crate::cluster::Cluster;
use crate::config::{self, Config};
use crate::http::{self, AppState, KeyStore};
use crate::metrics::Metrics;
use crate::peer_auth::PeerAuth;
use crate::request_log::RequestLog;
use crate::storage::{CacheStore, ItemStore, RequestStore, Storage};
use crate::stored::{Peers, Stored};
use crate::{logging, providers};

/// The ledger's node id on a node without a `[cluster]` section.
const STANDALONE_NODE_ID: &str = "standalone";

/// How often changed counters are written to the store.
const LEDGER_FLUSH_INTERVAL: Duration = Duration::from_millis(100);

/// How long open connections (streams, mostly) get to finish after SIGTERM.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// How long request actors get to record their calls once connections closed.
const REQUEST_DRAIN_LIMIT: Duration = Duration::from_secs(5);
/// The longest wait at shutdown for the request log's last records.
const LOG_FLUSH_LIMIT: Duration = Duration::from_secs(5);

/// Gossip rounds peers get to take a leaving node's last counts.
const FINAL_GOSSIP_ROUNDS: u32 = 3;

/// Gossip rounds after start before a run the ledger knows, but gossip has
/// not mentioned, is taken for gone: by then every live peer has been heard.
const SETTLE_ROUNDS: u32 = 10;
const MIN_SETTLE: Duration = Duration::from_secs(2);

/// `chorus serve`: exit code 2 for a bad config, 1 for a failure at run time.
pub fn serve(args: ServeArgs) -> ExitCode {
    let mut config = match config::load(&args.config) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    if let Some(listen) = args.listen {
        config.server.listen = listen;
    }
    let _log_guard = logging::init(args.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// One handle per distinct `provider/model`, however many aliases use it,
/// and the alias table over them.
pub fn build_routes(config: &Config, http_client: &reqwest::Client, ledger: &Ledger) -> Routes {
    let providers: HashMap<&str, _> = config
        .providers
        .iter()
        .map(|provider| {
            (
                provider.name.as_str(),
                (provider, providers::build(provider, http_client)),
            )
        })
        .collect();
    let mut deployments: Vec<DeploymentHandle> = Vec::new();
    let mut aliases = Vec::with_capacity(config.models.len());
    for model in &config.models {
        let mut targets = Vec::with_capacity(model.deployments.len());
        for (deployment, weight) in &model.deployments {
            let name = deployment.name();
            let handle = match deployments.iter().find(|handle| handle.name() == name) {
                Some(existing) => existing.clone(),
                None => {
                    // Validation guarantees every deployment names a known provider.
                    let Some((provider, client)) = providers.get(deployment.provider.as_str())
                    else {
                        continue;
                    };
                    let spec = DeploymentSpec {
                        name,
                        provider: provider.name.clone(),
                        upstream_model: deployment.model.clone(),
                        price: deployment.price,
                        timeout: provider.timeout,
                        quota: deployment.quota,
                        breaker: BreakerPolicy::default(),
                    };
                    let handle = DeploymentHandle::new(spec, client.clone(), ledger);
                    deployments.push(handle.clone());
                    handle
                }
            };
            targets.push(Target {
                deployment: handle,
                weight: *weight,
            });
        }
        // Validation has checked the strategy's name.
        match AliasRoute::new(model.alias.clone(), targets, model.routing) {
            Some(mut route) => {
                route.fallbacks = model.fallbacks.clone();
                aliases.push(route);
            }
            None => tracing::error!(alias = %model.alias, strategy = model.routing.strategy,
                "unknown strategy: the alias is not served"),
        }
    }
    Routes::new(aliases, deployments)
}

async fn run(config: Config) -> anyhow::Result<()> {
    keep_running_on_hangup();
    // Estimates are rare, but the first should not pay for loading the tokenizer.
    tokio::task::spawn_blocking(chorus_actors::estimate::warm_up);
    let http_client = providers::http_client().context("cannot build the upstream HTTP client")?;
    let storage = match &config.storage {
        Some(storage) => Some(Arc::new(Storage::open(&storage.path)?)),
        None => None,
    };
    let (generation, restored, admin_restored) = match &storage {
        Some(storage) => (
            storage.next_generation(unix_millis())?,
            storage.load_counters()?,
            storage.load_admin()?,
        ),
        None => (unix_millis(), Vec::new(), Vec::new()),
    };
    let run = RunId {
        node_id: config
            .cluster
            .as_ref()
            .map_or(STANDALONE_NODE_ID, |cluster| cluster.node_id.as_str())
            .to_owned(),
        generation,
    };
    tracing::info!(node_id = %run.node_id, generation, restored_tallies = restored.len(), "counters restored");
    let node_id = run.node_id.clone();
    let admin_store = storage
        .clone()
        .map(|storage| storage as Arc<dyn AdminStore>);
    let admin = AdminRegistry::new(&run.node_id, admin_restored, admin_store);
    tracing::info!(
        keys = admin.keys().len(),
        teams = admin.teams().len(),
        "admin state restored"
    );
    let ledger = Ledger::new(run, restored);
    let limiter = Limiter::new(ledger.clone());
    let routes = Arc::new(build_routes(&config, &http_client, &ledger));
    let listener = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.server.listen))?;
    let address = listener
        .local_addr()
        .context("cannot read the listen address")?;
    let cluster = match &config.cluster {
        Some(cluster_config) => Some(Arc::new(
            Cluster::join(cluster_config, generation, address).await?,
        )),
        None => None,
    };
    let gossip = cluster.as_ref().map(|cluster| GossipArgs {
        bus: cluster.clone(),
        deployments: routes.deployments().to_vec(),
        ledger: ledger.clone(),
        admin: admin.clone(),
        limiter: limiter.clone(),
        interval: cluster.gossip_interval(),
        settle: (cluster.gossip_interval() * SETTLE_ROUNDS).max(MIN_SETTLE),
    });
    let cache = match (&config.cache, &storage) {
        (Some(cache_config), Some(storage)) => {
            let store = CacheStore::open(Arc::clone(storage), cache_config.max_bytes)?;
            tracing::info!(cached_bytes = store.bytes(), "response cache opened");
            Some(Arc::new(ResponseCache::new(
                Arc::new(store),
                cache_config,
                &config.models,
            )))
        }
        _ => None,
    };
    let retention = config
        .storage
        .as_ref()
        .and_then(|storage| storage.request_log_retention);
    let metrics = Arc::new(Metrics::new(&routes).context("cannot register the metrics")?);
    let request_log = match (&storage, retention) {
        (Some(storage), Some(retention)) => {
            let store = Arc::new(RequestStore::new(Arc::clone(storage)));
            let log = RequestLog::start(&node_id, store, retention, metrics.request_log_dropped())
                .context("cannot start the request log writer")?;
            Some(log)
        }
        _ => None,
    };
    let peer_client = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .context("cannot build the HTTP client for peers")?;
    let stored = match (&storage, config.responses_ttl) {
        (Some(storage), Some(ttl)) => {
            let peers = match (&cluster, &config.cluster) {
                (Some(cluster), Some(cluster_config)) => Some(Peers {
                    cluster: Arc::clone(cluster),
                    client: peer_client.clone(),
                    auth: PeerAuth::new(cluster_config.node_id.clone(), &cluster_config.secrets)?,
                }),
                _ => None,
            };
            let items = ItemStore::new(Arc::clone(storage));
            Some(Arc::new(Stored::new(items, ttl, peers)))
        }
        _ => None,
    };
    let ledger_flush = storage.clone().map(|store| LedgerArgs {
        ledger: ledger.clone(),
        store,
        flush_interval: LEDGER_FLUSH_INTERVAL,
    });
    let supervisor = NodeSupervisor::start(SupervisorArgs {
        deployments: routes.deployments().to_vec(),
        gossip,
        ledger: ledger_flush,
        limiter: limiter.clone(),
    })
    .await
    .context("cannot start the node supervisor")?;
    if config.server.admin_token_sha256.is_none() {
        tracing::info!(
            "no `server.admin_token`: the admin API, cluster view and status page answer 404"
        );
    }
    let requests = RequestTracker::default();
    let state = AppState {
        routes: routes.clone(),
        keys: Arc::new(KeyStore::new(&config.keys)),
        admin,
        limiter,
        admin_token_sha256: config.server.admin_token_sha256,
        max_body_bytes: config.server.max_body_bytes,
        cluster: cluster.clone(),
        ledger,
        requests: requests.clone(),
        metrics,
        cache,
        request_log: request_log.clone(),
        stored,
        storage: storage.clone(),
        peers: peer_client,
    };
    // The one line on stdout: launchers and tests read the bound address
    // from it, which matters with `--listen 127.0.0.1:0`.
    println!("chorus listening on http://{address}");
    tracing::info!(
        %address,
        aliases = ?routes.aliases().collect::<Vec<_>>(),
        deployments = routes.deployments().len(),
        keys = config.keys.len(),
        "chorus node listening"
    );

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = http::connections::serve(
        listener,
        http::router(state),
        config.server.client_idle_timeout,
        http::connections::connection_limit(),
        async move {
            let mut stop_rx = stop_rx;
            let _ = stop_rx.wait_for(|stop| *stop).await;
        },
    );
    let mut server = std::pin::pin!(server);
    tokio::select! {
        () = &mut server => {}
        () = shutdown_signal() => {
            tracing::info!(grace_s = SHUTDOWN_GRACE.as_secs(), "shutting down");
            let _ = stop_tx.send(true);
            if tokio::time::timeout(SHUTDOWN_GRACE, &mut server).await.is_err() {
                tracing::warn!("connections still open after the grace period; closing them");
            }
        }
    }
    // In this order: every request has recorded its call; the last counts
    // go to the peers, who get a few rounds to take them; then to the store;
    // then the node leaves.
    if !requests.idle(REQUEST_DRAIN_LIMIT).await {
        tracing::warn!(
            running = requests.running(),
            "requests still running at shutdown"
        );
    }
    if let Some(log) = request_log {
        let flushed = tokio::task::spawn_blocking(move || log.flush(LOG_FLUSH_LIMIT)).await;
        if !matches!(flushed, Ok(true)) {
            tracing::warn!("the request log's last records may not be written");
        }
    }
    let for_peers = cluster.as_ref().map_or(Duration::ZERO, |cluster| {
        cluster.gossip_interval() * FINAL_GOSSIP_ROUNDS
    });
    supervisor.drain(for_peers).await;
    supervisor.stop().await;
    if let Some(cluster) = cluster {
        cluster.leave();
    }
    Ok(())
}

/// SIGHUP — `systemctl reload`, a closed terminal — must never stop a
/// node, as its default action would. The node has nothing to reload yet,
/// so each one is logged and the node goes on as it was.
fn keep_running_on_hangup() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::hangup()) {
            Ok(mut hangups) => {
                tokio::spawn(async move {
                    while hangups.recv().await.is_some() {
                        tracing::warn!(
                            "SIGHUP received: the node keeps running on the config it started with"
                        );
                    }
                });
            }
            Err(error) => tracing::warn!(%error, "cannot handle SIGHUP; it would stop the node"),
        }
    }
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(_) => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = interrupt => {}
            () = terminate => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
