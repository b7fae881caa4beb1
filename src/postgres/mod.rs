//! The PostgreSQL backend (feature `postgres`): trust, the audit chain, shared budgets and the
//! Director's orders in one database that several `conclave serve` replicas share.
//!
//! [`Database::connect`] opens a small pool of connections and applies the schema migrations
//! (versioned, in schema `conclave`, under an advisory lock so that replicas starting together
//! do not race). The stores on top of it implement the same traits as the sled ones:
//! [`PgTrustStore`](crate::trust::store::PgTrustStore) (batches in serializable transactions,
//! retried on conflict), [`PgAuditLog`](crate::audit::PgAuditLog) (one chain: appends take the
//! head row `FOR UPDATE`, so every replica's records link into it; an idempotency key is
//! unique in the chain) and [`PgSpend`] (budget reservations that hold across replicas: a
//! reservation is one conditional `UPDATE`, so the sum over replicas never passes the cap).
//!
//! The traits are synchronous (sled is), and the `postgres` client must not run on an async
//! worker: each connection lives on its own thread, and a call sends it the work and waits for
//! the answer. A call made from an async task blocks its worker for one round trip, as a sled
//! read does; the audit append runs on tokio's blocking pool ([`AuditLog::blocks`]).
//!
//! TLS to the database is not supported yet: connect over loopback, a Unix socket or a private
//! network.
//!
//! [`AuditLog::blocks`]: crate::audit::AuditLog::blocks

pub(crate) mod audit;
pub(crate) mod trust;

use std::fmt;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use postgres::error::SqlState;
use postgres::{Client, NoTls};

use crate::directives::Directives;
use crate::spend::{Charge, SpendAccount, SpendError};

/// Schema migrations, applied in order; a database records the versions it has.
const MIGRATIONS: &[(i32, &str)] = &[
    (
        1,
        r"
CREATE TABLE conclave.trust_state (
    agent text NOT NULL,
    domain text NOT NULL,
    state text NOT NULL,
    PRIMARY KEY (agent, domain)
);
CREATE TABLE conclave.trust_meta (name text PRIMARY KEY, value text NOT NULL);
CREATE TABLE conclave.trust_history (seq bigint PRIMARY KEY, agent text NOT NULL, entry text NOT NULL);
CREATE INDEX trust_history_agent ON conclave.trust_history (agent);
CREATE TABLE conclave.trust_batch (provenance text PRIMARY KEY, version bigint NOT NULL, summary text NOT NULL);
CREATE TABLE conclave.trust_ledger (domain text PRIMARY KEY, ledger text NOT NULL);
CREATE TABLE conclave.audit (
    seq bigint PRIMARY KEY,
    record bytea NOT NULL,
    decision text,
    idempotency_key text UNIQUE
);
CREATE INDEX audit_decision ON conclave.audit (decision);
CREATE TABLE conclave.audit_head (id int PRIMARY KEY CHECK (id = 1), seq bigint NOT NULL, hash bytea NOT NULL);
INSERT INTO conclave.audit_head VALUES (1, 0, decode(repeat('00', 32), 'hex'));
CREATE TABLE conclave.spend (
    scope text PRIMARY KEY,
    reserved_tokens bigint NOT NULL DEFAULT 0,
    reserved_usd double precision NOT NULL DEFAULT 0,
    spent_tokens bigint NOT NULL DEFAULT 0,
    spent_usd double precision NOT NULL DEFAULT 0
);
CREATE TABLE conclave.directives (id int PRIMARY KEY CHECK (id = 1), value text NOT NULL);
",
    ),
    (
        2,
        // A decision's outcome and its override are each recorded once, whatever the
        // replicas and the concurrency: `settles` (`outcome:SEQ`, `override:SEQ`) is unique.
        // In a log written before, the first of each per decision holds it (it was the one
        // that stood).
        r"
ALTER TABLE conclave.audit ADD COLUMN settles text;
UPDATE conclave.audit a SET settles = f.key
FROM (
    SELECT DISTINCT ON (key) seq, key
    FROM (
        SELECT seq, (body ->> 'entry') || ':' || (body ->> 'decision') AS key
        FROM (
            SELECT seq, convert_from(substring(record FROM 65), 'UTF8')::jsonb AS body
            FROM conclave.audit
        ) b
        WHERE body ->> 'entry' IN ('outcome', 'override')
    ) k
    ORDER BY key, seq
) f
WHERE a.seq = f.seq;
CREATE UNIQUE INDEX audit_settles ON conclave.audit (settles);
",
    ),
];

