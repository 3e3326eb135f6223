//! The chat service: what the history routes, the WebSocket connections
//! and the chat-session actors do, with no HTTP and no `AppState`. Built
//! once at start-up ([`ChatService::build`]) from what chat needs: its
//! store (the database), this node's [`ChatHub`], the session registry,
//! the [`Tutor`] it asks, the rate limiter and its settings.

use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, Addr};
use bwenge_actors::ports::{RateDecision, RateLimit, RateLimiter};
use bwenge_actors::registry::{Lookup, Registry, RegistryConfig, Touch};
use bwenge_llm::{Role as TurnRole, Turn};
use chrono::Utc;

use super::activity::{Activity, ChatActivity};
use super::error::ChatError;
use super::frames::{AnswerExtras, EventRole};
use super::hub::ChatHub;
use super::quota::QuestionQuota;
use super::session::{ChatSession, Post, Resumed};
use super::store::{self, EventRow, NewEvent, SessionRow};
use super::tutor::Tutor;
use crate::config::ChatSettings;
use crate::db::Db;
use crate::ids::{OrgId, PersonaId, SessionId, UserId};
use crate::pagination::Page;

/// The session registry's address.
pub type SessionRegistry = Addr<Registry<SessionId, ChatSession>>;

/// Events per read when replaying or reading a history.
pub const REPLAY_BATCH: i64 = 200;

/// Who is asking, as chat needs to know it (from the authenticated user).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChatUser {
    pub user_id: UserId,
    pub org_id: OrgId,
    /// Teachers and admins: read the organisation's sessions, follow its
    /// ingest progress.
    pub staff: bool,
}

impl From<crate::auth::AuthUser> for ChatUser {
    fn from(u: crate::auth::AuthUser) -> Self {
        Self {
            user_id: u.user_id,
            org_id: u.org_id,
            staff: u.role.is_staff(),
        }
    }
}

/// Chat's settings, read once at start-up.
#[derive(Debug, Clone)]
pub struct ChatConfig {
    pub chat: ChatSettings,
    /// Questions answered at once (`chat.answer_concurrency`, resolved).
    pub answer_concurrency: usize,
    /// Earlier turns given to the persona with a question.
    pub history_turns: usize,
    /// How long an idle session actor lives.
    pub idle_timeout: Duration,
}

impl ChatConfig {
    pub fn from_settings(s: &crate::config::Settings) -> Self {
        use crate::config::LlmProvider;
        let remote = s.llm.chain.iter().any(|p| *p != LlmProvider::Extractive);
        Self {
            chat: s.chat.clone(),
            answer_concurrency: super::admission::Admission::concurrency_for(
                s.chat.answer_concurrency,
                remote,
            ),
            history_turns: s.personas.history_turns,
            idle_timeout: Duration::from_secs(s.registry.idle_timeout_secs),
        }
    }

    pub fn heartbeat_interval(&self) -> Duration {
        Duration::from_secs(self.chat.heartbeat_interval_secs.max(1))
    }

    pub fn client_timeout(&self) -> Duration {
        Duration::from_secs(self.chat.client_timeout_secs.max(1))
    }

    pub fn orphan_grace(&self) -> Duration {
        Duration::from_millis(self.chat.orphan_grace_ms)
    }
}

/// What the service, its session actors and its connections share.
pub struct ChatCore {
    pub db: Db,
    pub hub: ChatHub,
    pub tutor: Arc<dyn Tutor>,
    pub limiter: Arc<dyn RateLimiter>,
    pub config: ChatConfig,
    /// Who hears of chat's activity ([`super::activity`]).
    pub activity: Arc<dyn ChatActivity>,
    /// The question allowance (billing's).
    pub quota: Arc<dyn QuestionQuota>,
    /// The line of questions waiting to be answered on this node.
    pub admission: super::admission::Admission,
}

/// The chat service; cheap to clone.
#[derive(Clone)]
pub struct ChatService {
    core: Arc<ChatCore>,
    sessions: SessionRegistry,
}

/// A session a connection has attached to, with what it missed.
pub struct Attached {
    pub row: SessionRow,
    /// The session's actor, when a question was found unanswered.
    pub actor: Option<Addr<ChatSession>>,
    /// Events after the `last_seq` asked for (a resume), in order.
    pub replay: Vec<EventRow>,
    /// The `last_seq` the client gave (0 on start).
    pub last_seq: i64,
}

