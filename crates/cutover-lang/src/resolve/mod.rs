//! Resolution: turns the items of a runbook's files into the typed
//! [`Runbook`]. Every line is read on its own, so one faulty line costs one
//! diagnostic and the rest of the file is still checked.
//!
//! Names are declared first (so a step may name a later step in `after`),
//! then each item is built with its references resolved, then the checks that
//! need the whole runbook run (the `after` graph, window-relative times).
//!
//! The work is split as a parser is split from its analysis: [`cursor`]
//! reads a line's tokens, [`values`] parses the values in them, [`items`]
//! and [`kinds`] (one module per family of step kinds) parse the lines of
//! each item, [`names`] declares and looks up names, and [`checks`] runs the
//! checks that need the whole runbook.

mod checks;
mod cursor;
mod items;
mod kinds;
mod names;
mod values;

use crate::diagnostic::{Diagnostic, Severity};
use crate::model::*;
use crate::source::{FileId, SourceMap, Span};
use crate::syntax::SyntaxFile;
use cursor::PResult;
use names::{Declared, HostLike};
use std::collections::HashMap;
use std::sync::Arc;

/// An item to resolve: which file, which item in it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ItemRef {
    pub file: FileId,
    pub item: usize,
}

/// The resolver's state: what is declared, and what was found.
struct Resolver<'a> {
    diags: Vec<Diagnostic>,
    keys: Vec<Declared<'a>>,
    zones: Vec<Declared<'a>>,
    hosts: Vec<Declared<'a>>,
    groups: Vec<Declared<'a>>,
    steps: Vec<Declared<'a>>,
    key_index: HashMap<&'a str, usize>,
    zone_index: HashMap<String, usize>,
    host_index: HashMap<&'a str, HostLike>,
    step_index: HashMap<&'a str, usize>,
    /// Every group's members (also of groups with errors, so indices match),
    /// shared with the [`Group`] and every step that names it.
    group_members: Vec<Arc<[HostId]>>,
    /// Window-relative times, which need a `window`.
    relative_times: Vec<Span>,
    /// Variables handed to `exec` commands (`env NAME`): none may hold a
    /// key's secret.
    exec_env: Vec<(String, Span)>,
}

/// Resolves and checks the items, in order; returns the runbook when no
/// error was found, and every diagnostic.
pub(crate) fn resolve(
    sources: &SourceMap,
    syntax: &[SyntaxFile],
    items: &[ItemRef],
    main: FileId,
) -> (Option<Runbook>, Vec<Diagnostic>) {
    let mut r = Resolver {
        diags: Vec::new(),
        keys: Vec::new(),
        zones: Vec::new(),
        hosts: Vec::new(),
        groups: Vec::new(),
        steps: Vec::new(),
        key_index: HashMap::new(),
        zone_index: HashMap::new(),
        host_index: HashMap::new(),
        step_index: HashMap::new(),
        group_members: Vec::new(),
        relative_times: Vec::new(),
        exec_env: Vec::new(),
    };
    let mut runbook_items = Vec::new();
    for item_ref in items {
        let text = sources.file(item_ref.file).text.as_str();
        let file = &syntax[item_ref.file.0 as usize];
        let item = &file.items[item_ref.item];
        r.declare(item_ref.file, text, &file.lines, item, &mut runbook_items);
    }
    let keys = r.build_all(|r, i| r.build_key(i), |r| r.keys.len());
    let zones = r.build_all(|r, i| r.build_zone(i), |r| r.zones.len());
    let hosts = r.build_all(|r, i| r.build_host(i), |r| r.hosts.len());
    let groups = r.build_all(|r, i| r.build_group(i), |r| r.groups.len());
    let steps = r.build_all(|r, i| r.build_step(i), |r| r.steps.len());
    let header = r.build_header(&runbook_items, main);
    if let Some(steps) = &steps {
        r.check_cycles(steps);
    }
    if let Some(steps) = &steps {
        r.check_db_sync(steps);
    }
    if let Some(keys) = &keys {
        r.check_exec_env(keys);
    }
    if let Some(header) = &header {
        r.check_relative_times(header.window.as_ref());
    }
    let mut diags = r.diags;
    // By position; at one position a whole-file finding (an empty span) comes first.
    diags.sort_by_key(|d| d.primary_span().map(|s| (s.file, s.start, s.end)));
    let failed = diags.iter().any(|d| d.severity == Severity::Error);
    let runbook = match (failed, header, keys, zones, hosts, groups, steps) {
        (false, Some(header), Some(keys), Some(zones), Some(hosts), Some(groups), Some(steps)) => {
            Some(Runbook {
                name: header.name,
                title: header.title,
                window: header.window,
                links: header.links,
                keys,
                zones,
                hosts,
                groups,
                steps,
                span: header.span,
            })
        }
        _ => None,
    };
    (runbook, diags)
}

impl<'a> Resolver<'a> {
    /// Builds every declared item of one sort; `None` if any failed.
    fn build_all<T>(
        &mut self,
        mut build: impl FnMut(&mut Self, usize) -> Option<T>,
        count: impl Fn(&Self) -> usize,
    ) -> Option<Vec<T>> {
        let mut out = Vec::new();
        let mut complete = true;
        for index in 0..count(self) {
            match build(self, index) {
                Some(value) => out.push(value),
                None => complete = false,
            }
        }
        complete.then_some(out)
    }

    /// Keeps a result's diagnostic; the value if there was none.
    fn push<T>(&mut self, result: PResult<T>) -> Option<T> {
        result.map_err(|d| self.diags.push(d)).ok()
    }
}
