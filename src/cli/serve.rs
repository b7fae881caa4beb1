//! `conclave serve`: governed decisions over HTTP, on the store's trust and audit log.

use std::net::SocketAddr;
use std::sync::Arc;

use clap::Args;

use super::{CliError, Place};
use conclave::audit::{PgAuditLog, SledAuditLog};
use conclave::postgres::PgSpend;
use conclave::serve::{ServeConfig, ServeState, router};
use conclave::store::Store;
use conclave::trust::TrustParams;
use conclave::trust::store::{PgTrustStore, SledTrustStore};

#[derive(Debug, Args)]
pub(super) struct ServeArgs {
    /// The address to listen on (a non-loopback address needs --token-env).
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    #[command(flatten)]
    dirs: super::config::Dirs,
    /// The name of the environment variable holding the bearer token clients must send
    /// (the token itself never goes on the command line).
    #[arg(long)]
    token_env: Option<String>,
    /// The largest request body, in bytes.
    #[arg(long, default_value_t = 1 << 20)]
    body_limit: usize,
    /// Connections to the database (with --database).
    #[arg(long, default_value_t = conclave::postgres::DEFAULT_CONNECTIONS)]
    db_connections: usize,
    /// How often to look for trust and orders changed by other replicas, in ms (with
    /// --database).
    #[arg(long, default_value_t = 1000)]
    follow_ms: u64,
}

pub(super) fn run(a: &ServeArgs, place: &Place) -> Result<(), CliError> {
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
    let catalog = a.dirs.load()?;
    let config = ServeConfig {
        token,
        body_limit: a.body_limit,
    };
    let mut announce: Option<Store> = None;
    let (state, follow, place) = match place {
        Place::Store(dir) => {
            let store = Store::open(dir).map_err(CliError::input)?;
            announce = Some(store.clone());
            let trust = Arc::new(
                SledTrustStore::new(&store, TrustParams::default()).map_err(CliError::input)?,
            );
            let log = Arc::new(SledAuditLog::new(&store).map_err(CliError::input)?);
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
            (state, false, format!("store {}", dir.display()))
        }
        Place::Database(url) => {
            let db = conclave::postgres::Database::connect(url, a.db_connections)
                .map_err(CliError::input)?;
            let trust =
                Arc::new(PgTrustStore::new(&db, TrustParams::default()).map_err(CliError::input)?);
            let log = Arc::new(PgAuditLog::new(&db));
            let orders = db.directives().map_err(CliError::input)?;
            let (keeper, loader) = (db.clone(), db.clone());
            let state = ServeState::new(catalog, trust, log, config)
                .and_then(|s| {
                    s.with_director(
                        conclave::Director::new(orders),
                        Box::new(move |d| keeper.set_directives(d).map_err(|e| e.to_string())),
                    )
                })
                .and_then(|s| s.with_spend(Arc::new(PgSpend::new(&db))))
                .map_err(CliError::input)?
                .with_orders_from(Box::new(move || {
                    loader.directives().map_err(|e| e.to_string())
                }));
            (state, true, format!("database {}", db.describe()))
        }
    };
    let state = Arc::new(state);
    let watched = Arc::downgrade(&state);
    let app = router(state);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::failed(format!("cannot start the runtime: {e}")))?;
    let served = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(a.addr)
            .await
            .map_err(|e| CliError::input(format!("cannot listen on {}: {e}", a.addr)))?;
        let bound = listener
            .local_addr()
            .map_err(|e| CliError::failed(format!("cannot read the bound address: {e}")))?;
        if follow {
            tokio::spawn(conclave::serve::follow(
                watched,
                std::time::Duration::from_millis(a.follow_ms.max(10)),
            ));
        }
        if let Some(store) = &announce
            && let Err(e) = store.announce_server(&format!("http://{bound}"))
        {
            tracing::warn!(error = %e, "cannot say in the store where it is served");
        }
        eprintln!("conclave serving on http://{bound} ({place})");
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown())
            .await
            .map_err(|e| CliError::failed(format!("the server failed: {e}")))
    });
    if let Some(store) = &announce {
        store.withdraw_server();
    }
    served?;
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