impl Attached {
    /// The session's latest `seq` as far as this attachment knows.
    pub fn current_seq(&self) -> i64 {
        self.replay
            .last()
            .map_or(self.row.last_seq.max(self.last_seq), |e| {
                e.seq.max(self.row.last_seq)
            })
    }
}

impl ChatService {
    /// Starts the session registry; call once, inside the actor system.
    pub fn build(
        db: Db,
        hub: ChatHub,
        tutor: Arc<dyn Tutor>,
        limiter: Arc<dyn RateLimiter>,
        config: ChatConfig,
        activity: Arc<dyn ChatActivity>,
        quota: Arc<dyn QuestionQuota>,
    ) -> Self {
        let idle = config.idle_timeout;
        let admission = super::admission::Admission::with_max_wait(
            config.answer_concurrency,
            config.chat.answer_queue,
            (config.chat.answer_max_wait_secs > 0)
                .then(|| Duration::from_secs(config.chat.answer_max_wait_secs)),
        );
        let core = Arc::new(ChatCore {
            admission,
            db,
            hub,
            tutor,
            limiter,
            config,
            activity,
            quota,
        });
        let for_sessions = Arc::clone(&core);
        let sessions = Registry::new(
            "chat_sessions",
            RegistryConfig::with_idle_timeout(idle),
            move |id: &SessionId| ChatSession::new(*id, Arc::clone(&for_sessions)),
        )
        .start();
        Self { core, sessions }
    }

    pub fn core(&self) -> &Arc<ChatCore> {
        &self.core
    }

    pub fn hub(&self) -> &ChatHub {
        &self.core.hub
    }

    pub fn config(&self) -> &ChatConfig {
        &self.core.config
    }

    /// Tells whoever listens what happened ([`super::activity`]).
    pub fn record(&self, event: Activity) {
        self.core.activity.record(event);
    }

    /// Opens a new session with `persona` for `user`.
    pub async fn start_session(
        &self,
        user: ChatUser,
        persona: PersonaId,
    ) -> Result<SessionRow, ChatError> {
        if !self.core.tutor.persona_exists(user.org_id, persona).await? {
            return Err(ChatError::PersonaNotFound);
        }
        let now = Utc::now();
        let row = SessionRow {
            id: SessionId::new(),
            organization_id: user.org_id,
            persona_id: persona,
            user_id: user.user_id,
            last_seq: 0,
            created_at: now,
            updated_at: now,
        };
        store::create_session(&self.core.db, &row).await?;
        Ok(row)
    }

    /// Checks `user` may see the session (`row` when just created),
    /// attaches connection `conn` to it at the hub, then reads what to
    /// replay (on a resume, the events after `last_seq`): attaching first
    /// means an event stored meanwhile arrives live (and a connection drops
    /// it if the replay had it too), never lost between the two. A resume
    /// that finds questions unanswered starts the session's actor to answer
    /// them. On failure the connection is detached from `id`.
    pub async fn attach(
        &self,
        user: ChatUser,
        conn: u64,
        row: Option<SessionRow>,
        id: SessionId,
        last_seq: i64,
        resumed: bool,
    ) -> Result<Attached, ChatError> {
        let db = &self.core.db;
        let row = match row {
            Some(row) => row,
            None => store::session(db, user.org_id, id)
                .await?
                .ok_or(ChatError::SessionNotFound)?,
        };
        if row.user_id != user.user_id && !user.staff {
            return Err(ChatError::SessionNotFound);
        }
        self.core.hub.subscribe(id, conn);
        let read = async {
            let mut replay = Vec::new();
            let mut actor = None;
            let mut row = row;
            let mut last_seq = last_seq.max(0);
            if resumed {
                // A client cannot have seen more than the session holds:
                // a `last_seq` beyond it (read again now that live events
                // come to this connection) is taken as the session's end,
                // so no live event is mistaken for one already delivered.
                if last_seq > row.last_seq
                    && let Some(fresh) = store::session(db, user.org_id, id).await?
                {
                    row = fresh;
                }
                last_seq = last_seq.min(row.last_seq);
                replay = self.events_after(user.org_id, id, last_seq).await?;
                // A question stored but never answered (its node died) is
                // answered now, unless another node is on it.
                if !store::unanswered(db, user.org_id, id).await?.is_empty() {
                    let a = self.session_actor(id).await?;
                    a.do_send(Resumed { row: row.clone() });
                    actor = Some(a);
                }
            }
            Ok::<_, ChatError>((replay, actor, row, last_seq))
        };
        match read.await {
            Ok((replay, actor, row, last_seq)) => Ok(Attached {
                row,
                actor,
                replay,
                last_seq,
            }),
            Err(e) => {
                self.core.hub.unsubscribe(id, conn);
                Err(e)
            }
        }
    }

