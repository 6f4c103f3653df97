//! Golden plans (terminal, Markdown, JSON) for the real-world runbooks in
//! `runbooks/` and the planner fixtures in `fixtures/plan/`, and the SVG
//! chart's structure.

use cutover_lang::{Loaded, load_file, render_human};
use cutover_plan::Plan;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn runbooks_in(dir: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join(dir))
        .map(|entries| entries.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "runbook"));
    files.sort();
    files
}

fn load(path: &Path) -> (Loaded, Plan) {
    let loaded = load_file(path);
    let Some(runbook) = loaded.runbook.as_ref() else {
        panic!(
            "{} must load:\n{}",
            path.display(),
            render_human(&loaded.sources, &loaded.diagnostics, false)
        );
    };
    let plan = cutover_plan::plan(runbook, None);
    (loaded, plan)
}

/// Snapshots the three readable forms of a runbook's plan.
fn golden(path: &Path) {
    let (loaded, plan) = load(path);
    let name = path.file_stem().unwrap().to_string_lossy().into_owned();
    let root = format!("{}/", root().display());
    let text = cutover_plan::render::text(&plan, &loaded.sources, false);
    for line in text.lines() {
        assert!(
            line.chars().count() <= 100,
            "{name}: line over 100 columns:\n{line}"
        );
    }
    assert!(!text.contains('\x1b'), "no colours unless asked");
    insta::assert_snapshot!(format!("{name}-text"), text);
    insta::assert_snapshot!(
        format!("{name}-markdown"),
        cutover_plan::render::markdown(&plan, &loaded.sources)
    );
    let json = cutover_plan::render::json(&plan, &loaded.sources).replace(&root, "");
    let value: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
    assert_eq!(value["schema"], cutover_plan::render::SCHEMA);
    assert_eq!(value["steps"].as_array().unwrap().len(), plan.steps.len());
    insta::assert_snapshot!(format!("{name}-json"), json);
}

#[test]
fn real_world_runbooks() {
    for path in runbooks_in("runbooks") {
        golden(&path);
    }
}

#[test]
fn planner_fixtures() {
    let files = runbooks_in("fixtures/plan");
    assert!(files.len() >= 2);
    for path in files {
        golden(&path);
    }
}

/// The SVG is XML with exactly one `bar` per step, one `ttl-wait` per step
/// that waits for a TTL, and a shaded window.
#[test]
fn svg_has_one_bar_per_step() {
    let mut files = runbooks_in("fixtures/plan");
    files.extend(runbooks_in("runbooks"));
    for path in files {
        let (_, plan) = load(&path);
        let svg = cutover_plan::render::svg(&plan);
        let doc =
            roxmltree::Document::parse(&svg).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let with_class = |class: &str| {
            doc.descendants()
                .filter(|n| n.has_tag_name("rect"))
                .filter(|n| {
                    n.attribute("class")
                        .is_some_and(|c| c.split(' ').any(|c| c == class))
                })
                .collect::<Vec<_>>()
        };
        let bars = with_class("bar");
        assert_eq!(bars.len(), plan.steps.len(), "{}", path.display());
        let mut named: Vec<&str> = bars
            .iter()
            .filter_map(|b| b.attribute("data-step"))
            .collect();
        named.sort_unstable();
        let mut steps: Vec<&str> = plan.steps.iter().map(|s| s.name.as_str()).collect();
        steps.sort_unstable();
        assert_eq!(named, steps);
        let critical = with_class("critical").len();
        assert_eq!(critical, plan.critical_path.len());
        let waits = plan.steps.iter().filter(|s| s.ttl_wait.is_some()).count();
        assert_eq!(with_class("ttl-wait").len(), waits);
        assert_eq!(
            with_class("window").len(),
            usize::from(plan.window.is_some())
        );
        let paths = |class: &str| {
            doc.descendants()
                .filter(|n| n.has_tag_name("path") && n.attribute("class") == Some(class))
                .count()
        };
        // An arrow between each two steps of the critical path, a marker
        // per `at`, and each step with a finding outlined and labelled.
        assert_eq!(
            paths("dependency"),
            plan.critical_path.len().saturating_sub(1),
            "{}",
            path.display()
        );
        let ats = plan.steps.iter().filter(|s| s.at.is_some()).count();
        assert_eq!(paths("at"), ats, "{}", path.display());
        for finding in with_class("finding") {
            let step = finding.attribute("data-step").unwrap();
            assert!(
                plan.diagnostics.iter().any(|d| {
                    let s = plan.steps.iter().find(|s| s.name == step).unwrap();
                    d.labels[0].span.start >= s.span.start && d.labels[0].span.start < s.span.end
                }),
                "{step}"
            );
        }
        let with_findings = plan
            .steps
            .iter()
            .filter(|s| {
                plan.diagnostics.iter().any(|d| {
                    d.labels.first().is_some_and(|l| {
                        l.span.file == s.span.file
                            && l.span.start >= s.span.start
                            && l.span.start < s.span.end
                    })
                })
            })
            .count();
        assert_eq!(
            with_class("finding").len(),
            with_findings,
            "{}",
            path.display()
        );
        for wait in plan.steps.iter().filter_map(|s| s.ttl_wait.as_ref()) {
            let text = format!(
                "after a {} TTL wait",
                cutover_plan::units_fmt::duration_ms(wait.end - wait.start)
            );
            assert!(svg.contains(&text), "{}: {text}", path.display());
        }
    }
}

