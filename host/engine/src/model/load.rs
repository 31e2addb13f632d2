//! Reading Argo documents from YAML (multi-document) or JSON, with a source
//! map so every error can name `file:line:column` and the field path.

use std::collections::HashMap;

use serde::de::DeserializeOwned;
use serde_json::Value;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

use super::{CronWorkflow, Workflow};

/// A problem with an input document, located in its file.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{file}:{line}:{column}: {path}: {message}")]
pub struct LoadError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    /// JSON-pointer-like field path, `/spec/templates/0/name` (`/` for the document).
    pub path: String,
    pub message: String,
}

/// Field path → (line, column), both 1-based, for one document.
#[derive(Debug, Clone, Default)]
pub struct SourceMap {
    positions: HashMap<String, (usize, usize)>,
}

impl SourceMap {
    /// Position of `path` or of its nearest ancestor that has one.
    pub fn locate(&self, path: &str) -> (usize, usize) {
        let mut p = path.to_string();
        loop {
            if let Some(pos) = self.positions.get(&p) {
                return *pos;
            }
            match p.rfind('/') {
                Some(0) | None => return self.positions.get("").copied().unwrap_or((1, 1)),
                Some(i) => p.truncate(i),
            }
        }
    }
}

/// One document of a file.
#[derive(Debug, Clone)]
pub struct Document {
    pub file: String,
    /// 0-based index in a multi-document file.
    pub index: usize,
    pub kind: String,
    pub value: Value,
    pub source: SourceMap,
}

impl Document {
    /// An error at `path` in this document.
    pub fn error(&self, path: &str, message: impl Into<String>) -> LoadError {
        let (line, column) = self.source.locate(path);
        LoadError {
            file: self.file.clone(),
            line,
            column,
            path: if path.is_empty() {
                "/".into()
            } else {
                path.into()
            },
            message: message.into(),
        }
    }

    /// Deserialize into a typed object; errors carry the failing field's position.
    pub fn typed<T: DeserializeOwned>(&self) -> Result<T, LoadError> {
        serde_path_to_error::deserialize::<_, T>(&self.value).map_err(|e| {
            let path = path_to_pointer(&e.path().to_string());
            self.error(&path, e.into_inner().to_string())
        })
    }

    pub fn name(&self) -> String {
        self.value
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    }
}

/// A typed Argo object.
#[derive(Debug, Clone)]
pub enum Object {
    Workflow(Box<Workflow>),
    WorkflowTemplate(Box<Workflow>),
    ClusterWorkflowTemplate(Box<Workflow>),
    CronWorkflow(Box<CronWorkflow>),
}

pub const KINDS: [&str; 4] = [
    "Workflow",
    "WorkflowTemplate",
    "ClusterWorkflowTemplate",
    "CronWorkflow",
];

impl Document {
    /// The typed object, or an error for an unknown `kind`.
    pub fn object(&self) -> Result<Object, LoadError> {
        match self.kind.as_str() {
            "Workflow" => Ok(Object::Workflow(Box::new(self.typed()?))),
            "WorkflowTemplate" => Ok(Object::WorkflowTemplate(Box::new(self.typed()?))),
            "ClusterWorkflowTemplate" => Ok(Object::ClusterWorkflowTemplate(Box::new(self.typed()?))),
            "CronWorkflow" => Ok(Object::CronWorkflow(Box::new(self.typed()?))),
            "" => Err(self.error("/kind", "missing `kind`; expected one of Workflow, WorkflowTemplate, ClusterWorkflowTemplate, CronWorkflow")),
            other => Err(self.error(
                "/kind",
                format!("unknown kind {other:?}; expected one of Workflow, WorkflowTemplate, ClusterWorkflowTemplate, CronWorkflow"),
            )),
        }
    }
}

/// Largest input accepted (bytes). Larger files get a clear error instead of
/// an unbounded parse.
pub const MAX_DOCUMENT_BYTES: usize = 64 * 1024 * 1024;

/// Parse bytes (YAML, possibly multi-document, or JSON) into documents.
pub fn parse_bytes(file: &str, bytes: &[u8]) -> Result<Vec<Document>, LoadError> {
    let at = |line, column, message: String| LoadError {
        file: file.to_string(),
        line,
        column,
        path: "/".into(),
        message,
    };
    if bytes.len() > MAX_DOCUMENT_BYTES {
        return Err(at(
            1,
            1,
            format!(
                "file is {} bytes; the limit is {} bytes",
                bytes.len(),
                MAX_DOCUMENT_BYTES
            ),
        ));
    }
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let good = &bytes[..e.valid_up_to()];
            let line = good.iter().filter(|b| **b == b'\n').count() + 1;
            let column =
                good.len() - good.iter().rposition(|b| *b == b'\n').map_or(0, |p| p + 1) + 1;
            return Err(at(
                line,
                column,
                format!(
                    "invalid UTF-8 at byte {}: workflow files must be UTF-8 text",
                    e.valid_up_to()
                ),
            ));
        }
    };
    parse_str(file, text)
}

