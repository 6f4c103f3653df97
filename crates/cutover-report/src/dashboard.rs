//! The read-only live dashboard: an axum server whose page (HTML, CSS and
//! JavaScript embedded in the binary) polls `/api/run` once a second and
//! redraws in place. Every request opens the state file read-only, so the
//! dashboard never blocks or changes the run the engine is writing.
//!
//! Routes: `/` the page, `/dashboard.js`, `/style.css`, `/api/run` the
//! state as JSON ([`LiveState`]).

use crate::model::{ByStep, Report, current_phase};
use crate::read::{ReadError, Snapshot, read_snapshot};
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use cutover_lang::Runbook;
use cutover_store::{StepStatus, StoreError};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

const PAGE: &str = include_str!("../assets/dashboard.html");
const SCRIPT: &str = include_str!("../assets/dashboard.js");

/// What the dashboard shows: a state file, and the runbook when known.
#[derive(Debug)]
pub struct Source {
    pub state: PathBuf,
    /// Given on the command line, or found beside the state file on the
    /// first request that can (then kept).
    runbook: Mutex<Option<Arc<Runbook>>>,
}

impl Source {
    pub fn new(state: PathBuf, runbook: Option<Runbook>) -> Source {
        Source {
            state,
            runbook: Mutex::new(runbook.map(Arc::new)),
        }
    }

    fn runbook(&self, snapshot: &Snapshot) -> Option<Arc<Runbook>> {
        let mut cached = self
            .runbook
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if cached.is_none() {
            *cached = crate::find_runbook(&self.state, snapshot).map(Arc::new);
        }
        cached.clone()
    }
}

/// The JSON of `/api/run`.
#[derive(Debug, Serialize)]
pub struct LiveState {
    /// The server's clock, for elapsed times and countdowns.
    pub now: DateTime<Utc>,
    pub report: Report,
    /// The planned-vs-actual chart with a "now" line.
    pub gantt_svg: String,
    /// Who holds the run (`user@host (pid N) since …`), if anyone.
    pub coordinator: Option<String>,
    /// Countdowns running steps started and that have not run out.
    pub countdowns: Vec<Countdown>,
}

/// A countdown a step logged (a `wait`, an old TTL expiring).
#[derive(Debug, Serialize)]
pub struct Countdown {
    pub step: String,
    /// What is counted down, as the step kind says it.
    pub label: String,
    pub until: DateTime<Utc>,
    pub left_s: i64,
}

/// The state at `now`.
pub fn live_state(snapshot: &Snapshot, runbook: Option<&Runbook>, now: DateTime<Utc>) -> LiveState {
    let report = Report::build(snapshot, runbook);
    LiveState {
        now,
        gantt_svg: crate::gantt::svg(&report, Some(now)),
        coordinator: snapshot.lock.as_ref().map(ToString::to_string),
        countdowns: countdowns(snapshot, now),
        report,
    }
}

/// The latest `countdown` event of each running step's current phase,
/// while it has time left.
fn countdowns(snapshot: &Snapshot, now: DateTime<Utc>) -> Vec<Countdown> {
    let by_step = ByStep::new(snapshot);
    snapshot
        .steps
        .iter()
        .filter(|s| s.status == StepStatus::Running)
        .filter_map(|s| {
            let events = current_phase(by_step.events(&s.name));
            let data = events
                .iter()
                .rev()
                .find(|e| e.kind == "countdown")?
                .data
                .as_ref()?;
            let until: DateTime<Utc> = serde_json::from_value(data.get("until")?.clone()).ok()?;
            (until > now).then(|| Countdown {
                step: s.name.clone(),
                label: data
                    .get("label")
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
                until,
                left_s: (until - now).num_seconds(),
            })
        })
        .collect()
}

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
            get(|| async { asset("text/css; charset=utf-8", crate::html::STYLE) }),
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
        tokio::task::spawn_blocking(move || {
            let snapshot = read_snapshot(&source.state)?;
            let runbook = source.runbook(&snapshot);
            Ok::<_, ReadError>(live_state(&snapshot, runbook.as_deref(), Utc::now()))
        })
        .await
    };
    let mut response = match read {
        Ok(Ok(state)) => axum::Json(state).into_response(),
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
