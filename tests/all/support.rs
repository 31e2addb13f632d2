//! Helpers: run the `weft` binary against a private WEFT_HOME.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

pub fn weft_bin() -> &'static str {
    env!("CARGO_BIN_EXE_weft")
}

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A private engine home (store, caches, step dirs) for one test.
pub struct Home {
    pub dir: tempfile::TempDir,
}

impl Home {
    pub fn new() -> Home {
        Home {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(weft_bin());
        c.env("WEFT_HOME", self.path());
        c.env_remove("WEFT_CONFIG");
        c.env_remove("WEFT_STORE_URL");
        // Compiled plugins are cached per machine, not per test home.
        c.env("WEFT_CACHE_DIR", repo().join("target/weft-test-cache"));
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("weft runs")
    }

    /// Write a workflow file into the home and return its path.
    pub fn file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path().join(name);
        std::fs::write(&p, text).expect("write");
        p
    }
}

/// `weft run` the workflow `yaml` (written to `name` in the home) with `-o json`:
/// (exit code, the workflow JSON). Invalid input (exit 2) fails the test.
pub fn run_file(home: &Home, name: &str, yaml: &str) -> (Option<i32>, serde_json::Value) {
    let f = home.file(name, yaml);
    let out = home.run(&["run", f.to_str().unwrap(), "-o", "json"]);
    let code = out.status.code();
    assert!(code != Some(2), "invalid input: {}", stderr(&out));
    (code, json(&out))
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\nstderr: {}", stdout(o), stderr(o)))
}

/// Start `weft server` on a free loopback port from `cmd` (a [`Home::cmd`] with
/// any extra environment); the child and the base URL from its first line.
pub fn spawn_server(
    mut cmd: std::process::Command,
    stderr: std::process::Stdio,
) -> (std::process::Child, String) {
    use std::io::BufRead;
    let mut child = cmd
        .args(["server", "--addr", "127.0.0.1:0"])
        .env_remove("WEFT_SERVER")
        .stdout(std::process::Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("weft server starts");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().expect("piped stdout"))
        .read_line(&mut line)
        .expect("server's first line");
    let url = line
        .trim()
        .strip_prefix("weft server listening on ")
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
        .to_string();
    (child, url)
}

/// An S3-compatible server (`s3s-fs`, in-process, on its own runtime thread)
/// on 127.0.0.1 with one key pair; a bucket is a directory under `dir`. The
/// bucket `weft` exists. Stops when dropped.
pub struct S3Server {
    pub addr: std::net::SocketAddr,
    pub dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

pub const S3_ACCESS_KEY: &str = "weft-test-access";
pub const S3_SECRET_KEY: &str = "weft-test-secret-0123456789";

impl S3Server {
    pub fn start() -> S3Server {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("weft")).unwrap();
        let root = dir.path().to_path_buf();
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let fs = s3s_fs::FileSystem::new(&root).expect("s3s-fs root");
                let mut b = s3s::service::S3ServiceBuilder::new(fs);
                b.set_auth(s3s::auth::SimpleAuth::from_single(
                    S3_ACCESS_KEY,
                    S3_SECRET_KEY,
                ));
                let svc = b.build();
                let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(l.local_addr().unwrap()).unwrap();
                let accept = async {
                    while let Ok((sock, _)) = l.accept().await {
                        let svc = svc.clone();
                        tokio::spawn(async move {
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(hyper_util::rt::TokioIo::new(sock), svc)
                                .await;
                        });
                    }
                };
                tokio::select! {
                    _ = accept => {}
                    _ = stopped => {}
                }
            });
        });
        let addr = rx.recv().expect("S3 server starts");
        S3Server {
            addr,
            dir,
            _stop: stop,
        }
    }

    /// The directory of `bucket` (objects are files below it).
    pub fn bucket(&self, bucket: &str) -> PathBuf {
        self.dir.path().join(bucket)
    }

    /// The repository options of bucket `weft` (key prefix `prefix`).
    pub fn options(&self, prefix: &str, secret: &str) -> weft_drivers::artifacts::S3Options {
        weft_drivers::artifacts::S3Options {
            endpoint: Some(self.addr.to_string()),
            bucket: "weft".into(),
            key_prefix: prefix.into(),
            insecure: true,
            access_key: Some(S3_ACCESS_KEY.into()),
            secret_key: Some(weft_drivers::artifacts::Secret(secret.into())),
            ..Default::default()
        }
    }

    /// A weft.toml `[artifacts.default]` for bucket `weft`, signing with `secret`.
    pub fn toml(&self, secret: &str) -> String {
        format!(
            "[artifacts.default]\ns3 = {{ endpoint = \"{}\", bucket = \"weft\", insecure = true, key_prefix = \"runs\", access_key = \"{S3_ACCESS_KEY}\", secret_key = \"{secret}\" }}\n",
            self.addr
        )
    }
}

/// The node of a Workflow (Argo JSON) whose displayName is `step`.
pub fn node<'a>(wf: &'a serde_json::Value, step: &str) -> &'a serde_json::Value {
    wf["status"]["nodes"]
        .as_object()
        .unwrap()
        .values()
        .find(|n| n["displayName"] == step)
        .unwrap_or_else(|| panic!("no node {step}: {wf:#}"))
}

