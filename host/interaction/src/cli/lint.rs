//! `weft lint FILE…`: problems with file:line:column, field path and reason.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use weft_engine::lint::{Diagnostic, KnownTemplates, Severity, lint as lint_docs};
use weft_engine::model::{Document, read_file};
use weft_engine::runtime::StateStore;

use super::{EXIT_INVALID, Invalid, Output};
use crate::app::App;
use crate::config::Config;

#[derive(Args, Debug)]
pub struct LintArgs {
    pub files: Vec<PathBuf>,
    /// `json` for machines.
    #[arg(short = 'o', long)]
    pub output: Option<Output>,
}

/// Known templates: those in the documents plus those in the store.
async fn known(app: &App, docs: &[Document]) -> Result<KnownTemplates> {
    let mut k = KnownTemplates::from_documents(docs);
    if !k.has_unresolved(docs) {
        return Ok(k); // the files are self-contained: no store read
    }
    for kind in ["WorkflowTemplate", "ClusterWorkflowTemplate"] {
        for t in app.store.list_templates(kind, None).await? {
            k.add(
                kind,
                &t.name,
                t.body.get("spec").unwrap_or(&serde_json::Value::Null),
            );
        }
    }
    Ok(k)
}

/// Lint documents before running or storing them; errors stop with exit code 2.
pub async fn check_or_fail(app: &App, docs: Vec<Document>) -> Result<()> {
    let k = known(app, &docs).await?;
    let diags: Vec<Diagnostic> = lint_docs(&docs, &k)
        .into_iter()
        .filter(|d| d.severity == Severity::Error)
        .collect();
    if diags.is_empty() {
        return Ok(());
    }
    let text: Vec<String> = diags.iter().map(ToString::to_string).collect();
    Err(Invalid(text.join("\n")).into())
}

pub async fn lint(config: Config, args: LintArgs) -> Result<u8> {
    if args.files.is_empty() {
        return Err(Invalid("name at least one file to lint".into()).into());
    }
    let mut docs = Vec::new();
    let mut diags = Vec::new();
    for f in &args.files {
        match read_file(f) {
            Ok(d) => docs.extend(d),
            Err(e) => diags.push(Diagnostic::from(e)),
        }
    }
    let app = App::open(config).await?;
    let k = known(&app, &docs).await?;
    diags.extend(lint_docs(&docs, &k));
    let errors = diags
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    if args.output == Some(Output::Json) {
        let v: Vec<_> = diags.iter().map(Diagnostic::to_json).collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        for d in &diags {
            println!("{d}");
        }
        if diags.is_empty() {
            println!("no problems found in {} file(s)", args.files.len());
        }
    }
    Ok(if errors > 0 { EXIT_INVALID } else { 0 })
}
