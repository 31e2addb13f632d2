//! CronWorkflow scheduling, pure: no clock, no IO. The server's cron loop
//! (`host/interaction/src/cron.rs`) reads the stored CronWorkflows, calls
//! [`due`] with the time it read the clock, and carries out the [`Decision`].
//!
//! Semantics follow Argo's cron controller (`workflow/cron/operator.go`):
//!
//! - **Schedules**: `spec.schedules` (and the older `spec.schedule`) are
//!   standard 5-field cron expressions (minute hour day-of-month month
//!   day-of-week, names like `MON`/`JAN`, `?`) or the descriptors `@yearly`,
//!   `@annually`, `@monthly`, `@weekly`, `@daily`, `@midnight`, `@hourly`. A
//!   leading `CRON_TZ=<zone>` overrides the time zone for that schedule, as in
//!   Argo. A seconds field is not Argo syntax and is refused; so is `@every`
//!   (not supported by weft).
//! - **Time zone**: `spec.timezone` is an IANA name; without one, UTC (Argo
//!   uses the controller's machine zone; a server's zone is rarely what a
//!   workflow author means, so weft fixes it). Daylight saving follows Argo's
//!   documented behaviour: a wall-clock time the clock skips does not run that
//!   day, and one it repeats runs at both instants ([`Schedule::next_after`]).
//! - **Names**: the workflow for a scheduled time `t` is
//!   `<cron-name>-<unix seconds of t>` ([`workflow_name`]). The name is
//!   deterministic, so a second replica scheduling the same time finds the
//!   name taken and treats the slot as done.
//! - **On-time runs** are the slots that fell between the loop's previous look
//!   at a CronWorkflow and now; only the latest one runs.
//! - **Missed runs** (Argo bug #9632): on the loop's first look at a
//!   CronWorkflow (server start, or a CronWorkflow just created), the most
//!   recent slot after `status.lastScheduledTime` runs **once** if it is still
//!   within `startingDeadlineSeconds`. Without `startingDeadlineSeconds`, or
//!   with no `lastScheduledTime` (never scheduled), missed slots are skipped —
//!   Argo's behaviour since v3.5.
//! - **Policy**, in Argo's order: `suspend` → `when` → `concurrencyPolicy`
//!   (`Allow` runs, `Forbid` skips while a workflow of this cron is active,
//!   `Replace` terminates the active ones and runs).
//! - **`when`** is a template (`{{=…}}` or `{{…}}`) over
//!   `cronworkflow.name`, `.namespace`, `.labels.<k>`, `.annotations.<k>`,
//!   `.labels.json`, `.annotations.json`, `.lastScheduledTime` (RFC 3339, empty
//!   when never scheduled), `.failed`, `.succeeded`; the substituted text is a
//!   govaluate condition, as in Argo. Variables are strings: time arithmetic
//!   such as `now() - cronworkflow.lastScheduledTime` is not supported.
//! - **History**: finished workflows of the cron beyond
//!   `successfulJobsHistoryLimit` (default 3) / `failedJobsHistoryLimit`
//!   (default 1; `Error` counts as failed) are deleted, oldest first
//!   ([`history_to_delete`]).

use std::collections::BTreeMap;

use chrono::{DateTime, LocalResult, NaiveDateTime, SecondsFormat, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::model::{CronWorkflow, CronWorkflowSpec};

/// Label on every workflow a CronWorkflow created: the CronWorkflow's name.
pub const LABEL_CRON_WORKFLOW: &str = "workflows.argoproj.io/cron-workflow";
/// Annotation on every workflow a CronWorkflow created: the scheduled time (RFC 3339).
pub const ANNOTATION_SCHEDULED_TIME: &str = "workflows.argoproj.io/scheduled-time";
/// CronWorkflow labels copied to the workflows it creates (as Argo does).
pub const LABELS_TO_PROPAGATE: [&str; 3] = [
    "workflows.argoproj.io/creator",
    "workflows.argoproj.io/creator-email",
    "workflows.argoproj.io/creator-preferred-username",
];

/// Argo's defaults for the history limits.
pub const DEFAULT_SUCCESSFUL_HISTORY: usize = 3;
pub const DEFAULT_FAILED_HISTORY: usize = 1;

/// A CronWorkflow spec Argo would reject. `Display` is Argo-style and names
/// the field (`spec.schedules[0]: …`); [`CronSpecError::pointer`] is the same
/// field as a JSON pointer, for lint.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CronSpecError {
    #[error("{field}: cron schedule {schedule:?} is malformed: {reason}")]
    Schedule {
        /// `spec.schedules[0]` or `spec.schedule`.
        field: String,
        schedule: String,
        reason: String,
    },
    #[error("spec.timezone: invalid timezone {0:?}: not an IANA time zone name")]
    Timezone(String),
    #[error("spec.schedules: at least one schedule is required")]
    NoSchedule,
    #[error("spec.concurrencyPolicy: {0:?} is not one of Allow, Forbid, Replace")]
    ConcurrencyPolicy(String),
    #[error("spec.{field}: must not be negative (got {value})")]
    Negative { field: &'static str, value: i64 },
}

impl CronSpecError {
    /// The field as a JSON pointer: `/spec/schedules/0`.
    pub fn pointer(&self) -> String {
        match self {
            CronSpecError::Schedule { field, .. } => {
                let f = field.replace('[', ".").replace(']', "");
                format!("/{}", f.replace('.', "/"))
            }
            CronSpecError::Timezone(_) => "/spec/timezone".into(),
            CronSpecError::NoSchedule => "/spec/schedules".into(),
            CronSpecError::ConcurrencyPolicy(_) => "/spec/concurrencyPolicy".into(),
            CronSpecError::Negative { field, .. } => format!("/spec/{field}"),
        }
    }
}

/// `concurrencyPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    #[default]
    Allow,
    Forbid,
    Replace,
}

