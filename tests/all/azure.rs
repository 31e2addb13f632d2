//! Azure Blob as an artifact repository, against a real Azurite: the test
//! support in `weft_drivers::artifacts::testing` installs `azurite@3.35.0`
//! with npm under `target/` (once), starts `azurite-blob` on a free port and
//! creates the container with a SharedKey-signed request. Without npm or
//! Azurite the tests print a SKIPPED notice, and fail under `CI=true`.

use std::io::Read;
use std::path::Path;

use serde_json::Value;
use weft_drivers::artifacts::testing::{AZURITE_KEY, Azurite};
use weft_drivers::artifacts::{AzureOptions, Key, ObjectStoreRepository, Repository, Secret};

use super::artifacts::PASS;
use super::support::*;

fn azure_toml(az: &Azurite, key: &str) -> String {
    format!(
        "container = \"weft\", endpoint = \"{}\", accountKey = \"{key}\", keyPrefix = \"runs\"",
        az.endpoint()
    )
}

/// The container `weft` (prefix `runs`) as the tests' own client sees it.
fn container(az: &Azurite, rt: &tokio::runtime::Runtime) -> ObjectStoreRepository {
    let o = AzureOptions {
        endpoint: Some(az.endpoint()),
        container: "weft".into(),
        account_key: Some(Secret(AZURITE_KEY.into())),
        key_prefix: "runs".into(),
        ..Default::default()
    };
    ObjectStoreRepository::azure(&o, rt.handle().clone()).unwrap()
}

