//! `weft:plugin/kube`: designed in WIT, not wired to a cluster yet. Answers
//! `not-granted` without a grant and `not-configured` with one.

use weft_bindings::driver::weft::plugin::kube::{Host, ObjectRef};
use weft_bindings::driver::weft::plugin::types::CapabilityError;

use crate::runtime::HostState;

type R<T> = wasmtime::Result<Result<T, CapabilityError>>;

impl HostState {
    fn kube_unavailable<T>(&self) -> R<T> {
        Ok(Err(match &self.call.grants.kube {
            None => super::not_granted(format!(
                "plugin '{}' is not granted `kube`",
                self.call.plugin
            )),
            Some(g) => CapabilityError::NotConfigured(format!(
                "no Kubernetes client in this build (grant: namespace {}, labels {})",
                g.namespace, g.label_selector
            )),
        }))
    }
}

impl Host for HostState {
    async fn get(&mut self, _obj: ObjectRef) -> R<Option<String>> {
        self.kube_unavailable()
    }
    async fn list_objects(
        &mut self,
        _api_version: String,
        _kind: String,
        _label_selector: Option<String>,
    ) -> R<Vec<String>> {
        self.kube_unavailable()
    }
    async fn create(&mut self, _object: String) -> R<String> {
        self.kube_unavailable()
    }
    async fn delete(&mut self, _obj: ObjectRef) -> R<()> {
        self.kube_unavailable()
    }
    fn watch_key(&mut self, _obj: ObjectRef) -> R<String> {
        self.kube_unavailable()
    }
}
