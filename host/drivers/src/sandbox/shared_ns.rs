//! The spawner thread's own mount namespace, where step roots keep their
//! mounts from one step to the next.
//!
//! A step's sandbox needs host `/usr`, `/etc` and `/opt` read-only, a minimal
//! `/dev` and `/proc` inside its root. Made per step, in a new mount
//! namespace, that is an `unshare` copying every host mount, ten mounts, a
//! dozen device nodes and links, and the namespace's teardown when the step
//! exits — a tenth of the CPU of a DAG of 1,000 trivial steps (perf, W4). But
//! the roots are recycled ([`super::pool`]), so as root the spawner thread
//! leaves the host's namespace once ([`enter`]: `unshare(CLONE_NEWNS)` on
//! that thread only, propagation from it cut with `MS_SLAVE`) and mounts each
//! root there the first time a step uses it ([`SharedNs::mount_root`]): the
//! mounts stay while the root goes back to the pool and out again (a
//! `rename` moves them along), and a step's spawn makes none. Its child
//! still gets its own IPC and UTS namespaces and `chroot`s into its root.
//!
//! What a step sees is unchanged, except that `/dev` is one read-only tmpfs
//! shared by all steps (the device nodes, the `/proc/self/fd` links, and
//! `shm` as a link to the step's own `/run/shm`), where it used to be a
//! writable tmpfs per step. The mounts exist only in the spawner's
//! namespace: on the host the roots stay plain directories (the pool's
//! cleaning sees exactly what the step wrote), and deleting a root detaches
//! its mounts (Linux 3.18+). Not used without root (a user namespace cannot
//! be entered by one thread of a threaded process), nor for steps with
//! input layers: those still make their namespace per step.

use std::ffi::CString;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

use super::spawn::{DevNode, cstr, host_view, make_device, path_c};

/// The `/dev` links of every step (`shm` leads into the step's own root).
const DEV_LINKS: &[(&str, &str)] = &[
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
    ("shm", "/run/shm"),
];

/// The namespace the calling (spawner) thread is in, with its shared `/dev`.
pub(super) struct SharedNs {
    /// The shared `/dev` tmpfs (at `<work dir>/.dev`, in this namespace only).
    devroot: CString,
    /// Its device: a root whose `dev/` is on it has all its mounts.
    dev: libc::dev_t,
}