fn read(r: &dyn Repository, key: &str) -> Option<Vec<u8>> {
    let mut v = Vec::new();
    r.open(&Key::parse(key).unwrap())
        .unwrap()?
        .read_to_end(&mut v)
        .unwrap();
    Some(v)
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

fn run_file(home: &Home, f: &Path) -> (Option<i32>, Value, String) {
    let out = home.run(&["run", f.to_str().unwrap(), "-o", "json"]);
    (out.status.code(), json(&out), stderr(&out))
}

#[test]
fn azure_default_repository_passes_artifacts_end_to_end() {
    let Some(az) = Azurite::start_or_skip("azure_default_repository_passes_artifacts_end_to_end")
    else {
        return;
    };
    az.create_container("weft").unwrap();
    let rt = rt();
    let blobs = container(&az, &rt);
    let home = Home::new();
    home.file(
        "weft.toml",
        &format!(
            "[artifacts.default]\nazure = {{ {} }}\n",
            azure_toml(&az, AZURITE_KEY)
        ),
    );
    let f = home.file("pass.yaml", PASS);
    let (code, wf, err) = run_file(&home, &f);
    assert_eq!(code, Some(0), "{err}\n{wf:#}");
    let out = node(&wf, "use")["outputs"]["result"].as_str().unwrap();
    assert_eq!(
        out,
        "file=file-content a=A b=B raw=file-content rawdir=B one=B"
    );
    // the objects are blobs of the container, under the prefix; nothing went local
    let arts = node(&wf, "make")["outputs"]["artifacts"]
        .as_array()
        .unwrap();
    let key = |i: usize| arts[i]["s3"]["key"].as_str().unwrap().to_string();
    assert_eq!(&read(&blobs, &key(0)).unwrap()[..2], &[0x1f, 0x8b]);
    assert_eq!(read(&blobs, &key(2)).unwrap(), b"file-content\n");
    assert_eq!(
        read(&blobs, &format!("{}/sub/b.txt", key(3))).unwrap(),
        b"B\n"
    );
    assert!(!home.path().join("artifacts").exists());

    // the class-B conformance files that move artifacts, on Azure
    let corpus = repo().join("../shared/conformance/argo/examples");
    for (file, prefix) in [
        ("artifact-passing-subpath.yaml", None),
        ("key-only-artifact.yaml", Some("my-file")), // its key, as written
        ("conditional-artifacts.yaml", None),
        ("workflow-template/workflow-archive-logs.yaml", None),
    ] {
        let p = corpus.join(file);
        if !p.exists() {
            eprintln!("NOTICE: {} not found; skipped", p.display());
            continue;
        }
        let (code, wf, err) = run_file(&home, &p);
        assert_eq!(code, Some(0), "{file}: {err}\n{wf:#}");
        let name = wf["metadata"]["name"].as_str().unwrap();
        match prefix {
            Some(k) => assert!(read(&blobs, k).is_some(), "{file}: no blob {k}"),
            None => {
                let stored = blobs.list(&Key::parse(name).unwrap()).unwrap();
                assert!(!stored.is_empty(), "{file}: no blobs under {name}/");
            }
        }
    }

    // a wrong account key fails the step naming the repository, never a key
    let wrong = "d3JvbmctYWNjb3VudC1rZXktdmFsdWUtMDEyMzQ1Njc4OQ==";
    home.file(
        "weft.toml",
        &format!(
            "[artifacts.default]\nazure = {{ {} }}\n",
            azure_toml(&az, wrong)
        ),
    );
    let (code, wf, err) = run_file(&home, &f);
    assert_eq!(code, Some(1), "{err}");
    let name = wf["metadata"]["name"].as_str().unwrap().to_string();
    let msg = node(&wf, "make")["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("azure://weft/runs/") && msg.contains(&az.addr.to_string()),
        "{name}: {msg}"
    );
    let all = format!("{wf}{err}");
    assert!(!all.contains(wrong) && !all.contains(AZURITE_KEY), "{all}");
}

#[test]
fn artifact_repository_ref_selects_a_named_azure_repository_with_its_key_format() {
    let Some(az) = Azurite::start_or_skip(
        "artifact_repository_ref_selects_a_named_azure_repository_with_its_key_format",
    ) else {
        return;
    };
    az.create_container("weft").unwrap();
    let rt = rt();
    let blobs = container(&az, &rt);
    let home = Home::new();
    // Argo's ConfigMap `artifact-repositories`, key `my-key`: [artifacts.repositories.my-key]
    home.file(
        "weft.toml",
        &format!(
            "[artifacts.repositories.my-key]\nazure = {{ {}, blobNameFormat = \"kf/{{{{workflow.namespace}}}}/{{{{workflow.name}}}}/{{{{pod.name}}}}\" }}\n",
            azure_toml(&az, AZURITE_KEY)
        ),
    );
    let yaml = PASS.replacen(
        "spec:\n",
        "spec:\n  artifactRepositoryRef: {configMap: artifact-repositories, key: my-key}\n",
        1,
    );
    let f = home.file("pass.yaml", &yaml);
    let (code, wf, err) = run_file(&home, &f);
    assert_eq!(code, Some(0), "{err}\n{wf:#}");
    let name = wf["metadata"]["name"].as_str().unwrap();
    let out = node(&wf, "use")["outputs"]["result"].as_str().unwrap();
    assert_eq!(
        out,
        "file=file-content a=A b=B raw=file-content rawdir=B one=B"
    );
    let arts = node(&wf, "make")["outputs"]["artifacts"]
        .as_array()
        .unwrap();
    let loc = &arts[0]["s3"];
    assert_eq!(loc["repository"], "my-key", "{loc}");
    let key = loc["key"].as_str().unwrap();
    assert!(
        key.starts_with(&format!("kf/default/{name}/")) && key.ends_with("/file.tgz"),
        "{key}"
    );
    assert_eq!(&read(&blobs, key).unwrap()[..2], &[0x1f, 0x8b]);
    // the default (local) repository got nothing
    assert!(!home.path().join("artifacts").exists());

    // Argo's own example (ConfigMap key my-key) runs too
    let p = repo().join("../shared/conformance/argo/examples/artifact-repository-ref.yaml");
    if p.exists() {
        let (code, wf, err) = run_file(&home, &p);
        assert_eq!(code, Some(0), "{err}\n{wf:#}");
        let name = wf["metadata"]["name"].as_str().unwrap();
        let stored = blobs
            .list(&Key::parse(&format!("kf/default/{name}")).unwrap())
            .unwrap();
        assert_eq!(stored.len(), 1, "{stored:?}");
    }
}
