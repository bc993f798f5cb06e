//! The migration scripts of `crates/gcx/migrations/{sqlite,postgres}/`, embedded in the
//! binary and run with sqlx's migrator (which records them in `_sqlx_migrations`), and the
//! checks both backends make of a store's schema before anything touches it.
//!
//! Each script also sets `gcx_meta.schema_version` to its own version, so a store
//! written by a newer gcx is recognised before anything is touched.

use std::borrow::Cow;

use futures_util::future::BoxFuture;
use sqlx::error::BoxDynError;
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};

use super::StoreError;
use super::error::db_error;

/// `(version, description, sql)` of one script.
type Script = (i64, &'static str, &'static str);

const SQLITE: &[Script] = &[
    (
        1,
        "init",
        include_str!("../../migrations/sqlite/0001_init.sql"),
    ),
    (
        2,
        "check without in",
        include_str!("../../migrations/sqlite/0002_check_without_in.sql"),
    ),
    (
        3,
        "outbox partial indexes",
        include_str!("../../migrations/sqlite/0003_outbox_partial_indexes.sql"),
    ),
];

const POSTGRES: &[Script] = &[
    (
        1,
        "init",
        include_str!("../../migrations/postgres/0001_init.sql"),
    ),
    (
        2,
        "prune indexes",
        include_str!("../../migrations/postgres/0002_prune_indexes.sql"),
    ),
    (
        3,
        "cluster",
        include_str!("../../migrations/postgres/0003_cluster.sql"),
    ),
];

/// The schema version this binary knows (the last script's version).
pub(crate) fn known_version(scripts: Scripts) -> i64 {
    scripts.list().last().map_or(0, |s| s.0)
}

/// Which backend's scripts.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Scripts {
    Sqlite,
    Postgres,
}

impl Scripts {
    pub(crate) fn list(self) -> &'static [Script] {
        match self {
            Scripts::Sqlite => SQLITE,
            Scripts::Postgres => POSTGRES,
        }
    }

    /// Runs the scripts `pool`'s database lacks.
    pub(crate) async fn run<'a, A>(self, location: &str, pool: A) -> Result<(), StoreError>
    where
        A: sqlx::Acquire<'a>,
        <A::Connection as std::ops::Deref>::Target: sqlx::migrate::Migrate,
    {
        let migrator = Migrator::new(self)
            .await
            .map_err(|e| migrate_error(location, e))?;
        migrator
            .run(pool)
            .await
            .map_err(|e| migrate_error(location, e))
    }

    /// Whether a store with schema version `found` (`None`: no schema yet) can be opened
    /// for reading only: it must exist, and be migrated to the version this gcx knows.
    pub(crate) fn check_readable(
        self,
        location: &str,
        found: Option<i64>,
    ) -> Result<(), StoreError> {
        let known = known_version(self);
        match found {
            None => Err(StoreError::Missing {
                location: location.to_string(),
            }),
            Some(v) if v < known => Err(StoreError::Migrate {
                location: location.to_string(),
                detail: format!(
                    "it has schema version {v}, this gcx needs {known}; open it once \
                     for writing (e.g. `gcx serve`) to upgrade it"
                ),
            }),
            Some(_) => Ok(()),
        }
    }
}

impl<'s> MigrationSource<'s> for Scripts {
    fn resolve(self) -> BoxFuture<'s, Result<Vec<Migration>, BoxDynError>> {
        let migrations = self
            .list()
            .iter()
            .map(|(version, description, sql)| {
                Migration::new(
                    *version,
                    Cow::Borrowed(*description),
                    MigrationType::Simple,
                    Cow::Borrowed(*sql),
                    false,
                )
            })
            .collect();
        Box::pin(async move { Ok(migrations) })
    }
}

/// Checks `gcx_meta` rows: the application is gcx and the schema is not newer than ours;
/// returns the schema version.
pub(crate) fn check_meta(
    location: &str,
    meta: &[(String, String)],
    scripts: Scripts,
) -> Result<i64, StoreError> {
    let value = |key: &str| meta.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
    if value("application") != Some("gcx") {
        return Err(StoreError::NotAStore {
            location: location.to_string(),
            detail: "its gcx_meta table does not say application = gcx".to_string(),
        });
    }
    let found = value("schema_version")
        .and_then(|v| v.parse::<i64>().ok())
        .ok_or_else(|| StoreError::Corrupt {
            location: location.to_string(),
            detail: "gcx_meta.schema_version is missing or not a number".to_string(),
        })?;
    let known = known_version(scripts);
    if found > known {
        return Err(StoreError::NewerSchema {
            location: location.to_string(),
            found,
            known,
        });
    }
    Ok(found)
}

/// A database (`what`) holding tables but no `gcx_meta`: not a gcx store.
pub(crate) fn foreign(location: &str, what: &str, tables: &[String]) -> StoreError {
    let mut shown: Vec<&str> = tables.iter().take(5).map(String::as_str).collect();
    if tables.len() > 5 {
        shown.push("...");
    }
    StoreError::NotAStore {
        location: location.to_string(),
        detail: format!("it is {what} holding other tables ({})", shown.join(", ")),
    }
}

fn migrate_error(location: &str, err: sqlx::migrate::MigrateError) -> StoreError {
    match err {
        sqlx::migrate::MigrateError::Execute(e) => db_error(location, e),
        other => StoreError::Migrate {
            location: location.to_string(),
            detail: other.to_string(),
        },
    }
}
