//! Bad input (issue 2, item 11): each gives a clear error (exit code 2 and a
//! message naming the file, line or field) or a correct run — never a panic, a
//! hang or a damaged store. After each, `weft list` still works and a good
//! workflow still runs in the same WEFT_HOME.

use std::io::Write;

use super::support::*;

/// The store survived: list works and a good workflow runs.
fn assert_store_healthy(home: &Home) {
    let out = home.run(&["list", "-o", "json"]);
    assert!(
        out.status.success(),
        "list after bad input: {}",
        stderr(&out)
    );
    json(&out);
    let wf = repo().join("examples/hello-world.yaml");
    let out = home.run(&["run", wf.to_str().unwrap(), "-o", "json"]);
    assert!(
        out.status.success(),
        "good run after bad input: {}",
        stderr(&out)
    );
    assert_eq!(json(&out)["status"]["phase"], "Succeeded");
}

fn assert_no_panic(o: &std::process::Output) {
    let err = stderr(o);
    assert!(!err.contains("panicked"), "panic: {err}");
    assert!(o.status.code().is_some(), "killed by a signal: {err}");
}

#[test]
fn malformed_yaml_names_file_and_line() {
    let home = Home::new();
    let bad = home.file(
        "bad.yaml",
        "kind: Workflow\nmetadata: {generateName: b-}\nspec:\n  entrypoint: [unclosed\n  templates: []\n",
    );
    let out = home.run(&["run", bad.to_str().unwrap()]);
    assert_no_panic(&out);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("bad.yaml:"), "{}", stderr(&out));
    // Well-formed YAML of the wrong shape names the field.
    let shape = home.file(
        "shape.yaml",
        "kind: Workflow\nmetadata: {generateName: s-}\nspec:\n  entrypoint: m\n  templates: 5\n",
    );
    let out = home.run(&["run", shape.to_str().unwrap()]);
    assert_no_panic(&out);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("shape.yaml:5:") && err.contains("templates"),
        "{err}"
    );
    // An alias bomb ("billion laughs") is refused, not expanded.
    let mut bomb =
        String::from("kind: Workflow\nmetadata: {generateName: bomb-}\nspec:\n  entrypoint: m\n");
    bomb.push_str("  a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for (name, prev) in ["b", "c", "d", "e", "f", "g", "h", "i"]
        .iter()
        .zip(["a", "b", "c", "d", "e", "f", "g", "h"])
    {
        bomb.push_str(&format!(
            "  {name}: &{name} [{}]\n",
            vec![format!("*{prev}"); 9].join(", ")
        ));
    }
    bomb.push_str(
        "  templates:\n  - name: m\n    container: {image: alpine, command: [sh, -c, 'echo ok']}\n",
    );
    let bomb = home.file("bomb.yaml", &bomb);
    let out = home.run(&["run", bomb.to_str().unwrap()]);
    assert_no_panic(&out);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("bomb.yaml:"), "{}", stderr(&out));
    assert_store_healthy(&home);
}

#[test]
fn a_50_mb_workflow_file_is_refused_with_its_size() {
    let home = Home::new();
    let path = home.path().join("huge.yaml");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    f.write_all(b"kind: Workflow\nmetadata: {generateName: huge-}\nspec:\n  entrypoint: main\n  templates:\n  - name: main\n    container: {image: alpine, command: [sh, -c, 'echo ok']}\n").unwrap();
    let mut i = 0;
    let mut written = 0usize;
    while written < 50 << 20 {
        let t = format!(
            "  - name: unused-{i}\n    container: {{image: alpine, command: [sh, -c, 'echo never called {i} padding padding padding']}}\n"
        );
        f.write_all(t.as_bytes()).unwrap();
        written += t.len();
        i += 1;
    }
    drop(f);
    for cmd in ["run", "lint"] {
        let out = home.run(&[cmd, path.to_str().unwrap()]);
        assert_no_panic(&out);
        assert_eq!(out.status.code(), Some(2), "{cmd}: {}", stderr(&out));
        // `run` reports on stderr; `lint` prints its diagnostics on stdout.
        let err = format!("{}{}", stdout(&out), stderr(&out));
        assert!(
            err.contains("huge.yaml") && err.contains("MiB limit"),
            "{cmd}: {err}"
        );
    }
    assert_store_healthy(&home);
}

