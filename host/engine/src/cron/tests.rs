//! The scheduling semantics with fixed times: parsing, DST, `due`, history.

use chrono::{DateTime, TimeZone, Utc};

use super::*;
use crate::model::{CronWorkflow, CronWorkflowSpec, ObjectMeta};

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("{s}: {e}"))
        .with_timezone(&Utc)
}

fn sched(text: &str, tz: Option<&str>) -> Schedule {
    Schedule::parse(text, tz).unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// The first `n` instants after `from`.
fn nexts(s: &Schedule, from: &str, n: usize) -> Vec<String> {
    let mut t = utc(from);
    let mut out = Vec::new();
    for _ in 0..n {
        t = s.next_after(t).expect("a next time");
        out.push(rfc3339(t));
    }
    out
}

fn cron(spec: CronWorkflowSpec) -> CronWorkflow {
    CronWorkflow {
        kind: "CronWorkflow".into(),
        metadata: ObjectMeta {
            name: Some("c".into()),
            namespace: Some("default".into()),
            ..Default::default()
        },
        spec,
        ..Default::default()
    }
}

fn every_minute() -> CronWorkflowSpec {
    CronWorkflowSpec {
        schedules: vec!["* * * * *".into()],
        ..Default::default()
    }
}

fn status_last(t: &str) -> CronStatus {
    CronStatus {
        last_scheduled_time: Some(t.into()),
        ..Default::default()
    }
}

#[test]
fn parses_standard_cron_and_descriptors() {
    for ok in [
        "* * * * *",
        "*/15 0-6 1,15 * MON-FRI",
        "0 0 ? * SUN",
        "5 4 * JAN *",
        "@hourly",
        "@daily",
        "@midnight",
        "@weekly",
        "@monthly",
        "@yearly",
        "@annually",
        "CRON_TZ=Europe/Berlin 0 6 * * *",
    ] {
        assert!(Schedule::parse(ok, None).is_ok(), "{ok}");
    }
    for (bad, why) in [
        ("* * * * * *", "5 fields"),
        ("* * * *", "5 fields"),
        ("61 * * * *", ""),
        ("@every 1h", "@every"),
        ("@reboot", "descriptor"),
        ("banana", "5 fields"),
        ("CRON_TZ=Mars/Olympus 0 6 * * *", "Mars/Olympus"),
    ] {
        let e = Schedule::parse(bad, None).expect_err(bad);
        assert!(e.contains(why), "{bad}: {e}");
    }
}

#[test]
fn spec_errors_name_the_field() {
    let spec = CronWorkflowSpec {
        schedules: vec!["0 * * * *".into(), "nope".into()],
        ..Default::default()
    };
    let e = Schedules::parse(&spec).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("spec.schedules[1]: cron schedule \"nope\" is malformed"),
        "{e}"
    );
    assert_eq!(e.pointer(), "/spec/schedules/1");

    let spec = CronWorkflowSpec {
        schedule: Some("1 2 3".into()),
        ..Default::default()
    };
    let e = Schedules::parse(&spec).unwrap_err();
    assert_eq!(e.pointer(), "/spec/schedule");

    let spec = CronWorkflowSpec {
        timezone: Some("Europe/Atlantis".into()),
        ..every_minute()
    };
    let e = Schedules::parse(&spec).unwrap_err();
    assert_eq!(e, CronSpecError::Timezone("Europe/Atlantis".into()));
    assert_eq!(e.pointer(), "/spec/timezone");

    let e = Schedules::parse(&CronWorkflowSpec::default()).unwrap_err();
    assert_eq!(e, CronSpecError::NoSchedule);

    let spec = CronWorkflowSpec {
        concurrency_policy: Some("Sometimes".into()),
        ..every_minute()
    };
    assert_eq!(
        Schedules::parse(&spec).unwrap_err().pointer(),
        "/spec/concurrencyPolicy"
    );
}

#[test]
fn next_and_prev_in_utc() {
    let s = sched("*/15 * * * *", None);
    assert_eq!(
        nexts(&s, "2024-01-01T10:07:30Z", 3),
        [
            "2024-01-01T10:15:00Z",
            "2024-01-01T10:30:00Z",
            "2024-01-01T10:45:00Z"
        ]
    );
    assert_eq!(
        s.prev_at_or_before(utc("2024-01-01T10:07:30Z")),
        Some(utc("2024-01-01T10:00:00Z"))
    );
    // at a slot exactly: that slot
    assert_eq!(
        s.prev_at_or_before(utc("2024-01-01T10:15:00Z")),
        Some(utc("2024-01-01T10:15:00Z"))
    );
    // a restricted day-of-week with a wildcard day-of-month means that weekday only
    let mondays = sched("0 0 * * 1", None);
    assert_eq!(
        nexts(&mondays, "2024-01-03T12:00:00Z", 2),
        ["2024-01-08T00:00:00Z", "2024-01-15T00:00:00Z"]
    );
    let hourly = sched("@hourly", None);
    assert_eq!(
        nexts(&hourly, "2024-01-03T12:00:00Z", 1),
        ["2024-01-03T13:00:00Z"]
    );
}

