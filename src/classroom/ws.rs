//! One watcher's connection: a task of its own (a teacher's socket, not a
//! student's: few of them), which sends the snapshot, then the
//! organisation's live frames (of its persona, when it asked for one), and
//! keeps the socket alive like chat's: a WebSocket ping every
//! `chat.heartbeat_interval_secs`, a close (4408) when the client has been
//! silent past `chat.client_timeout_secs`; `{"type":"ping"}` is answered
//! with `{"type":"pong"}`.
//!
//! Close codes: 4401 the watcher's tokens were revoked, 4408 heartbeat
//! timeout, 1013 too slow (it fell too far behind the organisation's
//! stream, or a send waited past the client timeout) or the stream was
//! lost (reconnect for a fresh snapshot), 1011 the snapshot could not be
//! read, 1008 repeated malformed frames, 1009 a frame over 4 KiB.

use std::collections::HashSet;
use std::sync::Arc;

use tokio::time::{Instant, interval_at, timeout};
use tracing::Instrument;

use super::frames::{ClassroomClientFrame, ClassroomFrame, Live};
use super::service::{ClassroomService, Heard, Watch};
use super::transport::{Closed, Inbox, Incoming, Socket};
use crate::ids::{OrgId, PersonaId, SessionId, UserId};

/// Malformed frames tolerated before the connection is closed (1008).
const MAX_BAD_FRAMES: u32 = 10;

/// Live frames sent per wake of the connection at most (the rest wait for
/// the next turn, after the client's own frames and the heartbeat).
const MAX_RUN: usize = 64;

/// Who watches, and what.
#[derive(Debug, Clone, Copy)]
pub(super) struct Watcher {
    pub user: UserId,
    pub org: OrgId,
    pub persona: Option<PersonaId>,
}

/// Counts the watcher in `bwenge_classroom_watchers` while it lives.
struct Counted;

impl Counted {
    fn new() -> Self {
        metrics::gauge!(crate::metrics::CLASSROOM_WATCHERS).increment(1.0);
        Counted
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        metrics::gauge!(crate::metrics::CLASSROOM_WATCHERS).decrement(1.0);
    }
}

struct Conn {
    socket: Socket,
    service: ClassroomService,
}

impl Conn {
    /// Sends a frame's text; a send that waits past the client timeout
    /// counts as closed (the client stopped reading).
    async fn send(&mut self, kind: &'static str, text: &str) -> Result<(), Closed> {
        let wait = self.service.config().send_timeout;
        timeout(wait, self.socket.text(text))
            .await
            .map_err(|_| Closed)??;
        metrics::counter!(crate::metrics::CLASSROOM_FRAMES_SENT_TOTAL, "type" => kind).increment(1);
        Ok(())
    }

    async fn send_frame(&mut self, frame: &ClassroomFrame) -> Result<(), Closed> {
        self.send(frame.kind(), &frame.to_text()).await
    }

    /// Sends live frames in order; the whole run must go within the client
    /// timeout (the client stopped reading otherwise). One wake of the
    /// connection sends everything that was waiting, and the socket's
    /// writer puts it out in as few writes as it can.
    async fn send_live(&mut self, run: &[Arc<Live>]) -> Result<(), Closed> {
        if run.is_empty() {
            return Ok(());
        }
        let wait = self.service.config().send_timeout;
        let socket = &mut self.socket;
        timeout(wait, async move {
            for live in run {
                socket.text(&live.text).await?;
            }
            Ok::<(), Closed>(())
        })
        .await
        .map_err(|_| Closed)??;
        // Counted once per kind and run, not once per frame.
        let mut rest = run;
        while let Some(first) = rest.first() {
            let n = rest.iter().take_while(|l| l.kind == first.kind).count();
            metrics::counter!(crate::metrics::CLASSROOM_FRAMES_SENT_TOTAL, "type" => first.kind)
                .increment(n as u64);
            rest = &rest[n..];
        }
        Ok(())
    }
}