    /// Every event after `after`, in order, read in batches.
    async fn events_after(
        &self,
        org: OrgId,
        id: SessionId,
        mut after: i64,
    ) -> Result<Vec<EventRow>, ChatError> {
        let mut events = Vec::new();
        loop {
            let batch = store::events_after(&self.core.db, org, id, after, REPLAY_BATCH).await?;
            let done = (batch.len() as i64) < REPLAY_BATCH;
            if let Some(l) = batch.last() {
                after = l.seq;
            }
            events.extend(batch);
            if done {
                return Ok(events);
            }
        }
    }

    /// Counts a question asked over HTTP against the month's allowance.
    pub async fn count_question(&self, org: OrgId) -> Result<(), ChatError> {
        self.core.quota.take(org, None).await
    }

    /// Gives back a question counted over HTTP that was not answered.
    pub async fn uncount_question(&self, org: OrgId) {
        self.core.quota.give_back(org).await;
    }

    /// The question as it will be asked, or why it cannot be.
    pub fn check_question(&self, text: &str) -> Result<String, ChatError> {
        self.core.tutor.check_question(text)
    }

    /// Asks `text` in the attached session `row` (its actor `actor` if this
    /// connection has one): rate-limited per user, stored, acknowledged to
    /// connection `conn`, then answered once. Returns the session's actor
    /// and the question's `seq`.
    pub async fn ask(
        &self,
        user: ChatUser,
        conn: u64,
        row: SessionRow,
        actor: Option<Addr<ChatSession>>,
        client_id: String,
        text: String,
    ) -> Result<(Addr<ChatSession>, i64), ChatError> {
        self.check_question_rate(user).await?;
        self.core.admission.check()?;
        let session = row.id;
        let key = format!("chat:{session}:{client_id}");
        self.core.quota.take(user.org_id, Some(&key)).await?;
        let post = Post {
            conn,
            user,
            row,
            client_id,
            text,
            span: tracing::Span::current(),
        };
        // The session's actor: the one this connection used, unless it has
        // stopped since (idle), else the registry's.
        let actor = match actor {
            Some(a) if a.connected() => a,
            _ => self.session_actor(session).await?,
        };
        let seq = actor.send(post).await.map_err(ChatError::internal)??;
        Ok((actor, seq))
    }

    /// Takes one question from the user's budget (`chat.messages_*`),
    /// shared by the WebSocket and `POST /v1/personas/{id}/ask`.
    pub async fn check_question_rate(&self, user: ChatUser) -> Result<(), ChatError> {
        let c = &self.core.config.chat;
        self.take(
            &format!("ws:{}", user.user_id),
            c.messages_burst,
            c.messages_per_sec,
        )
        .await
    }

    /// Takes one new session from the user's budget (`chat.starts_*`).
    pub async fn check_start_rate(&self, user: ChatUser) -> Result<(), ChatError> {
        let c = &self.core.config.chat;
        self.take(
            &format!("start:{}", user.user_id),
            c.starts_burst,
            c.starts_per_sec,
        )
        .await
    }

    /// One token of bucket `key`; a limiter outage lets the request through.
    async fn take(&self, key: &str, capacity: u32, refill_per_sec: f64) -> Result<(), ChatError> {
        let limit = RateLimit {
            capacity,
            refill_per_sec,
        };
        match self.core.limiter.check(key, limit, 1).await {
            Ok(RateDecision::Limited { retry_after }) => {
                Err(ChatError::RateLimited { retry_after })
            }
            Ok(RateDecision::Allowed { .. }) => Ok(()),
            Err(e) => {
                tracing::warn!(error = %e, "rate limiter unavailable; allowing the request");
                Ok(())
            }
        }
    }

    /// The session's actor on this node (started if need be).
    pub async fn session_actor(&self, id: SessionId) -> Result<Addr<ChatSession>, ChatError> {
        self.sessions
            .send(Lookup::new(id))
            .await
            .map_err(ChatError::internal)
    }

    /// Keeps a session's actor from being swept as idle.
    pub fn touch(&self, id: SessionId) {
        self.sessions.do_send(Touch(id));
    }

