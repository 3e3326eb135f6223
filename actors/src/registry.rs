//! A keyed registry of child actors: the pattern every per-entity actor in
//! Bwenge (chat session, persona, ingest job) is reached through.
//!
//! # What it owns
//!
//! A [`Registry`] owns, for every key it has seen recently, one slot holding
//! either the address of the live child actor for that key or a pending
//! restart. It also owns the counters behind [`RegistryStats`] and the
//! `bwenge_registry_*` metrics. Only the registry's own handlers (and the
//! futures it spawns into its own context) read or mutate this state, one
//! message at a time; everyone else talks to it through messages. That
//! serialisation is what makes [`Lookup`] race-free: a hundred concurrent
//! lookups of one key are a hundred queued messages, the first of which starts
//! the child and the rest of which find it.
//!
//! # Lifecycle of a child
//!
//! * **Start**: the first [`Lookup`] of a key builds the actor with the
//!   factory and starts it on the registry's arbiter (thread). Children are
//!   started by hand (`Context::new` + `into_future` + `actix::spawn`) rather
//!   than with `Actor::start`, because only then can the child's future be
//!   wrapped: its task catches a panic in a handler and reports every exit
//!   to the registry as a message.
//! * **Normal exit**: a child that stops itself, or that the registry shut
//!   down, is forgotten. It is started again only by a later [`Lookup`].
//! * **Panic**: a child whose task panicked is restarted after a backoff of
//!   `restart_backoff_base * 2^(n-1)` for its `n`th consecutive failure,
//!   capped at `restart_backoff_max`. A [`Lookup`] arriving during the backoff
//!   does not wait: it restarts the child at once. A child that ran for at
//!   least [`RegistryConfig::stable_after`] (10 × the backoff base) before
//!   failing starts the count again from one, so a rare crash in a long-lived
//!   child does not inherit the backoff of an old crash loop. The restarted
//!   child is a fresh instance (its state is rebuilt by the factory) with a new
//!   address; the old address is dead.
//! * **Idleness**: every [`Lookup`] or [`Touch`] refreshes a key's last use.
//!   A periodic sweep sends [`Shutdown`] to children unused for longer than
//!   `idle_timeout` and forgets them. Holders that keep an address and talk to
//!   the child directly must [`Touch`] the key to keep it alive.
//! * **Removal**: [`Remove`] shuts one child down now.
//!
//! Every exit is tagged with a registry-wide generation number, so the exit
//! of an old instance (say, one shut down by [`Remove`] just before a new
//! lookup started its successor) never removes the newer instance.
//!
//! # Lifecycle of the registry
//!
//! When the registry stops, it sends [`Shutdown`] to every child. Because its
//! periodic sweep keeps its context busy, the registry would otherwise never
//! stop on its own; so the sweep also stops it once no [`Addr`] to it remains.

use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::Hash;
use std::marker::PhantomData;
use std::time::{Duration, Instant};

use std::panic::AssertUnwindSafe;

use actix::prelude::*;
use futures_util::FutureExt;

/// Metric names, exactly as exported. All carry the label `registry`.
const METRIC_LIVE: &str = "bwenge_registry_actors";
const METRIC_STARTED: &str = "bwenge_registry_started_total";
const METRIC_RESTARTED: &str = "bwenge_registry_restarted_total";
const METRIC_STOPPED_IDLE: &str = "bwenge_registry_stopped_idle_total";

/// `tokio::time::sleep(0)` in a loop would spin the arbiter; nothing in the
/// registry needs to happen more often than this.
const MIN_SWEEP_INTERVAL: Duration = Duration::from_millis(1);

/// Timings of a [`Registry`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegistryConfig {
    /// A child not looked up or touched for longer than this is shut down.
    pub idle_timeout: Duration,
    /// How often idle children are looked for. A child may therefore live up
    /// to `idle_timeout + sweep_interval` after its last use.
    pub sweep_interval: Duration,
    /// Delay before the first restart of a panicked child; doubled for each
    /// further consecutive failure.
    pub restart_backoff_base: Duration,
    /// Upper bound of the restart delay.
    pub restart_backoff_max: Duration,
}

