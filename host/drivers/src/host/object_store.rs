//! `weft:plugin/object-store`: designed in WIT; no backend is wired yet. Answers
//! `not-granted` without a grant and `not-configured` with one.

use weft_bindings::artifact::weft::plugin::object_store::{Host, ObjectMeta};
use weft_bindings::driver::weft::plugin::types::CapabilityError;

use crate::runtime::HostState;

type R<T> = wasmtime::Result<Result<T, CapabilityError>>;

impl HostState {
    fn store_unavailable<T>(&self) -> R<T> {
        Ok(Err(match &self.call.grants.object_store {
            None => super::not_granted(format!(
                "plugin '{}' is not granted `object_store`",
                self.call.plugin
            )),
            Some(g) => CapabilityError::NotConfigured(format!(
                "no object-store backend in this build (grant: bucket {}, prefix {})",
                g.bucket, g.prefix
            )),
        }))
    }
}

impl Host for HostState {
    async fn begin_upload(&mut self, _key: String) -> R<String> {
        self.store_unavailable()
    }
    async fn upload_part(&mut self, _upload_id: String, _data: Vec<u8>) -> R<()> {
        self.store_unavailable()
    }
    async fn complete_upload(&mut self, _upload_id: String) -> R<ObjectMeta> {
        self.store_unavailable()
    }
    fn abort_upload(&mut self, _upload_id: String) -> R<()> {
        self.store_unavailable()
    }
    async fn read(&mut self, _key: String, _offset: u64, _max_len: u32) -> R<Vec<u8>> {
        self.store_unavailable()
    }
    async fn head(&mut self, _key: String) -> R<Option<ObjectMeta>> {
        self.store_unavailable()
    }
    async fn list_objects(&mut self, _prefix: String) -> R<Vec<ObjectMeta>> {
        self.store_unavailable()
    }
    async fn delete(&mut self, _key: String) -> R<()> {
        self.store_unavailable()
    }
}