#[test]
fn recursion_10000_deep_stops_at_the_nesting_cap() {
    let home = Home::new();
    let wf = home.file(
        "rec.yaml",
        r#"kind: Workflow
metadata: {generateName: rec-}
spec:
  entrypoint: rec
  arguments: {parameters: [{name: n, value: "0"}]}
  templates:
  - name: rec
    inputs: {parameters: [{name: n}]}
    steps:
    - - name: down
        template: rec
        when: "{{inputs.parameters.n}} < 10000"
        arguments: {parameters: [{name: n, value: "{{=asInt(inputs.parameters.n) + 1}}"}]}
"#,
    );
    let out = home.run(&["run", wf.to_str().unwrap(), "-o", "json"]);
    assert_no_panic(&out);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let v = json(&out);
    let phase = v["status"]["phase"].as_str().unwrap();
    assert!(matches!(phase, "Error" | "Failed"), "{phase}");
    let nodes = v["status"]["nodes"].as_object().unwrap();
    assert!(
        nodes.len() < 2100,
        "stopped near depth 1000: {} nodes",
        nodes.len()
    );
    let cap = nodes
        .values()
        .filter_map(|n| n["message"].as_str())
        .find(|m| m.contains("maximum template nesting depth (1000) exceeded"));
    assert!(cap.is_some(), "no node names the nesting cap");
    assert_store_healthy(&home);
}

#[test]
fn a_10_mb_parameter_from_a_parameter_file_runs() {
    let home = Home::new();
    let wf = home.file(
        "big.yaml",
        r#"kind: Workflow
metadata: {generateName: big-}
spec:
  entrypoint: m
  arguments: {parameters: [{name: x, value: ""}]}
  templates:
  - name: m
    inputs: {parameters: [{name: x}]}
    script:
      image: alpine
      command: [sh]
      source: |
        cat <<'WEFT_EOF' | wc -c
        {{inputs.parameters.x}}
        WEFT_EOF
"#,
    );
    let params = home.file("params.yaml", &format!("x: {}\n", "a".repeat(10 << 20)));
    let out = home.run(&[
        "run",
        wf.to_str().unwrap(),
        "--parameter-file",
        params.to_str().unwrap(),
        "-o",
        "name",
    ]);
    assert_no_panic(&out);
    assert!(out.status.success(), "{}", stderr(&out));
    let name = stdout(&out).trim().to_string();
    let v = json(&home.run(&["get", &name, "-o", "json"]));
    assert_eq!(v["status"]["phase"], "Succeeded");
    // 10 MiB and the here-document's newline.
    assert_eq!(
        v["status"]["nodes"][&name]["outputs"]["result"],
        ((10 << 20) + 1).to_string()
    );
    assert_store_healthy(&home);
}

#[test]
fn non_utf8_bytes_are_named_or_carried_through() {
    let home = Home::new();
    // In a workflow file: exit 2 with file:line:column.
    let path = home.path().join("latin1.yaml");
    std::fs::write(
        &path,
        b"kind: Workflow\nmetadata: {generateName: x-}\nspec:\n  entrypoint: m\n  templates:\n  - name: m\n    container: {image: alpine, command: [sh, -c, \"echo caf\xe9\"]}\n",
    )
    .unwrap();
    let out = home.run(&["run", path.to_str().unwrap()]);
    assert_no_panic(&out);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("latin1.yaml:7:") && err.contains("UTF-8"),
        "{err}"
    );
    // In a parameter file: exit 2 naming the file.
    let good = repo().join("examples/hello-world.yaml");
    let params = home.path().join("params.yaml");
    std::fs::write(&params, b"message: \"\xff\xfe\"\n").unwrap();
    let out = home.run(&[
        "run",
        good.to_str().unwrap(),
        "--parameter-file",
        params.to_str().unwrap(),
    ]);
    assert_no_panic(&out);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("params.yaml") && err.contains("UTF-8"),
        "{err}"
    );
    // In a step's output: the run succeeds; the bytes become U+FFFD.
    let wf = home.file(
        "bytes.yaml",
        "kind: Workflow\nmetadata: {generateName: bytes-}\nspec:\n  entrypoint: m\n  templates:\n  - name: m\n    container: {image: alpine, command: [sh, -c, 'printf \"ok\\377\\376\"']}\n",
    );
    let out = home.run(&["run", wf.to_str().unwrap(), "-o", "json"]);
    assert_no_panic(&out);
    assert!(out.status.success(), "{}", stderr(&out));
    let v = json(&out);
    let name = v["metadata"]["name"].as_str().unwrap();
    let result = v["status"]["nodes"][name]["outputs"]["result"]
        .as_str()
        .unwrap();
    assert!(
        result.starts_with("ok") && result.contains('\u{fffd}'),
        "{result:?}"
    );
    assert_store_healthy(&home);
}
