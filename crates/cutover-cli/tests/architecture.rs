//! The shape of the workspace, checked from its sources: no two sibling
//! modules of a crate use each other (directly or round a longer loop), and
//! the exports do not compile a web server.
//!
//! A module "uses" a sibling when any file of it names the sibling by path
//! outside comments and unit tests (`crate::sibling::…`,
//! `super::sibling::…`). Items the
//! crate root re-exports (`crate::Item`) are the crate's public face and do
//! not count. A parent and its own submodules may refer to each other;
//! siblings may not form a loop, because a loop means neither can be read,
//! tested or moved without the other.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::path::{Path, PathBuf};

/// The workspace's `crates/` folder.
fn crates_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("crates/")
        .to_owned()
}

/// A module: its path below the crate root (`[]` for the root) and the
/// files that hold it and its submodules.
#[derive(Debug, Default)]
struct Module {
    /// The text of this module's own file.
    text: String,
    /// The texts of its submodules' files, recursively.
    descendants: Vec<String>,
}

/// Every module of the crate whose root file is `root` (lib.rs or main.rs),
/// by path. Only file modules count (`mod name;`), not inline ones.
fn modules(root: &Path) -> BTreeMap<Vec<String>, Module> {
    let mut out = BTreeMap::new();
    collect(root, Vec::new(), &mut out);
    let paths: Vec<Vec<String>> = out.keys().cloned().collect();
    for path in &paths {
        for ancestor in 0..path.len() {
            let text = out[path].text.clone();
            if let Some(parent) = out.get_mut(&path[..ancestor]) {
                parent.descendants.push(text);
            }
        }
    }
    out
}

fn collect(file: &Path, path: Vec<String>, out: &mut BTreeMap<Vec<String>, Module>) {
    let text = fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    // Comments (doc links among them) name paths without using them, and a
    // module's unit tests may use what they like.
    let text = match text.find("#[cfg(test)]\nmod ") {
        Some(tests) => &text[..tests],
        None => &text[..],
    };
    let text: String = text
        .lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .flat_map(|line| [line, "\n"])
        .collect();
    let is_dir_module = path.is_empty()
        || file
            .file_name()
            .is_some_and(|name| name == "mod.rs" || name == "lib.rs" || name == "main.rs");
    let dir = if is_dir_module {
        file.parent().expect("parent").to_owned()
    } else {
        file.with_extension("")
    };
    let children: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter_map(|line| {
            let line = line
                .strip_prefix("pub(crate) ")
                .or_else(|| line.strip_prefix("pub "))
                .unwrap_or(line);
            line.strip_prefix("mod ")?
                .strip_suffix(';')
                .map(str::to_owned)
        })
        .collect();
    out.insert(
        path.clone(),
        Module {
            text,
            descendants: Vec::new(),
        },
    );
    for child in children {
        let flat = dir.join(format!("{child}.rs"));
        let nested = dir.join(&child).join("mod.rs");
        let file = if flat.is_file() { flat } else { nested };
        let mut child_path = path.clone();
        child_path.push(child);
        collect(&file, child_path, out);
    }
}