/// Serves the watcher until either side ends the connection.
pub(super) async fn run(
    who: Watcher,
    watch: Watch,
    socket: Socket,
    inbox: Inbox,
    service: ClassroomService,
) {
    let span = tracing::info_span!("classroom_ws", user_id = %who.user, organization_id = %who.org);
    async move {
        let _counted = Counted::new();
        let mut conn = Conn { socket, service };
        let code = serve(who, watch, &mut conn, inbox).await;
        tracing::debug!(?code, "classroom watcher leaving");
        conn.socket.close(code).await;
    }
    .instrument(span)
    .await;
}

/// The connection's life; returns the close code (`None`: a plain close,
/// or none at all when the socket is gone).
async fn serve(who: Watcher, mut watch: Watch, conn: &mut Conn, mut inbox: Inbox) -> Option<u16> {
    let snapshot = match conn.service.snapshot(who.org, who.persona).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "could not read a classroom snapshot");
            return Some(1011);
        }
    };
    // Questions the snapshot shows: skipped if they also arrive live.
    let mut shown: HashSet<(SessionId, i64)> = match &snapshot {
        ClassroomFrame::Snapshot { recent, .. } => {
            recent.iter().map(|q| (q.session_id, q.seq)).collect()
        }
        _ => HashSet::new(),
    };
    conn.send_frame(&snapshot).await.ok()?;

    let config = conn.service.config().clone();
    let mut beat = interval_at(Instant::now() + config.heartbeat, config.heartbeat);
    let mut last_heard = Instant::now();
    let mut bad_frames = 0;
    let mut run: Vec<Arc<Live>> = Vec::with_capacity(MAX_RUN);
    loop {
        tokio::select! {
            heard = watch.next() => {
                // This frame and whatever else is already waiting, sent in
                // one go.
                let mut heard = Some(heard);
                while let Some(h) = heard.take() {
                    match h {
                        Heard::Frame(live) => {
                            let skip = (who.persona.is_some() && live.persona != who.persona)
                                || live.question.is_some_and(|q| shown.remove(&q));
                            if !skip {
                                run.push(live);
                            }
                        }
                        Heard::Lost => return Some(1013),
                        Heard::Revoked(user) if user == who.user => return Some(4401),
                        Heard::Revoked(_) => {}
                    }
                    if run.len() < MAX_RUN {
                        heard = watch.try_next();
                    }
                }
                if conn.send_live(&run).await.is_err() {
                    tracing::info!("classroom watcher too slow; disconnecting");
                    return Some(1013);
                }
                run.clear();
            },
            incoming = inbox.next() => {
                last_heard = Instant::now();
                let sent = match incoming {
                    None | Some(Incoming::Close | Incoming::Broken) => return None,
                    Some(Incoming::TooLarge) => return Some(1009),
                    Some(Incoming::Alive) => Ok(()),
                    Some(Incoming::Ping(b)) => conn.socket.pong(&b).await,
                    Some(Incoming::Text(t)) => match serde_json::from_str::<ClassroomClientFrame>(&t) {
                        Ok(ClassroomClientFrame::Ping) => conn.send_frame(&ClassroomFrame::Pong).await,
                        Err(_) => {
                            bad_frames += 1;
                            if bad_frames > MAX_BAD_FRAMES {
                                return Some(1008);
                            }
                            conn.send_frame(&bad_frame()).await
                        }
                    },
                    Some(Incoming::NotText) => {
                        bad_frames += 1;
                        if bad_frames > MAX_BAD_FRAMES {
                            return Some(1008);
                        }
                        conn.send_frame(&bad_frame()).await
                    }
                };
                sent.ok()?;
            },
            _ = beat.tick() => {
                if Instant::now().saturating_duration_since(last_heard) > config.client_timeout {
                    return Some(4408);
                }
                conn.socket.ping().await.ok()?;
            }
        }
    }
}

fn bad_frame() -> ClassroomFrame {
    ClassroomFrame::Error {
        code: "bad_frame".into(),
        message: "The live classroom takes only {\"type\":\"ping\"} frames.".into(),
    }
}