#[test]
fn timezone_shifts_the_schedule() {
    let s = sched("0 9 * * *", Some("Asia/Tokyo"));
    assert_eq!(
        nexts(&s, "2024-06-01T01:00:00Z", 1),
        ["2024-06-02T00:00:00Z"]
    );
    // CRON_TZ= wins over spec.timezone
    let s = sched("CRON_TZ=UTC 0 9 * * *", Some("Asia/Tokyo"));
    assert_eq!(
        nexts(&s, "2024-06-01T01:00:00Z", 1),
        ["2024-06-01T09:00:00Z"]
    );
}

/// Argo's docs (cron-workflows.md, "Daylight Saving"), America/Los_Angeles,
/// spring forward 2020-03-08 02:00 → 03:00: times in the gap are skipped that day.
#[test]
fn dst_spring_forward_skips_the_gap() {
    let la = Some("America/Los_Angeles");
    // 01:59 PST = 09:59Z, then 01:59 PDT = 08:59Z
    assert_eq!(
        nexts(&sched("59 1 * * *", la), "2020-03-07T20:00:00Z", 3),
        [
            "2020-03-08T09:59:00Z",
            "2020-03-09T08:59:00Z",
            "2020-03-10T08:59:00Z"
        ]
    );
    // 02:00 does not exist on Mar 8: first run is Mar 9 02:00 PDT
    assert_eq!(
        nexts(&sched("0 2 * * *", la), "2020-03-07T20:00:00Z", 2),
        ["2020-03-09T09:00:00Z", "2020-03-10T09:00:00Z"]
    );
    assert_eq!(
        nexts(&sched("1 2 * * *", la), "2020-03-07T20:00:00Z", 1),
        ["2020-03-09T09:01:00Z"]
    );
    // prev from inside the day after the gap goes back to Mar 7
    assert_eq!(
        sched("0 2 * * *", la).prev_at_or_before(utc("2020-03-08T20:00:00Z")),
        Some(utc("2020-03-07T10:00:00Z"))
    );
}

/// Fall back 2020-11-01 02:00 → 01:00: times in the repeated hour run twice.
#[test]
fn dst_fall_back_runs_the_repeated_hour_twice() {
    let la = Some("America/Los_Angeles");
    // 01:59 PDT = 08:59Z, 01:59 PST = 09:59Z, then Nov 2 01:59 PST
    let s = sched("59 1 * * *", la);
    assert_eq!(
        nexts(&s, "2020-10-31T20:00:00Z", 3),
        [
            "2020-11-01T08:59:00Z",
            "2020-11-01T09:59:00Z",
            "2020-11-02T09:59:00Z"
        ]
    );
    assert_eq!(
        nexts(&sched("0 2 * * *", la), "2020-10-31T20:00:00Z", 2),
        ["2020-11-01T10:00:00Z", "2020-11-02T10:00:00Z"]
    );
    // from the first pass (01:50 PDT) the next quarter is 01:00 PST, not 02:00
    let q = sched("*/15 * * * *", la);
    assert_eq!(
        nexts(&q, "2020-11-01T08:50:00Z", 2),
        ["2020-11-01T09:00:00Z", "2020-11-01T09:15:00Z"]
    );
    // prev from the second pass (01:30 PST = 09:30Z): 01:59 PDT (08:59Z)
    assert_eq!(
        s.prev_at_or_before(utc("2020-11-01T09:30:00Z")),
        Some(utc("2020-11-01T08:59:00Z"))
    );
    assert_eq!(
        s.prev_at_or_before(utc("2020-11-01T10:30:00Z")),
        Some(utc("2020-11-01T09:59:00Z"))
    );
    // prev from 01:20 PST (09:20Z): 01:15 PST (09:15Z), not 01:45 PDT (08:45Z)
    assert_eq!(
        q.prev_at_or_before(utc("2020-11-01T09:20:00Z")),
        Some(utc("2020-11-01T09:15:00Z"))
    );
    // prev from 01:05 PST (09:05Z): 01:00 PST (09:00Z)… and from 00:59:59 PST no
    // earlier-pass time is skipped: 01:45 PDT (08:45Z) is the latest before 09:00Z
    assert_eq!(
        q.prev_at_or_before(utc("2020-11-01T09:05:00Z")),
        Some(utc("2020-11-01T09:00:00Z"))
    );
    assert_eq!(
        q.prev_at_or_before(utc("2020-11-01T08:59:59Z")),
        Some(utc("2020-11-01T08:45:00Z"))
    );
}

