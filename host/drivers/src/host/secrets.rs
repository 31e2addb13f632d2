//! `weft:plugin/secrets`: granted secrets only. Values come from the host
//! environment as `WEFT_SECRET_<NAME>` (upper-cased, `-` and `.` as `_`).

use weft_bindings::driver::weft::plugin::secrets::Host;
use weft_bindings::driver::weft::plugin::types::CapabilityError;

use crate::runtime::HostState;

/// The host environment variable holding secret `name`.
pub fn secret_env_var(name: &str) -> String {
    format!(
        "WEFT_SECRET_{}",
        name.to_ascii_uppercase().replace(['-', '.'], "_")
    )
}

/// Look a secret up if `grants` allow it.
pub(crate) fn lookup(state: &HostState, name: &str) -> Result<String, CapabilityError> {
    if !state.call.grants.secrets.iter().any(|s| s == name) {
        return Err(super::not_granted(format!(
            "secret '{name}' is not granted to plugin '{}'",
            state.call.plugin
        )));
    }
    std::env::var(secret_env_var(name)).map_err(|_| {
        CapabilityError::NotConfigured(format!(
            "secret '{name}' has no value (set {})",
            secret_env_var(name)
        ))
    })
}

impl Host for HostState {
    fn get(&mut self, name: String) -> wasmtime::Result<Result<String, CapabilityError>> {
        Ok(lookup(self, &name))
    }
}
