//! An artifact repository backend written entirely in Wasm (`artifact-plugin`
//! world), built with `weft-sdk`: what a company's own store might do.
//!
//! Every object goes through the host's `object-store` capability (the
//! plugin's grant: one configured repository and a prefix in it), under a
//! **tenant** prefix taken from the plugin's config, with a **SHA-256
//! sidecar** beside it, verified on every read:
//!
//! ```text
//! <grant prefix>/<tenant>/objects/<key>          the bytes, as written
//! <grant prefix>/<tenant>/sha256/<key>.sha256    {"key", "size", "parts": [{"offset", "size", "sha256"}]}
//! ```
//!
//! The sidecar lists a SHA-256 per uploaded part (the host sends parts of
//! 4 MiB): plugin calls are stateless, so a checksum over the whole object
//! could only be computed by reading it all back in one call, while a digest
//! per part is computed as the part passes and checked as it is read. A read
//! (`get_range`) verifies every part it returns from; a part whose bytes do
//! not match, an object shorter or longer than recorded, or an object without
//! its sidecar fails the read with a message saying which. Sidecars live in a
//! tree of their own, so no artifact file name can collide with one.
//!
//! ```toml
//! [[plugins]]
//! name = "checksum-store"
//! path = "weft_artifact_checksum_store.wasm"
//! kind = "artifact"
//! config = { tenant = "acme" }
//! [plugins.grants]
//! object_store = { bucket = "vault-bytes", prefix = "weft" }   # a configured repository
//! ```

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use weft_sdk::artifact::host::{log, object_store as os};
use weft_sdk::artifact::{
    ArtifactStore, CapabilityError, Chunk, ObjectInfo, PluginError, StepContext,
};

/// Sidecars larger than this are refused (a 1 TiB object of 4 MiB parts has
/// a ~30 MiB sidecar; anything near this is not one of ours).
const MAX_SIDECAR: u64 = 64 << 20;
/// Bytes per object-store read.
const READ: u32 = 4 << 20;

struct ChecksumStore;

#[derive(Serialize, Deserialize)]
struct Part {
    offset: u64,
    size: u64,
    sha256: String,
}

#[derive(Serialize, Deserialize)]
struct Sidecar {
    key: String,
    size: u64,
    parts: Vec<Part>,
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

fn sha256(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

fn cap(doing: &str) -> impl FnOnce(CapabilityError) -> PluginError + '_ {
    move |e| PluginError::new(format!("checksum-store: {doing}: {}", e.message()))
}

/// The tenant (`config.tenant`): one safe path segment.
fn tenant(ctx: &StepContext) -> Result<String, PluginError> {
    let cfg = ctx.config_json();
    let t = cfg
        .get("tenant")
        .and_then(|t| t.as_str())
        .ok_or_else(|| PluginError::new("checksum-store: config.tenant (a string) is required"))?;
    let ok = !t.is_empty()
        && t != "."
        && t != ".."
        && t.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if !ok {
        return Err(PluginError::new(format!(
            "checksum-store: config.tenant {t:?} must be one path segment of letters, digits, '-', '_' or '.'"
        )));
    }
    Ok(t.to_string())
}

fn data_key(tenant: &str, key: &str) -> String {
    format!("{tenant}/objects/{key}")
}

fn sidecar_key(tenant: &str, key: &str) -> String {
    format!("{tenant}/sha256/{key}.sha256")
}

fn upload_id(upload: &[u8]) -> Result<String, PluginError> {
    String::from_utf8(upload.to_vec())
        .map_err(|_| PluginError::new("checksum-store: the upload state is not an upload id"))
}

/// `n` bytes of `key` from `offset` (fewer only at the end of the object).
fn read_exact(key: &str, offset: u64, n: u64) -> Result<Vec<u8>, PluginError> {
    let mut out = Vec::with_capacity(n as usize);
    while (out.len() as u64) < n {
        let want = (n - out.len() as u64).min(READ as u64) as u32;
        let got = os::read(key, offset + out.len() as u64, want).map_err(cap("reading"))?;
        if got.is_empty() {
            break;
        }
        out.extend_from_slice(&got);
    }
    Ok(out)
}

fn read_sidecar(key: &str, sidecar: &str) -> Result<Option<Sidecar>, PluginError> {
    let Some(meta) = os::head(sidecar).map_err(cap("reading a sidecar"))? else {
        return Ok(None);
    };
    if meta.size > MAX_SIDECAR {
        return Err(PluginError::new(format!(
            "checksum-store: the sidecar of '{key}' is {} bytes: not a checksum sidecar",
            meta.size
        )));
    }
    let text = read_exact(sidecar, 0, meta.size)?;
    let s: Sidecar = serde_json::from_slice(&text).map_err(|e| {
        PluginError::new(format!(
            "checksum-store: the sidecar of '{key}' is unreadable: {e}"
        ))
    })?;
    Ok(Some(s))
}

/// Store `data` as one object through the capability.
fn put_whole(key: &str, data: &[u8]) -> Result<(), PluginError> {
    let id = os::begin_upload(key).map_err(cap("writing a sidecar"))?;
    let r = os::upload_part(&id, data).and_then(|()| os::complete_upload(&id).map(drop));
    if r.is_err() {
        let _ = os::abort_upload(&id);
    }
    r.map_err(cap("writing a sidecar"))
}

fn corrupted(key: &str, what: String) -> PluginError {
    let m = format!("checksum-store: object '{key}' is corrupted: {what}");
    log::log(log::Level::Warn, &m);
    PluginError::new(m)
}

impl ArtifactStore for ChecksumStore {
    fn begin_put(ctx: StepContext, key: String) -> Result<Vec<u8>, PluginError> {
        let t = tenant(&ctx)?;
        let id = os::begin_upload(&data_key(&t, &key)).map_err(cap("starting an upload"))?;
        Ok(id.into_bytes())
    }

