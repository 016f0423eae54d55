//! One module per request kind, each with the same shape: `run(shared, ...)` returns the
//! reply (and, for power actions, the execution to start after replying).

pub mod cancel;
pub mod echo;
pub mod restart;
pub mod shutdown;
pub mod wake;
