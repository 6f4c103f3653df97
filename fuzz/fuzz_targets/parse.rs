//! Feeds arbitrary bytes through the whole language front end: parse,
//! resolve, render the diagnostics, format (and format again: it must be a
//! fixed point).

#![no_main]

use cutover_lang::{format_source, parse_source, render_human, render_json};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data).into_owned();
    let loaded = parse_source("fuzz.runbook", text.clone());
    let _ = render_human(&loaded.sources, &loaded.diagnostics, false);
    let _ = render_json(&loaded.sources, &loaded.diagnostics);
    if let Some(runbook) = &loaded.runbook {
        for step in &runbook.steps {
            let _ = runbook.describe(&step.action);
        }
    }
    if let Ok(formatted) = format_source(&text) {
        assert_eq!(format_source(&formatted).ok().as_deref(), Some(formatted.as_str()));
    }
});
