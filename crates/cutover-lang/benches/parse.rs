//! Parse + resolve + check of a generated runbook of 10,000 steps over
//! 1,000 hosts in 20 groups (target: a median of 100 ms or less).

use criterion::{Criterion, criterion_group, criterion_main};
use cutover_lang::{parse_source, testgen::large_runbook};
use std::hint::black_box;

fn parse_large(c: &mut Criterion) {
    let text = large_runbook(10_000, 1_000, 20);
    let loaded = parse_source("generated.runbook", text.clone());
    assert!(
        loaded.runbook.is_some(),
        "the generated runbook must be valid: {:?}",
        loaded.diagnostics.first()
    );
    let mut group = c.benchmark_group("lang");
    group.sample_size(20);
    group.bench_function("parse_resolve_check_10k_steps_1k_hosts_20_groups", |b| {
        b.iter(|| parse_source("generated.runbook", black_box(text.clone())))
    });
    group.finish();
}

criterion_group!(benches, parse_large);
criterion_main!(benches);
