//! Planning the generated 10,000-step runbook (target: ≤ 200 ms median).
//! Parsing happens once, outside the measurement; the figure is the planner
//! alone: schedule, critical path, slack and every lint rule.

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;

fn plan_large(c: &mut Criterion) {
    let text = cutover_lang::testgen::large_runbook(10_000, 500, 20);
    let loaded = cutover_lang::parse_source("generated.runbook", text);
    let runbook = loaded.runbook.expect("the generated runbook loads");
    let mut group = c.benchmark_group("plan");
    group.sample_size(20);
    group.bench_function("10k_steps", |b| {
        b.iter(|| cutover_plan::plan(black_box(&runbook), None))
    });
    group.bench_function("10k_steps_and_json", |b| {
        b.iter(|| {
            cutover_plan::render::json(
                &cutover_plan::plan(black_box(&runbook), None),
                &loaded.sources,
            )
        })
    });
    group.finish();
}

criterion_group!(benches, plan_large);
criterion_main!(benches);
