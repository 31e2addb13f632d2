//! State-machine tests: feed events, assert actions and node states. No IO,
//! no clock, no drivers: a scripted fake answers every `StartStep`.

use std::collections::{BTreeMap, VecDeque};

use serde_json::Value;

use super::*;
use crate::model::{NodeType, Object, parse_str};
use crate::runtime::{OutcomePhase, StepOutcome};

fn workflow(yaml: &str) -> Workflow {
    let docs = parse_str("t.yaml", yaml).unwrap();
    match docs[0].object().unwrap() {
        Object::Workflow(w) => {
            let mut w = *w;
            if w.metadata.name.is_none() {
                w.metadata.name = Some("wf".into());
            }
            w
        }
        _ => panic!("not a workflow"),
    }
}

fn ok(result: &str) -> StepOutcome {
    StepOutcome {
        phase: OutcomePhase::Succeeded,
        message: None,
        exit_code: Some(0),
        result: Some(result.to_string()),
        parameters: vec![],
        artifacts: vec![],
    }
}

fn fail(code: i32) -> StepOutcome {
    StepOutcome {
        phase: OutcomePhase::Failed,
        message: Some(format!("Error (exit code {code})")),
        exit_code: Some(code),
        result: Some(String::new()),
        parameters: vec![],
        artifacts: vec![],
    }
}

/// The args of a container step as one string (what a fake "ran").
fn args_of(t: &Value) -> String {
    let c = t
        .get("container")
        .or_else(|| t.get("script"))
        .cloned()
        .unwrap_or(Value::Null);
    let mut parts: Vec<String> = Vec::new();
    for k in ["command", "args"] {
        if let Some(Value::Array(a)) = c.get(k) {
            parts.extend(a.iter().map(|x| x.as_str().unwrap_or_default().to_string()));
        }
    }
    if let Some(s) = c.get("source").and_then(Value::as_str) {
        parts.push(s.to_string());
    }
    parts.join(" ")
}

struct Run {
    m: Machine,
    started: Vec<(String, String)>, // (node name, args)
    finished: Option<Phase>,
    now: i64,
}

/// Run to completion; `step` decides each step's outcome from (node name, args).
fn run_with(m: Machine, mut step: impl FnMut(&str, &str) -> StepOutcome, max_events: usize) -> Run {
    let mut r = Run {
        m,
        started: vec![],
        finished: None,
        now: 1_000_000,
    };
    let mut events: VecDeque<Event> = VecDeque::from([Event::Start]);
    let mut timers: Vec<(i64, Option<NodeId>)> = vec![];
    let mut n = 0;
    loop {
        let Some(ev) = events.pop_front().or_else(|| {
            timers.sort_by_key(|t| t.0);
            if timers.is_empty() {
                return None;
            }
            let (at, node) = timers.remove(0);
            r.now = r.now.max(at);
            Some(match node {
                Some(node) => Event::Timer { node },
                None => Event::WorkflowTimer,
            })
        }) else {
            break;
        };
        n += 1;
        assert!(n < max_events, "too many events");
        let actions = r.m.handle(ev, r.now);
        let _ = r.m.take_changes();
        for a in actions {
            match a {
                Action::StartStep { node, template, .. } => {
                    let name = r.m.node(&node).unwrap().name.clone();
                    let args = args_of(&template);
                    r.started.push((name.clone(), args.clone()));
                    events.push_back(Event::StepDone {
                        node,
                        outcome: step(&name, &args),
                    });
                }
                Action::SetTimer { node, at_ms } => timers.push((at_ms, node)),
                Action::MemoLookup { node, .. } => {
                    events.push_back(Event::MemoResult { node, hit: None })
                }
                Action::Acquire { node, .. } => events.push_back(Event::LocksAcquired { node }),
                Action::Finished { phase } => r.finished = Some(phase),
                _ => {}
            }
        }
    }
    r
}