/// One parsed schedule in its time zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: Cron,
    tz: Tz,
    text: String,
}

/// Most schedule matches walked over for one answer (skipped wall-clock times
/// in a DST gap are the only reason to take more than two).
const MAX_STEPS: usize = 10_000;

impl Schedule {
    /// Parse one schedule; `timezone` is the spec's (None: UTC). The error is the reason only.
    pub fn parse(text: &str, timezone: Option<&str>) -> Result<Schedule, String> {
        let mut tz = match timezone.filter(|t| !t.is_empty()) {
            None => Tz::UTC,
            Some(t) => parse_tz(t).ok_or_else(|| format!("unknown time zone {t:?}"))?,
        };
        let mut pattern = text.trim();
        for prefix in ["CRON_TZ=", "TZ="] {
            if let Some(rest) = pattern.strip_prefix(prefix) {
                let (zone, rest) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
                tz = parse_tz(zone).ok_or_else(|| format!("unknown time zone {zone:?}"))?;
                pattern = rest.trim();
            }
        }
        let lower = pattern.to_ascii_lowercase();
        if lower.starts_with("@every") {
            return Err("@every intervals are not supported; use a cron expression".into());
        }
        let pattern = if lower == "@midnight" {
            "@daily"
        } else {
            pattern
        };
        if pattern.starts_with('@')
            && ![
                "@yearly",
                "@annually",
                "@monthly",
                "@weekly",
                "@daily",
                "@hourly",
            ]
            .contains(&pattern.to_ascii_lowercase().as_str())
        {
            return Err(format!("unrecognized descriptor {pattern:?}"));
        }
        if !pattern.starts_with('@') {
            let n = pattern.split_whitespace().count();
            if n != 5 {
                return Err(format!("expected exactly 5 fields, found {n}"));
            }
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .sloppy_ranges(true)
            .build()
            .parse(pattern)
            .map_err(|e| e.to_string())?;
        Ok(Schedule {
            cron,
            tz,
            text: text.to_string(),
        })
    }

    /// The schedule as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn timezone(&self) -> Tz {
        self.tz
    }

    fn wall(&self, t: DateTime<Utc>) -> DateTime<Tz> {
        t.with_timezone(&self.tz)
    }

    fn resolve(&self, wall: &NaiveDateTime) -> LocalResult<DateTime<Tz>> {
        self.tz.from_local_datetime(wall)
    }

