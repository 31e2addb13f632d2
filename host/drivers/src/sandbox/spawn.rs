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
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
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
/// Directories created in every step root before spawn.
pub const ROOT_DIRS: &[&str] = &[
    "usr", "etc", "opt", "dev", "proc", "tmp", "root", "mnt", "run", "var/tmp",
];

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
    what: &'static [u8],
}

/// All state the child needs, allocated before fork.
struct Prepared {
    user_ns: Option<(CString, CString, CString, CString, CString, CString)>,
    mounts: Vec<Mount>,
    dev_files: Vec<CString>,
    dev_links: Vec<(CString, CString)>,
    root: CString,
    workdir: CString,
    hostname: CString,
    err_fd: i32,
}

fn cstr(p: impl AsRef<[u8]>) -> io::Result<CString> {
    CString::new(p.as_ref().to_vec()).map_err(|_| io::Error::other("path contains NUL"))
}

fn path_c(p: &Path) -> io::Result<CString> {
    use std::os::unix::ffi::OsStrExt;
    cstr(p.as_os_str().as_bytes())
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

fn prepare(req: &SpawnRequest, err_fd: i32) -> io::Result<Prepared> {
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
    let mut mounts = Vec::new();
    for src in RO_BINDS {
        let src_p = Path::new(src);
        if !src_p.is_dir() {
            continue;
        }
        mounts.push(Mount {
            src: Some(path_c(src_p)?),
            dst: path_c(&root.join(&src[1..]))?,
            fstype: None,
            flags: libc::MS_BIND | libc::MS_REC,
            data: None,
            remount_ro: Some(locked_flags(src_p)),
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
        what: b"mount tmpfs on /dev",
    });
    let mut dev_files = Vec::new();
    for d in DEVICES {
        let host = Path::new("/dev").join(d);
        if !host.exists() {
            continue;
        }
        let dst = path_c(&root.join("dev").join(d))?;
        dev_files.push(dst.clone());
        mounts.push(Mount {
            src: Some(path_c(&host)?),
            dst,
            fstype: None,
            flags: libc::MS_BIND,
            data: None,
            remount_ro: None,
            what: b"bind-mount a device",
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
        remount_ro: Some(locked_flags(Path::new("/proc"))),
        what: b"bind-mount /proc",
    });
    let mut hostname = req.hostname.clone();
    hostname.truncate(63);
    Ok(Prepared {
        user_ns,
        mounts,
        dev_files,
        dev_links,
        root: path_c(root)?,
        workdir: cstr(&req.working_dir)?,
        hostname: cstr(hostname)?,
        err_fd,
    })
}

/// Report a failed stage to the parent through the error pipe and return errno.
fn fail(p: &Prepared, what: &[u8]) -> io::Error {
    let err = io::Error::last_os_error();
    // SAFETY: write(2) on an fd we own; async-signal-safe.
    unsafe {
        libc::write(p.err_fd, what.as_ptr().cast(), what.len());
    }
    err
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

/// Runs in the child between fork and exec: raw syscalls only, no allocation.
fn child_setup(p: &Prepared) -> io::Result<()> {
    // SAFETY (whole function): only async-signal-safe libc calls on pointers
    // prepared before fork.
    unsafe {
        let mut flags = libc::CLONE_NEWNS | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS;
        if p.user_ns.is_some() {
            flags |= libc::CLONE_NEWUSER;
        }
        if libc::unshare(flags) != 0 {
            return Err(fail(
                p,
                b"unshare namespaces (are user/mount namespaces permitted here?)",
            ));
        }
        if let Some((sg, deny, um, umap, gm, gmap)) = &p.user_ns
            && (!write_file(sg, deny) || !write_file(um, umap) || !write_file(gm, gmap))
        {
            return Err(fail(p, b"write uid_map/gid_map of the user namespace"));
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
            return Err(fail(p, b"make / rprivate"));
        }
        let mut dev_i = 0;
        for m in &p.mounts {
            // Device binds need an empty file to mount on, inside the fresh /dev tmpfs.
            if dev_i < p.dev_files.len() && m.dst.as_bytes() == p.dev_files[dev_i].as_bytes() {
                let fd = libc::open(
                    m.dst.as_ptr(),
                    libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC,
                    0o666,
                );
                if fd >= 0 {
                    libc::close(fd);
                }
                dev_i += 1;
            }
            let src = m.src.as_ref().map_or(none, |s| s.as_ptr());
            let fs = m.fstype.as_ref().map_or(none, |s| s.as_ptr());
            let data = m
                .data
                .as_ref()
                .map_or(std::ptr::null(), |s| s.as_ptr().cast());
            if libc::mount(src, m.dst.as_ptr(), fs, m.flags, data) != 0 {
                return Err(fail(p, m.what));
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
                return Err(fail(p, b"remount a bind mount read-only"));
            }
            if m.fstype.is_some() {
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
        let h = p.hostname.as_bytes();
        libc::sethostname(h.as_ptr().cast(), h.len());
        if libc::chroot(p.root.as_ptr()) != 0 {
            return Err(fail(p, b"chroot into the step root"));
        }
        if libc::chdir(p.workdir.as_ptr()) != 0 {
            return Err(fail(p, b"chdir to the working directory"));
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
            return Err(fail(p, b"set PR_SET_PDEATHSIG"));
        }
        // Drop every capability: bounding set, then effective/permitted/inheritable, ambient.
        for cap in 0..=63 {
            if libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) != 0
                && io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL)
            {
                break;
            }
        }
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        );
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            return Err(fail(p, b"set no-new-privs"));
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
            return Err(fail(p, b"drop capabilities"));
        }
        libc::close(p.err_fd);
    }
    Ok(())
}

/// A started child and its pipes.
pub struct Spawned {
    pub child: Child,
}

/// Spawn `req` in a sandbox, on the calling thread. Errors say which stage failed.
pub fn spawn_sandboxed(req: &SpawnRequest) -> Result<Spawned, String> {
    let mut fds = [0i32; 2];
    // SAFETY: valid out-array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(format!(
            "sandbox could not be set up: pipe: {}",
            io::Error::last_os_error()
        ));
    }
    // SAFETY: fresh fds we own.
    let (err_r, err_w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let prepared =
        prepare(req, err_w.as_raw_fd()).map_err(|e| format!("sandbox could not be set up: {e}"))?;
    let mut cmd = Command::new(&req.argv[0]);
    cmd.args(&req.argv[1..])
        .env_clear()
        .envs(req.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: child_setup only makes async-signal-safe calls on pre-allocated data.
    unsafe {
        cmd.pre_exec(move || child_setup(&prepared));
    }
    let res = cmd.spawn();
    drop(err_w);
    match res {
        Ok(child) => Ok(Spawned { child }),
        Err(e) => {
            let mut buf = [0u8; 512];
            // SAFETY: reading into a local buffer.
            let n = unsafe { libc::read(err_r.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n > 0 {
                let stage = String::from_utf8_lossy(&buf[..n as usize]);
                Err(format!("sandbox could not be set up: {stage}: {e}"))
            } else {
                Err(format!("could not start `{}`: {e}", req.argv[0]))
            }
        }
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

type Job = (SpawnRequest, oneshot::Sender<Result<Spawned, String>>);

/// A dedicated, long-lived thread that forks every step process, so that
/// `PR_SET_PDEATHSIG` ties steps to the engine process rather than to a
/// short-lived worker thread.
#[derive(Clone)]
pub struct Spawner {
    tx: mpsc::Sender<Job>,
}

impl Spawner {
    /// Start the spawner thread.
    pub fn start() -> Spawner {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("weft-spawner".into())
            .spawn(move || {
                for (req, reply) in rx {
                    let _ = reply.send(spawn_sandboxed(&req));
                }
            })
            .expect("start the spawner thread");
        Spawner { tx }
    }

    /// Spawn on the spawner thread.
    pub async fn spawn(&self, req: SpawnRequest) -> Result<Spawned, String> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send((req, reply))
            .map_err(|_| "the spawner thread is gone".to_string())?;
        rx.await
            .map_err(|_| "the spawner thread is gone".to_string())?
    }
}
