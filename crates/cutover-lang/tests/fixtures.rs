//! The fixtures under `fixtures/`: every valid runbook checks clean, every
//! invalid one renders the diagnostics a user sees (golden snapshots, with
//! file:line:col), and the formatter turns `fmt/input` into `fmt/expected`.

use cutover_lang::{format_source, load_file, render_human, render_json};
use std::path::Path;

/// The file's path relative to this crate, so snapshots do not depend on
/// where the repository is checked out.
fn relative(path: &Path) -> std::path::PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let rest = path.strip_prefix(root.canonicalize().unwrap()).unwrap();
    Path::new("../..").join(rest)
}

#[test]
fn valid_fixtures_check_clean() {
    insta::glob!("../../../fixtures/syntax/valid", "*.runbook", |path| {
        let loaded = load_file(&relative(path));
        assert!(
            loaded.runbook.is_some() && loaded.error_count() == 0,
            "{}",
            render_human(&loaded.sources, &loaded.diagnostics, false)
        );
    });
}

#[test]
fn invalid_fixtures_render_their_diagnostics() {
    insta::glob!("../../../fixtures/syntax/invalid", "*.runbook", |path| {
        let loaded = load_file(&relative(path));
        assert!(
            loaded.runbook.is_none(),
            "{} should not check",
            path.display()
        );
        assert!(loaded.error_count() > 0);
        let json = render_json(&loaded.sources, &loaded.diagnostics);
        let mut shown = String::new();
        for d in json.as_array().unwrap() {
            shown.push_str(&format!(
                "{}:{}:{} {} {}\n",
                d["file"].as_str().unwrap_or("-"),
                d["line"],
                d["column"],
                d["severity"].as_str().unwrap_or(""),
                d["code"].as_str().unwrap_or("")
            ));
        }
        shown.push('\n');
        shown.push_str(&render_human(&loaded.sources, &loaded.diagnostics, false));
        insta::assert_snapshot!(shown);
    });
}

#[test]
fn every_invalid_fixture_shows_a_different_first_fault() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/syntax/invalid");
    let mut seen = std::collections::BTreeMap::new();
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "runbook") {
            count += 1;
            let loaded = load_file(&path);
            let first = &loaded.diagnostics[0];
            let key = (first.code, first.message.clone());
            assert!(
                seen.insert(key, path.clone()).is_none(),
                "{} repeats a fault",
                path.display()
            );
        }
    }
    assert!(count >= 25, "only {count} invalid fixtures");
}

#[test]
fn formatter_fixtures_match_expected() {
    insta::glob!("../../../fixtures/fmt/input", "*.runbook", |path| {
        let input = std::fs::read_to_string(path).unwrap();
        let expected_path = path
            .parent()
            .unwrap()
            .parent()
            .unwrap()
            .join("expected")
            .join(path.file_name().unwrap());
        let expected = std::fs::read_to_string(&expected_path).unwrap();
        let formatted = format_source(&input).unwrap();
        assert_eq!(formatted, expected, "{}", path.display());
        assert_eq!(
            format_source(&formatted).unwrap(),
            formatted,
            "formatting is not idempotent"
        );
    });
}