impl RegistryConfig {
    /// The defaults with another idle timeout; the sweep interval follows it
    /// (a quarter of it, at most 30 s).
    pub fn with_idle_timeout(idle_timeout: Duration) -> Self {
        Self {
            idle_timeout,
            sweep_interval: (idle_timeout / 4).min(Duration::from_secs(30)),
            ..Self::default()
        }
    }

    /// How long a child must run before a failure no longer counts as
    /// "consecutive" with earlier ones: 10 × `restart_backoff_base`. Tied to the
    /// base rather than fixed so that it scales with the configured timings
    /// (1 s by default; tens of milliseconds in tests).
    pub fn stable_after(&self) -> Duration {
        self.restart_backoff_base.saturating_mul(10)
    }

    /// The delay before restarting after the `failures`th consecutive failure
    /// (`failures >= 1`).
    pub fn backoff(&self, failures: u32) -> Duration {
        // Beyond 2^31 every realistic base has long hit the cap; clamping the
        // exponent keeps the shift defined.
        let exponent = failures.saturating_sub(1).min(31);
        self.restart_backoff_base
            .saturating_mul(1u32 << exponent)
            .min(self.restart_backoff_max)
    }
}

impl Default for RegistryConfig {
    /// Idle 300 s, sweep every 30 s, restart after 100 ms doubling up to 30 s.
    fn default() -> Self {
        let idle_timeout = Duration::from_secs(300);
        Self {
            idle_timeout,
            sweep_interval: (idle_timeout / 4).min(Duration::from_secs(30)),
            restart_backoff_base: Duration::from_millis(100),
            restart_backoff_max: Duration::from_secs(30),
        }
    }
}

/// Asks a child to stop itself.
///
/// This is the registry's only way to stop a child of any type (idle sweep,
/// [`Remove`], registry shutdown), so every child **must** handle it by
/// calling `ctx.stop()`. A child that ignores it keeps running, detached
/// from the registry, until it stops for another reason.
///
/// ```
/// use actix::prelude::*;
/// use bwenge_actors::registry::{Lookup, Registry, RegistryConfig, Shutdown, Stats};
///
/// struct Session;
///
/// impl Actor for Session {
///     type Context = Context<Self>;
/// }
///
/// impl Handler<Shutdown> for Session {
///     type Result = ();
///
///     fn handle(&mut self, _: Shutdown, ctx: &mut Context<Self>) {
///         ctx.stop();
///     }
/// }
///
/// actix::System::new().block_on(async {
///     let registry =
///         Registry::new("sessions", RegistryConfig::default(), |_id: &u64| Session).start();
///     let a = registry.send(Lookup::new(7)).await.expect("registry alive");
///     let b = registry.send(Lookup::new(7)).await.expect("registry alive");
///     assert_eq!(a, b);
///     assert_eq!(registry.send(Stats).await.expect("registry alive").started, 1);
/// });
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Shutdown;

impl Message for Shutdown {
    type Result = ();
}

/// Returns the address of the live child for a key, starting it if needed.
///
/// Also refreshes the key's last use. Build it with [`Lookup::new`].
///
/// The child type `A` is part of the message type because actix ties a
/// message's result type to the message alone (`Message::Result` is an
/// associated type), and the result here is `Addr<A>`; it is normally
/// inferred from the registry the message is sent to.
pub struct Lookup<K, A>(pub K, PhantomData<fn() -> A>);

impl<K, A> Lookup<K, A> {
    /// A lookup of `key`.
    pub fn new(key: K) -> Self {
        Self(key, PhantomData)
    }
}

impl<K: Debug, A> Debug for Lookup<K, A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Lookup").field(&self.0).finish()
    }
}

impl<K: 'static, A: Actor> Message for Lookup<K, A> {
    type Result = Addr<A>;
}

/// Refreshes a key's last use without returning its address, so that holders
/// of a child's address (or the child itself) can keep it from being swept as
/// idle. Does nothing for a key the registry does not know; never starts a
/// child.
#[derive(Debug, Clone)]
pub struct Touch<K>(pub K);

impl<K: 'static> Message for Touch<K> {
    type Result = ();
}