    /// Sessions `user` may read, newest first: a student's own; for staff
    /// the organisation's, optionally of one user and/or persona.
    pub async fn list_sessions(
        &self,
        user: ChatUser,
        of_user: Option<UserId>,
        persona: Option<PersonaId>,
        page: Page,
    ) -> Result<Vec<SessionRow>, ChatError> {
        let who = if user.staff {
            of_user
        } else {
            Some(user.user_id)
        };
        Ok(store::list_sessions(&self.core.db, user.org_id, who, persona, page).await?)
    }

    /// One session with all its events: a student's own, or (staff) any of
    /// the organisation's.
    pub async fn history(
        &self,
        user: ChatUser,
        id: SessionId,
    ) -> Result<(SessionRow, Vec<EventRow>), ChatError> {
        let s = store::session(&self.core.db, user.org_id, id)
            .await?
            .filter(|s| user.staff || s.user_id == user.user_id)
            .ok_or(ChatError::SessionNotFound)?;
        let events = self.events_after(user.org_id, s.id, 0).await?;
        Ok((s, events))
    }

    /// The conversation so far, for an HTTP `ask` within a session: the
    /// session must be the asker's own and of this persona.
    pub async fn history_for_ask(
        &self,
        user: ChatUser,
        persona: PersonaId,
        session: SessionId,
    ) -> Result<Vec<Turn>, ChatError> {
        let s = store::session(&self.core.db, user.org_id, session)
            .await?
            .filter(|s| s.user_id == user.user_id && s.persona_id == persona)
            .ok_or(ChatError::NotYourSession)?;
        let n = (self.core.config.history_turns as i64).max(0);
        Ok(store::recent_events(&self.core.db, user.org_id, s.id, n)
            .await?
            .into_iter()
            .map(turn)
            .collect())
    }

    /// Records a question asked over HTTP and its answer in the session.
    pub async fn record_exchange(
        &self,
        user: ChatUser,
        session: SessionId,
        question: &str,
        answer: &str,
        extras: &AnswerExtras,
    ) -> Result<(i64, i64), ChatError> {
        let db = &self.core.db;
        let q = store::append(
            db,
            user.org_id,
            session,
            &NewEvent {
                role: EventRole::User,
                client_id: None,
                reply_to: None,
                text: question,
                payload: "{}",
                at: Utc::now(),
            },
        )
        .await?
        .ok_or(ChatError::SessionNotFound)?;
        let payload = payload_of(extras);
        let a = store::append(
            db,
            user.org_id,
            session,
            &NewEvent {
                role: EventRole::Assistant,
                client_id: None,
                reply_to: Some(q.seq()),
                text: answer,
                payload: &payload,
                at: Utc::now(),
            },
        )
        .await?
        .ok_or(ChatError::SessionNotFound)?;
        Ok((q.seq(), a.seq()))
    }

    /// Reports what happened outside the session actors (a question asked
    /// over HTTP); never waits.
    pub fn report(&self, activity: Activity) {
        self.core.activity.record(activity);
    }
}

/// A stored event as a turn of the conversation.
pub fn turn(e: EventRow) -> Turn {
    Turn {
        role: match e.role {
            EventRole::User => TurnRole::User,
            EventRole::Assistant => TurnRole::Assistant,
        },
        text: e.text,
    }
}

/// The stored payload of an answer.
pub fn payload_of(extras: &AnswerExtras) -> String {
    serde_json::to_string(extras).unwrap_or_else(|_| "{}".to_owned())
}

#[cfg(test)]
mod tests {
    //! The service on its own: a SQLite file, the real store, hub and
    //! session actors, a stand-in tutor; no HTTP.
    #![allow(clippy::unwrap_used)]

    use std::collections::HashMap;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use async_trait::async_trait;

    use super::*;
    use crate::chat::tutor::{Asked, Piece, TutorAnswer};
    use crate::config::{LoadOptions, Settings};
    use crate::infra::bus::InProcessBus;
    use crate::infra::ratelimit::InProcessRateLimiter;

    /// Knows one persona; answers by echoing, counting what it was asked.
    struct EchoTutor {
        persona: PersonaId,
        asked: AtomicUsize,
    }

    #[async_trait]
    impl Tutor for EchoTutor {
        fn check_question(&self, text: &str) -> Result<String, ChatError> {
            Ok(text.trim().to_owned())
        }

        async fn persona_exists(&self, _: OrgId, persona: PersonaId) -> Result<bool, ChatError> {
            Ok(persona == self.persona)
        }

