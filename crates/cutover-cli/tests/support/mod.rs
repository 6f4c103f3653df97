//! Helpers shared by the CLI's interop tests.

// Each test binary that includes these uses only part of them.
#[allow(dead_code)]
pub mod cli;
#[allow(dead_code)]
pub mod db;
#[allow(dead_code)]
pub mod run;
#[allow(dead_code)]
pub mod sshd;
#[allow(dead_code)]
pub mod web;