/// Held by tests that must not overlap: the 10,000-watcher test loads both
/// cores for ~20 s, and the replica tests use 3 s leases that such a load can
/// starve (a replica stalled past its lease loses its workflows, and its
/// steps run again elsewhere, which those tests count as a failure).
pub fn exclusive() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// How [`install_pinned`] installs a tool pinned to one version.
pub enum Pinned<'a> {
    /// A Python venv made in place (scripts in a venv name its path, so it
    /// cannot be moved; a half-made one is removed first), then
    /// `python -m pip install <args>` into it.
    Pip(&'a [&'a str]),
    /// `npm install <packages>` (exact versions) in a scratch directory beside
    /// the tool's, renamed into place: a killed install leaves no half directory.
    Npm(&'a [&'a str]),
}

/// Install a pinned test tool into `dir` (under `target/`, named by its
/// version) unless `ready`, a file the finished install has, exists. Err: the
/// command that failed, with its output. Callers that run in parallel hold a
/// lock around it.
pub fn install_pinned(dir: &Path, ready: &Path, how: Pinned) -> Result<(), String> {
    if ready.is_file() {
        return Ok(());
    }
    let run = |cmd: &mut Command, what: &str| {
        let out = cmd
            .output()
            .map_err(|e| format!("{what}: cannot start: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{what} failed ({}):\n{}\n{}",
                out.status,
                stdout(&out),
                stderr(&out)
            ))
        }
    };
    let t0 = std::time::Instant::now();
    match how {
        Pinned::Pip(args) => {
            let _ = std::fs::remove_dir_all(dir);
            run(
                Command::new("python3").arg("-m").arg("venv").arg(dir),
                "python3 -m venv",
            )?;
            run(
                Command::new(dir.join("bin/python"))
                    .args(["-m", "pip", "install", "--quiet"])
                    .arg("--disable-pip-version-check")
                    .args(args),
                &format!("pip install {}", args.join(" ")),
            )?;
        }
        Pinned::Npm(packages) => {
            let name = dir.file_name().unwrap().to_string_lossy();
            let tmp = dir.with_file_name(format!(".{name}-install-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&tmp);
            std::fs::create_dir_all(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
            std::fs::write(
                tmp.join("package.json"),
                "{\"private\": true, \"description\": \"weft test tools (tests/all)\"}\n",
            )
            .map_err(|e| format!("{}: {e}", tmp.display()))?;
            run(
                Command::new("npm")
                    .current_dir(&tmp)
                    .args(["install", "--no-audit", "--no-fund", "--save-exact"])
                    .args(packages),
                &format!("npm install {}", packages.join(" ")),
            )?;
            let _ = std::fs::remove_dir_all(dir);
            std::fs::rename(&tmp, dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
    }
    eprintln!(
        "tests: installed {} in {:.1} s",
        dir.display(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

/// An https server on 127.0.0.1 (rustls; its certificate, for the IP
/// 127.0.0.1, issued by a CA made here): `/ok` → 200 `hello over tls`, else
/// 404. With `client_auth`, only clients presenting a certificate issued by
/// that CA get through the handshake (one is made for the test). Lives until
/// the test process exits.
pub struct TlsServer {
    pub port: u16,
    /// The CA's certificate (PEM).
    pub ca_pem: String,
    /// TCP connections accepted.
    pub accepted: Arc<AtomicUsize>,
    /// With `client_auth`: a client certificate and its key (PEM) the server accepts.
    pub client: Option<(String, String)>,
}

pub fn serve_tls(client_auth: bool) -> TlsServer {
    use tokio_rustls::rustls;
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "weft test CA");
    ca.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let ca = rcgen::CertifiedIssuer::self_signed(ca, rcgen::KeyPair::generate().unwrap()).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let (builder, client) = if client_auth {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.der().clone()).unwrap();
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .unwrap();
        let client_key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "weft test client");
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let client_cert = params.signed_by(&client_key, &ca).unwrap();
        (
            builder.with_client_cert_verifier(verifier),
            Some((client_cert.pem(), client_key.serialize_pem())),
        )
    } else {
        (builder.with_no_client_auth(), None)
    };
    let config = builder
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    serve_in_background(l, move |l| async move {
        while let Ok((sock, _)) = l.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(sock).await else {
                    return; // e.g. a client that does not trust the CA, or has no certificate
                };
                let svc = hyper::service::service_fn(|req: hyper::Request<_>| async move {
                    let _: &hyper::body::Incoming = req.body();
                    let (status, body) = match req.uri().path() {
                        "/ok" => (200, "hello over tls"),
                        _ => (404, "no such thing"),
                    };
                    Ok::<_, std::convert::Infallible>(
                        hyper::Response::builder()
                            .status(status)
                            .header("content-type", "text/plain")
                            .body(http_body_util::Full::new(bytes::Bytes::from(body)))
                            .unwrap(),
                    )
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    TlsServer {
        port,
        ca_pem: ca.pem(),
        accepted,
        client,
    }
}

/// Serve `l` with `serve` on a thread of its own, on a current-thread tokio
/// runtime; it lives until the test process exits.
pub fn serve_in_background<F, Fut>(l: std::net::TcpListener, serve: F)
where
    F: FnOnce(tokio::net::TcpListener) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    l.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move { serve(tokio::net::TcpListener::from_std(l).unwrap()).await });
    });
}
