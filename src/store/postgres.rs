//! PostgreSQL: the production store. Replicas share it; everything that must be shared between them (DEKs, tokens,
//! later sessions, audit chains and migration leases) lives here, never in one process's memory.

use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};

use super::StoreError;
use super::sql::{Dialect, SqlStore};

static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// Connects to the PostgreSQL database at `url` and applies the migrations (under sqlx's advisory lock, so
/// replicas starting together migrate once).
pub(super) async fn open(url: &str) -> Result<SqlStore, StoreError> {
    sqlx::any::install_default_drivers();
    let options: AnyConnectOptions = url.parse().map_err(StoreError::Connect)?;
    let pool = AnyPoolOptions::new()
        .max_connections(16)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options)
        .await
        .map_err(StoreError::Connect)?;
    MIGRATIONS.run(&pool).await.map_err(StoreError::Migrate)?;
    Ok(SqlStore::new(pool, Dialect::Postgres))
}
