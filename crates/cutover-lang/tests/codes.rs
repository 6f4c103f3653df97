//! docs/language.md lists every diagnostic code the language reports.

use cutover_lang::Code;

#[test]
fn the_language_reference_lists_every_code() {
    let page = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/language.md"
    ))
    .unwrap();
    let section = page
        .split("## What `cutover check` reports")
        .nth(1)
        .expect("docs/language.md has its diagnostics section");
    let missing: Vec<&str> = Code::ALL
        .iter()
        .map(|c| c.as_str())
        .filter(|c| !section.contains(&format!("`{c}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/language.md does not list {missing:?}"
    );
}
