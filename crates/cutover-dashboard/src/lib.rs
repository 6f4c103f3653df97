//! The read-only live dashboard's web server: an axum server whose page
//! (HTML, CSS and JavaScript embedded in the binary) polls `/api/run` once a
//! second and redraws in place. What it answers is
//! [`cutover_report::live`]'s: this crate only serves it, so that producing
//! an export never compiles a web stack.
//!
//! Routes: `/` the page, `/dashboard.js`, `/style.css`, `/api/run` the
//! state as JSON ([`cutover_report::live::LiveState`]).

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::Utc;
use cutover_report::ReadError;
use cutover_report::live::Source;
use cutover_store::StoreError;
use serde::Serialize;
use std::sync::Arc;

const PAGE: &str = include_str!("../assets/dashboard.html");
const SCRIPT: &str = include_str!("../assets/dashboard.js");

/// The dashboard's routes.
pub fn router(source: Arc<Source>) -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", PAGE) }),
        )
        .route(
            "/dashboard.js",
            get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }),
        )
        .route(
            "/style.css",
            get(|| async { asset("text/css; charset=utf-8", cutover_report::STYLE) }),
        )
        .route("/api/run", get(api_run))
        .with_state(source)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'self'; img-src 'self' data:; style-src 'self'"),
    );
    response
}

#[derive(Serialize)]
struct Waiting {
    waiting: String,
}

async fn api_run(State(source): State<Arc<Source>>) -> Response {
    let read = {
        let source = Arc::clone(&source);
        tokio::task::spawn_blocking(move || source.api_run_json(Utc::now())).await
    };
    let mut response = match read {
        Ok(Ok(body)) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response(),
        // No run yet: the page says so and keeps polling.
        Ok(Err(err @ (ReadError::Store(StoreError::Missing(_)) | ReadError::NoRun(_)))) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(Waiting {
                waiting: err.to_string(),
            }),
        )
            .into_response(),
        Ok(Err(err)) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            axum::Json(Waiting {
                waiting: err.to_string(),
            }),
        )
            .into_response(),
        Err(err) => (StatusCode::INTERNAL_SERVER_ERROR, err.to_string()).into_response(),
    };
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Serves the dashboard on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    source: Source,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(Arc::new(source)))
        .with_graceful_shutdown(shutdown)
        .await
}
