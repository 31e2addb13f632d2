//! Spawning one sandboxed process.
//!
//! Everything the child needs (C strings, paths, map contents) is prepared
//! before `fork`; the `pre_exec` hook only makes raw syscalls, as required of
//! code running between `fork` and `exec`. Spawns happen on one long-lived
//! thread ([`Spawner`]) because `PR_SET_PDEATHSIG` fires when the *thread* that
//! forked exits, and tokio's blocking-pool threads come and go.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc;

use tokio::sync::oneshot;

/// Host directories bind-mounted read-only into every step root (when present).
const RO_BINDS: &[&str] = &["/usr", "/etc", "/opt"];
/// Device nodes bind-mounted into the step's minimal `/dev`.
const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];
/// Merged-usr symlinks created in every step root.
pub const ROOT_SYMLINKS: &[(&str, &str)] = &[
    ("bin", "usr/bin"),
    ("lib", "usr/lib"),
    ("lib64", "usr/lib64"),
    ("sbin", "usr/sbin"),
];
/// Directories created in every step root before spawn. (`.weft/bin` holds
/// the local driver's emulated commands; as part of the skeleton it is
/// recycled with the root instead of made anew for every step.)
pub const ROOT_DIRS: &[&str] = &[
    "usr",
    "etc",
    "opt",
    "dev",
    "proc",
    "tmp",
    "root",
    "mnt",
    "run",
    // `/dev/shm` leads here (the shared `/dev` is read-only: `shared_ns`)
    "run/shm",
    "var/tmp",
    ".weft/bin",
];

/// The mode of a skeleton directory ([`ROOT_DIRS`]): world-writable and
/// sticky where programs expect to make files of their own.
pub fn skeleton_mode(dir: &str) -> u32 {
    if matches!(dir, "tmp" | "run/shm") {
        0o1777
    } else {
        0o755
    }
}

/// What to run, with paths already resolved on the host.
#[derive(Debug, Clone)]
pub struct SpawnRequest {
    /// The step's root directory (already populated with [`ROOT_DIRS`] and files).
    pub root: PathBuf,
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Working directory inside the root (already created).
    pub working_dir: String,
    /// Hostname inside the UTS namespace.
    pub hostname: String,
    /// The step's [`super::layers`] directory: input artifacts to mount as
    /// copy-on-write layers (`None`, or nothing staged there: none).
    pub layers: Option<PathBuf>,
}

/// One mount, prepared before fork.
struct Mount {
    src: Option<CString>,
    dst: CString,
    fstype: Option<CString>,
    flags: libc::c_ulong,
    data: Option<CString>,
    /// Remount read-only afterwards with these extra (locked) flags.
    remount_ro: Option<libc::c_ulong>,
    /// The fresh `/dev` tmpfs (the standard links are added after it).
    dev: bool,
    /// An input-artifact overlay: what to do if it cannot be mounted.
    fallback: Option<Fallback>,
    what: &'static [u8],
}

/// An overlay that fails to mount is tried again with `data`; if that fails
/// too, `files` (lower, destination) are copied into the root and `marker`
/// is created (the copies are then the step's own files).
struct Fallback {
    data: CString,
    files: Vec<(CString, CString)>,
    marker: CString,
}

/// A device node of the step's `/dev`.
pub(super) struct DevNode {
    pub(super) dst: CString,
    pub(super) host: CString,
    pub(super) mode: libc::mode_t,
    pub(super) rdev: libc::dev_t,
}

/// Drop every capability from the calling thread's bounding set (one
/// `prctl` each, up to the kernel's last). Async-signal-safe.
fn drop_bounding_set() {
    for cap in 0..=63 {
        // SAFETY: a plain syscall.
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) } != 0
            && io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL)
        {
            break;
        }
    }
}