        async fn ask(&self, q: Asked) -> Result<TutorAnswer, ChatError> {
            self.asked.fetch_add(1, Ordering::SeqCst);
            if let Some(p) = &q.pieces {
                let _ = p.send(Piece::Text("You asked: ".into())).await;
            }
            Ok(TutorAnswer {
                text: format!("You asked: {}", q.text),
                extras: AnswerExtras {
                    grounded: Some(false),
                    ..AnswerExtras::default()
                },
            })
        }
    }

    /// Remembers what chat reported.
    #[derive(Default)]
    struct Recorded(parking_lot::Mutex<Vec<Activity>>);

    impl ChatActivity for Recorded {
        fn record(&self, event: Activity) {
            self.0.lock().push(event);
        }
    }

    struct World {
        chat: ChatService,
        tutor: Arc<EchoTutor>,
        activity: Arc<Recorded>,
        org: OrgId,
        persona: PersonaId,
        alice: ChatUser,
        bob: ChatUser,
        _dir: tempfile::TempDir,
    }

    async fn world() -> World {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("chat.db").display());
        let env: HashMap<String, String> = [
            ("BWENGE_ENV", "test"),
            ("BWENGE_DATABASE_URL", url.as_str()),
            ("BWENGE_DATA_DIR", dir.path().to_str().unwrap()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let (mut settings, _) = Settings::load(&LoadOptions {
            env,
            ..LoadOptions::default()
        })
        .unwrap();
        settings.chat.messages_burst = 100;
        let db = Db::connect(&settings).await.unwrap();
        db.migrate().await.unwrap();

        let org = OrgId::new();
        let persona = PersonaId::new();
        let (alice, bob) = (UserId::new(), UserId::new());
        let now = Utc::now();
        crate::on_db_write!(&db, |pool| {
            sqlx::query(
                "INSERT INTO organizations (id, name, created_at) VALUES ($1, 'School', $2)",
            )
            .bind(org)
            .bind(now)
            .execute(pool)
            .await
            .unwrap();
            for (user, email) in [(alice, "alice@example.com"), (bob, "bob@example.com")] {
                sqlx::query(
                    "INSERT INTO users (id, organization_id, email, full_name, role, \
                     password_hash, created_at, updated_at) \
                     VALUES ($1, $2, $3, 'S', 'student', 'x', $4, $4)",
                )
                .bind(user)
                .bind(org)
                .bind(email)
                .bind(now)
                .execute(pool)
                .await
                .unwrap();
            }
            sqlx::query(
                "INSERT INTO personas (id, organization_id, name, language, scope_all, \
                 blocked_topics, stay_on_subject, gestures, created_at, updated_at) \
                 VALUES ($1, $2, 'Tutor', 'en', TRUE, '[]', FALSE, '{}', $3, $3)",
            )
            .bind(persona)
            .bind(org)
            .bind(now)
            .execute(pool)
            .await
            .unwrap();
        });
        let tutor = Arc::new(EchoTutor {
            persona,
            asked: AtomicUsize::new(0),
        });
        let hub = ChatHub::new(Arc::new(InProcessBus::new()), "node".into());
        let activity = Arc::new(Recorded::default());
        let quotas = crate::testkit::quotas(&settings, &db);
        let chat = ChatService::build(
            db,
            hub,
            tutor.clone(),
            Arc::new(InProcessRateLimiter::new()),
            ChatConfig::from_settings(&settings),
            activity.clone(),
            quotas,
        );
        let student = |user_id| ChatUser {
            user_id,
            org_id: org,
            staff: false,
        };
        World {
            chat,
            tutor,
            activity,
            org,
            persona,
            alice: student(alice),
            bob: student(bob),
            _dir: dir,
        }
    }

    /// The session's events as `(seq, role, reply_to)`, once `n` are stored.
    async fn events(w: &World, id: SessionId, n: usize) -> Vec<(i64, EventRole, Option<i64>)> {
        for _ in 0..500 {
            let got = store::events_after(&w.chat.core.db, w.org, id, 0, 100)
                .await
                .unwrap();
            if got.len() >= n {
                return got.iter().map(|e| (e.seq, e.role, e.reply_to)).collect();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("fewer than {n} events stored");
    }

    #[actix_web::test]
    async fn a_repeated_question_gets_its_seq_and_one_answer() {
        let w = world().await;
        let row = w.chat.start_session(w.alice, w.persona).await.unwrap();
        let id = row.id;
        w.chat
            .attach(w.alice, 1, Some(row.clone()), id, 0, false)
            .await
            .unwrap();
        let ask = |client: &str| {
            w.chat.ask(
                w.alice,
                1,
                row.clone(),
                None,
                client.to_owned(),
                "Why is the sky blue?".to_owned(),
            )
        };
        let (_, seq) = ask("q-1").await.unwrap();
        assert_eq!(seq, 1);
        let answered = vec![
            (1, EventRole::User, None),
            (2, EventRole::Assistant, Some(1)),
        ];
        assert_eq!(events(&w, id, 2).await, answered);
        // Again after a reconnect: the same seq, nothing new, not re-asked.
        let (_, again) = ask("q-1").await.unwrap();
        assert_eq!(again, 1);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(events(&w, id, 2).await, answered);
        assert_eq!(w.tutor.asked.load(Ordering::SeqCst), 1);
        // Reported once each: the question, and its answer.
        let reported: Vec<_> = w
            .activity
            .0
            .lock()
            .iter()
            .map(|a| match a {
                Activity::Asked {
                    session, seq, text, ..
                } => {
                    assert_eq!(
                        (session.owner, session.persona),
                        (w.alice.user_id, w.persona)
                    );
                    format!("asked {seq} {text}")
                }
                Activity::Answered {
                    reply_to,
                    seq,
                    grounded,
                    question,
                    first_token_ms,
                    total_ms,
                    ..
                } => {
                    assert!(first_token_ms <= total_ms);
                    format!("answered {reply_to} {seq} {grounded} {question}")
                }
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(
            reported,
            vec![
                "asked 1 Why is the sky blue?".to_owned(),
                "answered 1 2 false Why is the sky blue?".to_owned(),
            ]
        );
        let stored = store::events_after(&w.chat.core.db, w.org, id, 1, 1)
            .await
            .unwrap();
        assert_eq!(stored[0].text, "You asked: Why is the sky blue?");
    }

    #[actix_web::test]
    async fn a_resume_replays_exactly_the_later_events() {
        let w = world().await;
        let row = w.chat.start_session(w.alice, w.persona).await.unwrap();
        for (n, client) in ["a", "b"].iter().enumerate() {
            let (_, seq) = w
                .chat
                .ask(w.alice, 1, row.clone(), None, (*client).into(), "Hi".into())
                .await
                .unwrap();
            assert_eq!(seq, 2 * n as i64 + 1);
            events(&w, row.id, 2 * (n + 1)).await;
        }
        let a = w
            .chat
            .attach(w.alice, 2, None, row.id, 2, true)
            .await
            .unwrap();
        let seqs: Vec<i64> = a.replay.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, vec![3, 4]);
        assert_eq!(a.current_seq(), 4);
        assert!(a.actor.is_none(), "nothing left to answer");
        let all = w
            .chat
            .attach(w.alice, 2, None, row.id, 0, true)
            .await
            .unwrap();
        assert_eq!(all.replay.len(), 4);
        let none = w
            .chat
            .attach(w.alice, 2, None, row.id, 4, true)
            .await
            .unwrap();
        assert!(none.replay.is_empty());
    }

    #[actix_web::test]
    async fn another_students_session_is_refused() {
        let w = world().await;
        let row = w.chat.start_session(w.alice, w.persona).await.unwrap();
        let id = row.id;
        assert!(matches!(
            w.chat.attach(w.bob, 3, None, id, 0, true).await,
            Err(ChatError::SessionNotFound)
        ));
        assert!(matches!(
            w.chat.history(w.bob, id).await,
            Err(ChatError::SessionNotFound)
        ));
        assert!(matches!(
            w.chat
                .ask(w.bob, 3, row, None, "x".into(), "Mine now?".into())
                .await,
            Err(ChatError::NotSessionOwner)
        ));
        assert!(matches!(
            w.chat.history_for_ask(w.bob, w.persona, id).await,
            Err(ChatError::NotYourSession)
        ));
        assert!(matches!(
            w.chat.start_session(w.alice, PersonaId::new()).await,
            Err(ChatError::PersonaNotFound)
        ));
        let foreign = ChatUser {
            org_id: OrgId::new(),
            ..w.alice
        };
        assert!(matches!(
            w.chat.attach(foreign, 4, None, id, 0, true).await,
            Err(ChatError::SessionNotFound)
        ));
        assert_eq!(w.tutor.asked.load(Ordering::SeqCst), 0);
    }
}