/// The identifiers that follow `prefix` anywhere in `text`, including
/// inside a braced group (`crate::{a, b::c}` gives `a` and `b`).
fn names_after(text: &str, prefix: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find(prefix) {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + prefix.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for part in group[..end].split(',') {
                let name = part.trim().split("::").next().unwrap_or("").trim();
                if !name.is_empty() {
                    out.insert(name.to_owned());
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
    out
}

/// The loops among sibling modules of one crate, each as the modules in
/// order (`a -> b -> a`).
fn sibling_loops(root: &Path) -> Vec<String> {
    let modules = modules(root);
    // Edges between siblings, keyed by parent path.
    let mut edges: BTreeMap<Vec<String>, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for (path, module) in &modules {
        let Some((name, parent)) = path.split_last() else {
            continue;
        };
        let siblings: BTreeSet<&String> = modules
            .keys()
            .filter(|p| p.len() == path.len() && p.starts_with(parent) && p != &path)
            .filter_map(|p| p.last())
            .collect();
        let texts = std::iter::once(&module.text).chain(&module.descendants);
        let resolve_top = |named: String| {
            modules
                .contains_key(std::slice::from_ref(&named))
                .then_some(named)
        };
        let mut used = BTreeSet::new();
        for (index, text) in texts.enumerate() {
            let own = index == 0;
            if parent.is_empty() {
                // `crate::x`: a top-level module or a root re-export; in a
                // top-level module's own file `super::x` is the same.
                used.extend(
                    names_after(text, "crate::")
                        .into_iter()
                        .filter_map(resolve_top),
                );
                if own {
                    used.extend(
                        names_after(text, "super::")
                            .into_iter()
                            .filter_map(resolve_top),
                    );
                }
            } else {
                used.extend(names_after(
                    text,
                    &format!("crate::{}::", parent.join("::")),
                ));
                if own {
                    used.extend(names_after(text, "super::"));
                }
            }
        }
        let used: BTreeSet<String> = used
            .into_iter()
            .filter(|u| u != name && siblings.contains(u))
            .collect();
        edges
            .entry(parent.to_vec())
            .or_default()
            .insert(name.clone(), used);
    }
    let mut loops = Vec::new();
    for (parent, graph) in &edges {
        for start in graph.keys() {
            // A path from `start` back to itself, found depth first.
            let mut stack = vec![(start.clone(), vec![start.clone()])];
            let mut seen = BTreeSet::new();
            while let Some((at, trail)) = stack.pop() {
                for next in graph.get(&at).into_iter().flatten() {
                    if next == start {
                        let mut members = trail.clone();
                        members.push(start.clone());
                        // Report each loop once, from its smallest member.
                        if trail.iter().min() == Some(start) {
                            let prefix = if parent.is_empty() {
                                String::new()
                            } else {
                                format!("{}::", parent.join("::"))
                            };
                            loops.push(format!("{prefix}{}", members.join(" -> ")));
                        }
                    } else if seen.insert(next.clone()) {
                        let mut longer = trail.clone();
                        longer.push(next.clone());
                        stack.push((next.clone(), longer));
                    }
                }
            }
        }
    }
    loops
}

#[test]
fn no_two_sibling_modules_of_a_crate_use_each_other() {
    let mut found = Vec::new();
    let mut crates = 0;
    for entry in fs::read_dir(crates_dir()).expect("crates/") {
        let dir = entry.expect("entry").path();
        for root in ["src/lib.rs", "src/main.rs"] {
            let root = dir.join(root);
            if root.is_file() {
                crates += 1;
                let name = dir.file_name().unwrap_or_default().to_string_lossy();
                found.extend(
                    sibling_loops(&root)
                        .into_iter()
                        .map(|l| format!("{name}: {l}")),
                );
            }
        }
    }
    assert!(crates >= 10, "only {crates} crates found");
    assert!(found.is_empty(), "module loops:\n{}", found.join("\n"));
}

#[test]
fn the_loop_finder_sees_a_loop_between_two_siblings() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path();
    fs::write(
        src.join("lib.rs"),
        "mod a;\nmod b;\nmod c;\npub use c::Item;\n",
    )
    .unwrap();
    fs::write(src.join("a.rs"), "use crate::b::Thing;\n").unwrap();
    fs::write(src.join("b.rs"), "use crate::{c, a::Other};\n").unwrap();
    fs::write(src.join("c.rs"), "pub struct Item;\n").unwrap();
    assert_eq!(sibling_loops(&src.join("lib.rs")), vec!["a -> b -> a"]);
    fs::write(
        src.join("b.rs"),
        "use crate::Item;\n/// See [`crate::a::Other`].\n",
    )
    .unwrap();
    assert!(sibling_loops(&src.join("lib.rs")).is_empty());
    fs::write(src.join("c.rs"), "use crate::a;\n").unwrap();
    fs::write(src.join("b.rs"), "use crate::c::Item;\n").unwrap();
    assert_eq!(sibling_loops(&src.join("lib.rs")), vec!["a -> b -> c -> a"]);
}

/// The packages `name` depends on, transitively, as Cargo.lock records
/// them (dev-dependencies included, so this over-approximates).
fn locked_dependencies(name: &str) -> BTreeSet<String> {
    let lock = fs::read_to_string(crates_dir().join("../Cargo.lock")).expect("Cargo.lock");
    let mut deps: HashMap<String, Vec<String>> = HashMap::new();
    for package in lock.split("[[package]]") {
        let Some(pname) = package
            .lines()
            .find_map(|l| l.strip_prefix("name = "))
            .map(|n| n.trim_matches('"').to_owned())
        else {
            continue;
        };
        let list = package
            .split_once("dependencies = [")
            .map(|(_, rest)| rest.split(']').next().unwrap_or(""))
            .unwrap_or("");
        let names = list
            .split(',')
            .map(|d| d.trim().trim_matches('"'))
            .filter(|d| !d.is_empty())
            .map(|d| d.split(' ').next().unwrap_or(d).to_owned());
        deps.entry(pname).or_default().extend(names);
    }
    let mut seen = BTreeSet::new();
    let mut todo = vec![name.to_owned()];
    while let Some(next) = todo.pop() {
        for dep in deps.get(&next).into_iter().flatten() {
            if seen.insert(dep.clone()) {
                todo.push(dep.clone());
            }
        }
    }
    seen
}

#[test]
fn the_exports_do_not_depend_on_a_web_server() {
    let report = locked_dependencies("cutover-report");
    assert!(report.contains("rusqlite"), "{report:?}");
    for web in ["axum", "hyper", "tower"] {
        assert!(!report.contains(web), "cutover-report depends on {web}");
    }
    assert!(locked_dependencies("cutover-dashboard").contains("axum"));
}