/// The advisory lock key migrations run under ("conclave" in ASCII).
const MIGRATION_LOCK: i64 = 0x636f_6e63_6c61_7665;

/// Connections in a pool when not told otherwise.
pub const DEFAULT_CONNECTIONS: usize = 8;

/// Tries of a transaction that conflicts with another one (serialization failure, deadlock).
const TRIES: u32 = 30;

/// Why the database could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DbError {
    /// The URL cannot be parsed.
    #[error("the database URL is not valid: {0}")]
    Url(String),
    /// No connection could be made.
    #[error("cannot connect to PostgreSQL at {at}: {detail}")]
    Connect {
        /// Host and database (never the password).
        at: String,
        /// Why.
        detail: String,
    },
    /// A statement failed.
    #[error("PostgreSQL: {0}")]
    Query(String),
    /// The database was set up by a newer conclave.
    #[error(
        "the database has schema version {found}; this build knows up to {known}: upgrade conclave"
    )]
    NewerSchema {
        /// The version found.
        found: i32,
        /// The newest this build applies.
        known: i32,
    },
    /// A stored value cannot be read.
    #[error("PostgreSQL: {what} cannot be read: {detail}")]
    Corrupt {
        /// Which value.
        what: String,
        /// Why.
        detail: String,
    },
    /// The pool's connection threads are gone.
    #[error("the database pool is shut down")]
    Closed,
}

impl DbError {
    fn query(e: &postgres::Error) -> Self {
        // `postgres::Error`'s Display is terse ("db error"); the database's message is in
        // its source.
        match e.as_db_error() {
            Some(db) => Self::Query(format!("{} ({})", db.message(), db.code().code())),
            None => Self::Query(e.to_string()),
        }
    }

    pub(crate) fn corrupt(what: impl Into<String>, detail: impl fmt::Display) -> Self {
        Self::Corrupt {
            what: what.into(),
            detail: detail.to_string(),
        }
    }
}

/// Whether a failed transaction may simply be tried again.
pub(crate) fn retryable(e: &postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED
    )
}

pub(crate) fn unique_violation(e: &postgres::Error) -> bool {
    e.code() == Some(&SqlState::UNIQUE_VIOLATION)
}

impl From<postgres::Error> for DbError {
    fn from(e: postgres::Error) -> Self {
        Self::query(&e)
    }
}

type Job = Box<dyn FnOnce(Result<&mut Client, DbError>) + Send>;

/// A PostgreSQL database with conclave's schema: a pool of connections, each on its own
/// thread. Cheap to clone (the clones share the pool).
#[derive(Clone)]
pub struct Database {
    jobs: mpsc::Sender<Job>,
    at: Arc<str>,
}

impl fmt::Debug for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Database").field("at", &self.at).finish()
    }
}

/// Host, port and database name of a configuration (never the password).
fn describe(config: &postgres::Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            postgres::config::Host::Tcp(name) => name.clone(),
            postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "{}:{port}/{}",
        hosts.join(","),
        config.get_dbname().unwrap_or("(default)")
    )
}

/// Host, port and database name of a database URL (never the password); `None` when the
/// URL cannot be parsed.
pub fn describe_url(url: &str) -> Option<String> {
    url.parse::<postgres::Config>().ok().map(|c| describe(&c))
}