thread_local! {
    /// This thread's capability bounding set is empty (the spawner thread
    /// empties its own at start when root), so the children it clones
    /// inherit an empty one and need not drop ~40 capabilities one `prctl`
    /// at a time — each a new set of credentials, 2.4 % of W4's CPU (perf).
    /// Its effective capabilities, which the mounts need, stay. A child in a
    /// user namespace gets a full bounding set there and still drops it.
    static BOUNDING_EMPTY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Empty the calling thread's bounding set (see [`BOUNDING_EMPTY`]).
fn empty_own_bounding_set() {
    // SAFETY: trivial getter.
    if unsafe { libc::geteuid() } != 0 {
        return;
    }
    drop_bounding_set();
    // SAFETY: plain syscall: is capability 0 still in the bounding set?
    let still = unsafe { libc::prctl(libc::PR_CAPBSET_READ, 0, 0, 0, 0) };
    BOUNDING_EMPTY.with(|b| b.set(still == 0));
}

/// All state the child needs, allocated before fork.
struct Prepared {
    /// The spawning thread's bounding set is empty already ([`BOUNDING_EMPTY`]).
    bounding_empty: bool,
    /// The root is already mounted in this thread's shared namespace
    /// ([`super::shared_ns`]): the child
    /// makes no mounts, only its own IPC and UTS namespaces.
    shared: bool,
    user_ns: Option<(CString, CString, CString, CString, CString, CString)>,
    mounts: Vec<Mount>,
    dev_nodes: Vec<DevNode>,
    dev_links: Vec<(CString, CString)>,
    root: CString,
    workdir: CString,
    hostname: CString,
}

pub(super) fn cstr(p: impl AsRef<[u8]>) -> io::Result<CString> {
    CString::new(p.as_ref().to_vec()).map_err(|_| io::Error::other("path contains NUL"))
}

pub(super) fn path_c(p: &Path) -> io::Result<CString> {
    use std::os::unix::ffi::OsStrExt;
    cstr(p.as_os_str().as_bytes())
}

/// What every sandbox is built from, read once per process: the host
/// directories bound read-only (with their locked mount flags), the device
/// nodes (mode and device number) and `/proc`'s flags. (It was a dozen
/// `stat`/`statfs` calls per spawn, on the one spawner thread.)
pub(super) struct HostView {
    pub(super) ro_binds: Vec<(&'static str, libc::c_ulong)>,
    pub(super) devices: Vec<(&'static str, libc::mode_t, libc::dev_t)>,
    pub(super) proc_flags: libc::c_ulong,
}

pub(super) fn host_view() -> &'static HostView {
    static VIEW: std::sync::OnceLock<HostView> = std::sync::OnceLock::new();
    VIEW.get_or_init(|| {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        HostView {
            ro_binds: RO_BINDS
                .iter()
                .filter(|src| Path::new(src).is_dir())
                .map(|src| (*src, locked_flags(Path::new(src))))
                .collect(),
            devices: DEVICES
                .iter()
                .filter_map(|d| {
                    let m = std::fs::metadata(Path::new("/dev").join(d)).ok()?;
                    m.file_type()
                        .is_char_device()
                        .then(|| (*d, m.mode() as libc::mode_t, m.rdev() as libc::dev_t))
                })
                .collect(),
            proc_flags: locked_flags(Path::new("/proc")),
        }
    })
}

/// Flags of the mount a host path lives on that a user namespace may not clear.
fn locked_flags(path: &Path) -> libc::c_ulong {
    let Ok(c) = path_c(path) else { return 0 };
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid C string and out-pointer.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return 0;
    }
    let mut f: libc::c_ulong = 0;
    for (st_flag, ms_flag) in [
        (libc::ST_NOSUID, libc::MS_NOSUID),
        (libc::ST_NODEV, libc::MS_NODEV),
        (libc::ST_NOEXEC, libc::MS_NOEXEC),
        (libc::ST_NOATIME, libc::MS_NOATIME),
        (libc::ST_NODIRATIME, libc::MS_NODIRATIME),
        (libc::ST_RELATIME, libc::MS_RELATIME),
    ] {
        if st.f_flag & st_flag != 0 {
            f |= ms_flag;
        }
    }
    f
}

fn prepare(req: &SpawnRequest, shared: bool) -> io::Result<Prepared> {
    let mut hostname = req.hostname.clone();
    hostname.truncate(63);
    if shared {
        return Ok(Prepared {
            bounding_empty: BOUNDING_EMPTY.with(|b| b.get()),
            shared,
            user_ns: None,
            mounts: Vec::new(),
            dev_nodes: Vec::new(),
            dev_links: Vec::new(),
            root: path_c(&req.root)?,
            workdir: cstr(&req.working_dir)?,
            hostname: cstr(hostname)?,
        });
    }
    // SAFETY: trivial getters.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    let user_ns = if uid != 0 {
        Some((
            cstr("/proc/self/setgroups")?,
            cstr("deny")?,
            cstr("/proc/self/uid_map")?,
            cstr(format!("0 {uid} 1"))?,
            cstr("/proc/self/gid_map")?,
            cstr(format!("0 {gid} 1"))?,
        ))
    } else {
        None
    };
    let root = &req.root;
    let host = host_view();
    let mut mounts = Vec::new();
    for (src, locked) in &host.ro_binds {
        mounts.push(Mount {
            src: Some(cstr(src)?),
            dst: path_c(&root.join(&src[1..]))?,
            fstype: None,
            flags: libc::MS_BIND | libc::MS_REC,
            data: None,
            remount_ro: Some(*locked),
            dev: false,
            fallback: None,
            what: b"bind-mount a read-only host directory",
        });
    }
    mounts.push(Mount {
        src: Some(cstr("tmpfs")?),
        dst: path_c(&root.join("dev"))?,
        fstype: Some(cstr("tmpfs")?),
        flags: libc::MS_NOSUID | libc::MS_NOEXEC,
        data: Some(cstr("mode=755,size=65536k")?),
        remount_ro: None,
        dev: true,
        fallback: None,
        what: b"mount tmpfs on /dev",
    });
    // As root the devices are made in the fresh /dev (mknod); in a user
    // namespace, or where mknod is refused, the host's nodes are bound onto
    // empty files instead (six mounts more per spawn).
    let mut dev_nodes = Vec::new();
    for (d, mode, rdev) in &host.devices {
        dev_nodes.push(DevNode {
            dst: path_c(&root.join("dev").join(d))?,
            host: path_c(&Path::new("/dev").join(d))?,
            mode: *mode,
            rdev: *rdev,
        });
    }
    let dev_links = vec![
        (cstr("/proc/self/fd")?, path_c(&root.join("dev/fd"))?),
        (cstr("/proc/self/fd/0")?, path_c(&root.join("dev/stdin"))?),
        (cstr("/proc/self/fd/1")?, path_c(&root.join("dev/stdout"))?),
        (cstr("/proc/self/fd/2")?, path_c(&root.join("dev/stderr"))?),
    ];
    mounts.push(Mount {
        src: Some(cstr("/proc")?),
        dst: path_c(&root.join("proc"))?,
        fstype: None,
        flags: libc::MS_BIND | libc::MS_REC,
        data: None,
        remount_ro: Some(host.proc_flags),
        dev: false,
        fallback: None,
        what: b"bind-mount /proc",
    });
    if let Some(layers) = &req.layers {
        for g in super::layers::read(layers)? {
            let (lower, work, upper) = (g.lower(layers), g.work(layers), root.join(&g.rel));
            std::fs::create_dir_all(&work)?;
            // metacopy=off: a chmod must copy the data up too, or the upper
            // file (what the root keeps) would be a stub of the lower one
            let mut data = format!(
                "lowerdir={},upperdir={},workdir={},metacopy=off",
                lower.display(),
                upper.display(),
                work.display()
            );
            if user_ns.is_some() {
                data.push_str(",userxattr");
            }
            // `volatile` (Linux 5.10+): without it the namespace's teardown
            // syncs the whole upper filesystem when the step exits — seconds
            // after a step that wrote a large file. Retried without it.
            let plain = cstr(&data)?;
            data.push_str(",volatile");
            let files = g
                .names
                .iter()
                .map(|n| Ok((path_c(&lower.join(n))?, path_c(&upper.join(n))?)))
                .collect::<io::Result<_>>()?;
            let fallback = Some(Fallback {
                data: plain,
                files,
                marker: path_c(&g.copied_marker(layers))?,
            });
            mounts.push(Mount {
                src: Some(cstr("overlay")?),
                dst: path_c(&upper)?,
                fstype: Some(cstr("overlay")?),
                flags: libc::MS_NOSUID | libc::MS_NODEV,
                data: Some(cstr(data)?),
                remount_ro: None,
                dev: false,
                fallback,
                what: b"mount an input artifact layer (overlay)",
            });
        }
    }
    Ok(Prepared {
        bounding_empty: user_ns.is_none() && BOUNDING_EMPTY.with(|b| b.get()),
        shared,
        user_ns,
        mounts,
        dev_nodes,
        dev_links,
        root: path_c(root)?,
        workdir: cstr(&req.working_dir)?,
        hostname: cstr(hostname)?,
    })
}

