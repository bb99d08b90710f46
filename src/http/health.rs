//! `GET /health`: 200 when the database answers, 503 otherwise (JSON, without the cause,
//! which goes to the log); 503 with the reason when the SQLite file was deleted or replaced
//! under the hub (`store::file`).

use std::sync::Arc;

use actix_web::{HttpResponse, web};

use crate::{http::AppState, store::dispatch};

pub async fn get(ctx: web::Data<Arc<AppState>>) -> HttpResponse {
    if let Some(problem) = ctx.database_file.as_ref().and_then(|f| f.problem()) {
        return HttpResponse::ServiceUnavailable()
            .json(serde_json::json!({"status": "unavailable", "error": problem.to_string()}));
    }
    let ok: Result<i64, sqlx::Error> =
        dispatch!(&ctx.db, c => sqlx::query_scalar("SELECT CAST(1 AS BIGINT)").fetch_one(c).await);
    match ok {
        Ok(_) => HttpResponse::Ok()
            .json(serde_json::json!({"status": "ok", "database": ctx.db.engine()})),
        Err(error) => {
            // The cause is for the operator's log, not for whoever asks.
            tracing::warn!(error = %crate::telemetry::Chain(&error), "health check: the database does not answer");
            HttpResponse::ServiceUnavailable().json(
                serde_json::json!({"status": "unavailable", "error": "the database does not answer"}),
            )
        }
    }
}