/// Shuts the child for a key down now and forgets the key (for instance, its
/// persona was deleted). A pending restart is cancelled. A later [`Lookup`]
/// starts a new child.
#[derive(Debug, Clone)]
pub struct Remove<K>(pub K);

impl<K: 'static> Message for Remove<K> {
    type Result = ();
}

/// Asks for the registry's [`RegistryStats`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Stats;

impl Message for Stats {
    type Result = RegistryStats;
}

/// Counts since the registry started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RegistryStats {
    /// Children running now (not counting keys waiting for a restart).
    pub live: usize,
    /// Children started fresh by a lookup (restarts not included).
    pub started: u64,
    /// Children started again after a panic, by the backoff timer or by a
    /// lookup arriving during the backoff.
    pub restarted: u64,
    /// Children shut down by the idle sweep.
    pub stopped_idle: u64,
}

enum SlotState<A: Actor> {
    Running {
        addr: Addr<A>,
        started_at: Instant,
    },
    /// The child panicked; `timer` restarts it unless a lookup does first.
    Backoff {
        timer: SpawnHandle,
    },
}

struct Slot<A: Actor> {
    state: SlotState<A>,
    /// Generation of the instance this slot is about; exits and timers
    /// carrying another generation are stale.
    generation: u64,
    last_used: Instant,
    consecutive_failures: u32,
}

type Factory<K, A> = Box<dyn Fn(&K) -> A + Send + Sync>;

/// The registry actor. See the [module documentation](self).
pub struct Registry<K, A>
where
    A: Actor<Context = Context<A>>,
{
    name: &'static str,
    config: RegistryConfig,
    factory: Factory<K, A>,
    slots: HashMap<K, Slot<A>>,
    /// Registry-wide rather than per key: a per-key counter would restart at
    /// zero when a key is removed and looked up again, and the exit of the
    /// removed instance could then be mistaken for the new one's.
    next_generation: u64,
    started: u64,
    restarted: u64,
    stopped_idle: u64,
}

