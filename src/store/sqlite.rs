//! SQLite: the embedded default. WAL journal (readers never block the writer), `synchronous=FULL` (a commit that
//! returned survives a power cut, not only a crash), foreign keys on, and a busy timeout so concurrent writers wait
//! instead of failing. `secure_delete` zeroes the pages a deletion or an update frees, so that replaced text does
//! not linger in the file.

use std::time::Duration;

use sqlx::Executor;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};

use super::StoreError;
use super::sql::{Dialect, SqlStore};

static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

/// Opens (creating if missing) the SQLite database at `url` and applies the migrations.
pub(super) async fn open(url: &str) -> Result<SqlStore, StoreError> {
    sqlx::any::install_default_drivers();
    // `mode=rwc` creates the file on first start.
    let url = if url.contains('?') {
        url.to_owned()
    } else {
        format!("{url}?mode=rwc")
    };
    let options: AnyConnectOptions = url.parse().map_err(StoreError::Connect)?;
    let pool = AnyPoolOptions::new()
        .max_connections(8)
        .acquire_timeout(Duration::from_secs(10))
        .after_connect(|conn, _meta| {
            Box::pin(async move {
                conn.execute(
                    "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; \
                     PRAGMA busy_timeout = 10000; PRAGMA secure_delete = ON;",
                )
                .await?;
                Ok(())
            })
        })
        .connect_with(options)
        .await
        .map_err(StoreError::Connect)?;
    MIGRATIONS.run(&pool).await.map_err(StoreError::Migrate)?;
    Ok(SqlStore::new(pool, Dialect::Sqlite))
}