impl Database {
    /// Connects to `url` (`postgres://user:password@host:port/db` or key=value form) with
    /// `connections` connections and brings the schema up to date.
    ///
    /// # Errors
    /// A malformed URL, an unreachable server, a failed migration, or a schema newer than
    /// this build.
    pub fn connect(url: &str, connections: usize) -> Result<Self, DbError> {
        let mut config: postgres::Config = url.parse().map_err(|e| DbError::Url(format!("{e}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        if config.get_application_name().is_none() {
            config.application_name("conclave");
        }
        let at: Arc<str> = describe(&config).into();
        // The first connection is made here, so that a bad URL fails now and clearly; on a
        // thread of its own, since the client must not block an async worker.
        let first = std::thread::scope(|s| {
            s.spawn(|| {
                let mut first = config.connect(NoTls).map_err(|e| DbError::Connect {
                    at: at.to_string(),
                    detail: connect_detail(&e),
                })?;
                migrate(&mut first)?;
                Ok::<_, DbError>(first)
            })
            .join()
            .map_err(|_| DbError::Query("the connection thread panicked".to_owned()))?
        })?;
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let mut first = Some(first);
        for i in 0..connections.max(1) {
            let rx = rx.clone();
            let config = config.clone();
            let at = at.clone();
            let conn = first.take();
            std::thread::Builder::new()
                .name(format!("conclave-pg-{i}"))
                .spawn(move || worker(&rx, &config, &at, conn))
                .map_err(|e| DbError::Query(format!("cannot start a connection thread: {e}")))?;
        }
        Ok(Self { jobs: tx, at })
    }

    /// Where the database is (host, port, name; never the password).
    pub fn describe(&self) -> &str {
        &self.at
    }

    /// Runs `f` on a pooled connection and waits for its result.
    ///
    /// # Errors
    /// No connection could be made, or `f` failed.
    pub(crate) fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Client) -> Result<T, DbError> + Send + 'static,
    ) -> Result<T, DbError> {
        let (reply, answer) = mpsc::sync_channel(1);
        let job: Job = Box::new(move |client| {
            let result = client.and_then(f);
            // The caller waits for this; if it has gone, nobody needs the answer.
            let _ = reply.send(result);
        });
        self.jobs.send(job).map_err(|_| DbError::Closed)?;
        let wait = || answer.recv().map_err(|_| DbError::Closed);
        // Called from an async worker of a multi-threaded runtime (a budget reservation in
        // the middle of a decision), the wait hands the worker's other tasks to another
        // thread first, so that one round trip does not stall them.
        let on_worker = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        if on_worker {
            tokio::task::block_in_place(wait)?
        } else {
            wait()?
        }
    }