/// Loads each runbook's SVG into headless Chromium and reads back from the
/// DOM the number of bars, the texts outside the canvas, the step names
/// running into their kind, and the names not shown in full. Needs the
/// `chromium` package.
#[test]
#[ignore = "needs chromium"]
fn svg_renders_in_chromium() {
    for name in ["cloud-2013", "colo-2009", "evacuation-2015", "maemo-2013"] {
        let path = root().join(format!("runbooks/{name}.runbook"));
        let (_, plan) = load(&path);
        let dom = chromium_dom(&cutover_plan::render::svg(&plan));
        assert!(
            dom.contains(&format!(
                "bars={} width=1400 off=0 overlap=0 cut=0",
                plan.steps.len()
            )),
            "{name}: chromium DOM: {}",
            dom.lines().last().unwrap_or_default()
        );
    }
    // Step names longer than the label column wrap, shown in full.
    let text = std::fs::read_to_string(root().join("runbooks/maemo-2013.runbook"))
        .unwrap()
        .replace(
            "switch-repository",
            "switch-the-repository-to-the-new-colo-at-iphh-after-its-final-sync",
        );
    let loaded = cutover_lang::parse_source("long-names.runbook", text);
    let plan = cutover_plan::plan(loaded.runbook.as_ref().unwrap(), None);
    let dom = chromium_dom(&cutover_plan::render::svg(&plan));
    assert!(
        dom.contains(&format!(
            "bars={} width=1400 off=0 overlap=0 cut=0",
            plan.steps.len()
        )),
        "long names: chromium DOM: {}",
        dom.lines().last().unwrap_or_default()
    );
}

fn chromium_dom(svg: &str) -> String {
    let dir = std::env::temp_dir().join(format!("cutover-plan-svg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let page = dir.join("plan.html");
    std::fs::write(
        &page,
        format!(
            "<!doctype html><html><body>{svg}<script>\
             const bars = [...document.querySelectorAll('svg rect.bar')];\
             const box = document.querySelector('svg').getBoundingClientRect();\
             const w = box.width;\
             const off = [...document.querySelectorAll('svg text')].filter(t => {{\
               const r = t.getBoundingClientRect(); return r.left < box.left || r.right > box.right; }}).length;\
             const names = [...document.querySelectorAll('svg text.name')];\
             const overlap = names.filter(t => t.getBoundingClientRect().right > t.nextElementSibling.getBoundingClientRect().left - 4).length;\
             const shown = new Set(names.map(t => t.textContent));\
             const cut = bars.filter(b => !shown.has(b.dataset.step)).length;\
             document.body.insertAdjacentHTML('beforeend', '<p id=\"bars\">bars=' + bars.length + ' width=' + Math.round(w) + ' off=' + off + ' overlap=' + overlap + ' cut=' + cut + '</p>');\
             </script></body></html>"
        ),
    )
    .unwrap();
    let mut child = std::process::Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", dir.join("profile").display()))
        .arg("--dump-dom")
        .arg(&page)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("chromium runs");
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut dom = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut dom);
        dom
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("chromium did not finish in 60 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let dom = reader.join().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    dom
}