/// A failed stage of the child's set-up: what, and errno.
pub(super) type Failure = (&'static [u8], i32);

/// The failed stage with the current errno (no allocation: runs in the child).
fn fail(what: &'static [u8]) -> Failure {
    (what, io::Error::last_os_error().raw_os_error().unwrap_or(0))
}

fn write_file(path: &CString, data: &CString) -> bool {
    // SAFETY: open/write/close are async-signal-safe; pointers are valid.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return false;
        }
        let b = data.as_bytes();
        let ok = libc::write(fd, b.as_ptr().cast(), b.len()) == b.len() as isize;
        libc::close(fd);
        ok
    }
}

/// Copy each (source, new destination) file with `copy_file_range` (or
/// `sendfile` across filesystems), then
/// create `marker`: raw syscalls only (runs in the child).
fn copy_files(files: &[(CString, CString)], marker: &CString) -> Result<(), Failure> {
    // SAFETY (whole function): open/copy_file_range/close on prepared C strings.
    unsafe {
        let fd = libc::open(
            marker.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_CLOEXEC,
            0o644,
        );
        if fd < 0 {
            return Err(fail(b"mark the input artifact layer as copied"));
        }
        libc::close(fd);
        for (src, dst) in files {
            let from = libc::open(src.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
            if from < 0 {
                return Err(fail(b"open an input artifact to copy it"));
            }
            let to = libc::open(
                dst.as_ptr(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC,
                0o644,
            );
            if to < 0 {
                libc::close(from);
                return Err(fail(b"create an input artifact's file"));
            }
            // copy_file_range within a filesystem, sendfile across them
            let mut cross = false;
            loop {
                let n = if cross {
                    libc::sendfile(to, from, std::ptr::null_mut(), 1 << 30)
                } else {
                    libc::copy_file_range(
                        from,
                        std::ptr::null_mut(),
                        to,
                        std::ptr::null_mut(),
                        1 << 30,
                        0,
                    )
                };
                if n == 0 {
                    break;
                }
                let e = io::Error::last_os_error().raw_os_error();
                if n < 0 && !cross && matches!(e, Some(libc::EXDEV | libc::EINVAL | libc::ENOSYS)) {
                    cross = true;
                    continue;
                }
                if n < 0 {
                    let f = fail(b"copy an input artifact (overlayfs is not available)");
                    libc::close(from);
                    libc::close(to);
                    return Err(f);
                }
            }
            libc::close(from);
            libc::close(to);
        }
    }
    Ok(())
}

/// Put the device `n` into the fresh `/dev`: `mknod` with the host node's
/// mode (as root), else the host node bound onto an empty file. Runs in the
/// child: raw syscalls only.
pub(super) fn make_device(n: &DevNode, in_user_ns: bool) -> Result<(), Failure> {
    // SAFETY: C strings prepared before fork; plain syscalls.
    unsafe {
        if !in_user_ns && libc::mknod(n.dst.as_ptr(), n.mode, n.rdev) == 0 {
            // the umask may have taken bits off
            libc::chmod(n.dst.as_ptr(), n.mode & 0o7777);
            return Ok(());
        }
        let fd = libc::open(
            n.dst.as_ptr(),
            libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC,
            0o666,
        );
        if fd >= 0 {
            libc::close(fd);
        }
        let none = std::ptr::null();
        if libc::mount(
            n.host.as_ptr(),
            n.dst.as_ptr(),
            none,
            libc::MS_BIND,
            std::ptr::null(),
        ) != 0
        {
            return Err(fail(b"bind-mount a device"));
        }
    }
    Ok(())
}

/// Runs in the child between fork and exec: raw syscalls only, no allocation.
fn child_setup(p: &Prepared) -> Result<(), Failure> {
    if p.shared {
        // SAFETY: a plain syscall.
        if unsafe { libc::unshare(libc::CLONE_NEWIPC | libc::CLONE_NEWUTS) } != 0 {
            return Err(fail(b"unshare the IPC and UTS namespaces"));
        }
    } else {
        child_mounts(p)?;
    }
    child_enter(p)
}

/// The child's own mount namespace and its mounts (no shared namespace).
/// Raw syscalls only.
fn child_mounts(p: &Prepared) -> Result<(), Failure> {
    // SAFETY (whole function): only async-signal-safe libc calls on pointers
    // prepared before fork.
    unsafe {
        let mut flags = libc::CLONE_NEWNS | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS;
        if p.user_ns.is_some() {
            flags |= libc::CLONE_NEWUSER;
        }
        if libc::unshare(flags) != 0 {
            return Err(fail(
                b"unshare namespaces (are user/mount namespaces permitted here?)",
            ));
        }
        if let Some((sg, deny, um, umap, gm, gmap)) = &p.user_ns
            && (!write_file(sg, deny) || !write_file(um, umap) || !write_file(gm, gmap))
        {
            return Err(fail(b"write uid_map/gid_map of the user namespace"));
        }
        let none = std::ptr::null();
        if libc::mount(
            none,
            c"/".as_ptr(),
            none,
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ) != 0
        {
            return Err(fail(b"make / rprivate"));
        }
        for m in &p.mounts {
            let src = m.src.as_ref().map_or(none, |s| s.as_ptr());
            let fs = m.fstype.as_ref().map_or(none, |s| s.as_ptr());
            let data = m
                .data
                .as_ref()
                .map_or(std::ptr::null(), |s| s.as_ptr().cast());
            if libc::mount(src, m.dst.as_ptr(), fs, m.flags, data) != 0 {
                let Some(fb) = &m.fallback else {
                    return Err(fail(m.what));
                };
                if libc::mount(src, m.dst.as_ptr(), fs, m.flags, fb.data.as_ptr().cast()) != 0 {
                    copy_files(&fb.files, &fb.marker)?;
                }
                continue;
            }
            if let Some(locked) = m.remount_ro
                && libc::mount(
                    none,
                    m.dst.as_ptr(),
                    none,
                    libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | locked,
                    std::ptr::null(),
                ) != 0
            {
                return Err(fail(b"remount a bind mount read-only"));
            }
            if m.dev {
                for n in &p.dev_nodes {
                    make_device(n, p.user_ns.is_some())?;
                }
                // Fresh /dev tmpfs: add the standard symlinks.
                for (target, link) in &p.dev_links {
                    libc::symlink(target.as_ptr(), link.as_ptr());
                }
                let mut shm = [0u8; 4096];
                let d = m.dst.as_bytes();
                if d.len() + 5 < shm.len() {
                    shm[..d.len()].copy_from_slice(d);
                    shm[d.len()..d.len() + 4].copy_from_slice(b"/shm");
                    libc::mkdir(shm.as_ptr().cast(), 0o1777);
                }
            }
        }
    }
    Ok(())
}

/// Hostname, root, working directory, and no privileges: the last steps
/// before exec. Raw syscalls only.
fn child_enter(p: &Prepared) -> Result<(), Failure> {
    // SAFETY (whole function): only async-signal-safe libc calls on pointers
    // prepared before fork.
    unsafe {
        let h = p.hostname.as_bytes();
        libc::sethostname(h.as_ptr().cast(), h.len());
        if libc::chroot(p.root.as_ptr()) != 0 {
            return Err(fail(b"chroot into the step root"));
        }
        if libc::chdir(p.workdir.as_ptr()) != 0 {
            return Err(fail(b"chdir to the working directory"));
        }
        libc::setpgid(0, 0);
        if libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        ) != 0
        {
            return Err(fail(b"set PR_SET_PDEATHSIG"));
        }
        // Drop every capability: bounding set (unless inherited empty from the
        // spawner thread: `BOUNDING_EMPTY`), then effective/permitted/inheritable, ambient.
        if !p.bounding_empty {
            drop_bounding_set();
        }
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        );
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            return Err(fail(b"set no-new-privs"));
        }
        #[repr(C)]
        struct CapHeader {
            version: u32,
            pid: i32,
        }
        #[repr(C)]
        struct CapData {
            effective: u32,
            permitted: u32,
            inheritable: u32,
        }
        let hdr = CapHeader {
            version: 0x2008_0522,
            pid: 0,
        };
        let data = [
            CapData {
                effective: 0,
                permitted: 0,
                inheritable: 0,
            },
            CapData {
                effective: 0,
                permitted: 0,
                inheritable: 0,
            },
        ];
        if libc::syscall(libc::SYS_capset, &hdr as *const CapHeader, data.as_ptr()) != 0 {
            return Err(fail(b"drop capabilities"));
        }
    }
    Ok(())
}

