# Developer recipes. Nothing required depends on `just`: each recipe is a
# plain command you can also type (see README.md and .ci/run).

default:
    @just --list

# Run the whole test suite (the README's test command).
test:
    cargo test --workspace

# Interop tests against real BIND, OpenSSH and Chromium (installed by .ci/run).
test-interop:
    cargo test --workspace -- --ignored

# What CI runs.
ci:
    bash .ci/run

lint:
    cargo clippy --workspace --all-targets -- -D warnings

fmt:
    cargo fmt --all

# All benchmarks; each prints its figures.
bench:
    cargo bench --workspace

# The demo cutover on the embedded lab (the README's first command).
demo:
    cargo run --release -p cutover-cli -- demo

# The image-copy benchmark against rsync (4 GiB sparse image; writes ~10 GiB).
bench-copy:
    cargo bench -p cutover-copy --bench copy

# The crash test with N SIGKILLs (CI runs the default, 100).
crash-test N="1000":
    CUTOVER_CRASH_KILLS={{N}} cargo test -p cutover-cli --test engine_crash -- --nocapture
