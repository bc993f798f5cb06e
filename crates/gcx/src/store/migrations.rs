//! The migration scripts of `crates/gcx/migrations/{sqlite,postgres}/`, embedded in the
//! binary and run with sqlx's migrator (which records them in `_sqlx_migrations`).
//!
//! Each script also sets `gcx_meta.schema_version` to its own version, so a store
//! written by a newer gcx is recognised before anything is touched.

use std::borrow::Cow;

use futures_util::future::BoxFuture;
use sqlx::error::BoxDynError;
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};

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

    /// A migrator over these scripts.
    pub(crate) async fn migrator(self) -> Result<Migrator, sqlx::migrate::MigrateError> {
        Migrator::new(self).await
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
