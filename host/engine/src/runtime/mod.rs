//! The engine's runtime: the loop that feeds events into the pure state machine
//! ([`crate::machine`]) and carries out the actions it returns, through the
//! ports other layers implement.

pub mod engine;
pub mod ports;
pub mod store;
pub mod submit;

pub use engine::*;
pub use ports::*;
pub use store::*;
pub use submit::*;
