//! The real `cutover` binary run to its end, for the tests of what a user
//! types and reads.

use std::path::Path;
use std::process::{Command, Stdio};

/// Runs `cutover ARGS` in `dir` with standard input closed, each `env`
/// variable set (or removed, for `None`): its exit code, stdout and stderr.
pub fn cutover(dir: &Path, args: &[&str], env: &[(&str, Option<&str>)]) -> (i32, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cutover"));
    command.current_dir(dir).stdin(Stdio::null()).args(args);
    for (name, value) in env {
        match value {
            Some(value) => command.env(name, value),
            None => command.env_remove(name),
        };
    }
    let out = command.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