/// `pidfd_open(2)`; `None` where the kernel has no pidfds.
fn pidfd_open(pid: libc::pid_t) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, libc::PIDFD_NONBLOCK) };
    // SAFETY: a descriptor the kernel just returned is ours alone.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// A started step process: its pid and the read ends of its stdout and stderr.
pub struct SandboxChild {
    pid: libc::pid_t,
    pub stdout: Option<ChildStdout>,
    pub stderr: Option<ChildStderr>,
    status: Option<ExitStatus>,
    /// A reference to the step's mount namespace (see [`hold_mount_ns`]).
    mount_ns: Option<OwnedFd>,
}

/// Open the mount namespace a sandboxed child made, while it runs. A process
/// whose exit drops the last reference to a mount namespace tears it down —
/// unmounts the tree, waits for RCU — before its parent learns it has
/// exited: 0.2–0.8 ms per step here (exit -> SIGCHLD, perf
/// `signal_generate`), against ~0.1 ms with the reference held.
/// [`SandboxChild::wait_async`] drops it afterwards on a blocking thread, off
/// the path to the next step. A child already gone yields nothing: its exit
/// paid the teardown itself. Only the mount namespace: this runs on the one
/// spawner thread, and also holding IPC and UTS (cheap to tear down) made
/// W4's 1,000 spawns ~5 % slower.
fn hold_mount_ns(pid: libc::pid_t) -> Option<OwnedFd> {
    std::fs::File::open(format!("/proc/{pid}/ns/mnt"))
        .ok()
        .map(OwnedFd::from)
}