    fn put_part(
        _ctx: StepContext,
        _key: String,
        upload: Vec<u8>,
        _part_number: u32,
        data: Vec<u8>,
    ) -> Result<String, PluginError> {
        let id = upload_id(&upload)?;
        os::upload_part(&id, &data).map_err(cap("uploading a part"))?;
        // the tag carries what the sidecar needs: the part's size and digest
        Ok(format!("{}:{}", data.len(), sha256(&data)))
    }

    fn finish_put(
        ctx: StepContext,
        key: String,
        upload: Vec<u8>,
        tags: Vec<String>,
    ) -> Result<String, PluginError> {
        let t = tenant(&ctx)?;
        let id = upload_id(&upload)?;
        let mut parts = Vec::with_capacity(tags.len());
        let mut offset = 0u64;
        for tag in &tags {
            let (size, digest) = tag
                .split_once(':')
                .and_then(|(s, d)| Some((s.parse::<u64>().ok()?, d)))
                .ok_or_else(|| PluginError::new(format!("checksum-store: bad part tag {tag:?}")))?;
            parts.push(Part {
                offset,
                size,
                sha256: digest.to_string(),
            });
            offset += size;
        }
        let meta = os::complete_upload(&id).map_err(cap("completing the upload"))?;
        if meta.size != offset {
            return Err(PluginError::new(format!(
                "checksum-store: '{key}' was stored with {} bytes, the parts add up to {offset}",
                meta.size
            )));
        }
        let sidecar = Sidecar {
            key: key.clone(),
            size: offset,
            parts,
        };
        let json = serde_json::to_vec(&sidecar).expect("serialises");
        put_whole(&sidecar_key(&t, &key), &json)?;
        Ok(serde_json::json!({"s3": {"key": key}}).to_string())
    }

    fn abort_put(_ctx: StepContext, _key: String, upload: Vec<u8>) -> Result<(), PluginError> {
        match os::abort_upload(&upload_id(&upload)?) {
            // already gone (a failed part drops its upload): nothing to abandon
            Ok(()) | Err(CapabilityError::Invalid(_)) => Ok(()),
            Err(e) => Err(cap("aborting an upload")(e)),
        }
    }

    fn get_range(
        ctx: StepContext,
        key: String,
        offset: u64,
        max_len: u32,
    ) -> Result<Option<Chunk>, PluginError> {
        let t = tenant(&ctx)?;
        let data = data_key(&t, &key);
        let Some(side) = read_sidecar(&key, &sidecar_key(&t, &key))? else {
            if os::head(&data).map_err(cap("reading"))?.is_some() {
                return Err(corrupted(
                    &key,
                    format!("its checksum sidecar {}.sha256 is missing", key),
                ));
            }
            return Ok(None);
        };
        let size = side.size;
        if max_len == 0 || offset >= size {
            if offset == 0 && os::head(&data).map_err(cap("reading"))?.is_none() {
                return Err(corrupted(
                    &key,
                    "its bytes are missing (only the sidecar is left)".into(),
                ));
            }
            return Ok(Some(Chunk {
                data: Vec::new(),
                total_size: Some(size),
                eof: offset >= size,
            }));
        }
        let (i, part) = side
            .parts
            .iter()
            .enumerate()
            .find(|(_, p)| p.offset <= offset && offset < p.offset + p.size)
            .ok_or_else(|| {
                corrupted(&key, format!("its sidecar covers no part at byte {offset}"))
            })?;
        let bytes = read_exact(&data, part.offset, part.size)?;
        if (bytes.len() as u64) < part.size {
            return Err(corrupted(
                &key,
                format!(
                    "it has {} bytes, the sidecar records {size}",
                    part.offset + bytes.len() as u64
                ),
            ));
        }
        let got = sha256(&bytes);
        if got != part.sha256 {
            return Err(corrupted(
                &key,
                format!(
                    "SHA-256 mismatch in bytes {}..{} (part {}): expected {}, found {got}",
                    part.offset,
                    part.offset + part.size,
                    i + 1,
                    part.sha256
                ),
            ));
        }
        if i + 1 == side.parts.len()
            && !os::read(&data, size, 1).map_err(cap("reading"))?.is_empty()
        {
            return Err(corrupted(
                &key,
                format!("it is longer than the {size} bytes recorded"),
            ));
        }
        let from = (offset - part.offset) as usize;
        let to = (from + max_len as usize).min(bytes.len());
        let chunk = bytes[from..to].to_vec();
        let end = offset + chunk.len() as u64;
        Ok(Some(Chunk {
            data: chunk,
            total_size: Some(size),
            eof: end >= size,
        }))
    }

    fn list_objects(ctx: StepContext, prefix: String) -> Result<Vec<ObjectInfo>, PluginError> {
        let t = tenant(&ctx)?;
        let root = format!("{t}/objects/");
        let listed = os::list_objects(&data_key(&t, &prefix)).map_err(cap("listing"))?;
        Ok(listed
            .into_iter()
            .filter_map(|m| {
                Some(ObjectInfo {
                    key: m.key.strip_prefix(&root)?.to_string(),
                    size: m.size,
                    modified_ms: m.modified_ms,
                })
            })
            .collect())
    }

    fn delete(ctx: StepContext, key: String) -> Result<(), PluginError> {
        let t = tenant(&ctx)?;
        os::delete(&data_key(&t, &key)).map_err(cap("deleting"))?;
        os::delete(&sidecar_key(&t, &key)).map_err(cap("deleting a sidecar"))
    }
}

weft_sdk::export_artifact_store!(ChecksumStore);
