//! The boxed future of the engine's traits, in a module of its own so that
//! the step-kind interface ([`crate::kind`]) and the reporting interface
//! ([`crate::report`]) both use it without depending on each other for it.

use std::future::Future;
use std::pin::Pin;

/// The future a kind or a prompter returns: boxed so they can be used as
/// trait objects.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