fn run(yaml: &str, step: impl FnMut(&str, &str) -> StepOutcome) -> Run {
    let m = Machine::new(workflow(yaml), "uid-1".into(), BTreeMap::new(), 1_000_000).unwrap();
    run_with(m, step, 100_000)
}

fn node_by_display<'a>(m: &'a Machine, display: &str) -> &'a Node {
    m.nodes()
        .find(|n| n.display_name == display)
        .unwrap_or_else(|| panic!("no node {display}"))
}

const HELLO: &str = r#"
kind: Workflow
metadata: {name: hello}
spec:
  entrypoint: main
  templates:
  - name: main
    container: {image: busybox, command: [echo, hello]}
"#;

#[test]
fn hello_world_single_pod() {
    let r = run(HELLO, |_, _| ok("hello"));
    assert_eq!(r.finished, Some(Phase::Succeeded));
    assert_eq!(
        r.started,
        vec![("hello".to_string(), "echo hello".to_string())]
    );
    let root = r.m.node("hello").unwrap();
    assert_eq!(root.node_type, NodeType::Pod);
    assert_eq!(
        root.outputs.as_ref().unwrap().result.as_deref(),
        Some("hello")
    );
    let status = r.m.argo_status();
    assert_eq!(status["phase"], "Succeeded");
    assert_eq!(status["nodes"]["hello"]["templateName"], "main");
}

const STEPS: &str = r#"
kind: Workflow
metadata: {name: coin}
spec:
  entrypoint: main
  arguments: {parameters: [{name: greeting, value: hi}]}
  templates:
  - name: main
    steps:
    - - name: flip
        template: flip
    - - name: heads
        template: say
        when: "{{steps.flip.outputs.result}} == heads"
        arguments: {parameters: [{name: msg, value: "it was {{steps.flip.outputs.result}} {{workflow.parameters.greeting}}"}]}
      - name: tails
        template: say
        when: "{{steps.flip.outputs.result}} == tails"
        arguments: {parameters: [{name: msg, value: "tails"}]}
  - name: flip
    script: {image: python, command: [python], source: "print('heads')"}
  - name: say
    inputs: {parameters: [{name: msg}]}
    container: {image: alpine, command: [echo, "{{inputs.parameters.msg}}"]}
"#;

#[test]
fn steps_when_and_parameter_passing() {
    let r = run(STEPS, |name, _| {
        if name.ends_with("flip") {
            ok("heads")
        } else {
            ok("x")
        }
    });
    assert_eq!(r.finished, Some(Phase::Succeeded));
    assert_eq!(r.started.len(), 2);
    assert_eq!(
        r.started[1],
        (
            "coin[1].heads".to_string(),
            "echo it was heads hi".to_string()
        )
    );
    let tails = node_by_display(&r.m, "tails");
    assert_eq!(tails.phase, Phase::Skipped);
    assert_eq!(node_by_display(&r.m, "[0]").node_type, NodeType::StepGroup);
    // Argo's node ids: <wf>-<fnv32a(name)>
    assert_eq!(tails.id, node_id("coin", "coin[1].tails"));
}

#[test]
fn failing_step_fails_workflow_and_stops_later_groups() {
    let r = run(STEPS, |name, _| {
        if name.ends_with("flip") {
            fail(3)
        } else {
            ok("x")
        }
    });
    assert_eq!(r.finished, Some(Phase::Failed));
    assert_eq!(r.started.len(), 1);
    let flip = node_by_display(&r.m, "flip");
    assert_eq!(
        flip.outputs.as_ref().unwrap().exit_code.as_deref(),
        Some("3")
    );
    assert!(
        r.m.node("coin")
            .unwrap()
            .message
            .as_deref()
            .unwrap()
            .contains("failed")
    );
}