impl<K, A> Registry<K, A>
where
    K: Clone + Eq + Hash + Debug + Send + Unpin + 'static,
    A: Actor<Context = Context<A>> + Handler<Shutdown>,
{
    /// A registry whose children are built by `factory`. `name` labels its
    /// metrics (`registry="<name>"`) and logs. Start it with
    /// [`Actor::start`].
    pub fn new(
        name: &'static str,
        config: RegistryConfig,
        factory: impl Fn(&K) -> A + Send + Sync + 'static,
    ) -> Self {
        Self {
            name,
            config,
            factory: Box::new(factory),
            slots: HashMap::new(),
            next_generation: 0,
            started: 0,
            restarted: 0,
            stopped_idle: 0,
        }
    }

    fn live(&self) -> usize {
        self.slots
            .values()
            .filter(|slot| matches!(slot.state, SlotState::Running { .. }))
            .count()
    }

    fn publish_live(&self) {
        metrics::gauge!(METRIC_LIVE, "registry" => self.name).set(self.live() as f64);
    }

    /// Starts a new instance for `key` and watches its task. Returns its
    /// address and generation.
    fn spawn_child(&mut self, key: &K, ctx: &mut Context<Self>) -> (Addr<A>, u64) {
        self.next_generation += 1;
        let generation = self.next_generation;

        let child_ctx = Context::<A>::new();
        let addr = child_ctx.address();
        let child = child_ctx.into_future((self.factory)(key));

        // The child's own task reports its exit (and whether it panicked)
        // with a message. A watcher future per child in the registry's
        // context would be polled, all of them, every time the registry
        // handles a message (actix polls every spawned future of a context
        // on each wake-up): with ten thousand children, each lookup would
        // cost ten thousand polls. The weak address does not keep the
        // registry alive; a task cancelled by a runtime shutting down
        // reports nothing, which is right: that is not a crash.
        let registry = ctx.address().downgrade();
        let key = key.clone();
        actix::spawn(async move {
            let panicked = AssertUnwindSafe(child).catch_unwind().await.is_err();
            if let Some(registry) = registry.upgrade() {
                registry.do_send(ChildExited {
                    key,
                    generation,
                    panicked,
                });
            }
        });
        (addr, generation)
    }

    fn child_exited(&mut self, key: K, generation: u64, panicked: bool, ctx: &mut Context<Self>) {
        let Some(slot) = self.slots.get_mut(&key) else {
            return;
        };
        let started_at = match &slot.state {
            SlotState::Running { started_at, .. } if slot.generation == generation => *started_at,
            _ => return,
        };

        if !panicked {
            tracing::debug!(registry = self.name, ?key, "child stopped");
            self.slots.remove(&key);
            self.publish_live();
            return;
        }

        if started_at.elapsed() >= self.config.stable_after() {
            slot.consecutive_failures = 0;
        }
        slot.consecutive_failures = slot.consecutive_failures.saturating_add(1);
        let delay = self.config.backoff(slot.consecutive_failures);
        tracing::warn!(
            registry = self.name,
            ?key,
            failures = slot.consecutive_failures,
            ?delay,
            "child panicked; restarting after backoff"
        );

        let timer_key = key.clone();
        let timer = ctx.run_later(delay, move |registry, ctx| {
            registry.restart_after_backoff(timer_key, generation, ctx);
        });
        slot.state = SlotState::Backoff { timer };
        self.publish_live();
    }

    fn restart_after_backoff(&mut self, key: K, generation: u64, ctx: &mut Context<Self>) {
        let pending = self.slots.get(&key).is_some_and(|slot| {
            slot.generation == generation && matches!(slot.state, SlotState::Backoff { .. })
        });
        if pending {
            self.restart(&key, ctx);
        }
    }

    /// Replaces the slot's pending restart by a running instance.
    fn restart(&mut self, key: &K, ctx: &mut Context<Self>) -> Option<Addr<A>> {
        if !self.slots.contains_key(key) {
            return None;
        }
        let (addr, generation) = self.spawn_child(key, ctx);
        let slot = self.slots.get_mut(key)?;
        if let SlotState::Backoff { timer } = slot.state {
            // Harmless if it already fired: cancelling a finished handle is a no-op.
            ctx.cancel_future(timer);
        }
        slot.generation = generation;
        slot.state = SlotState::Running {
            addr: addr.clone(),
            started_at: Instant::now(),
        };
        self.restarted += 1;
        metrics::counter!(METRIC_RESTARTED, "registry" => self.name).increment(1);
        self.publish_live();
        Some(addr)
    }

    fn start_fresh(&mut self, key: K, ctx: &mut Context<Self>) -> Addr<A> {
        let (addr, generation) = self.spawn_child(&key, ctx);
        self.slots.insert(
            key,
            Slot {
                state: SlotState::Running {
                    addr: addr.clone(),
                    started_at: Instant::now(),
                },
                generation,
                last_used: Instant::now(),
                consecutive_failures: 0,
            },
        );
        self.started += 1;
        metrics::counter!(METRIC_STARTED, "registry" => self.name).increment(1);
        self.publish_live();
        addr
    }

    fn sweep(&mut self, ctx: &mut Context<Self>) {
        if !ctx.connected() {
            // Nobody can send us anything any more; `stopped` shuts the
            // children down.
            ctx.stop();
            return;
        }

        let idle_timeout = self.config.idle_timeout;
        let idle: Vec<K> = self
            .slots
            .iter()
            .filter(|(_, slot)| slot.last_used.elapsed() > idle_timeout)
            .map(|(key, _)| key.clone())
            .collect();
        if idle.is_empty() {
            return;
        }

        for key in idle {
            let Some(slot) = self.slots.remove(&key) else {
                continue;
            };
            match slot.state {
                SlotState::Running { addr, .. } => {
                    tracing::debug!(registry = self.name, ?key, "stopping idle child");
                    addr.do_send(Shutdown);
                    self.stopped_idle += 1;
                    metrics::counter!(METRIC_STOPPED_IDLE, "registry" => self.name).increment(1);
                }
                // Nobody asked for it while it was down: no point restarting it.
                SlotState::Backoff { timer } => {
                    ctx.cancel_future(timer);
                }
            }
        }
        self.publish_live();
    }
}

