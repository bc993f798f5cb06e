//! What opening a PostgreSQL store checks before it migrates or reads: which schema the
//! connection works in, and that it is empty or a gcx schema no newer than this gcx.

use sqlx::postgres::PgPool;

use crate::store::StoreError;
use crate::store::error::db_error;
use crate::store::migrations::{Scripts, check_meta, foreign};

/// The gcx schema version in the current schema (`None`: no tables yet); refuses a schema
/// holding other tables or a newer gcx schema.
pub(super) async fn inspect(pool: &PgPool, location: &str) -> Result<Option<i64>, StoreError> {
    let schema: Option<String> = sqlx::query_scalar("SELECT current_schema()")
        .fetch_one(pool)
        .await
        .map_err(|e| db_error(location, e))?;
    let Some(schema) = schema else {
        return Err(StoreError::Migrate {
            location: location.to_string(),
            detail: "no schema of the search_path exists; create it or fix the URL's \
                     `options=-c search_path=...`"
                .to_string(),
        });
    };
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = $1 ORDER BY 1",
    )
    .bind(&schema)
    .fetch_all(pool)
    .await
    .map_err(|e| db_error(location, e))?;
    if tables.is_empty() {
        return Ok(None);
    }
    if !tables.iter().any(|t| t == "gcx_meta") {
        return Err(foreign(
            location,
            &format!("a PostgreSQL schema ({schema})"),
            &tables,
        ));
    }
    let meta: Vec<(String, String)> = sqlx::query_as("SELECT key, value FROM gcx_meta")
        .fetch_all(pool)
        .await
        .map_err(|e| db_error(location, e))?;
    check_meta(location, &meta, Scripts::Postgres).map(Some)
}