    /// Runs `f` in a transaction at `isolation`, again from the start when it conflicts with
    /// another (serialization failure or deadlock), up to 30 times.
    pub(crate) fn transact<T: Send + 'static, E: From<DbError> + Send + 'static>(
        &self,
        isolation: postgres::IsolationLevel,
        f: impl Fn(&mut postgres::Transaction<'_>) -> Result<T, Tx<E>> + Send + 'static,
    ) -> Result<T, E> {
        self.run(move |client| Ok(transact_on(client, isolation, &f)))?
    }

    /// Like [`transact`](Self::transact), for writers that all touch the same rows (the trust
    /// store's version counter): each first takes the session advisory lock `queue`, so that
    /// writers on every replica wait their turn instead of conflicting and starting over. The
    /// transaction's snapshot is taken after the lock is held; retries stay as the safety net.
    pub(crate) fn transact_queued<T: Send + 'static, E: From<DbError> + Send + 'static>(
        &self,
        queue: i64,
        isolation: postgres::IsolationLevel,
        f: impl Fn(&mut postgres::Transaction<'_>) -> Result<T, Tx<E>> + Send + 'static,
    ) -> Result<T, E> {
        self.run(move |client| {
            client
                .execute("SELECT pg_advisory_lock($1)", &[&queue])
                .map_err(|e| DbError::query(&e))?;
            let result = transact_on(client, isolation, &f);
            // Released whatever the transaction's fate. The unlock fails only when the
            // connection broke, and a session's locks end with it; the transaction's own
            // result is what the caller needs to know.
            let _ = client.execute("SELECT pg_advisory_unlock($1)", &[&queue]);
            Ok(result)
        })?
    }

    /// The Director's standing orders kept in the database (empty if none were kept).
    ///
    /// # Errors
    /// The database cannot be read, or holds unreadable orders.
    pub fn directives(&self) -> Result<Directives, DbError> {
        self.run(|c| {
            match c.query_opt("SELECT value FROM conclave.directives WHERE id = 1", &[])? {
                None => Ok(Directives::default()),
                Some(row) => serde_json::from_str(row.get::<_, &str>(0))
                    .map_err(|e| DbError::corrupt("the Director's orders", e)),
            }
        })
    }

    /// Keeps the Director's standing orders.
    ///
    /// # Errors
    /// The database cannot be written.
    pub fn set_directives(&self, orders: &Directives) -> Result<(), DbError> {
        let value = serde_json::to_string(orders).map_err(|e| DbError::Query(e.to_string()))?;
        self.run(move |c| {
            c.execute(
                "INSERT INTO conclave.directives (id, value) VALUES (1, $1)
                 ON CONFLICT (id) DO UPDATE SET value = EXCLUDED.value",
                &[&value],
            )?;
            Ok(())
        })
    }
}

/// Why a transaction body stopped: a database error (retried when it is a conflict) or the
/// caller's own error (returned as it is).
#[derive(Debug)]
pub(crate) enum Tx<E> {
    Db(postgres::Error),
    Abort(E),
}

impl<E> From<postgres::Error> for Tx<E> {
    fn from(e: postgres::Error) -> Self {
        Self::Db(e)
    }
}

fn transact_on<T, E: From<DbError>>(
    client: &mut Client,
    isolation: postgres::IsolationLevel,
    f: &impl Fn(&mut postgres::Transaction<'_>) -> Result<T, Tx<E>>,
) -> Result<T, E> {
    let mut tries = 0;
    loop {
        tries += 1;
        let attempt = (|| {
            let mut tx = client
                .build_transaction()
                .isolation_level(isolation)
                .start()
                .map_err(Tx::Db)?;
            let value = f(&mut tx)?;
            tx.commit().map_err(Tx::Db)?;
            Ok(value)
        })();
        match attempt {
            Ok(v) => return Ok(v),
            Err(Tx::Db(e)) if retryable(&e) && tries < TRIES => {
                std::thread::sleep(backoff(tries));
            }
            Err(Tx::Db(e)) => return Err(DbError::query(&e).into()),
            Err(Tx::Abort(e)) => return Err(e),
        }
    }
}

/// How long to wait before try `tries + 1`: doubling from 1 ms up to 64 ms, each wait drawn
/// at random from its upper half, so that writers that conflicted once do not meet again.
fn backoff(tries: u32) -> Duration {
    let ceiling = 1u64 << tries.min(6);
    // The clock's low bits are random enough to spread writers; no generator is needed.
    let noise = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::from(d.subsec_nanos()));
    Duration::from_micros(ceiling * 500 + noise % (ceiling * 500 + 1))
}

/// The useful part of a connection error (the server's message, or the I/O error).
fn connect_detail(e: &postgres::Error) -> String {
    use std::error::Error as _;
    match e.as_db_error() {
        Some(db) => db.message().to_owned(),
        None => e
            .source()
            .map_or_else(|| e.to_string(), ToString::to_string),
    }
}

/// One connection's thread: it takes jobs until the pool is dropped, and reconnects when its
/// connection broke.
fn worker(
    jobs: &Mutex<mpsc::Receiver<Job>>,
    config: &postgres::Config,
    at: &str,
    mut conn: Option<Client>,
) {
    loop {
        let job = match jobs.lock() {
            Ok(rx) => match rx.recv() {
                Ok(job) => job,
                Err(_) => return,
            },
            Err(_) => return,
        };
        if conn.as_ref().is_none_or(Client::is_closed) {
            conn = None;
            match config.connect(NoTls) {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    job(Err(DbError::Connect {
                        at: at.to_owned(),
                        detail: connect_detail(&e),
                    }));
                    continue;
                }
            }
        }
        match conn.as_mut() {
            Some(c) => job(Ok(c)),
            None => job(Err(DbError::Closed)),
        }
    }
}

/// Brings the schema up to date, under an advisory lock.
fn migrate(client: &mut Client) -> Result<(), DbError> {
    client.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])?;
    let result = (|| {
        client.batch_execute(
            "CREATE SCHEMA IF NOT EXISTS conclave;
             CREATE TABLE IF NOT EXISTS conclave.migrations (
                 version int PRIMARY KEY,
                 applied_at timestamptz NOT NULL DEFAULT now()
             );",
        )?;
        let found: i32 = client
            .query_one(
                "SELECT coalesce(max(version), 0) FROM conclave.migrations",
                &[],
            )?
            .get(0);
        let known = MIGRATIONS.last().map_or(0, |m| m.0);
        if found > known {
            return Err(DbError::NewerSchema { found, known });
        }
        for (version, sql) in MIGRATIONS.iter().filter(|m| m.0 > found) {
            let mut tx = client.transaction()?;
            tx.batch_execute(sql)?;
            tx.execute(
                "INSERT INTO conclave.migrations (version) VALUES ($1)",
                &[version],
            )?;
            tx.commit()?;
            tracing::info!(version, "applied database migration");
        }
        Ok(())
    })();
    let unlocked = client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]);
    result?;
    unlocked?;
    Ok(())
}