#[test]
fn first_look_without_last_scheduled_time_is_idle() {
    let c = cron(every_minute());
    let now = utc("2024-05-01T12:00:30Z");
    assert_eq!(due(&c, &CronStatus::default(), None, now), Decision::Idle);
}

#[test]
fn missed_schedules_run_once_within_the_deadline() {
    let c = cron(CronWorkflowSpec {
        starting_deadline_seconds: Some(120),
        ..every_minute()
    });
    let now = utc("2024-05-01T12:00:30Z");
    // down since 11:50: ten slots missed, only the latest runs
    let st = status_last("2024-05-01T11:50:00Z");
    assert_eq!(
        due(&c, &st, None, now),
        Decision::Run {
            scheduled: utc("2024-05-01T12:00:00Z"),
            missed: true,
            replace: vec![]
        }
    );
    // once it ran (lastScheduledTime moved), a restart does not run it again
    let st = status_last("2024-05-01T12:00:00Z");
    assert_eq!(due(&c, &st, None, now), Decision::Idle);
    // past the deadline: skipped
    let strict = cron(CronWorkflowSpec {
        starting_deadline_seconds: Some(30),
        ..every_minute()
    });
    assert_eq!(
        due(
            &strict,
            &status_last("2024-05-01T11:50:00Z"),
            None,
            utc("2024-05-01T12:00:45Z")
        ),
        Decision::Skip {
            scheduled: utc("2024-05-01T12:00:00Z"),
            reason: SkipReason::DeadlinePassed
        }
    );
    let daily = cron(CronWorkflowSpec {
        schedules: vec!["0 0 * * *".into()],
        starting_deadline_seconds: Some(3600),
        ..Default::default()
    });
    assert!(matches!(
        due(
            &daily,
            &status_last("2024-04-01T00:00:00Z"),
            None,
            utc("2024-05-01T01:30:00Z")
        ),
        Decision::Skip {
            reason: SkipReason::DeadlinePassed,
            ..
        }
    ));
}

#[test]
fn missed_schedules_without_a_deadline_are_skipped() {
    let c = cron(every_minute());
    let d = due(
        &c,
        &status_last("2024-05-01T11:50:00Z"),
        None,
        utc("2024-05-01T12:00:30Z"),
    );
    assert_eq!(
        d,
        Decision::Skip {
            scheduled: utc("2024-05-01T12:00:00Z"),
            reason: SkipReason::DeadlinePassed
        }
    );
    // startingDeadlineSeconds: 0 (Argo's example) also skips missed runs
    let c = cron(CronWorkflowSpec {
        starting_deadline_seconds: Some(0),
        ..every_minute()
    });
    assert!(matches!(
        due(
            &c,
            &status_last("2024-05-01T11:50:00Z"),
            None,
            utc("2024-05-01T12:00:30Z")
        ),
        Decision::Skip { .. }
    ));
}

#[test]
fn on_time_slots_run_once() {
    let c = cron(CronWorkflowSpec {
        starting_deadline_seconds: Some(0),
        ..every_minute()
    });
    let st = CronStatus::default();
    // the slot 12:01:00 fell between the last look and now: it runs, deadline or not
    assert_eq!(
        due(
            &c,
            &st,
            Some(utc("2024-05-01T12:00:59Z")),
            utc("2024-05-01T12:01:00.400Z")
        ),
        Decision::Run {
            scheduled: utc("2024-05-01T12:01:00Z"),
            missed: false,
            replace: vec![]
        }
    );
    // looked after the slot already: idle
    assert_eq!(
        due(
            &c,
            &st,
            Some(utc("2024-05-01T12:01:00.400Z")),
            utc("2024-05-01T12:01:01.400Z")
        ),
        Decision::Idle
    );
    // the slot is already recorded as scheduled (another replica): idle
    assert_eq!(
        due(
            &c,
            &status_last("2024-05-01T12:01:00Z"),
            Some(utc("2024-05-01T12:00:59Z")),
            utc("2024-05-01T12:01:00.400Z")
        ),
        Decision::Idle
    );
}

fn on_time(c: &CronWorkflow, st: &CronStatus) -> Decision {
    due(
        c,
        st,
        Some(utc("2024-05-01T12:00:59Z")),
        utc("2024-05-01T12:01:00.400Z"),
    )
}

#[test]
fn suspend_skips() {
    let c = cron(CronWorkflowSpec {
        suspend: Some(true),
        ..every_minute()
    });
    assert!(matches!(
        on_time(&c, &CronStatus::default()),
        Decision::Skip {
            reason: SkipReason::Suspended,
            ..
        }
    ));
}

