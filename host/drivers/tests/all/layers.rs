//! Input artifacts as copy-on-write layers (`sandbox::layers`), through the
//! sandbox's real spawn: the step sees and may change the file, the object it
//! came from never changes, and afterwards the root holds what the step saw.

use std::io::Read;
use std::path::Path;

use weft_drivers::sandbox::layers;
use weft_drivers::sandbox::manager::prepare_root;
use weft_drivers::sandbox::spawn::{SpawnRequest, spawn_sandboxed};

/// Run `script` in a sandbox over `root` with the layers at `layers`: its stdout.
fn run(root: &Path, layers: &Path, script: &str) -> String {
    let req = SpawnRequest {
        root: root.to_path_buf(),
        argv: vec!["sh".into(), "-c".into(), script.into()],
        env: vec![("PATH".into(), "/usr/bin:/bin".into())],
        working_dir: "/".into(),
        hostname: "layers".into(),
        layers: Some(layers.to_path_buf()),
    };
    let mut s = spawn_sandboxed(&req).expect("spawns");
    let ns = layers::mount_ns(s.child.id() as i32);
    let mut out = String::new();
    s.child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let st = s.child.wait().unwrap();
    assert!(st.success(), "{script}: {st} {out}");
    layers::finish(layers, root, ns).unwrap();
    out
}

/// A root with `object` staged as `/in/data` and `/in/other`, layers in `layers`.
fn staged(root: &Path, layers: &Path, object: &Path) {
    prepare_root(root, &[], "/").unwrap();
    std::fs::create_dir_all(root.join("in")).unwrap();
    for name in ["data", "other", "mode"] {
        let lower = layers::stage(layers, root, Path::new("in"), name, |l| {
            std::fs::hard_link(object, l).map(|_| true)
        })
        .unwrap();
        assert!(lower.is_some(), "{name} staged");
    }
}

const SCRIPT: &str = "cat /in/data; echo more >> /in/data; rm /in/other; echo new > /in/new; \
                      chmod 600 /in/mode; cat /in/data; ls /in | tr '\\n' ' '";

fn check(root: &Path, layers: &Path, object: &Path, out: &str) {
    assert_eq!(out, "v1\nv1\nmore\ndata mode new ", "what the step saw");
    assert_eq!(
        std::fs::read_to_string(object).unwrap(),
        "v1\n",
        "the object is unchanged"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("in/data")).unwrap(),
        "v1\nmore\n"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("in/new")).unwrap(),
        "new\n"
    );
    assert!(
        root.join("in/other").symlink_metadata().is_err(),
        "deleted by the step"
    );
    // a chmod copies the data up too (metacopy=off); the object keeps its mode
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&root.join("in/mode")), 0o600);
    assert_eq!(
        std::fs::read_to_string(root.join("in/mode")).unwrap(),
        "v1\n"
    );
    assert_ne!(mode(object), 0o600);
    assert!(!layers.exists(), "layers removed");
}

#[test]
fn a_layered_input_is_writable_in_the_step_and_its_object_never_changes() {
    let d = tempfile::tempdir().unwrap();
    let (root, layers) = (d.path().join("root"), d.path().join(layers::DIR));
    let object = d.path().join("object");
    std::fs::write(&object, "v1\n").unwrap();
    staged(&root, &layers, &object);
    // an unchanged layered file is linked into the root for the outputs
    let lower = layers.join("0/data");
    let out = run(&root, &layers, SCRIPT);
    check(&root, &layers, &object, &out);
    assert!(!lower.exists());

    // unchanged: the root gets the object's file itself (a link, no copy)
    let root2 = d.path().join("root2");
    let layers2 = d.path().join("layers2");
    staged(&root2, &layers2, &object);
    let out = run(&root2, &layers2, "cat /in/data");
    assert_eq!(out, "v1\n");
    use std::os::unix::fs::MetadataExt;
    let (a, b) = (
        std::fs::metadata(&object).unwrap(),
        std::fs::metadata(root2.join("in/data")).unwrap(),
    );
    assert_eq!((a.dev(), a.ino()), (b.dev(), b.ino()), "linked, not copied");
}

#[test]
fn without_overlayfs_a_layered_input_is_copied_into_the_root() {
    // overlayfs needs its work directory on the upper directory's
    // filesystem: layers on tmpfs, the root elsewhere, make the mount fail
    // and the spawn copy the files instead.
    let shm = Path::new("/dev/shm");
    if !shm.is_dir() {
        eprintln!("skipped: no /dev/shm to put the layers on another filesystem");
        return;
    }
    let d = tempfile::tempdir_in(std::env::current_dir().unwrap()).unwrap();
    let l = tempfile::tempdir_in(shm).unwrap();
    use std::os::unix::fs::MetadataExt;
    if std::fs::metadata(d.path()).unwrap().dev() == std::fs::metadata(l.path()).unwrap().dev() {
        eprintln!("skipped: /dev/shm is on the same filesystem as the checkout");
        return;
    }
    let (root, layers) = (d.path().join("root"), l.path().join(layers::DIR));
    let object = l.path().join("object");
    std::fs::write(&object, "v1\n").unwrap();
    staged(&root, &layers, &object);
    let out = run(&root, &layers, SCRIPT);
    check(&root, &layers, &object, &out);
}

/// Whether this process holds a descriptor of the namespace `ns` (`mnt:[…]`).
fn holds(ns: &Path) -> bool {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .any(|l| l == ns)
}

/// A step's mount namespace outlives its process until the host has seen the
/// exit (so the exit is not held up tearing it down), and is then let go.
#[tokio::test]
async fn a_step_namespace_is_held_while_it_runs_and_released_after_its_exit() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    prepare_root(&root, &[], "/").unwrap();
    // 200 kB through a 64 kB pipe: the step runs until the test reads it all
    let req = SpawnRequest {
        root: root.clone(),
        argv: vec!["sh".into(), "-c".into(), "yes | head -c 200000".into()],
        env: vec![("PATH".into(), "/usr/bin:/bin".into())],
        working_dir: "/".into(),
        hostname: "ns".into(),
        layers: None,
    };
    let mut s = spawn_sandboxed(&req).expect("spawns");
    let pid = s.child.id();
    let ns = std::fs::read_link(format!("/proc/{pid}/ns/mnt")).unwrap();
    let mine = std::fs::read_link("/proc/self/ns/mnt").unwrap();
    assert_ne!(ns, mine, "the step runs in a mount namespace of its own");
    assert!(
        holds(&ns),
        "a reference to {ns:?} is held while the step runs"
    );
    let mut out = Vec::new();
    s.child
        .stdout
        .take()
        .unwrap()
        .read_to_end(&mut out)
        .unwrap();
    assert_eq!(out.len(), 200_000);
    let status = s.child.wait_async().await.unwrap();
    assert!(status.success(), "{status}");
    let released = (0..500).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(10));
        !holds(&ns)
    });
    assert!(
        released,
        "{ns:?} is still held after the step's exit was seen"
    );
}