/// Budget accounts in the database, shared by every replica on it: a reservation is one
/// conditional `UPDATE` (the row's lock orders concurrent ones, and PostgreSQL re-checks the
/// condition on the row it locked), so reservations across replicas never pass the cap.
#[derive(Debug, Clone)]
pub struct PgSpend {
    db: Database,
}

impl PgSpend {
    /// The accounts in `db`.
    pub fn new(db: &Database) -> Self {
        Self { db: db.clone() }
    }
}

fn spend_err(e: DbError) -> SpendError {
    SpendError(e.to_string())
}

impl SpendAccount for PgSpend {
    fn reserve(&self, scope: &str, charge: Charge, cap: Charge) -> Result<bool, SpendError> {
        let scope = scope.to_owned();
        self.db
            .run(move |c| {
                c.execute(
                    "INSERT INTO conclave.spend (scope) VALUES ($1) ON CONFLICT DO NOTHING",
                    &[&scope],
                )?;
                let tokens = i64::try_from(charge.tokens).unwrap_or(i64::MAX);
                let cap_tokens = i64::try_from(cap.tokens).unwrap_or(i64::MAX);
                let n = c.execute(
                    "UPDATE conclave.spend
                        SET reserved_tokens = reserved_tokens + $2::bigint,
                            reserved_usd = reserved_usd + $3::float8
                      WHERE scope = $1
                        AND spent_tokens + reserved_tokens + $2::bigint <= $4::bigint
                        AND spent_usd + reserved_usd + $3::float8 <= $5::float8 + 1e-9",
                    &[&scope, &tokens, &charge.usd, &cap_tokens, &cap.usd],
                )?;
                Ok(n == 1)
            })
            .map_err(spend_err)
    }

    fn settle(&self, scope: &str, reserved: Charge, spent: Charge) -> Result<(), SpendError> {
        let scope = scope.to_owned();
        self.db
            .run(move |c| {
                let r = i64::try_from(reserved.tokens).unwrap_or(i64::MAX);
                let s = i64::try_from(spent.tokens).unwrap_or(i64::MAX);
                c.execute(
                    "UPDATE conclave.spend
                        SET reserved_tokens = greatest(reserved_tokens - $2::bigint, 0),
                            reserved_usd = greatest(reserved_usd - $3::float8, 0),
                            spent_tokens = spent_tokens + $4::bigint,
                            spent_usd = spent_usd + $5::float8
                      WHERE scope = $1",
                    &[&scope, &r, &reserved.usd, &s, &spent.usd],
                )?;
                Ok(())
            })
            .map_err(spend_err)
    }

    fn totals(&self, scope: &str) -> Result<(Charge, Charge), SpendError> {
        let scope = scope.to_owned();
        self.db
            .run(move |c| {
                let row = c.query_opt(
                    "SELECT reserved_tokens, reserved_usd, spent_tokens, spent_usd
                       FROM conclave.spend WHERE scope = $1",
                    &[&scope],
                )?;
                Ok(row.map_or((Charge::default(), Charge::default()), |r| {
                    let tokens = |i: usize| u64::try_from(r.get::<_, i64>(i)).unwrap_or(0);
                    (
                        Charge {
                            tokens: tokens(0),
                            usd: r.get(1),
                        },
                        Charge {
                            tokens: tokens(2),
                            usd: r.get(3),
                        },
                    )
                }))
            })
            .map_err(spend_err)
    }
}

impl From<DbError> for crate::directives::OrdersError {
    fn from(e: crate::postgres::DbError) -> Self {
        Self::Book(e.to_string())
    }
}