/// Parse text (YAML, possibly multi-document, or JSON) into documents.
pub fn parse_str(file: &str, text: &str) -> Result<Vec<Document>, LoadError> {
    let maps = source_maps(text);
    let mut docs = Vec::new();
    for (index, de) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let value: Value = match serde::Deserialize::deserialize(de) {
            Ok(v) => v,
            Err(e) => {
                let (line, column) = e
                    .location()
                    .map(|l| (l.line(), l.column()))
                    .unwrap_or((1, 1));
                return Err(LoadError {
                    file: file.to_string(),
                    line,
                    column,
                    path: "/".into(),
                    message: format!("invalid YAML: {e}"),
                });
            }
        };
        if value.is_null() {
            continue; // empty document (e.g. a trailing `---`)
        }
        let source = maps
            .as_ref()
            .ok()
            .and_then(|m| m.get(index).cloned())
            .unwrap_or_default();
        let doc = Document {
            file: file.to_string(),
            index,
            kind: value
                .get("kind")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            value,
            source,
        };
        if !doc.value.is_object() {
            return Err(doc.error("", "a document must be a mapping (an Argo object)"));
        }
        docs.push(doc);
    }
    Ok(docs)
}

/// Largest workflow file read (bytes). Kubernetes caps an object at about
/// 1.5 MiB; this leaves room for generated files (a 100,000-task DAG is ~6 MiB)
/// while keeping a runaway file from costing gigabytes of memory to parse.
pub const MAX_FILE_BYTES: u64 = 32 << 20;

/// Read and parse a file.
pub fn read_file(path: &std::path::Path) -> Result<Vec<Document>, LoadError> {
    use std::io::Read;
    let name = path.display().to_string();
    let fail = |message: String| LoadError {
        file: name.clone(),
        line: 0,
        column: 0,
        path: "/".into(),
        message,
    };
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes))
        .map_err(|e| fail(format!("cannot read file: {e}")))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        let size = std::fs::metadata(path).map_or(bytes.len() as u64, |m| m.len());
        return Err(fail(format!(
            "file is {:.1} MiB, over the {} MiB limit for workflow files: \
             split it, or move templates into WorkflowTemplates",
            size as f64 / (1u64 << 20) as f64,
            MAX_FILE_BYTES >> 20
        )));
    }
    parse_bytes(&name, &bytes)
}

/// Turn serde_path_to_error's `spec.templates[0].name` into `/spec/templates/0/name`.
fn path_to_pointer(p: &str) -> String {
    if p == "." {
        return String::new();
    }
    let mut out = String::new();
    for seg in p.split('.') {
        let mut rest = seg;
        if let Some(i) = rest.find('[') {
            let (head, tail) = rest.split_at(i);
            if !head.is_empty() {
                out.push('/');
                out.push_str(head);
            }
            rest = tail;
            for idx in rest.split('[').filter(|s| !s.is_empty()) {
                out.push('/');
                out.push_str(idx.trim_end_matches(']'));
            }
        } else {
            out.push('/');
            out.push_str(rest);
        }
    }
    out
}

/// Build one source map per document with yaml-rust2's marked events.
fn source_maps(text: &str) -> Result<Vec<SourceMap>, ()> {
    #[derive(Default)]
    struct Recv {
        maps: Vec<SourceMap>,
        // Stack of containers: (path, Some(next index) for sequences / None for mappings, pending key for mappings)
        stack: Vec<Frame>,
    }
    struct Frame {
        path: String,
        seq_index: Option<usize>,
        key: Option<String>,
        expect_key: bool,
    }
    impl Recv {
        fn child_path(&mut self) -> Option<String> {
            let f = self.stack.last_mut()?;
            match f.seq_index.as_mut() {
                Some(i) => {
                    let p = format!("{}/{}", f.path, i);
                    *i += 1;
                    Some(p)
                }
                None => {
                    let k = f.key.take()?;
                    f.expect_key = true;
                    Some(format!(
                        "{}/{}",
                        f.path,
                        k.replace('~', "~0").replace('/', "~1")
                    ))
                }
            }
        }
        fn record(&mut self, path: &str, m: Marker) {
            if let Some(map) = self.maps.last_mut() {
                map.positions
                    .entry(path.to_string())
                    .or_insert((m.line(), m.col() + 1));
            }
        }
        /// A node starts: returns its path, or None if this event is a mapping key.
        fn node(&mut self, m: Marker, key_text: Option<&str>) -> Option<String> {
            if let Some(f) = self.stack.last_mut()
                && f.seq_index.is_none()
                && f.expect_key
            {
                f.expect_key = false;
                f.key = Some(key_text.unwrap_or("?").to_string());
                let p = format!("{}/{}", f.path, key_text.unwrap_or("?"));
                self.record(&p, m);
                return None;
            }
            let p = if self.stack.is_empty() {
                String::new()
            } else {
                self.child_path()?
            };
            self.record(&p, m);
            Some(p)
        }
    }
    impl MarkedEventReceiver for Recv {
        fn on_event(&mut self, ev: Event, m: Marker) {
            match ev {
                Event::DocumentStart => {
                    self.maps.push(SourceMap::default());
                    self.stack.clear();
                }
                Event::Scalar(s, ..) => {
                    let _ = self.node(m, Some(&s));
                }
                Event::Alias(_) => {
                    let _ = self.node(m, Some("*"));
                }
                Event::SequenceStart(..) => {
                    if let Some(p) = self.node(m, None) {
                        self.stack.push(Frame {
                            path: p,
                            seq_index: Some(0),
                            key: None,
                            expect_key: false,
                        });
                    }
                }
                Event::MappingStart(..) => {
                    if let Some(p) = self.node(m, None) {
                        self.stack.push(Frame {
                            path: p,
                            seq_index: None,
                            key: None,
                            expect_key: true,
                        });
                    }
                }
                Event::SequenceEnd | Event::MappingEnd => {
                    self.stack.pop();
                }
                _ => {}
            }
        }
    }
    let mut recv = Recv::default();
    let mut parser = Parser::new_from_str(text);
    parser.load(&mut recv, true).map_err(|_| ())?;
    // serde_yaml_ng skips nothing, but yaml-rust2 reports empty documents too: drop maps of
    // documents that had no content so indexes line up with non-null documents only when both agree.
    Ok(recv.maps)
}

