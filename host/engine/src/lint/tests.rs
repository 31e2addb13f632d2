//! Lint tests: YAML text in, exact diagnostics (`file:line:column: severity:
//! path: message`) out; and the Argo example corpus as the false-positive guard.

use super::*;

/// Lint one file's text with `more` files beside it; each diagnostic as its `Display` line.
fn lint_with(yaml: &str, more: &[&str]) -> Vec<String> {
    let mut sources = vec![("t.yaml", yaml)];
    sources.extend(more.iter().map(|m| ("other.yaml", *m)));
    lint_sources(&sources, &KnownTemplates::default())
        .iter()
        .map(ToString::to_string)
        .collect()
}

fn lint_text(yaml: &str) -> Vec<String> {
    lint_with(yaml, &[])
}

/// A valid steps workflow; tests break one line of it.
const STEPS: &str = r#"kind: Workflow
metadata: {name: w}
spec:
  entrypoint: main
  templates:
  - name: main
    steps:
    - - name: a
        template: echo
    - - name: b
        template: echo
        arguments:
          parameters:
          - name: msg
            value: "{{steps.a.outputs.result}}"
  - name: echo
    inputs:
      parameters:
      - name: msg
        value: hi
    container:
      image: alpine
      args: ["{{inputs.parameters.msg}}"]
"#;

/// A valid DAG workflow.
const DAG: &str = r#"kind: Workflow
metadata: {name: d}
spec:
  entrypoint: main
  templates:
  - name: main
    dag:
      tasks:
      - name: a
        template: echo
      - name: b
        depends: a
        template: echo
      - name: c
        dependencies: [a, b]
        template: echo
  - name: echo
    container: {image: alpine}
"#;

fn edit(base: &str, from: &str, to: &str) -> String {
    assert!(base.contains(from), "{from:?} not in the base text");
    base.replacen(from, to, 1)
}

#[test]
fn valid_workflows_are_clean() {
    assert_eq!(lint_text(STEPS), Vec::<String>::new());
    assert_eq!(lint_text(DAG), Vec::<String>::new());
}

#[test]
fn unparsable_documents_unknown_kinds_and_type_errors() {
    let d = lint_text("kind: Workflow\nspec: [\n");
    assert_eq!(d.len(), 1);
    assert!(
        d[0].starts_with("t.yaml:3:1: error: /: invalid YAML: "),
        "{d:?}"
    );

    assert_eq!(
        lint_text("kind: Pod\nmetadata: {name: p}\n"),
        [
            "t.yaml:1:1: error: /kind: unknown kind \"Pod\"; expected one of Workflow, WorkflowTemplate, ClusterWorkflowTemplate, CronWorkflow"
        ]
    );
    assert_eq!(
        lint_text(&edit(
            STEPS,
            "image: alpine",
            "image: alpine\n      command: {a: 1}"
        )),
        [
            "t.yaml:23:7: error: /spec/templates/1/container/command: invalid type: map, expected a sequence"
        ]
    );
}

#[test]
fn entrypoints() {
    assert_eq!(
        lint_text(&edit(STEPS, "  entrypoint: main\n", "")),
        [
            "t.yaml:3:1: error: /spec/entrypoint: missing `entrypoint`: name the template to run first (or use `workflowTemplateRef`)"
        ]
    );
    assert_eq!(
        lint_text(&edit(STEPS, "entrypoint: main", "entrypoint: mian")),
        [
            "t.yaml:4:3: error: /spec/entrypoint: entrypoint \"mian\" names no template (templates: echo, main)"
        ]
    );
    let cron = "kind: CronWorkflow\nmetadata: {name: c}\nspec:\n  schedule: '* * * * *'\n  workflowSpec:\n    templates:\n    - name: main\n      container: {image: alpine}\n";
    assert_eq!(
        lint_text(cron),
        [
            "t.yaml:5:3: error: /spec/workflowSpec/entrypoint: missing `entrypoint`: name the template to run first (or use `workflowTemplateRef`)"
        ]
    );
    // WorkflowTemplates may leave the entrypoint to the Workflow.
    let wt = edit(
        &edit(STEPS, "  entrypoint: main\n", ""),
        "kind: Workflow",
        "kind: WorkflowTemplate",
    );
    assert_eq!(lint_text(&wt), Vec::<String>::new());
}