    /// The latest scheduled instant at or before `t`.
    ///
    /// Wall-clock matches are found on the naive local clock, then mapped to
    /// instants: a match in a DST gap has none (skipped), one in a repeated
    /// hour has two (both run).
    pub fn prev_at_or_before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = self.wall(t);
        let w = local.naive_local();
        // The latest wall-clock match at or before `w` that maps to an instant ≤ t.
        let mut best = None;
        let mut cursor = w;
        let mut inclusive = true;
        for _ in 0..MAX_STEPS {
            let m = self
                .cron
                .find_previous_occurrence(&cursor, inclusive)
                .ok()?;
            let found = match self.resolve(&m) {
                LocalResult::Single(x) => Some(x).filter(|x| *x <= local),
                LocalResult::Ambiguous(e, l) => [l, e].into_iter().find(|x| *x <= local),
                LocalResult::None => None,
            };
            if found.is_some() {
                best = found;
                break;
            }
            cursor = m;
            inclusive = false;
        }
        // When `t` is in the second pass of a repeated hour, wall times after `w`
        // in that hour were first passed before `t`.
        if let LocalResult::Ambiguous(e, l) = self.resolve(&w)
            && l == local
        {
            let mut cursor = w + (l - e);
            for _ in 0..MAX_STEPS {
                let Ok(m) = self.cron.find_previous_occurrence(&cursor, false) else {
                    break;
                };
                if m <= w {
                    break;
                }
                if let LocalResult::Ambiguous(e2, _) = self.resolve(&m)
                    && e2 <= local
                {
                    best = best.max(Some(e2));
                    break;
                }
                cursor = m;
            }
        }
        best.map(|x| x.with_timezone(&Utc))
    }

    /// The first scheduled instant after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = self.wall(t);
        let w = local.naive_local();
        let mut best = None;
        let mut cursor = w;
        for _ in 0..MAX_STEPS {
            let m = self.cron.find_next_occurrence(&cursor, false).ok()?;
            let found = match self.resolve(&m) {
                LocalResult::Single(x) => Some(x).filter(|x| *x > local),
                LocalResult::Ambiguous(e, l) => [e, l].into_iter().find(|x| *x > local),
                LocalResult::None => None,
            };
            if found.is_some() {
                best = found;
                break;
            }
            cursor = m;
        }
        // When `t` is in the first pass of a repeated hour, wall times up to `w`
        // in that hour come again after `t`.
        if let LocalResult::Ambiguous(e, l) = self.resolve(&w)
            && e == local
        {
            let mut cursor = w - (l - e);
            let mut inclusive = true;
            for _ in 0..MAX_STEPS {
                let Ok(m) = self.cron.find_next_occurrence(&cursor, inclusive) else {
                    break;
                };
                if m > w {
                    break;
                }
                if let LocalResult::Ambiguous(_, l2) = self.resolve(&m)
                    && l2 > local
                {
                    best = match best {
                        Some(b) if b <= l2 => Some(b),
                        _ => Some(l2),
                    };
                    break;
                }
                cursor = m;
                inclusive = false;
            }
        }
        best.map(|x| x.with_timezone(&Utc))
    }
}

fn parse_tz(name: &str) -> Option<Tz> {
    name.parse::<Tz>().ok()
}

/// Every schedule of a spec, parsed, with the spec's other fields checked.
#[derive(Debug, Clone)]
pub struct Schedules {
    pub schedules: Vec<Schedule>,
    pub policy: Policy,
}

impl Schedules {
    /// Parse and check a spec: the first problem found.
    pub fn parse(spec: &CronWorkflowSpec) -> Result<Schedules, CronSpecError> {
        let tz = spec.timezone.as_deref().filter(|t| !t.is_empty());
        if let Some(t) = tz
            && parse_tz(t).is_none()
        {
            return Err(CronSpecError::Timezone(t.to_string()));
        }
        let mut fields: Vec<(String, &str)> = Vec::new();
        if let Some(s) = &spec.schedule
            && !s.trim().is_empty()
        {
            fields.push(("spec.schedule".into(), s));
        }
        for (i, s) in spec.schedules.iter().enumerate() {
            fields.push((format!("spec.schedules[{i}]"), s));
        }
        if fields.is_empty() {
            return Err(CronSpecError::NoSchedule);
        }
        let mut schedules = Vec::new();
        for (field, text) in fields {
            let s = Schedule::parse(text, tz).map_err(|reason| CronSpecError::Schedule {
                field,
                schedule: text.to_string(),
                reason,
            })?;
            schedules.push(s);
        }
        let policy = match spec.concurrency_policy.as_deref() {
            None | Some("") | Some("Allow") => Policy::Allow,
            Some("Forbid") => Policy::Forbid,
            Some("Replace") => Policy::Replace,
            Some(other) => return Err(CronSpecError::ConcurrencyPolicy(other.to_string())),
        };
        for (field, v) in [
            ("startingDeadlineSeconds", spec.starting_deadline_seconds),
            (
                "successfulJobsHistoryLimit",
                spec.successful_jobs_history_limit,
            ),
            ("failedJobsHistoryLimit", spec.failed_jobs_history_limit),
        ] {
            if let Some(value) = v
                && value < 0
            {
                return Err(CronSpecError::Negative { field, value });
            }
        }
        Ok(Schedules { schedules, policy })
    }

    /// The latest scheduled instant at or before `t`, over every schedule.
    pub fn prev_at_or_before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.schedules
            .iter()
            .filter_map(|s| s.prev_at_or_before(t))
            .max()
    }

    /// The first scheduled instant after `t`, over every schedule.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.schedules.iter().filter_map(|s| s.next_after(t)).min()
    }
}