impl SandboxChild {
    /// The process id (also its process group id).
    pub fn id(&self) -> u32 {
        self.pid as u32
    }

    /// Wait for the process to exit (blocking) and reap it.
    pub fn wait(&mut self) -> io::Result<ExitStatus> {
        if let Some(st) = self.status {
            return Ok(st);
        }
        let mut status = 0;
        loop {
            // SAFETY: waitpid on our own, not yet reaped child.
            let rc = unsafe { libc::waitpid(self.pid, &mut status, 0) };
            if rc == self.pid {
                let st = ExitStatus::from_raw(status);
                self.status = Some(st);
                return Ok(st);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    /// Wait for the process to exit and reap it, without holding a thread:
    /// a pidfd (Linux 5.3) becomes readable when the process exits, and the
    /// reactor wakes this task then. Where pidfds are missing, a blocking
    /// thread waits instead.
    pub async fn wait_async(mut self) -> io::Result<ExitStatus> {
        if self.status.is_some() {
            return self.wait();
        }
        // SAFETY: the AsyncFd owns the OwnedFd, which stays open and the same
        // until the AsyncFd is dropped.
        let registered = pidfd_open(self.pid).and_then(|fd| unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE).ok()
        });
        if let Some(fd) = registered
            && fd.readable().await.is_ok()
        {
            // exited: reaping does not block
            let status = self.wait();
            if let Some(ns) = self.mount_ns.take() {
                // the last close tears the namespace down: not on this task
                drop(tokio::task::spawn_blocking(move || drop(ns)));
            }
            return status;
        }
        tokio::task::spawn_blocking(move || self.wait())
            .await
            .map_err(io::Error::other)?
    }

    /// SIGKILL the process (not its group), unless it has been reaped.
    pub fn kill(&mut self) -> io::Result<()> {
        if self.status.is_some() {
            return Ok(());
        }
        // SAFETY: kill(2) of our unreaped child: its pid cannot have been reused.
        if unsafe { libc::kill(self.pid, libc::SIGKILL) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// A started child and its pipes.
pub struct Spawned {
    pub child: SandboxChild,
}

/// Everything `exec` needs, allocated before the clone.
struct ExecPlan {
    /// Paths to try in order (the `PATH` search of `execvp`, done inside the root).
    candidates: Vec<CString>,
    /// Owns the strings `argv` points into.
    _args: Vec<CString>,
    argv: Vec<*const libc::c_char>,
    /// `/bin/sh <candidate> args…` for a file without a `#!` line (`ENOEXEC`), as `execvp` does.
    sh_argv: Vec<*const libc::c_char>,
    _env: Vec<CString>,
    envp: Vec<*const libc::c_char>,
}

impl ExecPlan {
    fn new(req: &SpawnRequest) -> io::Result<ExecPlan> {
        // Like `Command::env_clear().envs(…)`: the last value of a name wins.
        let mut env: Vec<CString> = Vec::new();
        let mut names: Vec<&str> = Vec::new();
        for (k, v) in req.env.iter().rev() {
            if names.contains(&k.as_str()) {
                continue;
            }
            names.push(k);
            env.push(cstr(format!("{k}={v}"))?);
        }
        env.reverse();
        let path = req
            .env
            .iter()
            .rev()
            .find(|(k, _)| k == "PATH")
            .map_or("/bin:/usr/bin", |(_, v)| v.as_str());
        let prog = &req.argv[0];
        let candidates = if prog.contains('/') {
            vec![cstr(prog)?]
        } else {
            path.split(':')
                .map(|d| cstr(format!("{}/{prog}", if d.is_empty() { "." } else { d })))
                .collect::<io::Result<_>>()?
        };
        let args: Vec<CString> = req.argv.iter().map(cstr).collect::<io::Result<_>>()?;
        let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
        argv.push(std::ptr::null());
        let mut sh_argv = vec![c"/bin/sh".as_ptr(), std::ptr::null()];
        sh_argv.extend(args[1..].iter().map(|a| a.as_ptr()));
        sh_argv.push(std::ptr::null());
        let mut envp: Vec<*const libc::c_char> = env.iter().map(|e| e.as_ptr()).collect();
        envp.push(std::ptr::null());
        Ok(ExecPlan {
            candidates,
            _args: args,
            argv,
            sh_argv,
            _env: env,
            envp,
        })
    }
}

/// What the cloned child gets: all pointers into memory the parent keeps alive
/// (the parent is suspended until the child execs or exits: `CLONE_VFORK`).
struct ChildArgs<'a> {
    prepared: &'a Prepared,
    exec: &'a mut ExecPlan,
    stdin: i32,
    stdout: i32,
    stderr: i32,
    err_fd: i32,
}

/// `dup2` that also works when `fd` already is `to` (then only clears `FD_CLOEXEC`).
///
/// SAFETY: async-signal-safe syscalls only.
unsafe fn install_fd(fd: i32, to: i32) -> bool {
    // SAFETY: plain fd syscalls.
    unsafe {
        if fd == to {
            libc::fcntl(fd, libc::F_SETFD, 0) == 0
        } else {
            libc::dup2(fd, to) == to
        }
    }
}

/// The cloned child: raw syscalls only, on memory prepared by the parent.
/// Reports a failure as `errno` (4 bytes) and the stage, then exits 127.
extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the `ChildArgs` the parent passed and keeps alive.
    let a = unsafe { &mut *(arg as *mut ChildArgs<'_>) };
    let report = |(what, errno): Failure| -> libc::c_int {
        // SAFETY: write(2)/_exit(2) are async-signal-safe.
        unsafe {
            let e = errno.to_ne_bytes();
            libc::write(a.err_fd, e.as_ptr().cast(), e.len());
            libc::write(a.err_fd, what.as_ptr().cast(), what.len());
            libc::_exit(127)
        }
    };
    // SAFETY (block): async-signal-safe syscalls on prepared data.
    unsafe {
        // Handlers are the parent's code in shared memory: back to defaults
        // (signals stay blocked until just before exec, as the parent blocked them).
        for sig in 1..libc::SIGRTMAX() {
            if sig == libc::SIGKILL || sig == libc::SIGSTOP {
                continue;
            }
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(sig, std::ptr::null(), &mut old) == 0
                && (old.sa_sigaction != libc::SIG_DFL && old.sa_sigaction != libc::SIG_IGN
                    || sig == libc::SIGPIPE)
            {
                let mut dfl: libc::sigaction = std::mem::zeroed();
                dfl.sa_sigaction = libc::SIG_DFL;
                libc::sigaction(sig, &dfl, std::ptr::null_mut());
            }
        }
        if !install_fd(a.stdin, 0) || !install_fd(a.stdout, 1) || !install_fd(a.stderr, 2) {
            return report(fail(b"set up stdin/stdout/stderr"));
        }
        if let Err(f) = child_setup(a.prepared) {
            return report(f);
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::pthread_sigmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        let mut errno = libc::ENOENT;
        let mut saw_eacces = false;
        for c in &a.exec.candidates {
            libc::execve(c.as_ptr(), a.exec.argv.as_ptr(), a.exec.envp.as_ptr());
            let e = io::Error::last_os_error().raw_os_error().unwrap_or(0);
            match e {
                libc::ENOEXEC => {
                    a.exec.sh_argv[1] = c.as_ptr();
                    libc::execve(
                        a.exec.sh_argv[0],
                        a.exec.sh_argv.as_ptr(),
                        a.exec.envp.as_ptr(),
                    );
                    errno = io::Error::last_os_error().raw_os_error().unwrap_or(0);
                    break;
                }
                libc::EACCES => saw_eacces = true,
                libc::ENOENT | libc::ENOTDIR | libc::ESTALE | libc::ENODEV | libc::ETIMEDOUT => {}
                other => {
                    errno = other;
                    break;
                }
            }
            errno = e;
        }
        if saw_eacces && errno != libc::E2BIG {
            errno = libc::EACCES;
        }
        report((b"", errno))
    }
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0i32; 2];
    // SAFETY: valid out-array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh fds we own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Stack of the cloned child while it sets up; free again once the clone returns.
struct ChildStack {
    base: *mut libc::c_void,
    len: usize,
}

impl ChildStack {
    const LEN: usize = 256 * 1024;

    fn new() -> io::Result<ChildStack> {
        // SAFETY: anonymous private mapping; the lowest page becomes a guard page.
        unsafe {
            let base = libc::mmap(
                std::ptr::null_mut(),
                Self::LEN,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            );
            if base == libc::MAP_FAILED {
                return Err(io::Error::last_os_error());
            }
            libc::mprotect(base, 4096, libc::PROT_NONE);
            Ok(ChildStack {
                base,
                len: Self::LEN,
            })
        }
    }

    fn top(&self) -> *mut libc::c_void {
        // 16-byte aligned: the mapping is page aligned and LEN a multiple of 16.
        // SAFETY: one past the end of our mapping.
        unsafe { self.base.cast::<u8>().add(self.len).cast() }
    }
}

impl Drop for ChildStack {
    fn drop(&mut self) {
        // SAFETY: our mapping; the child has exec'd or exited.
        unsafe { libc::munmap(self.base, self.len) };
    }
}

/// Held shared while files that a step may execute are open for writing in
/// the host (the step root's scripts and emulated images), exclusively around
/// the `clone` of a step process.
///
/// A child holds a copy of every descriptor the engine had open when it was
/// cloned until it execs (close-on-exec closes them only then), and its
/// sandbox set-up takes milliseconds. Without this lock, a script being
/// written for one step while another step's child is being set up stays
/// "open for writing" in that child, and the first step's `exec` of it fails
/// with ETXTBSY ("Text file busy", exit code 126 from `sh`) — seen under load
/// in the containerSet conformance file. `CLONE_VFORK` makes the clone return
/// only after the child has exec'd, so holding the lock across it covers the
/// whole window.
static EXEC_FILES: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// Hold while writing files a step may execute (see [`EXEC_FILES`]).
pub fn writing_exec_files() -> std::sync::RwLockReadGuard<'static, ()> {
    EXEC_FILES.read().unwrap_or_else(|e| e.into_inner())
}

/// Spawn `req` in a sandbox, on the calling thread. Errors say which stage failed.
///
/// The child is made with `clone(CLONE_VM | CLONE_VFORK)`, as `posix_spawn`
/// does: no copy of the engine's page tables, and no copy-on-write faults in
/// the engine afterwards (with `fork` both cost more than the step itself).
/// The child only makes raw syscalls on memory prepared here, and this thread
/// is suspended until the child has exec'd or exited.
pub fn spawn_sandboxed(req: &SpawnRequest) -> Result<Spawned, String> {
    let setup = |what: &str, e: io::Error| format!("sandbox could not be set up: {what}: {e}");
    if req.argv.is_empty() {
        return Err("could not start a process: empty argv".into());
    }
    let (err_r, err_w) = pipe().map_err(|e| setup("pipe", e))?;
    let (out_r, out_w) = pipe().map_err(|e| setup("pipe", e))?;
    let (errout_r, errout_w) = pipe().map_err(|e| setup("pipe", e))?;
    static DEVNULL: std::sync::OnceLock<OwnedFd> = std::sync::OnceLock::new();
    let devnull = match DEVNULL.get() {
        Some(fd) => fd,
        None => {
            let fd = std::fs::File::open("/dev/null").map_err(|e| setup("/dev/null", e))?;
            DEVNULL.get_or_init(|| fd.into())
        }
    };
    // Layers are overlays mounted per step: those steps make their own namespace.
    let shared = req.layers.is_none() && super::shared_ns::ready(&req.root);
    let prepared = prepare(req, shared).map_err(|e| format!("sandbox could not be set up: {e}"))?;
    let mut exec =
        ExecPlan::new(req).map_err(|e| format!("could not start `{}`: {e}", req.argv[0]))?;
    // One stack per spawning thread, reused: `CLONE_VFORK` returns only once
    // the child has exec'd or exited, so nothing uses it between spawns (and
    // unmapping it after every spawn cost a TLB shootdown on every core).
    thread_local! {
        static STACK: std::cell::RefCell<Option<ChildStack>> = const { std::cell::RefCell::new(None) };
    }
    let stack = match STACK.with(|s| s.borrow_mut().take()) {
        Some(s) => s,
        None => ChildStack::new().map_err(|e| setup("child stack", e))?,
    };
    let mut args = ChildArgs {
        prepared: &prepared,
        exec: &mut exec,
        stdin: devnull.as_raw_fd(),
        stdout: out_w.as_raw_fd(),
        stderr: errout_w.as_raw_fd(),
        err_fd: err_w.as_raw_fd(),
    };
    // Block every signal around the clone so that no handler runs in the child
    // before it has reset them (the child unblocks just before exec).
    // SAFETY: sigset out-parameters; clone with a private stack and arguments
    // that outlive the child's use of them (CLONE_VFORK).
    let no_writers = EXEC_FILES.write().unwrap_or_else(|e| e.into_inner());
    let pid = unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        let pid = libc::clone(
            child_main,
            stack.top(),
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            (&mut args as *mut ChildArgs<'_>).cast(),
        );
        let clone_err = io::Error::last_os_error();
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        if pid < 0 {
            return Err(setup("clone", clone_err));
        }
        pid
    };
    drop(no_writers);
    STACK.with(|s| *s.borrow_mut() = Some(stack));
    drop((err_w, out_w, errout_w));
    let mut buf = [0u8; 512];
    let mut n = 0;
    loop {
        // SAFETY: reading into a local buffer.
        let r = unsafe {
            libc::read(
                err_r.as_raw_fd(),
                buf[n..].as_mut_ptr().cast(),
                buf.len() - n,
            )
        };
        if r > 0 {
            n += r as usize;
            continue;
        }
        if r < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
            continue;
        }
        break;
    }
    let mut child = SandboxChild {
        pid,
        stdout: Some(ChildStdout::from(out_r)),
        stderr: Some(ChildStderr::from(errout_r)),
        status: None,
        mount_ns: None,
    };
    if n == 0 {
        // Not with layers: `layers::finish` edits the overlay's upper
        // directories, which needs the overlay unmounted (its namespace gone).
        if req.layers.is_none() && !shared {
            child.mount_ns = hold_mount_ns(pid);
        }
        return Ok(Spawned { child });
    }
    // The child failed before exec and exited: reap it, report the stage.
    let _ = child.wait();
    let errno = if n >= 4 {
        i32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]])
    } else {
        0
    };
    let e = io::Error::from_raw_os_error(errno);
    let stage = String::from_utf8_lossy(&buf[4.min(n)..n]);
    if stage.is_empty() {
        Err(format!("could not start `{}`: {e}", req.argv[0]))
    } else {
        Err(format!("sandbox could not be set up: {stage}: {e}"))
    }
}

