//! The sandbox the `process` capability runs steps in (Linux namespaces, no helper binary).
//!
//! - [`spawn`]: one process in a private root: a mount namespace (plus IPC and
//!   UTS, and a user namespace when not root), host `/usr`, `/etc`, `/opt`
//!   read-only, a minimal `/dev`, `/proc` read-only, everything else the step's own
//!   directory; no capabilities, no new privileges, killed when the engine dies.
//! - [`shared_ns`]: as root, the spawner thread's own mount namespace, where
//!   recycled roots keep those mounts between steps (a spawn then makes none);
//! - [`manager`]: the table of step processes: deterministic ids, adoption,
//!   log capture into the `LogSink`, stdout tail, exit notification, file reads;
//! - [`layers`]: input artifacts as copy-on-write overlays instead of copies;
//! - [`pool`]: finished step directories emptied to their skeleton and reused
//!   (creating inodes is the dearest part of a trivial step).

pub mod layers;
pub mod manager;
pub mod pool;
mod shared_ns;
pub mod spawn;

pub use manager::{ProcessManager, ProcessState};
