//! The reference runbooks in `runbooks/`: each checks without errors and is
//! already in canonical form.

use cutover_lang::{format_source, load_file, render_human};
use std::path::Path;

#[test]
fn reference_runbooks_check_and_are_formatted() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../runbooks");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "runbook") {
            continue;
        }
        count += 1;
        let loaded = load_file(&path);
        assert!(
            loaded.diagnostics.is_empty(),
            "{}",
            render_human(&loaded.sources, &loaded.diagnostics, false)
        );
        let runbook = loaded.runbook.unwrap();
        assert!(runbook.window.is_some(), "{} has no window", path.display());
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            format_source(&text).unwrap(),
            text,
            "{} is not formatted",
            path.display()
        );
        for step in &runbook.steps {
            if matches!(step.action.kind, cutover_lang::ActionKind::DnsSwitch { .. }) {
                assert!(
                    step.undo.is_some(),
                    "{}: step {} switches DNS without an undo",
                    path.display(),
                    step.name
                );
            }
        }
    }
    assert_eq!(count, 4, "expected the four reference runbooks");
}