impl<K, A> Actor for Registry<K, A>
where
    K: Clone + Eq + Hash + Debug + Send + Unpin + 'static,
    A: Actor<Context = Context<A>> + Handler<Shutdown>,
{
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.publish_live();
        let every = self.config.sweep_interval.max(MIN_SWEEP_INTERVAL);
        ctx.run_interval(every, |registry, ctx| registry.sweep(ctx));
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        for (_, slot) in self.slots.drain() {
            if let SlotState::Running { addr, .. } = slot.state {
                addr.do_send(Shutdown);
            }
        }
        self.publish_live();
    }
}

impl<K, A> Handler<Lookup<K, A>> for Registry<K, A>
where
    K: Clone + Eq + Hash + Debug + Send + Unpin + 'static,
    A: Actor<Context = Context<A>> + Handler<Shutdown>,
{
    type Result = MessageResult<Lookup<K, A>>;

    fn handle(&mut self, Lookup(key, _): Lookup<K, A>, ctx: &mut Context<Self>) -> Self::Result {
        let Some(slot) = self.slots.get_mut(&key) else {
            return MessageResult(self.start_fresh(key, ctx));
        };
        slot.last_used = Instant::now();
        match &slot.state {
            SlotState::Running { addr, .. } if addr.connected() => MessageResult(addr.clone()),
            // The child's task has ended but its exit has not reached us yet
            // (it is queued behind this lookup). Its exit will be ignored as
            // stale; whether it panicked is unknown here, so this counts as a
            // fresh start.
            SlotState::Running { .. } => {
                self.slots.remove(&key);
                MessageResult(self.start_fresh(key, ctx))
            }
            SlotState::Backoff { .. } => match self.restart(&key, ctx) {
                Some(addr) => MessageResult(addr),
                // Unreachable (the slot exists), but a fresh start is the
                // right answer anyway and avoids a panic path.
                None => MessageResult(self.start_fresh(key, ctx)),
            },
        }
    }
}

/// A child's task ended (sent by the task itself, see `spawn_child`).
struct ChildExited<K> {
    key: K,
    generation: u64,
    panicked: bool,
}

impl<K: 'static> Message for ChildExited<K> {
    type Result = ();
}

impl<K, A> Handler<ChildExited<K>> for Registry<K, A>
where
    K: Clone + Eq + Hash + Debug + Send + Unpin + 'static,
    A: Actor<Context = Context<A>> + Handler<Shutdown>,
{
    type Result = ();

    fn handle(&mut self, msg: ChildExited<K>, ctx: &mut Context<Self>) {
        self.child_exited(msg.key, msg.generation, msg.panicked, ctx);
    }
}

impl<K, A> Handler<Touch<K>> for Registry<K, A>
where
    K: Clone + Eq + Hash + Debug + Send + Unpin + 'static,
    A: Actor<Context = Context<A>> + Handler<Shutdown>,
{
    type Result = ();

    fn handle(&mut self, Touch(key): Touch<K>, _ctx: &mut Context<Self>) {
        if let Some(slot) = self.slots.get_mut(&key) {
            slot.last_used = Instant::now();
        }
    }
}

impl<K, A> Handler<Remove<K>> for Registry<K, A>
where
    K: Clone + Eq + Hash + Debug + Send + Unpin + 'static,
    A: Actor<Context = Context<A>> + Handler<Shutdown>,
{
    type Result = ();

    fn handle(&mut self, Remove(key): Remove<K>, ctx: &mut Context<Self>) {
        let Some(slot) = self.slots.remove(&key) else {
            return;
        };
        match slot.state {
            SlotState::Running { addr, .. } => addr.do_send(Shutdown),
            SlotState::Backoff { timer } => {
                ctx.cancel_future(timer);
            }
        }
        self.publish_live();
    }
}

impl<K, A> Handler<Stats> for Registry<K, A>
where
    K: Clone + Eq + Hash + Debug + Send + Unpin + 'static,
    A: Actor<Context = Context<A>> + Handler<Shutdown>,
{
    type Result = MessageResult<Stats>;

    fn handle(&mut self, _: Stats, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(RegistryStats {
            live: self.live(),
            started: self.started,
            restarted: self.restarted,
            stopped_idle: self.stopped_idle,
        })
    }
}
