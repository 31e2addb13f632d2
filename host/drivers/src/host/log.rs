//! `weft:plugin/log`: diagnostics to tracing, step lines to the `LogSink`.

use weft_bindings::driver::weft::plugin::log::{Host, Level};
use weft_engine::runtime::{LogLine, LogStream};

use crate::runtime::HostState;

impl Host for HostState {
    fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        let plugin = &*self.call.plugin;
        match level {
            Level::Trace => tracing::trace!(plugin, "{message}"),
            Level::Debug => tracing::debug!(plugin, "{message}"),
            Level::Info => tracing::info!(plugin, "{message}"),
            Level::Warn => tracing::warn!(plugin, "{message}"),
            Level::Error => tracing::error!(plugin, "{message}"),
        }
        Ok(())
    }

    fn step_log(&mut self, line: String) -> wasmtime::Result<()> {
        if let Some(step) = &self.call.step {
            self.caps.logs.append(LogLine {
                workflow_uid: step.workflow_uid.clone(),
                node_id: step.node_id.clone(),
                attempt: step.attempt,
                stream: LogStream::Stdout,
                ts_ms: super::clock::now_ms() as i64,
                line,
            });
        }
        Ok(())
    }
}
