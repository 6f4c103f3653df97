//! The step kinds, one module each, implementing the engine's step interface.