/// Parse a file's documents into typed objects.
pub fn read_objects(path: &std::path::Path) -> Result<Vec<(Document, Object)>, LoadError> {
    read_file(path)?
        .into_iter()
        .map(|d| d.object().map(|o| (d, o)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const WF: &str = "apiVersion: argoproj.io/v1alpha1\nkind: Workflow\nmetadata:\n  generateName: hello-\nspec:\n  entrypoint: main\n  podGC:\n    strategy: OnPodSuccess\n  templates:\n  - name: main\n    container:\n      image: busybox\n      command: [echo, hi]\n      resources: {limits: {memory: 32Mi}}\n";

    #[test]
    fn round_trip_keeps_unknown_fields() {
        let docs = parse_str("wf.yaml", WF).unwrap();
        let Object::Workflow(wf) = docs[0].object().unwrap() else {
            panic!()
        };
        let back = serde_json::to_value(&*wf).unwrap();
        assert_eq!(back, docs[0].value);
        assert_eq!(
            back.pointer("/spec/podGC/strategy").unwrap(),
            "OnPodSuccess"
        );
    }

    #[test]
    fn positions_of_fields() {
        let docs = parse_str("wf.yaml", WF).unwrap();
        assert_eq!(docs[0].source.locate("/spec/templates/0/name"), (10, 5));
        assert_eq!(
            docs[0].source.locate("/spec/templates/0/container/image"),
            (12, 7)
        );
        // unknown child falls back to the nearest ancestor
        assert_eq!(
            docs[0].source.locate("/spec/templates/0/container/nope"),
            (11, 5)
        );
    }

    #[test]
    fn type_error_names_field_and_line() {
        let text = WF.replace("command: [echo, hi]", "command: {a: 1}");
        let docs = parse_str("wf.yaml", &text).unwrap();
        let err = docs[0].object().unwrap_err();
        assert_eq!(err.path, "/spec/templates/0/container/command");
        assert_eq!((err.file.as_str(), err.line), ("wf.yaml", 13));
    }

    #[test]
    fn multi_document_and_json() {
        let two = format!("{WF}---\n{WF}");
        assert_eq!(parse_str("a.yaml", &two).unwrap().len(), 2);
        let json = r#"{"kind":"Workflow","metadata":{"name":"x"},"spec":{"entrypoint":"m"}}"#;
        let docs = parse_str("a.json", json).unwrap();
        assert_eq!(docs[0].name(), "x");
    }

    #[test]
    fn bad_inputs_are_clear_errors() {
        let err = parse_str("bad.yaml", "kind: Workflow\nspec: [\n").unwrap_err();
        assert!(err.message.contains("invalid YAML"), "{err}");
        let err = parse_bytes("bin.yaml", b"kind: Workflow\nx: \xff\xfe\n").unwrap_err();
        assert_eq!(err.line, 2);
        assert!(err.message.contains("UTF-8"));
        let docs = parse_str("k.yaml", "kind: Pod\n").unwrap();
        assert!(
            docs[0]
                .object()
                .unwrap_err()
                .message
                .contains("unknown kind")
        );
        let deep = format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(parse_str("deep.yaml", &deep).is_err());
    }

    #[test]
    fn older_forms_are_accepted() {
        let cron = "kind: CronWorkflow\nmetadata: {name: c}\nspec:\n  schedule: '* * * * *'\n  workflowSpec:\n    entrypoint: m\n    synchronization:\n      mutex: {name: m}\n";
        let docs = parse_str("c.yaml", cron).unwrap();
        let Object::CronWorkflow(c) = docs[0].object().unwrap() else {
            panic!()
        };
        assert_eq!(c.spec.all_schedules(), vec!["* * * * *"]);
        let sync = c.spec.workflow_spec.synchronization.unwrap();
        assert_eq!(sync.all_mutexes().len(), 1);
    }
}