fn active(names: &[&str]) -> CronStatus {
    CronStatus {
        active: names
            .iter()
            .map(|n| WorkflowRef {
                name: n.to_string(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

#[test]
fn concurrency_policies() {
    let with = |p: &str| {
        cron(CronWorkflowSpec {
            concurrency_policy: Some(p.into()),
            ..every_minute()
        })
    };
    let busy = active(&["c-1"]);
    assert_eq!(
        on_time(&with("Forbid"), &busy),
        Decision::Skip {
            scheduled: utc("2024-05-01T12:01:00Z"),
            reason: SkipReason::Forbidden(vec!["c-1".into()])
        }
    );
    assert!(matches!(
        on_time(&with("Forbid"), &CronStatus::default()),
        Decision::Run { .. }
    ));
    assert_eq!(
        on_time(&with("Replace"), &busy),
        Decision::Run {
            scheduled: utc("2024-05-01T12:01:00Z"),
            missed: false,
            replace: vec!["c-1".into()]
        }
    );
    assert!(matches!(
        on_time(&with("Allow"), &busy),
        Decision::Run { replace, .. } if replace.is_empty()
    ));
}

#[test]
fn when_sees_the_cron_workflow() {
    let with = |w: &str| {
        let mut c = cron(CronWorkflowSpec {
            when: Some(w.into()),
            ..every_minute()
        });
        c.metadata.labels.insert("team".into(), "a".into());
        c
    };
    let st = CronStatus {
        failed: 2,
        ..Default::default()
    };
    assert!(matches!(
        on_time(&with("{{cronworkflow.name}} == c"), &st),
        Decision::Run { .. }
    ));
    assert!(matches!(
        on_time(&with("{{= cronworkflow.labels.team == 'a' }}"), &st),
        Decision::Run { .. }
    ));
    assert_eq!(
        on_time(&with("{{cronworkflow.failed}} < 2"), &st),
        Decision::Skip {
            scheduled: utc("2024-05-01T12:01:00Z"),
            reason: SkipReason::WhenFalse
        }
    );
    assert!(matches!(
        on_time(&with("{{cronworkflow.nope}} == 1"), &st),
        Decision::Skip {
            reason: SkipReason::WhenError(_),
            ..
        }
    ));
}

#[test]
fn invalid_specs_schedule_nothing() {
    let c = cron(CronWorkflowSpec {
        schedules: vec!["every day".into()],
        ..Default::default()
    });
    assert!(matches!(
        on_time(&c, &CronStatus::default()),
        Decision::Invalid(CronSpecError::Schedule { .. })
    ));
}

#[test]
fn several_schedules_take_the_latest_slot() {
    let c = cron(CronWorkflowSpec {
        schedule: Some("0 * * * *".into()),
        schedules: vec!["30 * * * *".into()],
        starting_deadline_seconds: Some(3600),
        ..Default::default()
    });
    assert_eq!(
        due(
            &c,
            &status_last("2024-05-01T09:00:00Z"),
            None,
            utc("2024-05-01T12:40:00Z")
        ),
        Decision::Run {
            scheduled: utc("2024-05-01T12:30:00Z"),
            missed: true,
            replace: vec![]
        }
    );
}

#[test]
fn names_and_times() {
    let t = Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap();
    assert_eq!(workflow_name("nightly", t), "nightly-1714564800");
    assert_eq!(rfc3339(t), "2024-05-01T12:00:00Z");
    let mut st = CronStatus::default();
    st.set_last_scheduled(t);
    st.set_last_scheduled(t - chrono::Duration::hours(1)); // never goes back
    assert_eq!(st.last_scheduled(), Some(t));
    st.set_condition(CONDITION_SUBMISSION_ERROR, "x");
    st.set_condition(CONDITION_SUBMISSION_ERROR, "y");
    assert_eq!(st.conditions.len(), 1);
    assert_eq!(st.conditions[0].message, "y");
    st.remove_condition(CONDITION_SUBMISSION_ERROR);
    assert!(st.conditions.is_empty());
}

#[test]
fn history_limits_delete_the_oldest() {
    let f = |name: &str, ok: bool, ms: i64| Finished {
        name: name.into(),
        succeeded: ok,
        finished_ms: ms,
    };
    let done = [
        f("s1", true, 1),
        f("s2", true, 2),
        f("s3", true, 3),
        f("s4", true, 4),
        f("s5", true, 5),
        f("f1", false, 1),
        f("f2", false, 2),
    ];
    // defaults: keep 3 succeeded, 1 failed
    assert_eq!(
        history_to_delete(&CronWorkflowSpec::default(), &done),
        ["s1", "s2", "f1"]
    );
    let spec = CronWorkflowSpec {
        successful_jobs_history_limit: Some(0),
        failed_jobs_history_limit: Some(5),
        ..Default::default()
    };
    assert_eq!(
        history_to_delete(&spec, &done),
        ["s1", "s2", "s3", "s4", "s5"]
    );
}
