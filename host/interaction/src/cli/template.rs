//! `weft template|cluster-template|cron create|list|get|delete` on the store.

use std::path::PathBuf;

use anyhow::Result;
use clap::Subcommand;
use weft_engine::model::{Object, read_objects};
use weft_engine::runtime::StateStore;

use super::Invalid;
use crate::app::App;
use crate::config::Config;

#[derive(Subcommand, Debug)]
pub enum TemplateCmd {
    /// Store every object of the given kind found in the files.
    Create {
        files: Vec<PathBuf>,
    },
    List {
        #[arg(short = 'o', long)]
        output: Option<super::Output>,
    },
    Get {
        name: String,
        #[arg(short = 'o', long)]
        output: Option<super::Output>,
    },
    Delete {
        names: Vec<String>,
    },
}

fn kind_of(o: &Object) -> &'static str {
    match o {
        Object::Workflow(_) => "Workflow",
        Object::WorkflowTemplate(_) => "WorkflowTemplate",
        Object::ClusterWorkflowTemplate(_) => "ClusterWorkflowTemplate",
        Object::CronWorkflow(_) => "CronWorkflow",
    }
}

pub async fn run(config: Config, ns: &str, kind: &str, cmd: TemplateCmd) -> Result<u8> {
    let app = App::open(config).await?;
    match cmd {
        TemplateCmd::Create { files } => {
            if files.is_empty() {
                return Err(Invalid("name at least one file".into()).into());
            }
            for f in files {
                let docs = read_objects(&f).map_err(|e| Invalid(e.to_string()))?;
                super::lint::check_or_fail(&app, docs.iter().map(|(d, _)| d.clone()).collect())
                    .await?;
                let mut objects = Vec::new();
                for (doc, o) in docs {
                    if kind_of(&o) != kind {
                        return Err(Invalid(format!(
                            "{}: document {} is a {}, not a {kind}",
                            f.display(),
                            doc.index + 1,
                            kind_of(&o)
                        ))
                        .into());
                    }
                    println!("{kind} '{}' created", doc.name());
                    objects.push(o);
                }
                super::run::store_templates(&app.store, ns, objects).await?;
            }
        }
        TemplateCmd::List { output } => {
            let list = app
                .store
                .list_templates(
                    kind,
                    if kind == "ClusterWorkflowTemplate" {
                        None
                    } else {
                        Some(ns)
                    },
                )
                .await?;
            if matches!(output, Some(super::Output::Json | super::Output::Yaml)) {
                let items: Vec<_> = list.iter().map(|t| t.body.clone()).collect();
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({"items": items}))?
                );
            } else {
                println!("NAME");
                for t in list {
                    println!("{}", t.name);
                }
            }
        }
        TemplateCmd::Get { name, output } => {
            let t = app
                .store
                .get_template(kind, ns, &name)
                .await?
                .ok_or_else(|| Invalid(format!("{kind} {name:?} not found")))?;
            match output {
                Some(super::Output::Yaml) => print!("{}", serde_yaml_ng::to_string(&t.body)?),
                _ => println!("{}", serde_json::to_string_pretty(&t.body)?),
            }
        }
        TemplateCmd::Delete { names } => {
            for n in names {
                app.store.delete_template(kind, ns, &n).await?;
                println!("{kind} '{n}' deleted");
            }
        }
    }
    Ok(0)
}
