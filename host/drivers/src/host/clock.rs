//! `weft:plugin/clock`: wall-clock time.

use weft_bindings::driver::weft::plugin::clock::Host;

use crate::runtime::HostState;

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Host for HostState {
    fn now_ms(&mut self) -> wasmtime::Result<u64> {
        Ok(now_ms())
    }
}
