//! SQLite: the embedded default. WAL journal (readers never block the writer), `synchronous=FULL` (a commit that
//! returned survives a power cut, not only a crash), foreign keys on, and a busy timeout so concurrent writers wait
//! instead of failing. `secure_delete` zeroes the pages a deletion or an update frees, so that replaced text does
//! not linger in the file. The database file is created mode 0600 before SQLite opens it (SQLite gives its `-wal`
//! and `-shm` files the database file's mode), so no file of the store is ever readable by others, whatever the
//! umask or the data folder's mode; an existing store's files are narrowed to 0600 at start.

use std::time::Duration;

use sqlx::Executor;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};

use super::StoreError;
use super::sql::{Dialect, SqlStore};

static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

/// Opens (creating if missing) the SQLite database at `url` and applies the migrations.
pub(super) async fn open(url: &str) -> Result<SqlStore, StoreError> {
    sqlx::any::install_default_drivers();
    if let Some(path) = file_path(url) {
        make_private(&path).map_err(|e| StoreError::Connect(sqlx::Error::Io(e)))?;
    }
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

/// The database file a `sqlite:` URL names (`None` for an in-memory database).
fn file_path(url: &str) -> Option<std::path::PathBuf> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        return None;
    }
    Some(std::path::PathBuf::from(path))
}

/// Creates the database file with mode 0600 if it is missing, and narrows an existing database, `-wal` and `-shm`
/// to 0600 (stores made by earlier versions took the umask's mode).
#[cfg(unix)]
fn make_private(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let mut files = vec![path.to_owned()];
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        files.push(name.into());
    }
    for file in files {
        let Ok(meta) = std::fs::metadata(&file) else { continue };
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(file = %file.display(), "narrowing the store file's mode to 0600");
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))?;
        }
    }
    Ok(())
}

#[cfg(not(unix))]
fn make_private(_: &std::path::Path) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_file_of_a_sqlite_url() {
        use super::file_path;
        assert_eq!(file_path("sqlite:///d/sesame.db"), Some("/d/sesame.db".into()));
        assert_eq!(file_path("sqlite://d/s.db?mode=rwc"), Some("d/s.db".into()));
        assert_eq!(file_path("sqlite:s.db"), Some("s.db".into()));
        assert_eq!(file_path("sqlite::memory:"), None);
        assert_eq!(file_path("sqlite://:memory:"), None);
        assert_eq!(file_path("postgres://x"), None);
    }
}