fn os_err(what: &str) -> io::Error {
    let e = io::Error::last_os_error();
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

fn mount(
    src: Option<&CString>,
    dst: &CString,
    fstype: Option<&CString>,
    flags: libc::c_ulong,
    data: Option<&CString>,
) -> io::Result<()> {
    let p = |s: Option<&CString>| s.map_or(std::ptr::null(), |s| s.as_ptr());
    // SAFETY: valid C strings or null; mount(2) reads them only.
    let rc = unsafe { libc::mount(p(src), dst.as_ptr(), p(fstype), flags, p(data).cast()) };
    if rc != 0 {
        return Err(os_err(&format!("mount {}", dst.to_string_lossy())));
    }
    Ok(())
}

fn detach(dst: &CString) {
    // SAFETY: a C string; a failed detach leaves nothing to undo.
    unsafe { libc::umount2(dst.as_ptr(), libc::MNT_DETACH) };
}

fn dev_of(p: &CString) -> Option<libc::dev_t> {
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a C string and an out-pointer.
    (unsafe { libc::stat(p.as_ptr(), &mut st) } == 0).then_some(st.st_dev)
}

/// `src` bound at `dst` (recursively when `rec`), then read-only with the
/// `locked` flags its mount has (a bind may not clear them).
fn bind_ro(src: &CString, dst: &CString, rec: bool, locked: libc::c_ulong) -> io::Result<()> {
    let rec = if rec { libc::MS_REC } else { 0 };
    mount(Some(src), dst, None, libc::MS_BIND | rec, None)?;
    let ro = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | locked;
    if let Err(e) = mount(None, dst, None, ro, None) {
        detach(dst);
        return Err(e);
    }
    Ok(())
}

/// Move the calling thread into a mount namespace of its own and make the
/// shared `/dev` under `work_dir`. `None` (the thread back in the host's
/// namespace) where that is not possible: not root, no mount namespaces.
pub(super) fn enter(work_dir: &Path) -> Option<SharedNs> {
    // SAFETY: a trivial getter.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let host = std::fs::File::open("/proc/thread-self/ns/mnt").ok()?;
    // SAFETY: plain syscall; CLONE_NEWNS implies CLONE_FS, this thread's only.
    if unsafe { libc::unshare(libc::CLONE_NEWNS) } != 0 {
        tracing::debug!(error = %io::Error::last_os_error(), "no mount namespace for the spawner thread");
        return None;
    }
    let made = (|| {
        // Mounts made here must never reach the host: no propagation out.
        mount(None, &cstr("/")?, None, libc::MS_REC | libc::MS_SLAVE, None)?;
        make_devroot(&work_dir.join(".dev"))
    })();
    match made {
        Ok(ns) => Some(ns),
        Err(e) => {
            tracing::debug!(error = %e, "no shared sandbox namespace; each step makes its own");
            // SAFETY: setns to the namespace this thread was in a moment ago.
            unsafe { libc::setns(host.as_raw_fd(), libc::CLONE_NEWNS) };
            None
        }
    }
}

/// A read-only tmpfs at `dir` with the devices and links of a step's `/dev`.
fn make_devroot(dir: &Path) -> io::Result<SharedNs> {
    std::fs::create_dir_all(dir)?;
    let devroot = path_c(dir)?;
    mount(
        Some(&cstr("tmpfs")?),
        &devroot,
        Some(&cstr("tmpfs")?),
        libc::MS_NOSUID | libc::MS_NOEXEC,
        Some(&cstr("mode=755,size=64k")?),
    )?;
    let filled = (|| {
        for (d, mode, rdev) in &host_view().devices {
            let n = DevNode {
                dst: path_c(&dir.join(d))?,
                host: path_c(&Path::new("/dev").join(d))?,
                mode: *mode,
                rdev: *rdev,
            };
            make_device(&n, false).map_err(|(what, errno)| {
                io::Error::other(format!(
                    "{}: {}",
                    String::from_utf8_lossy(what),
                    io::Error::from_raw_os_error(errno)
                ))
            })?;
        }
        for (link, target) in DEV_LINKS {
            std::os::unix::fs::symlink(target, dir.join(link))?;
        }
        let ro = libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NOEXEC;
        mount(None, &devroot, None, ro, None)?;
        dev_of(&devroot).ok_or_else(|| os_err("stat the shared /dev"))
    })();
    match filled {
        Ok(dev) => Ok(SharedNs { devroot, dev }),
        Err(e) => {
            detach(&devroot);
            Err(e)
        }
    }
}

impl SharedNs {
    /// Mount `/usr`, `/etc`, `/opt` and `/proc` read-only and the shared
    /// `/dev` into `root` (a step root with its skeleton), unless they are
    /// there already. All or nothing: on an error what was mounted is
    /// detached again.
    pub(super) fn mount_root(&self, root: &Path) -> io::Result<()> {
        let dev = path_c(&root.join("dev"))?;
        if dev_of(&dev) == Some(self.dev) {
            return Ok(());
        }
        let host = host_view();
        let mut binds: Vec<(CString, CString, bool, libc::c_ulong)> = Vec::new();
        for (src, locked) in &host.ro_binds {
            binds.push((cstr(src)?, path_c(&root.join(&src[1..]))?, true, *locked));
        }
        binds.push((
            cstr("/proc")?,
            path_c(&root.join("proc"))?,
            true,
            host.proc_flags,
        ));
        // last: its presence says the root is complete
        let dev_flags = libc::MS_NOSUID | libc::MS_NOEXEC;
        binds.push((self.devroot.clone(), dev, true, dev_flags));
        let mut done: Vec<&CString> = Vec::new();
        for (src, dst, rec, locked) in &binds {
            if let Err(e) = bind_ro(src, dst, *rec, *locked) {
                for d in done.into_iter().rev() {
                    detach(d);
                }
                return Err(e);
            }
            done.push(dst);
        }
        Ok(())
    }
}

thread_local! {
    /// This thread's shared namespace, once [`install`]ed.
    static SHARED: std::cell::OnceCell<Option<SharedNs>> = const { std::cell::OnceCell::new() };
}

/// Enter a shared namespace for the calling thread (once; see [`enter`]).
pub(super) fn install(work_dir: &Path) -> bool {
    SHARED.with(|s| s.get_or_init(|| enter(work_dir)).is_some())
}

/// Mount `root` in the calling thread's shared namespace: true when the
/// step can use it; false on a thread without one, or when mounting failed
/// (logged; the step then makes its own namespace).
pub(super) fn ready(root: &Path) -> bool {
    SHARED.with(|s| match s.get() {
        Some(Some(ns)) => match ns.mount_root(root) {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!(root = %root.display(), error = %e, "root not mounted in the shared namespace");
                false
            }
        },
        _ => false,
    })
}