const DIAMOND: &str = r#"
kind: Workflow
metadata: {name: d}
spec:
  entrypoint: diamond
  templates:
  - name: diamond
    dag:
      tasks:
      - {name: A, template: echo, arguments: {parameters: [{name: m, value: A}]}}
      - {name: B, depends: "A", template: echo, arguments: {parameters: [{name: m, value: "B-{{tasks.A.outputs.result}}"}]}}
      - {name: C, depends: "A", template: echo, arguments: {parameters: [{name: m, value: C}]}}
      - {name: D, depends: "B && C", template: echo, arguments: {parameters: [{name: m, value: "D-{{tasks.B.outputs.result}}-{{tasks.C.outputs.result}}"}]}}
  - name: echo
    inputs: {parameters: [{name: m}]}
    container: {image: alpine, command: [echo, "{{inputs.parameters.m}}"]}
"#;

#[test]
fn dag_diamond_runs_in_dependency_order() {
    let r = run(DIAMOND, |_, args| ok(args.trim_start_matches("echo ")));
    assert_eq!(r.finished, Some(Phase::Succeeded));
    let order: Vec<&str> = r.started.iter().map(|(_, a)| a.as_str()).collect();
    assert_eq!(order[0], "echo A");
    assert_eq!(order[3], "echo D-B-A-C");
    assert!(order.contains(&"echo B-A"));
}

#[test]
fn dag_enhanced_depends_on_failure() {
    let yaml = r#"
kind: Workflow
metadata: {name: e}
spec:
  entrypoint: main
  templates:
  - name: main
    dag:
      tasks:
      - {name: A, template: fail}
      - {name: B, depends: "A.Failed", template: ok}
      - {name: C, depends: "A.Succeeded", template: ok}
      - {name: D, depends: "B || C", template: ok}
  - {name: ok, container: {image: a, command: [ok]}}
  - {name: fail, container: {image: a, command: [fail]}}
"#;
    let r = run(
        yaml,
        |_, args| if args == "fail" { fail(1) } else { ok("") },
    );
    assert_eq!(
        r.finished,
        Some(Phase::Succeeded),
        "{:?}",
        r.m.argo_status()
    );
    assert_eq!(node_by_display(&r.m, "C").phase, Phase::Omitted);
    assert_eq!(node_by_display(&r.m, "D").phase, Phase::Succeeded);
}

#[test]
fn loops_expand_and_aggregate() {
    let yaml = r#"
kind: Workflow
metadata: {name: l}
spec:
  entrypoint: main
  templates:
  - name: main
    steps:
    - - name: gen
        template: echo
        arguments: {parameters: [{name: m, value: "{{item.n}}"}]}
        withItems: [{n: 1}, {n: 2}, {n: 3}]
    - - name: sum
        template: echo
        arguments: {parameters: [{name: m, value: "{{steps.gen.outputs.result}}"}]}
    - - name: seq
        template: echo
        arguments: {parameters: [{name: m, value: "s{{item}}"}]}
        withSequence: {count: "2", start: "5"}
  - name: echo
    inputs: {parameters: [{name: m}]}
    container: {image: alpine, command: [echo, "{{inputs.parameters.m}}"]}
"#;
    let r = run(yaml, |_, args| ok(args.trim_start_matches("echo ")));
    assert_eq!(r.finished, Some(Phase::Succeeded));
    let names: Vec<&str> = r.started.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        &names[..3],
        &["l[0].gen(0:n:1)", "l[0].gen(1:n:2)", "l[0].gen(2:n:3)"]
    );
    assert_eq!(r.started[3].1, r#"echo ["1","2","3"]"#);
    assert_eq!(r.started[4].1, "echo s5");
    assert_eq!(r.started[5].1, "echo s6");
}

