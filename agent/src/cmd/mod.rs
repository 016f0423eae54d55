//! One module per request kind that runs at once, each with the same shape:
//! `run(...) -> Response`. Shutdown and restart take the longer path of
//! [`crate::request`]: they are reserved, audited and committed there, and executed by
//! [`crate::power`].

pub mod cancel;
pub mod echo;
pub mod wake;
