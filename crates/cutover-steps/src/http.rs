//! `http.check URL [status N] [body "TEXT"]`: the URL answers the expected
//! status (and contains the text). A URL whose host names a runbook host is
//! sent to that host's address, with the name kept in the Host header.

use crate::wrong_action;
use cutover_engine::{BoxFuture, Check, Evidence, StepContext, StepKind, StepResult, bounded};
use cutover_lang::ActionKind;
use std::net::SocketAddr;
use std::time::Duration;

pub struct HttpCheck;

const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Body text kept in evidence.
const EVIDENCE_BODY: usize = 256;

async fn observe(ctx: &StepContext<'_>) -> anyhow::Result<Check> {
    let ActionKind::HttpCheck {
        url,
        host,
        status,
        body,
    } = &ctx.action.kind
    else {
        return Err(wrong_action("http.check", &ctx.action.kind));
    };
    let parsed = reqwest::Url::parse(url).map_err(|e| anyhow::anyhow!("bad URL {url}: {e}"))?;
    let mut client = reqwest::Client::builder()
        .no_proxy()
        .timeout(REQUEST_TIMEOUT);
    if let (Some(id), Some(name)) = (host, parsed.host_str()) {
        let port = parsed.port_or_known_default().unwrap_or(80);
        client = client.resolve(name, SocketAddr::new(ctx.runbook.host(*id).addr, port));
    }
    let client = client.build()?;
    let request = async {
        let response = client.get(parsed.clone()).send().await?;
        let code = response.status().as_u16();
        let text = response.text().await?;
        Ok::<_, reqwest::Error>((code, text))
    };
    let outcome = tokio::select! {
        r = request => r,
        () = ctx.cancel.cancelled() => anyhow::bail!("interrupted"),
    };
    let (code, text) = match outcome {
        Ok(answer) => answer,
        Err(e) => {
            return Ok(Check::NotYet(Evidence::new(
                format!("{url}: {e}"),
                serde_json::json!({ "url": url, "error": e.to_string() }),
            )));
        }
    };
    let data = serde_json::json!({
        "url": url,
        "status": code,
        "body": bounded(&text, EVIDENCE_BODY),
    });
    if code != *status {
        return Ok(Check::NotYet(Evidence::new(
            format!("{url} answered {code}, expected {status}"),
            data,
        )));
    }
    if let Some(wanted) = body
        && !text.contains(wanted.as_str())
    {
        return Ok(Check::NotYet(Evidence::new(
            format!("{url} answered {code} without \"{wanted}\""),
            data,
        )));
    }
    let summary = match body {
        Some(wanted) => format!("{url} answered {code} with \"{wanted}\""),
        None => format!("{url} answered {code}"),
    };
    Ok(Check::Satisfied(Evidence::new(summary, data)))
}

impl StepKind for HttpCheck {
    fn check<'a>(&'a self, ctx: &'a StepContext<'a>) -> BoxFuture<'a, StepResult<Check>> {
        Box::pin(async move { Ok(observe(ctx).await?) })
    }

    fn act<'a>(&'a self, _ctx: &'a StepContext<'a>) -> BoxFuture<'a, StepResult<Evidence>> {
        Box::pin(async {
            Ok(Evidence::new(
                "nothing to do (a check)",
                serde_json::Value::Null,
            ))
        })
    }
}
