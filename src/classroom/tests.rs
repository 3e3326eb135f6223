//! The classroom service on its own: the real store (SQLite), the
//! in-process bus and presence map, no HTTP.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use super::frames::ClassroomFrame;
use super::service::{ClassroomConfig, ClassroomService, Heard, Observed, Watch};
use crate::adapters::ClassroomDirectory;
use crate::auth::model::Role;
use crate::ids::{OrgId, PersonaId, SessionId, UserId};
use crate::infra::{InProcessBus, InProcessPresence};

struct World {
    classroom: ClassroomService,
    org: OrgId,
    student: UserId,
    _dir: tempfile::TempDir,
}

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let (settings, db) = crate::testkit::sqlite(dir.path()).await;
    let student = crate::testkit::member(&db, Role::Student).await;
    let classroom = ClassroomService::start(
        Arc::new(InProcessBus::new()),
        Arc::new(InProcessPresence::new()),
        Arc::new(ClassroomDirectory { db }),
        ClassroomConfig::from_settings(&settings),
        "node".into(),
    )
    .await
    .unwrap();
    World {
        classroom,
        org: student.org_id,
        student: student.user_id,
        _dir: dir,
    }
}

async fn next(w: &mut Watch) -> ClassroomFrame {
    match tokio::time::timeout(Duration::from_secs(10), w.next())
        .await
        .expect("a frame within 10 s")
    {
        Heard::Frame(live) => serde_json::from_str(&live.text).unwrap(),
        Heard::Lost => panic!("the stream was lost"),
        Heard::Revoked(u) => panic!("revoked {u}"),
    }
}

fn joined(w: &World, conn: u64, session: SessionId, persona: PersonaId) -> Observed {
    Observed::Joined {
        conn,
        org: w.org,
        user: w.student,
        session,
        persona,
        at: Utc::now(),
    }
}

fn left(w: &World, conn: u64, session: SessionId, persona: PersonaId) -> Observed {
    Observed::Left {
        conn,
        org: w.org,
        user: w.student,
        session,
        persona,
    }
}

#[actix_web::test]
async fn what_chat_reports_reaches_the_watchers_in_order_with_names() {
    let w = world().await;
    let mut watch = w.classroom.watch(w.org).await.unwrap();
    let (session, persona) = (SessionId::new(), PersonaId::new());
    w.classroom.observe(joined(&w, 1, session, persona));
    w.classroom.observe(Observed::Asked {
        org: w.org,
        user: w.student,
        session,
        persona,
        seq: 1,
        text: "Tell me about the war".into(),
        at: Utc::now(),
    });
    w.classroom.observe(Observed::Answered {
        org: w.org,
        user: w.student,
        session,
        persona,
        reply_to: 1,
        seq: 2,
        grounded: false,
        citations: 0,
        first_token_ms: 3,
        total_ms: 5,
        refusal: Some("blocked_topic".into()),
        question: "Tell me about the war".into(),
        at: Utc::now(),
    });
    match next(&mut watch).await {
        ClassroomFrame::Presence(p) => {
            assert_eq!(
                (p.user_id, p.session_id, p.persona_id),
                (w.student, session, persona)
            );
            assert_eq!(p.full_name, "Member");
            assert!(p.online);
        }
        other => panic!("{other:?}"),
    }
    assert!(
        matches!(next(&mut watch).await, ClassroomFrame::Question(q) if q.seq == 1 && q.full_name == "Member")
    );
    assert!(
        matches!(next(&mut watch).await, ClassroomFrame::Answer(a) if a.reply_to == 1 && a.first_token_ms == 3)
    );
    match next(&mut watch).await {
        ClassroomFrame::Flag(f) => {
            assert_eq!((f.seq, f.reason.as_str()), (1, "blocked_topic"));
            assert_eq!(f.text, "Tell me about the war");
            assert_eq!(f.full_name, "Member");
        }
        other => panic!("{other:?}"),
    }

    // A question declined as not covered is no flag: the next frame is
    // the answer after it.
    for (seq, refusal) in [(4, Some("not_covered")), (6, None)] {
        w.classroom.observe(Observed::Answered {
            org: w.org,
            user: w.student,
            session,
            persona,
            reply_to: seq - 1,
            seq,
            grounded: refusal.is_none(),
            citations: 0,
            first_token_ms: 1,
            total_ms: 1,
            refusal: refusal.map(str::to_owned),
            question: "q".into(),
            at: Utc::now(),
        });
    }
    assert!(matches!(next(&mut watch).await, ClassroomFrame::Answer(a) if a.seq == 4));
    assert!(matches!(next(&mut watch).await, ClassroomFrame::Answer(a) if a.seq == 6));
}

#[actix_web::test]
async fn a_student_is_online_once_per_session_until_the_last_socket_leaves() {
    let w = world().await;
    let mut watch = w.classroom.watch(w.org).await.unwrap();
    let (session, persona) = (SessionId::new(), PersonaId::new());
    // Two sockets (two tabs) on one session: one presence frame.
    w.classroom.observe(joined(&w, 1, session, persona));
    w.classroom.observe(joined(&w, 2, session, persona));
    assert!(matches!(next(&mut watch).await, ClassroomFrame::Presence(p) if p.online));
    let online = w.classroom.online(w.org, None).await.unwrap();
    assert_eq!(online.len(), 1);
    assert_eq!(online[0].full_name, "Member");
    assert!(
        w.classroom
            .online(w.org, Some(PersonaId::new()))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        w.classroom
            .online(OrgId::new(), None)
            .await
            .unwrap()
            .is_empty()
    );

    // One leaves: still online. The other leaves: offline.
    w.classroom.observe(left(&w, 1, session, persona));
    w.classroom.observe(left(&w, 2, session, persona));
    assert!(
        matches!(next(&mut watch).await, ClassroomFrame::Presence(p) if !p.online && p.session_id == session)
    );
    assert!(w.classroom.online(w.org, None).await.unwrap().is_empty());
    // Leaving again, or a socket never seen: nothing.
    w.classroom.observe(left(&w, 2, session, persona));
    w.classroom.observe(joined(&w, 3, session, persona));
    assert!(matches!(next(&mut watch).await, ClassroomFrame::Presence(p) if p.online));
}

