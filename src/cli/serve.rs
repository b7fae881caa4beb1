//! `conclave serve`: governed decisions over HTTP, on the store's trust and audit log.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use super::{CliError, Place};
use conclave::audit::{PgAuditLog, SledAuditLog};
use conclave::postgres::PgSpend;
use conclave::serve::http::{HttpLimits, Stopped};
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
    /// Seconds a client has to send a request's head; also how long a kept-alive connection
    /// may stay idle.
    #[arg(long, default_value_t = 10.0, value_parser = seconds)]
    header_timeout: f64,
    /// Connections served at once; more wait until one closes.
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    max_connections: u32,
    /// Seconds requests in flight get to finish after SIGTERM or Ctrl-C; connections still
    /// open then are cut.
    #[arg(long, default_value_t = 30.0, value_parser = seconds)]
    shutdown_grace: f64,
}

/// A positive number of seconds, at most a day.
fn seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v <= 86_400.0 => Ok(v),
        _ => Err(format!("{s:?} is not a number of seconds in (0, 86400]")),
    }
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
            // The Director's standing orders, kept beside the audit log: suspensions and
            // reweights hold here too, and a hand-over that trips the ratchet is recorded.
            let director = conclave::Director::kept_in(log.clone()).map_err(CliError::input)?;
            let state = ServeState::new(catalog, trust, log, config)
                .and_then(|s| s.with_director(director))
                .map_err(CliError::input)?;
            (state, false, format!("store {}", dir.display()))
        }
        Place::Database(url) => {
            let db = conclave::postgres::Database::connect(url, a.db_connections)
                .map_err(CliError::input)?;
            let trust =
                Arc::new(PgTrustStore::new(&db, TrustParams::default()).map_err(CliError::input)?);
            let log = Arc::new(PgAuditLog::new(&db));
            // One set of orders for every replica on the database.
            let director = conclave::Director::kept_in(log.clone()).map_err(CliError::input)?;
            let state = ServeState::new(catalog, trust, log, config)
                .and_then(|s| s.with_director(director))
                .and_then(|s| s.with_spend(Arc::new(PgSpend::new(&db))))
                .map_err(CliError::input)?;
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
        let limits = HttpLimits {
            header_timeout: Duration::from_secs_f64(a.header_timeout),
            max_connections: a.max_connections as usize,
            shutdown_grace: Duration::from_secs_f64(a.shutdown_grace),
        };
        Ok::<_, CliError>(conclave::serve::http::serve(listener, app, limits, shutdown()).await)
    });
    if let Some(store) = &announce {
        store.withdraw_server();
    }
    match served? {
        Stopped::Drained => eprintln!("conclave stopped: decisions in flight finished"),
        Stopped::Cut => eprintln!(
            "conclave stopped: connections still open after {} s were cut (a decision cut before its record was written is not recorded)",
            a.shutdown_grace
        ),
    }
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