/// Spawn without any sandbox (for measuring the sandbox's cost).
pub fn spawn_bare(argv: &[String]) -> io::Result<Child> {
    Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
}

enum Job {
    Spawn(SpawnRequest, oneshot::Sender<Result<Spawned, String>>),
    /// Mount these step roots in the shared namespace ahead of their steps.
    Warm(Vec<PathBuf>),
}

/// A dedicated, long-lived thread that forks every step process, so that
/// `PR_SET_PDEATHSIG` ties steps to the engine process rather than to a
/// short-lived worker thread.
#[derive(Clone)]
pub struct Spawner {
    tx: mpsc::Sender<Job>,
}

impl Spawner {
    /// Start the spawner thread. With `shared`, as root, it moves into a
    /// mount namespace of its own where the roots under `work_dir` keep their
    /// mounts between steps ([`super::shared_ns`]); only for recycled roots
    /// (kept step directories would pile their mounts up there).
    pub fn start(work_dir: &Path, shared: bool) -> Spawner {
        let (tx, rx) = mpsc::channel::<Job>();
        let work_dir = work_dir.to_path_buf();
        std::thread::Builder::new()
            .name("weft-spawner".into())
            .spawn(move || {
                if shared {
                    super::shared_ns::install(&work_dir);
                }
                empty_own_bounding_set();
                for job in rx {
                    match job {
                        Job::Spawn(req, reply) => {
                            let _ = reply.send(spawn_sandboxed(&req));
                        }
                        Job::Warm(roots) => {
                            for root in roots {
                                super::shared_ns::ready(&root);
                            }
                        }
                    }
                }
            })
            .expect("start the spawner thread");
        Spawner { tx }
    }

    /// Mount `roots` (recycled step roots the next steps will take) before
    /// any step asks for them, while the engine is still starting.
    pub fn warm(&self, roots: Vec<PathBuf>) {
        let _ = self.tx.send(Job::Warm(roots));
    }

    /// Spawn on the spawner thread.
    pub async fn spawn(&self, req: SpawnRequest) -> Result<Spawned, String> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Job::Spawn(req, reply))
            .map_err(|_| "the spawner thread is gone".to_string())?;
        rx.await
            .map_err(|_| "the spawner thread is gone".to_string())?
    }
}
