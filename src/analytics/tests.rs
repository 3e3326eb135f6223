//! Analytics' own logic: periods, trends, gap grouping, CSV quoting.
#![allow(clippy::unwrap_used)]

use chrono::NaiveDate;

use super::model::{Period, Trend};
use super::routes::csv_row;
use super::service::{Declined, group};

fn d(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

#[test]
fn a_period_defaults_to_the_last_seven_days_and_refuses_bad_dates() {
    let today = d("2026-03-10");
    let p = Period::parse(None, None, today).unwrap();
    assert_eq!((p.from, p.to), (d("2026-03-04"), today));
    assert_eq!(p.days(), 7);
    let prev = p.previous();
    assert_eq!((prev.from, prev.to), (d("2026-02-25"), d("2026-03-03")));
    for (from, to) in [
        (Some("2026-3-1"), None),
        (Some("yesterday"), None),
        (None, Some("2026-02-30")),
        (Some("2026-03-09"), Some("2026-03-01")),
        (Some("2020-01-01"), Some("2026-01-01")),
    ] {
        assert!(Period::parse(from, to, today).is_err(), "{from:?} {to:?}");
    }
    let one = Period::parse(Some("2026-03-01"), Some("2026-03-01"), today).unwrap();
    assert_eq!(one.days(), 1);
}

#[test]
fn trends_compare_the_halves_of_the_period() {
    assert_eq!(Trend::of(1, 3, 2, 4), Trend::InsufficientData);
    assert_eq!(Trend::of(0, 0, 9, 1), Trend::InsufficientData);
    assert_eq!(Trend::of(2, 3, 8, 4), Trend::Improving);
    assert_eq!(Trend::of(0, 3, 4, 4), Trend::Improving);
    assert_eq!(Trend::of(6, 3, 2, 4), Trend::Declining);
    assert_eq!(Trend::of(3, 3, 4, 4), Trend::Stable);
}

#[test]
fn csv_fields_are_quoted_as_rfc_4180_says() {
    let mut out = String::new();
    csv_row(&mut out, &["plain", "a,b", "say \"hi\"", "two\nlines", ""]);
    assert_eq!(out, "plain,\"a,b\",\"say \"\"hi\"\"\",\"two\nlines\",\r\n");
}

fn declined(text: &str, v: Vec<f32>) -> Declined {
    Declined {
        text: text.to_owned(),
        persona: None,
        at: chrono::Utc::now(),
        vector: Some(v),
    }
}

#[test]
fn similar_questions_form_one_gap_largest_first() {
    let gaps = group(
        vec![
            declined("volcano a", vec![1.0, 0.0, 0.0]),
            declined("photosynthesis", vec![0.0, 1.0, 0.0]),
            declined("volcano b", vec![0.95, 0.05, 0.0]),
            declined("volcano c", vec![0.9, 0.0, 0.1]),
            declined("photosynthesis again", vec![0.05, 0.95, 0.0]),
            declined("tax law", vec![0.0, 0.0, 1.0]),
        ],
        0.8,
    );
    let counts: Vec<i64> = gaps.iter().map(|g| g.count).collect();
    assert_eq!(counts, vec![3, 2, 1]);
    assert!(gaps[0].label.starts_with("volcano"));
    assert_eq!(gaps[0].examples.len(), 3);
    assert_eq!(gaps[2].label, "tax law");
}

fn counter(rendered: &str, name: &str) -> f64 {
    rendered
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Recording never waits: with the writer stuck behind the database's
/// write turn, a hundred events are "recorded" at once; what does not fit
/// the queue is dropped and counted, and what fits is written afterwards.
#[tokio::test]
async fn a_full_queue_drops_events_and_counts_them_without_waiting() {
    use crate::analytics::model::Event;
    use crate::analytics::recorder::{EVENTS_DROPPED_TOTAL, EventRecorder};
    use crate::auth::model::Role;

    let handle = crate::metrics::install();
    let dir = tempfile::tempdir().unwrap();
    let (_, db) = crate::testkit::sqlite(dir.path()).await;
    let student = crate::testkit::member(&db, Role::Student).await;
    let embedder = std::sync::Arc::new(bwenge_search::HashingEmbedder::new(384));
    let recorder = EventRecorder::start(db.clone(), embedder, 4, 2, std::time::Duration::ZERO);
    let before = counter(&handle.render(), EVENTS_DROPPED_TOTAL);
    let crate::db::Db::Sqlite(_, gate) = &db else {
        unreachable!("a SQLite database")
    };
    let turn = gate.enter().await;
    for _ in 0..100 {
        recorder.record(Event::login(
            student.org_id,
            student.user_id,
            chrono::Utc::now(),
        ));
    }
    drop(turn);
    recorder.flush().await;
    let dropped = counter(&handle.render(), EVENTS_DROPPED_TOTAL) - before;
    let written: i64 = crate::on_db!(&db, |pool| sqlx::query_scalar(
        "SELECT COUNT(*) FROM analytics_events"
    )
    .fetch_one(pool)
    .await
    .unwrap());
    assert!((4..=6).contains(&written), "written {written}");
    assert_eq!(written as f64 + dropped, 100.0, "dropped {dropped}");
    // The totals count exactly what was written.
    let logins: i64 = crate::on_db!(&db, |pool| sqlx::query_scalar(
        "SELECT CAST(SUM(logins) AS BIGINT) FROM analytics_daily"
    )
    .fetch_one(pool)
    .await
    .unwrap());
    assert_eq!(logins, written);
}