#[test]
fn retry_until_success_with_limit() {
    let yaml = r#"
kind: Workflow
metadata: {name: r}
spec:
  entrypoint: main
  templates:
  - name: main
    retryStrategy: {limit: "3", backoff: {duration: "1s", factor: 2}}
    container: {image: alpine, command: [try, "{{retries}}"]}
"#;
    let mut calls = 0;
    let r = run(yaml, |_, _| {
        calls += 1;
        if calls < 3 { fail(1) } else { ok("done") }
    });
    assert_eq!(r.finished, Some(Phase::Succeeded));
    let args: Vec<&str> = r.started.iter().map(|(_, a)| a.as_str()).collect();
    assert_eq!(args, vec!["try 0", "try 1", "try 2"]);
    assert_eq!(r.m.node("r").unwrap().node_type, NodeType::Retry);
    // backoff 1s then 2s
    assert!(r.now >= 1_000_000 + 3_000);

    let r = run(yaml, |_, _| fail(2));
    assert_eq!(r.finished, Some(Phase::Failed));
    assert_eq!(r.started.len(), 4, "limit 3 = 4 attempts");
}

#[test]
fn exit_handler_sees_workflow_status() {
    let yaml = r#"
kind: Workflow
metadata: {name: x}
spec:
  entrypoint: main
  onExit: exit
  templates:
  - {name: main, container: {image: a, command: [fail]}}
  - {name: exit, container: {image: a, command: [echo, "status={{workflow.status}}"]}}
"#;
    let r = run(
        yaml,
        |_, args| if args == "fail" { fail(1) } else { ok("") },
    );
    assert_eq!(r.finished, Some(Phase::Failed));
    assert_eq!(
        r.started[1],
        ("x.onExit".to_string(), "echo status=Failed".to_string())
    );
}

#[test]
fn restore_does_not_rerun_finished_steps() {
    let m = Machine::new(workflow(DIAMOND), "u".into(), BTreeMap::new(), 0).unwrap();
    let mut m = m;
    let mut started = Vec::new();
    let acts = m.handle(Event::Start, 1);
    for a in acts {
        if let Action::StartStep { node, .. } = a {
            started.push(node);
        }
    }
    assert_eq!(started.len(), 1);
    let acts = m.handle(
        Event::StepDone {
            node: started[0].clone(),
            outcome: ok("A"),
        },
        2,
    );
    let b_c: Vec<NodeId> = acts
        .into_iter()
        .filter_map(|a| {
            if let Action::StartStep { node, .. } = a {
                Some(node)
            } else {
                None
            }
        })
        .collect();
    assert_eq!(b_c.len(), 2);
    // Crash: persist rows through JSON, as the store would.
    let mut state: WorkflowState =
        serde_json::from_value(serde_json::to_value(m.state()).unwrap()).unwrap();
    state.workflow = m.state().workflow.clone();
    let nodes: Vec<Node> = m
        .nodes()
        .map(|n| serde_json::from_value(serde_json::to_value(n).unwrap()).unwrap())
        .collect();
    let mut m2 = Machine::restore(state, nodes);
    let acts = m2.recover(3);
    assert!(
        !acts.iter().any(|a| matches!(a, Action::StartStep { .. })),
        "running steps are the runtime's to re-poll: {acts:?}"
    );
    let r = run_with_events(&mut m2, b_c);
    assert_eq!(r, Some(Phase::Succeeded));
    assert_eq!(
        m2.node(&node_by_display(&m2, "D").id)
            .unwrap()
            .outputs
            .as_ref()
            .unwrap()
            .result
            .as_deref(),
        Some("D")
    );
}

fn run_with_events(m: &mut Machine, running: Vec<NodeId>) -> Option<Phase> {
    let mut q: VecDeque<Event> = running
        .into_iter()
        .map(|node| Event::StepDone {
            node,
            outcome: ok("x"),
        })
        .collect();
    let mut fin = None;
    while let Some(e) = q.pop_front() {
        for a in m.handle(e, 10) {
            match a {
                Action::StartStep { node, .. } => {
                    let name = m.node(&node).unwrap().display_name.clone();
                    q.push_back(Event::StepDone {
                        node,
                        outcome: ok(&name),
                    })
                }
                Action::Finished { phase } => fin = Some(phase),
                _ => {}
            }
        }
    }
    fin
}

