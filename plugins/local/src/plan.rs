//! From an Argo container/script template to what to run: argv, environment,
//! working directory and the files to inject (script source, emulated entrypoints).
//!
//! Pure functions over JSON, so the Argo rules are testable without a host.

use serde_json::Value;

/// Where Argo puts a script template's source.
pub const SCRIPT_PATH: &str = "/argo/staging/script";
/// Where the emulated image tools live inside the step's root (last on `PATH`).
pub const EMULATION_BIN: &str = "/.weft/bin";
/// The default `PATH` of a step.
pub const DEFAULT_PATH: &str =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/.weft/bin";

const ARGOSAY: &[u8] = include_bytes!("../emulation/argosay");
const COWSAY: &[u8] = include_bytes!("../emulation/cowsay");
const PYTHON_SHIM: &[u8] = include_bytes!("../emulation/python");

/// A file to write into the step's root before it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct File {
    pub path: String,
    pub contents: Vec<u8>,
    pub mode: u32,
}

/// What to run.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub working_dir: Option<String>,
    pub files: Vec<File>,
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(|v| v.as_array())
        .map(|a| {
            a.iter()
                .map(|s| match s {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The image's repository without registry host, tag or digest: `docker.io/library/python:3` → `python`.
fn image_repo(image: &str) -> String {
    let no_digest = image.split('@').next().unwrap_or(image);
    let last_slash = no_digest.rfind('/').map(|i| i + 1).unwrap_or(0);
    let no_tag = match no_digest[last_slash..].find(':') {
        Some(i) => &no_digest[..last_slash + i],
        None => no_digest,
    };
    no_tag
        .trim_start_matches("docker.io/")
        .trim_start_matches("library/")
        .to_string()
}

fn image_tag(image: &str) -> &str {
    let no_digest = image.split('@').next().unwrap_or(image);
    let last = no_digest.rsplit('/').next().unwrap_or(no_digest);
    last.split_once(':').map(|(_, t)| t).unwrap_or("latest")
}

/// How an image's entrypoint is emulated when the template sets no `command`.
#[derive(Debug, Clone, PartialEq)]
enum Entrypoint {
    /// `ENTRYPOINT` is this argv; `args` are appended.
    Fixed(Vec<String>),
    /// No `ENTRYPOINT`: `args` are the command; without args run this default `CMD`.
    Cmd(Vec<String>),
}

fn entrypoint(image: &str) -> Option<Entrypoint> {
    let repo = image_repo(image);
    let tag = image_tag(image);
    let last = repo.rsplit('/').next().unwrap_or(&repo);
    let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    match repo.as_str() {
        "argoproj/argosay" if tag.starts_with("v1") => Some(Entrypoint::Fixed(s(&["cowsay"]))),
        "argoproj/argosay" => Some(Entrypoint::Fixed(s(&["/argosay"]))),
        "docker/whalesay" => Some(Entrypoint::Fixed(s(&["cowsay"]))),
        _ if last.starts_with("python") || last.starts_with("pypy") => {
            Some(Entrypoint::Cmd(s(&["python3"])))
        }
        "busybox" | "alpine" => Some(Entrypoint::Cmd(s(&["sh"]))),
        "debian" | "ubuntu" | "bash" | "golang" | "centos" | "fedora" | "node" => {
            Some(Entrypoint::Cmd(s(&["bash"])))
        }
        _ => None,
    }
}

/// Which emulated tools an image brings along (on `PATH` in `/.weft/bin`).
struct Tools {
    cowsay: bool,
    python: bool,
}

/// An image known to lack a tool does not get its emulation, as in Argo, where
/// `busybox` has no `python` and `alpine` no `cowsay`; an image this driver does
/// not know may have either and gets both. (Each emulated file is also an inode
/// created and deleted per step: for `busybox` steps that was most of the
/// sandbox's filesystem cost.)
fn image_tools(image: &str) -> Tools {
    let repo = image_repo(image);
    let last = repo.rsplit('/').next().unwrap_or(&repo);
    let cowsay_image = repo == "docker/whalesay"
        || (repo == "argoproj/argosay" && image_tag(image).starts_with("v1"));
    let python_image = last.starts_with("python") || last.starts_with("pypy");
    let known = cowsay_image || python_image || entrypoint(image).is_some();
    Tools {
        cowsay: cowsay_image || !known,
        python: python_image || !known,
    }
}

/// Where a containerSet's runner script goes.
pub const CONTAINER_SET_RUNNER: &str = "/.weft/container-set.sh";

/// Plan a container, script or containerSet template. `Err` is the step's Error message.
pub fn plan(template: &Value) -> Result<Plan, String> {
    if let Some(set) = template.get("containerSet") {
        return plan_container_set(set);
    }
    let (c, is_script) = if let Some(s) = template.get("script") {
        (s, true)
    } else if let Some(c) = template.get("container") {
        (c, false)
    } else {
        return Err("the local driver runs container and script templates only".into());
    };
    let image = c.get("image").and_then(|i| i.as_str()).unwrap_or("");
    let command = strings(c.get("command"));
    let args = strings(c.get("args"));
    let mut files = Vec::new();
    let tools = image_tools(image);
    if tools.cowsay {
        files.push(File {
            path: format!("{EMULATION_BIN}/cowsay"),
            contents: COWSAY.to_vec(),
            mode: 0o755,
        });
    }
    if tools.python {
        files.push(File {
            path: format!("{EMULATION_BIN}/python"),
            contents: PYTHON_SHIM.to_vec(),
            mode: 0o755,
        });
    }
    if image_repo(image) == "argoproj/argosay" {
        files.push(File {
            path: "/argosay".into(),
            contents: ARGOSAY.to_vec(),
            mode: 0o755,
        });
    }

    let argv = if is_script {
        let source = c.get("source").and_then(|s| s.as_str()).unwrap_or("");
        files.push(File {
            path: SCRIPT_PATH.into(),
            contents: source.as_bytes().to_vec(),
            mode: 0o755,
        });
        let mut argv = if !command.is_empty() {
            command
        } else {
            match entrypoint(image) {
                Some(Entrypoint::Cmd(cmd)) | Some(Entrypoint::Fixed(cmd)) => cmd,
                None => vec!["sh".into()],
            }
        };
        argv.push(SCRIPT_PATH.into());
        argv.extend(args);
        argv
    } else if !command.is_empty() {
        let mut argv = command;
        argv.extend(args);
        argv
    } else {
        match entrypoint(image) {
            Some(Entrypoint::Fixed(mut ep)) => {
                ep.extend(args);
                ep
            }
            Some(Entrypoint::Cmd(_)) if !args.is_empty() => args,
            Some(Entrypoint::Cmd(cmd)) => cmd,
            None => {
                return Err(format!(
                    "the entrypoint of image '{image}' cannot be emulated locally: set `command` in the template"
                ));
            }
        }
    };

    let mut env: Vec<(String, String)> = vec![
        ("PATH".into(), DEFAULT_PATH.into()),
        ("HOME".into(), "/root".into()),
    ];
    if let Some(list) = c.get("env").and_then(|e| e.as_array()) {
        for e in list {
            let Some(name) = e.get("name").and_then(|n| n.as_str()) else {
                continue;
            };
            let value = match e.get("value") {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            };
            env.retain(|(k, _)| k != name);
            env.push((name.to_string(), value));
        }
    }
    let working_dir = c
        .get("workingDir")
        .and_then(|w| w.as_str())
        .map(str::to_string);
    Ok(Plan {
        argv,
        env,
        working_dir,
        files,
    })
}

/// A `containerSet`: its containers run one after another in the same private
/// filesystem (Argo's containers share the pod's volumes), in dependency order
/// (declaration order among independent ones). The first failing container
/// fails the step with its exit code; later ones do not run.
///
/// Sequential rather than parallel: one process tree per step keeps the
/// driver's state, cancellation and `outputs.result` as for a container.
fn plan_container_set(set: &Value) -> Result<Plan, String> {
    let containers = set
        .get("containers")
        .and_then(|c| c.as_array())
        .filter(|c| !c.is_empty())
        .ok_or("containerSet.containers: at least one container is required")?;
    let names: Vec<String> = containers
        .iter()
        .enumerate()
        .map(|(i, c)| {
            c.get("name")
                .and_then(|n| n.as_str())
                .map(str::to_string)
                .ok_or_else(|| format!("containerSet.containers[{i}].name is required"))
        })
        .collect::<Result<_, _>>()?;
    let mut deps: Vec<Vec<usize>> = Vec::with_capacity(containers.len());
    for (i, c) in containers.iter().enumerate() {
        let mut d = Vec::new();
        for dep in strings(c.get("dependencies")) {
            let j = names.iter().position(|n| *n == dep).ok_or_else(|| {
                format!(
                    "containerSet.containers[{i}] ({}): dependency '{dep}' is not a container of this set",
                    names[i]
                )
            })?;
            d.push(j);
        }
        deps.push(d);
    }
    // Kahn's algorithm, stable in declaration order.
    let mut done = vec![false; containers.len()];
    let mut order = Vec::with_capacity(containers.len());
    while order.len() < containers.len() {
        let next = (0..containers.len())
            .find(|&i| !done[i] && deps[i].iter().all(|&j| done[j]))
            .ok_or("containerSet: the containers' dependencies form a cycle")?;
        done[next] = true;
        order.push(next);
    }
    let mut files: Vec<File> = Vec::new();
    let mut script =
        String::from("#!/bin/sh\n# weft: a containerSet, one container after another\n");
    for i in order {
        let c = plan(&serde_json::json!({ "container": containers[i] }))
            .map_err(|e| format!("containerSet container '{}': {e}", names[i]))?;
        for f in c.files {
            if !files.iter().any(|g| g.path == f.path) {
                files.push(f);
            }
        }
        let mut line = String::from("(");
        if let Some(wd) = &c.working_dir {
            line.push_str(&format!("cd {} && ", sh_quote(wd)));
        }
        line.push_str("exec env -i");
        for (k, v) in &c.env {
            line.push(' ');
            line.push_str(&sh_quote(&format!("{k}={v}")));
        }
        for a in &c.argv {
            line.push(' ');
            line.push_str(&sh_quote(a));
        }
        line.push_str(") || exit $?\n");
        script.push_str(&line);
    }
    files.push(File {
        path: CONTAINER_SET_RUNNER.into(),
        contents: script.into_bytes(),
        mode: 0o755,
    });
    Ok(Plan {
        argv: vec!["/bin/sh".into(), CONTAINER_SET_RUNNER.into()],
        env: vec![
            ("PATH".into(), DEFAULT_PATH.into()),
            ("HOME".into(), "/root".into()),
        ],
        working_dir: None,
        files,
    })
}

/// `s` as one POSIX shell word.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn argv(t: Value) -> Vec<String> {
        plan(&t).unwrap().argv
    }

    #[test]
    fn command_and_args() {
        let t = json!({"container": {"image": "alpine:3.7", "command": ["sh", "-c"], "args": ["echo hi"]}});
        assert_eq!(argv(t), ["sh", "-c", "echo hi"]);
    }

    #[test]
    fn argosay_v2_entrypoint() {
        let t = json!({"container": {"image": "argoproj/argosay:v2", "args": ["echo", "hello"]}});
        let p = plan(&t).unwrap();
        assert_eq!(p.argv, ["/argosay", "echo", "hello"]);
        assert!(p.files.iter().any(|f| f.path == "/argosay"));
    }

    #[test]
    fn whalesay_and_python_images() {
        assert_eq!(
            argv(json!({"container": {"image": "docker/whalesay", "args": ["hi"]}})),
            ["cowsay", "hi"]
        );
        assert_eq!(
            argv(json!({"container": {"image": "python:3.8-alpine"}})),
            ["python3"]
        );
        assert_eq!(
            argv(json!({"container": {"image": "busybox", "args": ["echo", "x"]}})),
            ["echo", "x"]
        );
    }

    #[test]
    fn emulated_tools_follow_the_image() {
        let tools = |image: &str| {
            let p = plan(&json!({"container": {"image": image, "command": ["true"]}})).unwrap();
            let mut names: Vec<String> = p
                .files
                .iter()
                .filter_map(|f| f.path.strip_prefix(&format!("{EMULATION_BIN}/")))
                .map(str::to_string)
                .collect();
            names.sort();
            names
        };
        assert!(tools("busybox").is_empty());
        assert!(tools("alpine:3.23").is_empty());
        assert!(tools("argoproj/argosay:v2").is_empty());
        assert_eq!(tools("docker/whalesay:latest"), ["cowsay"]);
        assert_eq!(tools("argoproj/argosay:v1"), ["cowsay"]);
        assert_eq!(tools("python:alpine3.23"), ["python"]);
        assert_eq!(tools("example.com/team/trainer:7"), ["cowsay", "python"]);
    }

    #[test]
    fn script_gets_source_file() {
        let t = json!({"script": {"image": "python:alpine3.6", "command": ["python"], "source": "print(42)"}});
        let p = plan(&t).unwrap();
        assert_eq!(p.argv, ["python", SCRIPT_PATH]);
        assert!(
            p.files
                .iter()
                .any(|f| f.path == SCRIPT_PATH && f.contents == b"print(42)")
        );
    }

    #[test]
    fn unknown_image_without_command_is_an_error() {
        let e = plan(&json!({"container": {"image": "example.com/mystery:1"}})).unwrap_err();
        assert!(e.contains("cannot be emulated locally"), "{e}");
    }

    #[test]
    fn container_set_runs_in_dependency_order() {
        let t = json!({"containerSet": {"containers": [
            {"name": "d", "image": "argoproj/argosay:v2", "dependencies": ["b", "c"]},
            {"name": "b", "image": "alpine", "command": ["sh", "-c", "echo it's b"], "dependencies": ["a"]},
            {"name": "c", "image": "argoproj/argosay:v2", "dependencies": ["a"]},
            {"name": "a", "image": "argoproj/argosay:v2", "env": [{"name": "X", "value": "1"}]},
        ]}});
        let p = plan(&t).unwrap();
        assert_eq!(p.argv, ["/bin/sh", CONTAINER_SET_RUNNER]);
        let runner = p
            .files
            .iter()
            .find(|f| f.path == CONTAINER_SET_RUNNER)
            .unwrap();
        let text = String::from_utf8(runner.contents.clone()).unwrap();
        let lines: Vec<&str> = text.lines().filter(|l| l.starts_with('(')).collect();
        assert_eq!(lines.len(), 4);
        assert!(lines[0].contains("'X=1'") && lines[0].ends_with("'/argosay') || exit $?"));
        assert!(lines[1].contains("'echo it'\\''s b'"), "{}", lines[1]);
        assert!(lines[2].ends_with("'/argosay') || exit $?"));
        assert!(p.files.iter().any(|f| f.path == "/argosay"));
    }

    #[test]
    fn container_set_errors_name_the_container() {
        let cycle = json!({"containerSet": {"containers": [
            {"name": "a", "image": "alpine", "dependencies": ["b"]},
            {"name": "b", "image": "alpine", "dependencies": ["a"]},
        ]}});
        assert!(plan(&cycle).unwrap_err().contains("cycle"));
        let unknown = json!({"containerSet": {"containers": [
            {"name": "a", "image": "alpine", "dependencies": ["zz"]},
        ]}});
        assert!(plan(&unknown).unwrap_err().contains("'zz'"));
        let mystery =
            json!({"containerSet": {"containers": [{"name": "m", "image": "example.com/x"}]}});
        assert!(plan(&mystery).unwrap_err().contains("container 'm'"));
    }

    #[test]
    fn image_names() {
        assert_eq!(image_repo("docker.io/library/python:3.9"), "python");
        assert_eq!(
            image_repo("localhost:5000/argoproj/argosay:v2"),
            "localhost:5000/argoproj/argosay"
        );
        assert_eq!(image_tag("argoproj/argosay:v1"), "v1");
    }
}
