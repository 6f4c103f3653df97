//! The model of a runbook whose steps fan out over large groups grows with
//! the runbook's text, not with steps times group size: parsing a
//! generated runbook (4 groups of 2,000 hosts named by 6,000 steps, 0.9 MB
//! of text) allocates a small multiple of its text, held and at the peak.
//! (Copying the members into every step held over 100 times the text.)
//!
//! Its own test binary: the counting allocator sees only this test.

use cutover_lang::{parse_source, testgen::group_fanout_runbook};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every method hands its arguments to the system allocator
// unchanged and returns what it returns, so this allocator keeps the
// system's guarantees; the counting (atomics) allocates nothing.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc`, passed on as it is.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        ptr
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc`/`realloc` above with `layout`.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from `System` with `layout`; the caller's
        // contract for `new_size` is passed on as it is.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            if new_size >= layout.size() {
                let grown = new_size - layout.size();
                let live = LIVE.fetch_add(grown, Ordering::Relaxed) + grown;
                PEAK.fetch_max(live, Ordering::Relaxed);
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[test]
fn the_model_of_a_group_fanout_runbook_grows_with_its_text() {
    let text = group_fanout_runbook(4, 2_000, 6_000);
    let bytes = text.len();
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let loaded = parse_source("fanout.runbook", text);
    let held = LIVE.load(Ordering::Relaxed) - before;
    let peak = PEAK.load(Ordering::Relaxed) - before;
    let runbook = loaded
        .runbook
        .as_ref()
        .expect("the generated runbook is valid");
    assert_eq!(runbook.steps.len(), 6_000);
    assert_eq!(runbook.hosts.len(), 8_000);
    // Every step still expands to the whole group.
    let expanded: usize = runbook
        .steps
        .iter()
        .map(|s| match &s.action.kind {
            cutover_lang::ActionKind::PortOpen { targets, .. } => targets.len(),
            cutover_lang::ActionKind::Exec { on, .. } => on.len(),
            _ => 0,
        })
        .sum();
    assert_eq!(expanded, 1_000 * 2 * 2_000 + 1_000 * 2_000 + 1_000);
    // Held: the text (moved into the source map) and the model, about 6
    // times the text; at the peak also the lexer's tokens and the parser's
    // working data, about 22 times. Copies of the members would be over 100
    // times the text, held and at the peak.
    let (held_bound, peak_bound) = (12 * bytes, 40 * bytes);
    assert!(
        held <= held_bound && peak <= peak_bound,
        "{bytes} bytes of text: {held} bytes held (bound {held_bound}), {peak} at the peak (bound {peak_bound})"
    );
    drop(loaded);
}