#[test]
fn deep_recursion_fails_cleanly() {
    let yaml = r#"
kind: Workflow
metadata: {name: rec}
spec:
  entrypoint: loop
  templates:
  - name: loop
    steps:
    - - {name: again, template: loop}
"#;
    let r = run(yaml, |_, _| ok(""));
    assert_eq!(r.finished, Some(Phase::Error));
    let deepest =
        r.m.nodes()
            .filter(|n| n.phase == Phase::Error)
            .map(|n| n.depth)
            .max()
            .unwrap();
    assert!(deepest > MAX_DEPTH_FOR_TESTS);
}
const MAX_DEPTH_FOR_TESTS: u32 = 999;

#[test]
fn parallelism_limits_running_leaves() {
    let yaml = r#"
kind: Workflow
metadata: {name: p}
spec:
  entrypoint: main
  parallelism: 2
  templates:
  - name: main
    steps:
    - - {name: s, template: t, withItems: [1, 2, 3, 4, 5]}
  - {name: t, container: {image: a, command: [x]}}
"#;
    let mut m = Machine::new(workflow(yaml), "u".into(), BTreeMap::new(), 0).unwrap();
    let starts = |acts: Vec<Action>| -> Vec<NodeId> {
        acts.into_iter()
            .filter_map(|a| {
                if let Action::StartStep { node, .. } = a {
                    Some(node)
                } else {
                    None
                }
            })
            .collect()
    };
    let first = starts(m.handle(Event::Start, 1));
    assert_eq!(first.len(), 2);
    let next = starts(m.handle(
        Event::StepDone {
            node: first[0].clone(),
            outcome: ok(""),
        },
        2,
    ));
    assert_eq!(next.len(), 1);
}

#[test]
fn suspend_waits_for_resume_and_supplies_outputs() {
    let yaml = r#"
kind: Workflow
metadata: {name: s}
spec:
  entrypoint: main
  templates:
  - name: main
    steps:
    - - {name: approve, template: approve}
    - - {name: after, template: echo, arguments: {parameters: [{name: m, value: "{{steps.approve.outputs.parameters.ok}}"}]}}
  - name: approve
    suspend: {}
    outputs: {parameters: [{name: ok, valueFrom: {supplied: {}}}]}
  - name: echo
    inputs: {parameters: [{name: m}]}
    container: {image: a, command: [echo, "{{inputs.parameters.m}}"]}
"#;
    let mut m = Machine::new(workflow(yaml), "u".into(), BTreeMap::new(), 0).unwrap();
    let acts = m.handle(Event::Start, 1);
    assert!(acts.is_empty(), "{acts:?}");
    assert_eq!(node_by_display(&m, "approve").phase, Phase::Running);
    let acts = m.handle(
        Event::Resume {
            node: None,
            parameters: vec![("ok".into(), "yes".into())],
        },
        2,
    );
    let Some(Action::StartStep { template, .. }) = acts.first() else {
        panic!("{acts:?}")
    };
    assert_eq!(args_of(template), "echo yes");
}

#[test]
fn workflow_deadline_stops_running_steps() {
    let yaml = r#"
kind: Workflow
metadata: {name: dl}
spec:
  entrypoint: main
  activeDeadlineSeconds: 5
  templates:
  - {name: main, container: {image: a, command: [sleep, "100"]}}
"#;
    let mut m = Machine::new(workflow(yaml), "u".into(), BTreeMap::new(), 0).unwrap();
    let acts = m.handle(Event::Start, 0);
    assert!(acts.contains(&Action::SetTimer {
        node: None,
        at_ms: 5000
    }));
    let acts = m.handle(Event::WorkflowTimer, 5000);
    assert!(acts.iter().any(|a| matches!(a, Action::CancelStep { .. })));
    assert!(acts.contains(&Action::Finished {
        phase: Phase::Failed
    }));
    assert_eq!(
        m.state().message.as_deref(),
        Some("Max duration limit exceeded")
    );
}
