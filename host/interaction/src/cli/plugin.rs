//! `weft plugin list|inspect`.

use anyhow::Result;
use clap::Subcommand;

use super::Invalid;
use crate::app::App;
use crate::config::Config;

#[derive(Subcommand, Debug)]
pub enum PluginCmd {
    /// Every loaded plugin: name, world, version, source.
    List,
    /// One plugin in full, grants included (JSON).
    Inspect { name: String },
}

pub async fn run(config: Config, cmd: PluginCmd) -> Result<u8> {
    let app = App::open(config).await?;
    let running = app.start().await?;
    let plugins = running.drivers.plugins().await?;
    match cmd {
        PluginCmd::List => {
            println!(
                "{:<16} {:<10} {:<40} {:<10} SOURCE",
                "NAME", "KIND", "WORLD", "VERSION"
            );
            for p in plugins {
                let source = match &p.source {
                    weft_drivers::PluginSource::Embedded => "embedded".to_string(),
                    weft_drivers::PluginSource::Path(p) => p.display().to_string(),
                };
                let kind = serde_json::to_value(p.kind)?
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                println!(
                    "{:<16} {:<10} {:<40} {:<10} {source}",
                    p.name, kind, p.world, p.version
                );
            }
        }
        PluginCmd::Inspect { name } => {
            let p = plugins
                .into_iter()
                .find(|p| p.name == name)
                .ok_or_else(|| Invalid(format!("no plugin named {name:?}")))?;
            println!("{}", serde_json::to_string_pretty(&p)?);
        }
    }
    Ok(0)
}
