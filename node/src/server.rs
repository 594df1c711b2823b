//! Start-up and shutdown: config to providers, deployments and routes; the
//! supervisor and its actors; the HTTP listener.

use std::collections::HashMap;
use std::future::IntoFuture;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::serve::ListenerExt;
use chorus_actors::{
    AliasRoute, DeploymentHandle, DeploymentSpec, GossipArgs, Ledger, LedgerArgs, NodeSupervisor,
    Routes, SupervisorArgs,
};

use crate::cli::ServeArgs;
use crate::cluster::{contributor_id, unix_millis, Cluster};
use crate::config::{self, Config};
use crate::http::{self, AppState, KeyStore};
use crate::storage::Storage;
use crate::{logging, providers};

/// The ledger's node id on a node without a `[cluster]` section.
const STANDALONE_NODE_ID: &str = "standalone";

/// How often changed counters are written to the store.
const LEDGER_FLUSH_INTERVAL: Duration = Duration::from_millis(100);

/// How long open connections (streams, mostly) get to finish after SIGTERM.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

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
        config.listen = listen;
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
        let mut alias_deployments = Vec::with_capacity(model.deployments.len());
        for deployment in &model.deployments {
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
                        input_per_mtok: deployment.input_per_mtok,
                        output_per_mtok: deployment.output_per_mtok,
                        timeout: provider.timeout,
                    };
                    let handle = DeploymentHandle::new(spec, client.clone(), ledger.clone());
                    deployments.push(handle.clone());
                    handle
                }
            };
            alias_deployments.push(handle);
        }
        aliases.push(AliasRoute::new(model.alias.clone(), alias_deployments));
    }
    Routes::new(aliases, deployments)
}

async fn run(config: Config) -> anyhow::Result<()> {
    let http_client = providers::http_client().context("cannot build the upstream HTTP client")?;
    let generation = unix_millis();
    let contributor = contributor_id(
        config
            .cluster
            .as_ref()
            .map_or(STANDALONE_NODE_ID, |cluster| cluster.node_id.as_str()),
        generation,
    );
    let storage = match &config.storage_path {
        Some(path) => Some(Arc::new(Storage::open(path)?)),
        None => None,
    };
    let restored = match &storage {
        Some(storage) => storage.load_counters()?,
        None => Vec::new(),
    };
    tracing::info!(%contributor, restored_counters = restored.len(), "counters restored");
    let ledger = Ledger::new(contributor, restored);
    let routes = Arc::new(build_routes(&config, &http_client, &ledger));
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
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
        interval: cluster.gossip_interval(),
    });
    let ledger_flush = storage.map(|store| LedgerArgs {
        ledger: ledger.clone(),
        store,
        flush_interval: LEDGER_FLUSH_INTERVAL,
    });
    let supervisor = NodeSupervisor::start(SupervisorArgs {
        deployments: routes.deployments().to_vec(),
        gossip,
        ledger: ledger_flush,
    })
    .await
    .context("cannot start the node supervisor")?;
    let state = AppState {
        routes: routes.clone(),
        keys: Arc::new(KeyStore::new(&config.keys)),
        max_body_bytes: config.max_body_bytes,
        cluster: cluster.clone(),
        ledger,
    };
    let listener = listener.tap_io(|stream| {
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
    });
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
    let server = axum::serve(listener, http::router(state)).with_graceful_shutdown(async move {
        let mut stop_rx = stop_rx;
        let _ = stop_rx.wait_for(|stop| *stop).await;
    });
    let mut server = std::pin::pin!(server.into_future());
    tokio::select! {
        result = &mut server => result.context("the HTTP server failed")?,
        () = shutdown_signal() => {
            tracing::info!(grace_s = SHUTDOWN_GRACE.as_secs(), "shutting down");
            let _ = stop_tx.send(true);
            if tokio::time::timeout(SHUTDOWN_GRACE, &mut server).await.is_err() {
                tracing::warn!("connections still open after the grace period; closing them");
            }
        }
    }
    // The actors first: the ledger flushes, the gossip actor publishes one
    // last time; then a few gossip rounds for peers to take it, then leave.
    supervisor.stop().await;
    if let Some(cluster) = cluster {
        tokio::time::sleep(cluster.gossip_interval() * 3).await;
        cluster.leave();
    }
    Ok(())
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
