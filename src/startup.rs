//! The one place that builds the application: pools, Redis, ports, metrics,
//! the HTTP server. `main`, the tests and the benches all start Bwenge through
//! [`Application::build`].

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};
use anyhow::Context;
use tracing_actix_web::TracingLogger;

use crate::adapters::{
    ActivityToAnalytics, ChatToClassroom, ClassroomDirectory, EraseThroughAnalytics,
    HubRevocations, PersonaLinksToCatalog, PersonaScopesFromStore,
};
use crate::auth::password::Hasher;
use crate::auth::service::{AuthDeps, AuthService};
use crate::auth::tokens::TokenKeys;
use crate::config::Settings;
use crate::db::Db;
use crate::http::middleware::{BwengeRootSpan, observe};
use crate::infra::bus::messages::IndexChanged;
use crate::infra::bus::{InProcessBus, RedisBus};
use crate::infra::cache::{InProcessCache, RedisCache};
use crate::infra::ratelimit::{InProcessRateLimiter, RedisRateLimiter};
use crate::knowledge::index::SearchService;
use crate::knowledge::ingest::KnowledgeIngest;
use crate::knowledge::service::KnowledgeDeps;
use crate::state::AppState;
use actix::Actor;
use bwenge_actors::ingest::{IngestScheduler, SchedulerConfig};
use bwenge_actors::messages::ingest::{Enqueue, JobId};
use bwenge_actors::persona::{Persona, PersonaKey};
use bwenge_actors::registry::{Registry, RegistryConfig};

/// Entries kept by the in-process cache.
const IN_PROCESS_CACHE_ENTRIES: usize = 10_000;

pub struct Application {
    port: u16,
    local_addr: std::net::SocketAddr,
    server: Server,
    state: web::Data<AppState>,
}

impl Application {
    /// Connects to the database (applying migrations) and Redis, builds the
    /// state and binds the listener. Serving starts with
    /// [`Application::run_until_stopped`].
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        std::fs::create_dir_all(&settings.data_dir).with_context(|| {
            format!(
                "could not create the data directory {}",
                settings.data_dir.display()
            )
        })?;
        crate::work::set_answering_nice(settings.chat.answering_nice);
        crate::work::start_compute_pool();
        let metrics = crate::metrics::install();
        let db = Db::connect(&settings).await?;
        db.migrate().await?;

        let prefix = settings.redis.key_prefix.clone();
        let (redis, bus, cache, limiter) = match settings.redis_url() {
            None => (
                None,
                Arc::new(InProcessBus::new()) as Arc<dyn bwenge_actors::ports::Bus>,
                Arc::new(InProcessCache::new(IN_PROCESS_CACHE_ENTRIES))
                    as Arc<dyn bwenge_actors::ports::Cache>,
                Arc::new(InProcessRateLimiter::new()) as Arc<dyn bwenge_actors::ports::RateLimiter>,
            ),
            Some(url) => {
                let mut cfg = deadpool_redis::Config::from_url(url);
                cfg.pool = Some(deadpool_redis::PoolConfig::new(settings.redis.pool_size));
                let pool = cfg
                    .create_pool(Some(deadpool_redis::Runtime::Tokio1))
                    .context("BWENGE_REDIS_URL is not a valid Redis URL")?;
                // Fail fast at start-up rather than on the first request.
                let mut conn = pool
                    .get()
                    .await
                    .context("could not connect to Redis at BWENGE_REDIS_URL")?;
                redis::cmd("PING")
                    .query_async::<String>(&mut conn)
                    .await
                    .context("Redis did not answer PING")?;
                drop(conn);
                let bus = RedisBus::new(pool.clone(), url, &prefix)
                    .context("could not set up the Redis bus")?;
                (
                    Some(pool.clone()),
                    Arc::new(bus) as Arc<dyn bwenge_actors::ports::Bus>,
                    Arc::new(RedisCache::new(pool.clone(), &prefix))
                        as Arc<dyn bwenge_actors::ports::Cache>,
                    Arc::new(RedisRateLimiter::new(pool, &prefix))
                        as Arc<dyn bwenge_actors::ports::RateLimiter>,
                )
            }
        };