/// A reference to a workflow, as in Argo's `status.active` (a Kubernetes ObjectReference).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct WorkflowRef {
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub uid: String,
}

/// One entry of `status.conditions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub kind: String,
    pub status: String,
    #[serde(default)]
    pub message: String,
}

/// Condition types Argo sets on a CronWorkflow.
pub const CONDITION_SPEC_ERROR: &str = "SpecError";
pub const CONDITION_SUBMISSION_ERROR: &str = "SubmissionError";

/// A CronWorkflow's `status`, as Argo keeps it. Unknown fields are kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct CronStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scheduled_time: Option<String>,
    #[serde(default)]
    pub active: Vec<WorkflowRef>,
    #[serde(default)]
    pub succeeded: i64,
    #[serde(default)]
    pub failed: i64,
    #[serde(default)]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl CronStatus {
    /// Read a stored status (anything unreadable counts as empty).
    pub fn from_value(v: &Value) -> CronStatus {
        serde_json::from_value(v.clone()).unwrap_or_default()
    }

    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// `lastScheduledTime`, parsed.
    pub fn last_scheduled(&self) -> Option<DateTime<Utc>> {
        self.last_scheduled_time
            .as_deref()
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map(|t| t.with_timezone(&Utc))
    }

    pub fn set_last_scheduled(&mut self, t: DateTime<Utc>) {
        if self.last_scheduled().is_none_or(|l| l < t) {
            self.last_scheduled_time = Some(rfc3339(t));
        }
    }

    /// Set (or replace) a condition of this type.
    pub fn set_condition(&mut self, kind: &str, message: impl Into<String>) {
        let c = Condition {
            kind: kind.into(),
            status: "True".into(),
            message: message.into(),
        };
        match self.conditions.iter_mut().find(|c| c.kind == kind) {
            Some(old) => *old = c,
            None => self.conditions.push(c),
        }
    }

    pub fn remove_condition(&mut self, kind: &str) {
        self.conditions.retain(|c| c.kind != kind);
    }
}

/// RFC 3339 in UTC with whole seconds, as Kubernetes writes times.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The workflow name for a scheduled time: `<cron-name>-<unix seconds>`.
pub fn workflow_name(cron_name: &str, scheduled: DateTime<Utc>) -> String {
    format!("{cron_name}-{}", scheduled.timestamp())
}

/// Why a slot that came due does not run.
#[derive(Debug, Clone, PartialEq)]
pub enum SkipReason {
    /// `spec.suspend`.
    Suspended,
    /// A missed slot older than `startingDeadlineSeconds`, or missed with no deadline set.
    DeadlinePassed,
    /// `when` evaluated to false.
    WhenFalse,
    /// `when` could not be evaluated (the message); reported as a condition.
    WhenError(String),
    /// `concurrencyPolicy: Forbid` and these workflows are still active.
    Forbidden(Vec<String>),
}

/// What to do for one CronWorkflow now.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Nothing came due since the last look.
    Idle,
    /// Submit the workflow for `scheduled`; first terminate `replace` (Replace policy).
    Run {
        scheduled: DateTime<Utc>,
        /// A slot missed while nobody was looking (start-up), within the deadline.
        missed: bool,
        replace: Vec<String>,
    },
    /// `scheduled` came due but does not run.
    Skip {
        scheduled: DateTime<Utc>,
        reason: SkipReason,
    },
    /// The spec is invalid: nothing is scheduled.
    Invalid(CronSpecError),
}

