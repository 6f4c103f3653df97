//! `probe-failed`: under `plan --probe`, a fact that could not be read. The
//! planner raises it itself from the probe's problems; it is in the registry
//! for its page.

use super::Rule;
use cutover_lang::Severity;

pub const RULE: Rule = Rule {
    code: "probe-failed",
    severity: Severity::Warning,
    summary: "`--probe` could not read a fact (a server that did not answer, a source that could not be opened)",
    doc: DOC,
    check: None,
};

/// The rule's page, as `cutover explain probe-failed` prints it.
const DOC: &str = r#"
## What it does
Under `cutover plan --probe`, one finding per fact that could not be read: a
verify server or primary that did not answer (for a record, the SOA serial
or the NS set), a copy source that could not be opened, a database server
that refused the login. The message names the server or source and the
error. `plan --probe` then exits 1: the plan was made without part of the
live world.

## Why it matters
What the probe could not read, the plan cannot check: a TTL it could not
read is not the live TTL, drift it could not see is still there. A server
that does not answer the probe will likely not answer the run's
verification either.

## Example
```
zone example.test
  primary 127.0.0.1:5353 key upd
  verify  127.0.0.1:5353, 127.0.0.2:5353
```
with nothing answering on 127.0.0.2:5353.

## How to fix
Make the server reachable from where the plan runs (the coordinator's
host), or correct its address in `verify`; then probe again.
"#;
