//! The persona actor: one per persona, owned by a persona registry
//! ([`crate::registry::Registry`]`<PersonaKey, Persona<P>>`).
//!
//! # What it owns
//!
//! The persona's loaded configuration (what the teacher set, its knowledge
//! scope, its avatar's gesture map) and the handle to the answering
//! machinery, both behind the [`PersonaPort`] the server implements. Only
//! the actor's own handlers mutate them. The configuration is loaded on the
//! first question and kept until a [`Reload`] (the persona or its sources
//! changed, here or on another node) drops it; the registry stops the actor
//! when idle and restarts it when a handler panics.
//!
//! Answering itself runs outside the actor's mailbox (a spawned future per
//! question), so one slow answer does not hold up the persona's other
//! students; the actor only hands each question the current configuration.

use std::sync::Arc;

use actix::prelude::*;
use async_trait::async_trait;
use uuid::Uuid;

use crate::messages::persona::{Ask, AskError, Reload};
use crate::registry::Shutdown;

/// A persona's id, the registry key.
pub type PersonaKey = Uuid;

/// What the persona actor needs from the server: loading its configuration
/// and answering with it. Implemented by the `bwenge` crate over the
/// database, search and language models.
#[async_trait]
pub trait PersonaPort: Send + Sync + 'static {
    /// The loaded persona.
    type Config: Send + Sync + 'static;
    /// A question with its context (who asks, conversation, where to stream).
    type Request: Send + 'static;
    /// The finished answer.
    type Reply: Send + 'static;
    /// Why answering failed.
    type Error: Send + 'static;

    /// Loads the persona; `Ok(None)` when it does not exist (any more).
    async fn load(&self, id: PersonaKey) -> Result<Option<Self::Config>, Self::Error>;

    /// Answers one question with the given configuration.
    async fn answer(
        &self,
        config: Arc<Self::Config>,
        request: Self::Request,
    ) -> Result<Self::Reply, Self::Error>;
}

/// One persona.
pub struct Persona<P: PersonaPort> {
    id: PersonaKey,
    port: Arc<P>,
    config: Option<Arc<P::Config>>,
}

impl<P: PersonaPort> Persona<P> {
    pub fn new(id: PersonaKey, port: Arc<P>) -> Self {
        Self {
            id,
            port,
            config: None,
        }
    }
}

impl<P: PersonaPort> Actor for Persona<P> {
    type Context = Context<Self>;

    fn started(&mut self, _ctx: &mut Self::Context) {
        tracing::debug!(persona_id = %self.id, "persona actor started");
    }
}

impl<P: PersonaPort> Handler<Shutdown> for Persona<P> {
    type Result = ();

    fn handle(&mut self, _: Shutdown, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

impl<P: PersonaPort> Handler<Reload> for Persona<P> {
    type Result = ();

    fn handle(&mut self, _: Reload, _ctx: &mut Self::Context) {
        self.config = None;
    }
}

/// The configuration a handler may use now: the cached one, or a load
/// whose result is stored by [`Loaded`] for the next questions.
struct Loaded<C>(Arc<C>);

impl<C: Send + Sync + 'static> Message for Loaded<C> {
    type Result = ();
}

impl<P: PersonaPort> Handler<Loaded<P::Config>> for Persona<P> {
    type Result = ();

    fn handle(&mut self, msg: Loaded<P::Config>, _ctx: &mut Self::Context) {
        self.config = Some(msg.0);
    }
}

impl<P: PersonaPort> Handler<Ask<P::Request, P::Reply, P::Error>> for Persona<P> {
    type Result = ResponseFuture<Result<P::Reply, AskError<P::Error>>>;

    fn handle(
        &mut self,
        msg: Ask<P::Request, P::Reply, P::Error>,
        ctx: &mut Self::Context,
    ) -> Self::Result {
        let port = self.port.clone();
        let cached = self.config.clone();
        let id = self.id;
        let me = ctx.address().recipient::<Loaded<P::Config>>();
        Box::pin(async move {
            let config = match cached {
                Some(c) => c,
                None => {
                    let loaded = port
                        .load(id)
                        .await
                        .map_err(AskError::Failed)?
                        .ok_or(AskError::NotFound)?;
                    let loaded = Arc::new(loaded);
                    // A Reload racing this load may be overtaken; the next
                    // change (or idle stop) corrects it, and the answer
                    // pipeline re-checks tenancy on every question anyway.
                    me.do_send(Loaded(loaded.clone()));
                    loaded
                }
            };
            port.answer(config, msg.request)
                .await
                .map_err(AskError::Failed)
        })
    }
}