#[actix_web::test]
async fn an_organisation_is_followed_while_someone_watches_it() {
    let w = world().await;
    let other = OrgId::new();
    let mut theirs = w.classroom.watch(other).await.unwrap();
    let a = w.classroom.watch(w.org).await.unwrap();
    let b = w.classroom.watch(w.org).await.unwrap();
    assert_eq!(w.classroom.watched_orgs(), 2);
    drop(a);
    assert_eq!(w.classroom.watched_orgs(), 2);
    drop(b);
    assert_eq!(w.classroom.watched_orgs(), 1);

    // Our organisation's events never reach the other's watcher: its
    // first frame is its own.
    let (session, persona) = (SessionId::new(), PersonaId::new());
    w.classroom.observe(joined(&w, 1, session, persona));
    w.classroom.observe(Observed::Asked {
        org: other,
        user: UserId::new(),
        session: SessionId::new(),
        persona: PersonaId::new(),
        seq: 7,
        text: "theirs".into(),
        at: Utc::now(),
    });
    assert!(
        matches!(next(&mut theirs).await, ClassroomFrame::Question(q) if q.seq == 7 && q.full_name.is_empty())
    );
    drop(theirs);
    assert_eq!(w.classroom.watched_orgs(), 0);
}

/// The frames' JSON, pinned to the contract's names (API.md): a renamed
/// field fails here, not in a teacher's browser.
#[test]
fn frames_speak_the_contracts_names() {
    use super::frames::*;
    let at: chrono::DateTime<Utc> = "2026-12-03T10:00:00Z".parse().unwrap();
    let (user, session, persona) = (UserId::new(), SessionId::new(), PersonaId::new());
    let question = QuestionFrame {
        at,
        user_id: user,
        full_name: "Ama".into(),
        session_id: session,
        seq: 3,
        persona_id: persona,
        text: "Why?".into(),
    };
    let json =
        |f: &ClassroomFrame| serde_json::from_str::<serde_json::Value>(&f.to_text()).unwrap();
    let snapshot = ClassroomFrame::Snapshot {
        online: vec![OnlineStudent {
            user_id: user,
            full_name: "Ama".into(),
            session_id: session,
            persona_id: persona,
            since: at,
        }],
        recent: vec![question.clone()],
    };
    let q = serde_json::json!({"type": "question", "at": "2026-12-03T10:00:00Z",
        "user_id": user, "full_name": "Ama", "session_id": session, "seq": 3,
        "persona_id": persona, "text": "Why?"});
    let mut recent = q.clone();
    recent.as_object_mut().unwrap().remove("type");
    assert_eq!(
        json(&snapshot),
        serde_json::json!({"type": "snapshot", "online": [{"user_id": user, "full_name": "Ama",
            "session_id": session, "persona_id": persona, "since": "2026-12-03T10:00:00Z"}],
            "recent": [recent]})
    );
    assert_eq!(json(&ClassroomFrame::Question(question)), q);
    let presence = ClassroomFrame::Presence(PresenceFrame {
        user_id: user,
        full_name: "Ama".into(),
        session_id: session,
        persona_id: persona,
        online: false,
        at,
    });
    assert_eq!(
        json(&presence),
        serde_json::json!({"type": "presence", "user_id": user, "full_name": "Ama",
            "session_id": session, "persona_id": persona, "online": false,
            "at": "2026-12-03T10:00:00Z"})
    );
    let answer = ClassroomFrame::Answer(AnswerFrame {
        at,
        session_id: session,
        reply_to: 3,
        seq: 4,
        user_id: user,
        persona_id: persona,
        grounded: true,
        citations: 2,
        first_token_ms: 40,
        total_ms: 90,
        refusal: None,
    });
    assert_eq!(
        json(&answer),
        serde_json::json!({"type": "answer", "at": "2026-12-03T10:00:00Z", "session_id": session,
            "reply_to": 3, "seq": 4, "user_id": user, "persona_id": persona, "grounded": true,
            "citations": 2, "first_token_ms": 40, "total_ms": 90})
    );
    let flag = ClassroomFrame::Flag(FlagFrame {
        at,
        user_id: user,
        full_name: "Ama".into(),
        persona_id: persona,
        session_id: session,
        seq: 3,
        reason: "weapons".into(),
        text: "Why?".into(),
    });
    assert_eq!(
        json(&flag),
        serde_json::json!({"type": "flag", "at": "2026-12-03T10:00:00Z", "user_id": user,
            "full_name": "Ama", "persona_id": persona, "session_id": session, "seq": 3,
            "reason": "weapons", "text": "Why?"})
    );
    // What a node relays: the text as published, and what watchers filter on.
    let live = Live::decode(json(&flag).to_string().as_bytes()).unwrap();
    assert_eq!(
        (live.kind, live.persona, live.question),
        ("flag", Some(persona), None)
    );
    let live = Live::decode(q.to_string().as_bytes()).unwrap();
    assert_eq!(live.question, Some((session, 3)));
    assert!(Live::decode(b"{\"type\":\"nonsense\"}").is_none());
}