const LIB: &str = "kind: WorkflowTemplate\nmetadata: {name: lib}\nspec:\n  templates:\n  - name: say\n    container: {image: alpine}\n";
const CLUSTER_LIB: &str = "kind: ClusterWorkflowTemplate\nmetadata: {name: clib}\nspec:\n  entrypoint: say\n  templates:\n  - name: say\n    container: {image: alpine}\n";

#[test]
fn template_references() {
    assert_eq!(
        lint_text(&edit(
            STEPS,
            "template: echo\n    - - name: b",
            "template: ech\n    - - name: b"
        )),
        [
            "t.yaml:9:9: error: /spec/templates/0/steps/0/0/template: no template named \"ech\" (templates: echo, main)"
        ]
    );
    let by_ref = |r: &str| {
        edit(
            STEPS,
            "template: echo\n    - - name: b",
            &format!("templateRef: {r}\n    - - name: b"),
        )
    };
    assert_eq!(
        lint_with(&by_ref("{name: lib, template: say}"), &[LIB]),
        Vec::<String>::new()
    );
    assert_eq!(
        lint_with(
            &by_ref("{name: clib, template: say, clusterScope: true}"),
            &[CLUSTER_LIB]
        ),
        Vec::<String>::new()
    );
    assert_eq!(
        lint_with(&by_ref("{name: libb, template: say}"), &[LIB]),
        [
            "t.yaml:9:23: error: /spec/templates/0/steps/0/0/templateRef/name: unknown WorkflowTemplate \"libb\""
        ]
    );
    assert_eq!(
        lint_with(&by_ref("{name: lib, template: sya}"), &[LIB]),
        [
            "t.yaml:9:34: error: /spec/templates/0/steps/0/0/templateRef/template: WorkflowTemplate \"lib\" has no template \"sya\" (templates: say)"
        ]
    );
    // A WorkflowTemplate is not a ClusterWorkflowTemplate.
    assert_eq!(
        lint_with(
            &by_ref("{name: lib, template: say, clusterScope: true}"),
            &[LIB]
        ),
        [
            "t.yaml:9:23: error: /spec/templates/0/steps/0/0/templateRef/name: unknown ClusterWorkflowTemplate \"lib\""
        ]
    );
    // Only a reference to a template the files do not define needs the store.
    let unresolved = |text: &str, more: &[&str]| {
        let mut docs = crate::model::parse_str("t.yaml", text).unwrap();
        for m in more {
            docs.extend(crate::model::parse_str("other.yaml", m).unwrap());
        }
        KnownTemplates::from_documents(&docs).has_unresolved(&docs)
    };
    assert!(!unresolved(STEPS, &[]));
    assert!(!unresolved(&by_ref("{name: lib, template: say}"), &[LIB]));
    assert!(unresolved(&by_ref("{name: libb, template: say}"), &[LIB]));
    assert!(unresolved(
        &by_ref("{name: lib, template: say, clusterScope: true}"),
        &[LIB]
    ));
    assert!(unresolved(
        "kind: Workflow\nmetadata: {name: w}\nspec: {workflowTemplateRef: {name: stored}}\n",
        &[]
    ));
    // Templates already in the store count too.
    let mut known = KnownTemplates::default();
    let spec: Value = serde_json::from_str(r#"{"templates": [{"name": "say"}]}"#).unwrap();
    known.add("WorkflowTemplate", "stored", &spec);
    let text = by_ref("{name: stored, template: say}");
    assert_eq!(
        lint_sources(&[("t.yaml", &text)], &known),
        Vec::<Diagnostic>::new()
    );

    assert_eq!(
        lint_text(&edit(
            STEPS,
            "  entrypoint: main\n",
            "  entrypoint: main\n  onExit: cleanup\n"
        )),
        ["t.yaml:5:3: error: /spec/onExit: no template named \"cleanup\" (templates: echo, main)"]
    );
    assert_eq!(
        lint_text(&edit(
            STEPS,
            "  entrypoint: main\n",
            "  entrypoint: main\n  hooks:\n    exit: {template: gone}\n"
        )),
        [
            "t.yaml:6:12: error: /spec/hooks/exit/template: no template named \"gone\" (templates: echo, main)"
        ]
    );
    assert_eq!(
        lint_text(&edit(
            STEPS,
            "        template: echo\n    - - name: b",
            "        template: echo\n        hooks:\n          running: {expression: 'true', template: nope}\n    - - name: b"
        )),
        [
            "t.yaml:11:41: error: /spec/templates/0/steps/0/0/hooks/running/template: no template named \"nope\" (templates: echo, main)"
        ]
    );
    let wf_ref =
        "kind: Workflow\nmetadata: {name: r}\nspec:\n  workflowTemplateRef: {name: nosuch}\n";
    assert_eq!(
        lint_text(wf_ref),
        ["t.yaml:4:25: error: /spec/workflowTemplateRef/name: unknown WorkflowTemplate \"nosuch\""]
    );
    // The referenced template has no entrypoint and neither does the Workflow.
    let wf_ref = "kind: Workflow\nmetadata: {name: r}\nspec:\n  workflowTemplateRef: {name: lib}\n";
    assert_eq!(
        lint_with(wf_ref, &[LIB]),
        [
            "t.yaml:3:1: error: /spec/entrypoint: missing `entrypoint`: neither this workflow nor its workflowTemplateRef sets one"
        ]
    );
    let wf_ref = "kind: Workflow\nmetadata: {name: r}\nspec:\n  entrypoint: say\n  workflowTemplateRef: {name: lib}\n";
    assert_eq!(lint_with(wf_ref, &[LIB]), Vec::<String>::new());
}

#[test]
fn duplicate_names() {
    assert_eq!(
        lint_text(&edit(STEPS, "- name: echo", "- name: main")),
        [
            "t.yaml:9:9: error: /spec/templates/0/steps/0/0/template: no template named \"echo\" (templates: main)",
            "t.yaml:11:9: error: /spec/templates/0/steps/1/0/template: no template named \"echo\" (templates: main)",
            "t.yaml:16:5: error: /spec/templates/1/name: duplicate template name \"main\"",
        ]
    );
    assert_eq!(
        lint_text(&edit(STEPS, "- - name: b", "- - name: a")),
        [
            "t.yaml:10:9: error: /spec/templates/0/steps/1/0/name: duplicate step name \"a\" in template \"main\"",
        ]
    );
    assert_eq!(
        lint_text(&edit(DAG, "- name: c", "- name: b")),
        [
            "t.yaml:14:9: error: /spec/templates/0/dag/tasks/2/name: duplicate task name \"b\" in DAG template \"main\""
        ]
    );
    assert_eq!(
        lint_text(&edit(
            STEPS,
            "        value: hi\n",
            "        value: hi\n      - name: msg\n"
        )),
        [
            "t.yaml:21:9: error: /spec/templates/1/inputs/parameters/1/name: duplicate parameter name \"msg\""
        ]
    );
}

#[test]
fn template_bodies() {
    assert_eq!(
        lint_text(&edit(
            STEPS,
            "    container:\n      image: alpine\n      args: [\"{{inputs.parameters.msg}}\"]\n",
            "    metadata: {}\n"
        )),
        [
            "t.yaml:16:5: error: /spec/templates/1: template \"echo\" has no body: set one of container, script, steps, dag, suspend, containerSet, http, plugin, resource, data"
        ]
    );
    assert_eq!(
        lint_text(&edit(
            STEPS,
            "    container:\n",
            "    suspend: {}\n    container:\n"
        )),
        [
            "t.yaml:21:5: error: /spec/templates/1/suspend: template \"echo\" has more than one body: container, suspend"
        ]
    );
}

#[test]
fn dag_dependencies() {
    assert_eq!(
        lint_text(&edit(DAG, "dependencies: [a, b]", "dependencies: [a, x]")),
        [
            "t.yaml:15:27: error: /spec/templates/0/dag/tasks/2/dependencies/1: unknown task \"x\" in `dependencies`"
        ]
    );
    assert_eq!(
        lint_text(&edit(DAG, "depends: a", "depends: a &&")),
        [
            "t.yaml:12:9: error: /spec/templates/0/dag/tasks/1/depends: invalid 'depends' expression \"a &&\" at position 4: unexpected end of expression"
        ]
    );
    assert_eq!(
        lint_text(&edit(DAG, "depends: a", "depends: a.Succeeded || z.Failed")),
        [
            "t.yaml:12:9: error: /spec/templates/0/dag/tasks/1/depends: `depends` names unknown task \"z\""
        ]
    );
    assert_eq!(
        lint_text(&edit(
            DAG,
            "depends: a",
            "depends: a\n        dependencies: [a]"
        )),
        [
            "t.yaml:12:9: error: /spec/templates/0/dag/tasks/1/depends: task sets both `dependencies` and `depends`: use one"
        ]
    );
    assert_eq!(
        lint_text(&edit(
            &edit(DAG, "depends: a", "depends: c"),
            "      - name: a\n",
            "      - name: a\n        depends: a\n"
        )),
        [
            "t.yaml:10:9: error: /spec/templates/0/dag/tasks/0/depends: dependency cycle: a -> a",
            "t.yaml:13:9: error: /spec/templates/0/dag/tasks/1/depends: dependency cycle: b -> c -> b",
        ]
    );
    assert_eq!(
        lint_text(&edit(DAG, "    dag:\n", "    dag:\n      target: c q\n")),
        ["t.yaml:8:7: error: /spec/templates/0/dag/target: `target` names unknown task \"q\""]
    );
}

#[test]
fn undefined_variables() {
    let arg = |v: &str| edit(STEPS, "\"{{steps.a.outputs.result}}\"", &format!("\"{v}\""));
    let at = "t.yaml:15:13: error: /spec/templates/0/steps/1/0/arguments/parameters/0/value";
    assert_eq!(
        lint_text(&arg("{{inputs.parameters.nope}}")),
        [format!(
            "{at}: undefined variable {{{{inputs.parameters.nope}}}}: template \"main\" has no input parameter \"nope\""
        )]
    );
    assert_eq!(
        lint_text(&arg("{{workflow.parameters.p}}")),
        [format!(
            "{at}: undefined variable {{{{workflow.parameters.p}}}}: the workflow declares no parameter \"p\" in spec.arguments.parameters"
        )]
    );
    assert_eq!(
        lint_text(&arg("{{workflow.nmae}}")),
        [format!(
            "{at}: undefined variable {{{{workflow.nmae}}}}: no such workflow variable"
        )]
    );
    assert_eq!(
        lint_text(&arg("{{steps.b.outputs.result}}")),
        [format!(
            "{at}: undefined variable {{{{steps.b.outputs.result}}}}: step \"b\" has not run yet here (only steps of earlier groups can be referenced)"
        )]
    );
    assert_eq!(
        lint_text(&arg("{{steps.q.outputs.result}}")),
        [format!(
            "{at}: undefined variable {{{{steps.q.outputs.result}}}}: template \"main\" has no step \"q\""
        )]
    );
    assert_eq!(
        lint_text(&arg("{{tasks.a.outputs.result}}")),
        [format!(
            "{at}: undefined variable {{{{tasks.a.outputs.result}}}}: `tasks.*` is only defined in a DAG template"
        )]
    );
    assert_eq!(
        lint_text(&arg("{{item}}")),
        [format!(
            "{at}: undefined variable {{{{item}}}}: only defined in a step or task with withItems, withParam or withSequence"
        )]
    );
    assert_eq!(
        lint_text(&arg("{{=  }}")),
        [format!("{at}: empty expression `{{{{=}}}}`")]
    );
    assert_eq!(
        lint_text(&arg("{{ .Values.x }}")),
        [
            "t.yaml:15:13: warning: /spec/templates/0/steps/1/0/arguments/parameters/0/value: unknown variable {{.Values.x}}: Argo leaves it unresolved, as text"
        ]
    );
    // What Argo accepts.
    for ok in [
        "{{steps.a.status}} {{steps.b.status}} {{workflow.name}} {{workflow.creationTimestamp.Y}}",
        "{{workflow.labels.x}} {{workflow.outputs.parameters.g}} {{status}} {{pod.name}} {{retries}}",
        "{{=inputs.parameters.whatever + sprig.upper('x')}} {{steps.name}} {{inputs.parameters}}",
    ] {
        assert_eq!(lint_text(&arg(ok)), Vec::<String>::new(), "{ok}");
    }
    // Loops define `item`.
    let looped = edit(
        &arg("{{item.k}}"),
        "        arguments:",
        "        withItems: [{k: 1}]\n        arguments:",
    );
    assert_eq!(lint_text(&looped), Vec::<String>::new());
    // Outputs see every step.
    let outputs = edit(
        STEPS,
        "    steps:\n",
        "    outputs:\n      parameters:\n      - name: o\n        valueFrom: {parameter: \"{{steps.b.outputs.result}}\"}\n    steps:\n",
    );
    assert_eq!(lint_text(&outputs), Vec::<String>::new());
    // DAG tasks see each other by name.
    let dag = edit(
        DAG,
        "depends: a\n",
        "depends: a\n        arguments: {parameters: [{name: p, value: '{{tasks.a.outputs.result}} {{tasks.zz.status}}'}]}\n",
    );
    assert_eq!(
        lint_text(&dag),
        [
            "t.yaml:13:44: error: /spec/templates/0/dag/tasks/1/arguments/parameters/0/value: undefined variable {{tasks.zz.status}}: template \"main\" has no task \"zz\""
        ]
    );
    // WorkflowTemplates get their parameters from the submitting Workflow.
    let wt = edit(
        &arg("{{workflow.parameters.p}}"),
        "kind: Workflow",
        "kind: WorkflowTemplate",
    );
    assert_eq!(lint_text(&wt), Vec::<String>::new());
    // Declared workflow parameters are fine.
    let declared = edit(
        &arg("{{workflow.parameters.p}}"),
        "  entrypoint: main\n",
        "  entrypoint: main\n  arguments: {parameters: [{name: p, value: x}]}\n",
    );
    assert_eq!(lint_text(&declared), Vec::<String>::new());
}

#[test]
fn wrong_types() {
    let in_echo = |field: &str| {
        edit(
            STEPS,
            "    container:\n",
            &format!("    {field}\n    container:\n"),
        )
    };
    assert_eq!(
        lint_text(&in_echo("retryStrategy: {limit: lots}")),
        [
            "t.yaml:21:21: error: /spec/templates/1/retryStrategy/limit: `retryStrategy.limit` must be a non-negative integer or a {{…}} variable, got \"lots\""
        ]
    );
    assert_eq!(
        lint_text(&in_echo(
            "retryStrategy: {limit: '{{inputs.parameters.msg}}'}"
        )),
        Vec::<String>::new()
    );
    assert_eq!(
        lint_text(&in_echo("retryStrategy: {limit: '3'}")),
        Vec::<String>::new()
    );
    assert_eq!(
        lint_text(&in_echo("parallelism: 1.5")),
        [
            "t.yaml:21:5: error: /spec/templates/1/parallelism: `parallelism` must be a non-negative integer, got 1.5"
        ]
    );
    assert_eq!(
        lint_text(&edit(
            STEPS,
            "  entrypoint: main\n",
            "  entrypoint: main\n  parallelism: two\n"
        )),
        [
            "t.yaml:5:3: error: /spec/parallelism: `parallelism` must be a non-negative integer, got \"two\""
        ]
    );
    assert_eq!(
        lint_text(&in_echo("activeDeadlineSeconds: [1]")),
        [
            "t.yaml:21:5: error: /spec/templates/1/activeDeadlineSeconds: `activeDeadlineSeconds` must be an integer or a string, got a list"
        ]
    );
    assert_eq!(
        lint_text(&edit(
            STEPS,
            "        template: echo\n    - - name: b",
            "        template: echo\n        withItems: abc\n    - - name: b"
        )),
        [
            "t.yaml:10:9: error: /spec/templates/0/steps/0/0/withItems: `withItems` must be a list, got \"abc\""
        ]
    );
    assert_eq!(
        lint_text(&edit(
            STEPS,
            "        template: echo\n    - - name: b",
            "        template: echo\n        when: \"'{{workflow.name}}' == 'x\"\n    - - name: b"
        )),
        [
            "t.yaml:10:9: error: /spec/templates/0/steps/0/0/when: `when` has an unterminated ' quote: \"'{{workflow.name}}' == 'x\""
        ]
    );
    assert_eq!(
        lint_text(&edit(
            STEPS,
            "        template: echo\n    - - name: b",
            "        template: echo\n        when: \"{{=  'a' }} == \\\"it's\\\"\"\n    - - name: b"
        )),
        Vec::<String>::new()
    );
    assert_eq!(
        lint_text(&edit(
            STEPS,
            "        value: hi\n",
            "        value: hi\n        enum: [hello, bye]\n"
        )),
        [
            "t.yaml:20:9: error: /spec/templates/1/inputs/parameters/0/value: value \"hi\" is not in `enum` [hello, bye]"
        ]
    );
}

#[test]
fn other_argo_kinds_are_skipped_but_their_references_checked() {
    let binding = "apiVersion: argoproj.io/v1alpha1\nkind: WorkflowEventBinding\nmetadata: {name: b}\nspec:\n  submit:\n    workflowTemplateRef: {name: lbi}\n";
    assert_eq!(
        lint_with(binding, &[LIB]),
        [
            "t.yaml:2:1: warning: /kind: weft does not run WorkflowEventBinding objects; only its references are checked",
            "t.yaml:6:27: error: /spec/submit/workflowTemplateRef/name: unknown WorkflowTemplate \"lbi\"",
        ]
    );
}

#[test]
fn long_dependency_chains_and_cycles() {
    let n = 3000;
    let mut yaml = String::from(
        "kind: Workflow\nmetadata: {name: c}\nspec:\n  entrypoint: main\n  templates:\n  - name: echo\n    container: {image: alpine}\n  - name: main\n    dag:\n      tasks:\n",
    );
    for i in 0..n {
        let dep = (i + 1) % n;
        yaml.push_str(&format!(
            "      - {{name: t{i}, template: echo, dependencies: [t{dep}]}}\n"
        ));
    }
    let d = lint_text(&yaml);
    assert_eq!(d.len(), 1, "{d:?}");
    assert!(d[0].starts_with("t.yaml:11:36: error: /spec/templates/1/dag/tasks/0/dependencies: dependency cycle: t0 -> t1 -> t2 -> "), "{}", &d[0][..200]);
    assert!(d[0].ends_with("t2999 -> t0"));
}

#[test]
fn json_and_display() {
    let d = lint_sources(
        &[("t.yaml", &edit(STEPS, "entrypoint: main", "entrypoint: x"))],
        &KnownTemplates::default(),
    );
    assert_eq!(
        d[0].to_json(),
        json!({"file": "t.yaml", "line": 4, "column": 3, "path": "/spec/entrypoint",
               "message": "entrypoint \"x\" names no template (templates: echo, main)", "severity": "error"})
    );
    assert_eq!(
        d[0].to_string(),
        "t.yaml:4:3: error: /spec/entrypoint: entrypoint \"x\" names no template (templates: echo, main)"
    );
}

/// The Argo examples, loaded together so templateRefs resolve, give no errors.
#[test]
fn argo_examples_have_no_errors() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/conformance/argo/examples");
    if !root.exists() {
        eprintln!(
            "NOTICE: {} not found; skipping the corpus lint",
            root.display()
        );
        return;
    }
    let mut files = Vec::new();
    let mut dirs = vec![root];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if p
                .extension()
                .is_some_and(|x| x == "yaml" || x == "yml" || x == "json")
            {
                files.push(p);
            }
        }
    }
    files.sort();
    assert!(files.len() > 100, "only {} files", files.len());
    let mut docs = Vec::new();
    for f in &files {
        docs.extend(crate::model::read_file(f).unwrap_or_else(|e| panic!("{e}")));
    }
    let diags = lint(&docs, &KnownTemplates::from_documents(&docs));
    for d in &diags {
        println!("{d}");
    }
    let errors: Vec<String> = diags
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .map(ToString::to_string)
        .collect();
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

#[test]
fn cron_workflow_schedules_and_timezone() {
    let cron = |extra: &str| {
        format!(
            "kind: CronWorkflow\nmetadata: {{name: c}}\nspec:\n{extra}  workflowSpec:\n    entrypoint: main\n    templates:\n    - name: main\n      container: {{image: alpine}}\n"
        )
    };
    assert!(
        lint_text(&cron(
            "  schedules: ['*/5 * * * *', '@hourly']\n  timezone: Europe/Berlin\n"
        ))
        .is_empty()
    );
    assert_eq!(
        lint_text(&cron("  schedules: ['0 * * * *', '0 0 * * * *']\n")),
        [
            "t.yaml:4:28: error: /spec/schedules/1: spec.schedules[1]: cron schedule \"0 0 * * * *\" is malformed: expected exactly 5 fields, found 6"
        ]
    );
    let tz = lint_text(&cron("  schedule: '0 1 * * *'\n  timezone: Mars/Olympus\n"));
    assert_eq!(tz.len(), 1, "{tz:?}");
    assert!(
        tz[0].contains("/spec/timezone: spec.timezone: invalid timezone \"Mars/Olympus\""),
        "{tz:?}"
    );
}
