//! The dashboard's incremental read: across many interleaved writes of
//! every kind, the snapshot kept up to date is what a fresh full read gives.

use cutover_report::{LiveSnapshot, Report, read_snapshot};
use cutover_store::{LockHolder, NewRun, NewStep, Phase, StepStatus, Store, Transition};

fn steps(names: &[&str], version: usize) -> Vec<NewStep> {
    names
        .iter()
        .map(|n| NewStep {
            name: (*n).to_owned(),
            definition: format!("step {n}\n  wait {version}s"),
            planned_start: None,
        })
        .collect()
}

fn same(live: &mut LiveSnapshot, path: &std::path::Path, what: &str) {
    let kept = live.refresh().expect("incremental read");
    let kept_report = serde_json::to_string(&Report::build(kept, None)).unwrap();
    let kept_debug = format!("{kept:?}");
    let fresh = read_snapshot(path).expect("full read");
    assert_eq!(
        kept_report,
        serde_json::to_string(&Report::build(&fresh, None)).unwrap(),
        "after {what}: the report of the kept snapshot is a full read's"
    );
    assert_eq!(kept_debug, format!("{fresh:?}"), "after {what}");
}

#[test]
fn the_incremental_snapshot_is_a_full_read_after_every_kind_of_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.db");
    let store = Store::open(&path).unwrap();
    let new_run = |names: &[&str]| NewRun {
        runbook_name: "inc".into(),
        runbook_path: "inc.runbook".into(),
        content_hash: "h1".into(),
        operator: "ops".into(),
        t0: None,
        steps: steps(names, 1),
    };
    let mut names = vec!["a", "b", "c", "d", "e"];
    let mut run = store.create_run(&new_run(&names)).unwrap();
    let mut live = LiveSnapshot::new(path.clone());
    same(&mut live, &path, "the run's start");
    let me = LockHolder::current();
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let statuses = [
        StepStatus::Pending,
        StepStatus::Running,
        StepStatus::Done,
        StepStatus::Failed,
        StepStatus::Skipped,
        StepStatus::Undone,
    ];
    let phases = [Phase::Check, Phase::Act, Phase::Verify];
    for i in 0..400 {
        // One to three writes between two reads.
        let writes = 1 + next(3);
        let mut what = Vec::new();
        for _ in 0..writes {
            let step = names[next(names.len() as u64) as usize];
            match next(10) {
                0..=2 => {
                    let phase = phases[next(3) as usize];
                    let evidence = (next(2) == 0).then(|| {
                        (
                            phase,
                            format!("evidence {i}"),
                            serde_json::json!({ "i": i }),
                        )
                    });
                    store
                        .transition(
                            run,
                            &Transition {
                                step,
                                status: statuses[next(6) as usize],
                                phase: Some(phase),
                                new_attempt: next(2) == 0,
                                event_kind: "phase",
                                message: format!("transition {i}"),
                                evidence,
                            },
                        )
                        .unwrap();
                    what.push("a transition");
                }
                3 | 4 => {
                    let data = serde_json::json!({ "done": i, "total": 400, "unit": "s" });
                    store
                        .append_event(run, Some(step), "progress", &format!("{i}"), Some(&data))
                        .unwrap();
                    store
                        .append_event(run, None, "message", &format!("note {i}"), None)
                        .unwrap();
                    what.push("events");
                }
                5 => {
                    store.confirm(run, step, "bob", Some("ok")).unwrap();
                    what.push("a confirmation");
                }
                6 => {
                    store.acquire_lock(&me, true).unwrap();
                    what.push("the lock taken");
                }
                7 => {
                    store.release_lock(&me).unwrap();
                    what.push("the lock released");
                }
                8 => {
                    // A changed runbook: a step removed, one added, one
                    // redefined, the order changed.
                    let mut changed: Vec<&str> = names.clone();
                    changed.retain(|n| *n != step);
                    changed.push(["f", "g", "h", "a", "b"][next(5) as usize]);
                    changed.sort_unstable();
                    changed.dedup();
                    changed.rotate_left(1);
                    names = changed;
                    store
                        .accept_changed_runbook(run, &format!("h{i}"), &steps(&names, i), "changed")
                        .unwrap();
                    what.push("a changed runbook");
                }
                _ => {
                    if next(4) == 0 {
                        names = vec!["a", "b", "c"];
                        run = store.create_run(&new_run(&names)).unwrap();
                        what.push("a new run");
                    } else {
                        let status = [
                            cutover_store::RunStatus::Running,
                            cutover_store::RunStatus::Stopped,
                            cutover_store::RunStatus::Completed,
                        ][next(3) as usize];
                        store.set_run_status(run, status).unwrap();
                        what.push("a run status");
                    }
                }
            }
        }
        same(
            &mut live,
            &path,
            &format!("write {i} ({})", what.join(", ")),
        );
    }
}
