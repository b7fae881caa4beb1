//! `conclave serve`: governed decisions over HTTP, on the store's trust and audit log.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Args;

use super::CliError;
use conclave::audit::SledAuditLog;
use conclave::serve::{ServeConfig, ServeState, router};
use conclave::store::Store;
use conclave::trust::TrustParams;
use conclave::trust::store::SledTrustStore;

#[derive(Debug, Args)]
pub(super) struct ServeArgs {
    /// The address to listen on (a non-loopback address needs --token-env).
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// The agent definitions: a folder of .toml files, or one file.
    #[arg(long, default_value = "agents")]
    agents: PathBuf,
    /// The policies: a folder of .toml files, or one file.
    #[arg(long, default_value = "policies")]
    policies: PathBuf,
    /// The name of the environment variable holding the bearer token clients must send
    /// (the token itself never goes on the command line).
    #[arg(long)]
    token_env: Option<String>,
    /// The largest request body, in bytes.
    #[arg(long, default_value_t = 1 << 20)]
    body_limit: usize,
}

pub(super) fn run(a: &ServeArgs, store_dir: &Path) -> Result<(), CliError> {
    let token = match &a.token_env {
        Some(name) => Some(
            std::env::var(name)
                .ok()
                .filter(|t| !t.trim().is_empty())
                .ok_or_else(|| {
                    CliError::input(format!("--token-env {name}: that variable is not set"))
                })?,
        ),
        None => None,
    };
    if token.is_none() && !a.addr.ip().is_loopback() {
        return Err(CliError::input(format!(
            "refusing to serve on {} without authentication: give --token-env NAME, or listen on 127.0.0.1",
            a.addr
        )));
    }
    let catalog = super::decide::load_catalog(&a.agents, &a.policies)?;
    let store = Store::open(store_dir).map_err(CliError::input)?;
    let trust =
        Arc::new(SledTrustStore::new(&store, TrustParams::default()).map_err(CliError::input)?);
    let log = Arc::new(SledAuditLog::new(&store).map_err(CliError::input)?);
    let config = ServeConfig {
        token,
        body_limit: a.body_limit,
    };
    // The Director's standing orders: suspensions and reweights hold here too, and a
    // hand-over that trips the ratchet is kept in the store.
    let orders = store.directives().map_err(CliError::input)?;
    let keeper = store;
    let state = ServeState::new(catalog, trust, log, config)
        .and_then(|s| {
            s.with_director(
                conclave::Director::new(orders),
                Box::new(move |d| keeper.set_directives(d).map_err(|e| e.to_string())),
            )
        })
        .map_err(CliError::input)?;
    let app = router(Arc::new(state));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::failed(format!("cannot start the runtime: {e}")))?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(a.addr)
            .await
            .map_err(|e| CliError::input(format!("cannot listen on {}: {e}", a.addr)))?;
        let bound = listener
            .local_addr()
            .map_err(|e| CliError::failed(format!("cannot read the bound address: {e}")))?;
        eprintln!(
            "conclave serving on http://{bound} (store {})",
            store_dir.display()
        );
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown())
            .await
            .map_err(|e| CliError::failed(format!("the server failed: {e}")))
    })?;
    eprintln!("conclave stopped: decisions in flight finished");
    Ok(())
}

/// SIGTERM or Ctrl-C: stop accepting, finish what is in flight.
async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