        let mailer = crate::mail::from_settings(&settings.mail, &settings.data_dir)?;
        let clock = crate::clock::Clock::system();
        let embedder = crate::knowledge::embedders::build(&settings).await;
        let a = &settings.analytics;
        let recorder = crate::analytics::EventRecorder::start(
            db.clone(),
            embedder.clone(),
            a.queue,
            a.batch,
            std::time::Duration::from_millis(a.linger_ms),
        );
        let recorder = if a.record { recorder } else { recorder.off() };
        let analytics = crate::analytics::AnalyticsService::new(
            db.clone(),
            recorder.clone(),
            embedder.clone(),
            a.clone(),
            clock,
        );
        crate::analytics::jobs::start(analytics.clone(), mailer.clone(), clock);
        let activity = Arc::new(ActivityToAnalytics {
            recorder: recorder.clone(),
            clock,
        });
        let revocations: Arc<dyn crate::auth::Revocations> =
            Arc::new(HubRevocations { bus: bus.clone() });
        let auth = AuthService::new(AuthDeps {
            db: db.clone(),
            settings: settings.auth.clone(),
            link_base_url: settings.mail.link_base_url.trim_end_matches('/').to_owned(),
            keys: TokenKeys::new(
                settings.secrets.jwt_secret.expose(),
                settings.auth.access_token_ttl_secs as i64,
            ),
            hasher: Hasher::new(
                settings.auth.hash_concurrency,
                Duration::from_millis(settings.auth.hash_queue_wait_ms),
            ),
            limiter: limiter.clone(),
            mailer: mailer.clone(),
            revocations: revocations.clone(),
            clock,
            sign_ins: activity.clone(),
        });
        let billing = crate::billing::BillingService::new(crate::billing::BillingDeps {
            db: db.clone(),
            settings: settings.billing.clone(),
            clock,
            mailer: mailer.clone(),
        });
        let quotas = Arc::new(crate::adapters::BillingQuotas {
            billing: billing.clone(),
        });
        let orgs = crate::orgs::OrgService::new(
            db.clone(),
            auth.clone(),
            revocations,
            Arc::new(EraseThroughAnalytics {
                analytics: analytics.clone(),
            }),
            quotas.clone(),
        );
        let node_id = uuid::Uuid::new_v4().simple().to_string();
        let search = Arc::new(
            SearchService::new(db.clone(), embedder, settings.data_dir.join("index"))
                .with_max_open_bytes(settings.search.max_open_bytes),
        );
        if settings.search.idle_close_secs > 0 {
            let idle = Duration::from_secs(settings.search.idle_close_secs);
            let search = Arc::downgrade(&search);
            actix_web::rt::spawn(async move {
                let mut tick = tokio::time::interval((idle / 2).min(Duration::from_secs(30)));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    let Some(search) = search.upgrade() else {
                        break;
                    };
                    let closed = search.close_idle(idle);
                    if closed > 0 {
                        tracing::debug!(closed, "closed idle search indexes");
                    }
                }
            });
        }
        let concurrency = match settings.knowledge.ingest_concurrency {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let work = Arc::new(KnowledgeIngest {
            db: db.clone(),
            search: search.clone(),
            bus: bus.clone(),
            settings: settings.clone(),
            exe: if settings.knowledge.pdf_extractor.trim().is_empty() {
                std::env::current_exe().context("locating this executable")?
            } else {
                std::path::PathBuf::from(settings.knowledge.pdf_extractor.trim())
            },
            node_id: node_id.clone(),
            activity: activity.clone(),
        });
        let ingest = IngestScheduler::new(
            SchedulerConfig {
                max_concurrent: concurrency,
            },
            work,
        )
        .start();
        // Jobs queued or interrupted before a restart resume now.
        for id in crate::knowledge::store::unfinished_jobs(&db).await? {
            ingest.do_send(Enqueue(JobId(id.0)));
        }
        // Another node changed an organisation's chunks: rebuild ours from
        // the database on next use.
        let mut announcements = bus
            .subscribe(crate::knowledge::INDEX_TOPIC)
            .await
            .context("subscribing to index announcements")?;
        {
            let search = search.clone();
            let me = node_id.clone();
            actix_web::rt::spawn(async move {
                while let Some(msg) = announcements.recv().await {
                    let Some(IndexChanged {
                        node,
                        organization_id,
                    }) = crate::infra::bus::decode(&msg)
                    else {
                        continue;
                    };
                    if node == me {
                        continue;
                    }
                    // Rebuilt aside, one task per announcement, so one
                    // school's rebuild does not hold up another's.
                    let search = search.clone();
                    actix_web::rt::spawn(async move {
                        if let Err(e) = search.invalidate(organization_id).await {
                            tracing::warn!(error = %e, "could not refresh an index");
                        }
                    });
                }
            });
        }
        let knowledge = crate::knowledge::KnowledgeService::new(KnowledgeDeps {
            db: db.clone(),
            search: search.clone(),
            ingest: ingest.clone(),
            bus: bus.clone(),
            node_id: node_id.clone(),
            data_dir: settings.data_dir.clone(),
            transcription: settings.transcription.clone(),
            scopes: Arc::new(PersonaScopesFromStore { db: db.clone() }),
            clock,
            quota: quotas.clone(),
        });
        let model = crate::llm::build(&settings.llm)?;
        let persona_port = Arc::new(crate::personas::PersonaService {
            db: db.clone(),
            search: search.clone(),
            model,
            cache: cache.clone(),
            settings: Arc::new(settings.clone()),
        });
        let personas = Registry::new(
            "personas",
            RegistryConfig::with_idle_timeout(Duration::from_secs(
                settings.registry.idle_timeout_secs,
            )),
            move |id: &PersonaKey| Persona::new(*id, persona_port.clone()),
        )
        .start();
        let mut persona_news = bus
            .subscribe(crate::personas::PERSONA_TOPIC)
            .await
            .context("subscribing to persona announcements")?;
        {
            let personas = personas.clone();
            let me = node_id.clone();
            actix_web::rt::spawn(async move {
                while let Some(msg) = persona_news.recv().await {
                    crate::personas::reload_on_announcement(&personas, &me, &msg.payload);
                }
            });
        }
        let persona_catalog = crate::personas::PersonaCatalog::new(
            db.clone(),
            personas.clone(),
            bus.clone(),
            node_id.clone(),
            settings.personas.max_question_chars,
            clock,
        );
        let avatars = crate::avatars::service::AvatarService::new(
            db.clone(),
            settings.data_dir.clone(),
            node_id.clone(),
            Arc::new(PersonaLinksToCatalog {
                db: db.clone(),
                catalog: persona_catalog.clone(),
            }),
            quotas.clone(),
        );
        let presence: Arc<dyn crate::infra::Presence> = match &redis {
            Some(pool) => Arc::new(crate::infra::RedisPresence::new(pool.clone(), &prefix)),
            None => Arc::new(crate::infra::InProcessPresence::new()),
        };
        let classroom = crate::classroom::ClassroomService::start(
            bus.clone(),
            presence,
            Arc::new(ClassroomDirectory { db: db.clone() }),
            crate::classroom::ClassroomConfig::from_settings(&settings),
            node_id.clone(),
        )
        .await
        .context("starting the live classroom")?;
        let hub = crate::chat::hub::ChatHub::new(bus.clone(), node_id.clone());
        hub.start().await?;
        let chat = crate::chat::ChatService::build(
            db.clone(),
            hub,
            crate::chat::PersonaTutor::new(
                db.clone(),
                personas.clone(),
                settings.personas.max_question_chars,
            ),
            limiter.clone(),
            crate::chat::ChatConfig::from_settings(&settings),
            // With `analytics.record` off the recorder itself ignores events.
            Arc::new(crate::chat::activity::Listeners(vec![
                Arc::new(ChatToClassroom {
                    classroom: classroom.clone(),
                }),
                activity.clone(),
            ])),
            quotas,
        );
        billing.start_jobs();
        let state = web::Data::new(AppState {
            settings: settings.clone(),
            db,
            redis,
            bus,
            cache,
            limiter,
            metrics,
            auth,
            orgs,
            mailer,
            knowledge,
            personas: persona_catalog,
            avatars,
            chat,
            classroom,
            analytics,
            billing,
            node_id,
        });

        // Hash and compress the web client's files off the request path, on
        // a thread of its own that a shutdown need not wait for.
        drop(
            std::thread::Builder::new()
                .name("web-client".into())
                .spawn(crate::webapp::warm),
        );
        let listener = TcpListener::bind(&settings.bind)
            .with_context(|| format!("could not listen on {}", settings.bind))?;
        let local_addr = listener.local_addr()?;
        let server_state = state.clone();
        let json_limit = settings.http.json_limit_bytes;
        let cors_origins = settings.http.cors_origins.clone();
        let mut server = HttpServer::new(move || {
            let routes = crate::http::route_table(&server_state);
            App::new()
                .app_data(server_state.clone())
                .configure(|cfg| crate::http::configure(cfg, &routes, json_limit))
                .default_service(web::to(crate::webapp::serve))
                .wrap(crate::http::cors(&cors_origins))
                .wrap(TracingLogger::<BwengeRootSpan>::new())
                .wrap(from_fn(observe))
        })
        // Signals are handled by `main`, so SIGINT is as graceful as SIGTERM.
        .disable_signals()
        // Chat deltas are small writes: without this, Nagle holds each for
        // up to ~40 ms (measured by bench/ws).
        .tcp_nodelay(true)
        .shutdown_timeout(settings.http.shutdown_grace_secs)
        .listen(listener)?;
        if settings.http.workers > 0 {
            server = server.workers(settings.http.workers);
        }
        let server = server.run();

        Ok(Application {
            port: local_addr.port(),
            local_addr,
            server,
            state,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.local_addr
    }

    pub fn state(&self) -> web::Data<AppState> {
        self.state.clone()
    }

    /// Stops the server: `graceful` lets in-flight requests finish within
    /// `http.shutdown_grace_secs`.
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves until stopped, then closes the pools.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let result = self.server.await;
        self.state.db.close().await;
        if let Some(pool) = &self.state.redis {
            pool.close();
        }
        tracing::info!("stopped");
        result
    }
}