/// Decide what one CronWorkflow does at `now`.
///
/// `status` should hold the workflows of this cron that are active now
/// (`status.active`, reconciled by the caller). `last_check` is when the
/// caller last called `due` for this CronWorkflow (None on its first look):
/// slots in `(last_check, now]` are on time; on the first look, the latest
/// slot after `status.lastScheduledTime` is a missed one (see the module docs).
pub fn due(
    cron: &CronWorkflow,
    status: &CronStatus,
    last_check: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Decision {
    let schedules = match Schedules::parse(&cron.spec) {
        Ok(s) => s,
        Err(e) => return Decision::Invalid(e),
    };
    let Some(scheduled) = schedules.prev_at_or_before(now) else {
        return Decision::Idle;
    };
    let last_scheduled = status.last_scheduled();
    if last_scheduled.is_some_and(|l| scheduled <= l) {
        return Decision::Idle;
    }
    let missed = match last_check {
        Some(c) if scheduled <= c => return Decision::Idle,
        Some(_) => false,
        // First look and never scheduled: nothing was missed.
        None if last_scheduled.is_none() => return Decision::Idle,
        None => true,
    };
    let skip = |reason| Decision::Skip { scheduled, reason };
    if missed {
        match cron.spec.starting_deadline_seconds {
            Some(d) if now < scheduled + chrono::Duration::seconds(d) => {}
            _ => return skip(SkipReason::DeadlinePassed),
        }
    }
    if cron.spec.suspend == Some(true) {
        return skip(SkipReason::Suspended);
    }
    match eval_when(cron, status) {
        Ok(true) => {}
        Ok(false) => return skip(SkipReason::WhenFalse),
        Err(e) => return skip(SkipReason::WhenError(e)),
    }
    let active: Vec<String> = status.active.iter().map(|r| r.name.clone()).collect();
    match schedules.policy {
        Policy::Forbid if !active.is_empty() => skip(SkipReason::Forbidden(active)),
        Policy::Replace => Decision::Run {
            scheduled,
            missed,
            replace: active,
        },
        _ => Decision::Run {
            scheduled,
            missed,
            replace: Vec::new(),
        },
    }
}

/// The `cronworkflow.*` variables of `when`.
pub fn when_vars(cron: &CronWorkflow, status: &CronStatus) -> weft_expr::Vars {
    let mut vars = weft_expr::Vars::new();
    let p = "cronworkflow";
    vars.insert(
        format!("{p}.name"),
        cron.metadata.name.clone().unwrap_or_default(),
    );
    vars.insert(
        format!("{p}.namespace"),
        cron.metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into()),
    );
    for (k, v) in &cron.metadata.labels {
        vars.insert(format!("{p}.labels.{k}"), v.clone());
    }
    for (k, v) in &cron.metadata.annotations {
        vars.insert(format!("{p}.annotations.{k}"), v.clone());
    }
    let json = |m: &BTreeMap<String, String>| serde_json::to_string(m).unwrap_or_default();
    vars.insert(format!("{p}.labels.json"), json(&cron.metadata.labels));
    vars.insert(
        format!("{p}.annotations.json"),
        json(&cron.metadata.annotations),
    );
    vars.insert(
        format!("{p}.lastScheduledTime"),
        status.last_scheduled_time.clone().unwrap_or_default(),
    );
    vars.insert(format!("{p}.failed"), status.failed.to_string());
    vars.insert(format!("{p}.succeeded"), status.succeeded.to_string());
    vars
}

/// Evaluate `spec.when` (absent or empty: true).
pub fn eval_when(cron: &CronWorkflow, status: &CronStatus) -> Result<bool, String> {
    let Some(when) = cron.spec.when.as_deref().filter(|w| !w.trim().is_empty()) else {
        return Ok(true);
    };
    let vars = when_vars(cron, status);
    let text = weft_expr::substitute(when, &vars, weft_expr::Missing::Error)
        .map_err(|e| format!("spec.when: {e}"))?;
    weft_expr::eval_when(&text).map_err(|e| format!("spec.when: {e}"))
}

/// A finished workflow of a cron, for the history limits.
#[derive(Debug, Clone, PartialEq)]
pub struct Finished {
    pub name: String,
    pub succeeded: bool,
    pub finished_ms: i64,
}

/// The finished workflows to delete: beyond `successfulJobsHistoryLimit`
/// (default 3) among the succeeded and `failedJobsHistoryLimit` (default 1)
/// among the failed (Failed or Error), oldest first by finish time.
pub fn history_to_delete(spec: &CronWorkflowSpec, finished: &[Finished]) -> Vec<String> {
    let limit = |v: Option<i64>, default: usize| match v {
        Some(n) if n >= 0 => n as usize,
        _ => default,
    };
    let keep_ok = limit(
        spec.successful_jobs_history_limit,
        DEFAULT_SUCCESSFUL_HISTORY,
    );
    let keep_failed = limit(spec.failed_jobs_history_limit, DEFAULT_FAILED_HISTORY);
    let mut out = Vec::new();
    for (ok, keep) in [(true, keep_ok), (false, keep_failed)] {
        let mut group: Vec<&Finished> = finished.iter().filter(|f| f.succeeded == ok).collect();
        // newest first; ties by name so the choice is deterministic
        group.sort_by(|a, b| {
            b.finished_ms
                .cmp(&a.finished_ms)
                .then_with(|| b.name.cmp(&a.name))
        });
        let mut old: Vec<String> = group.iter().skip(keep).map(|f| f.name.clone()).collect();
        old.reverse();
        out.extend(old);
    }
    out
}

#[cfg(test)]
mod tests;
