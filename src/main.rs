//! The `bwenge` command: `serve`, `migrate`, `seed`, `reindex`, `dev-payments`, `version`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use bwenge::Application;
use bwenge::config::{LoadOptions, Settings};
use clap::{Args, Parser, Subcommand};

/// mimalloc rather than the system allocator: a server holding ten
/// thousand sockets makes many small, long-lived allocations between
/// short-lived ones, which glibc's allocator leaves fragmented (resident
/// memory per idle chat session) and serves more slowly across threads.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "bwenge",
    version,
    about = "Real-time AI tutoring engine for schools",
    after_help = "Configuration: config/default.toml, then config/{BWENGE_ENV}.toml, then --config FILE, \
                  then BWENGE_* variables (BWENGE_DATABASE_URL, BWENGE_REDIS_URL, BWENGE_ENV, \
                  BWENGE_HTTP__JSON_LIMIT_BYTES, …), then flags."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone, Default)]
struct Common {
    /// Data directory (SQLite file, uploads, generated secrets). Variable: BWENGE_DATA_DIR.
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// A TOML file layered over config/default.toml and config/{BWENGE_ENV}.toml.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Apply migrations and serve HTTP and WebSocket.
    Serve {
        /// Address to listen on; port 0 picks a free one. Variable: BWENGE_BIND.
        #[arg(long, value_name = "ADDR")]
        bind: Option<String>,
        #[command(flatten)]
        common: Common,
    },
    /// Apply pending database migrations and exit.
    Migrate {
        #[command(flatten)]
        common: Common,
    },
    /// Create a first organisation and its admin (idempotent).
    Seed {
        #[arg(long, value_name = "EMAIL")]
        admin_email: String,
        /// At least 12 characters.
        #[arg(long, value_name = "PASSWORD")]
        admin_password: String,
        #[arg(long, value_name = "NAME", default_value = "My School")]
        org_name: String,
        #[command(flatten)]
        common: Common,
    },
    /// Rebuild every search index from the database (after changing the
    /// embedder, or to repair an index).
    Reindex {
        #[command(flatten)]
        common: Common,
    },
    /// Serve fake MTN MoMo, Airtel Money and Stripe for development (no
    /// accounts, no money) and print the settings that point Bwenge at them.
    DevPayments {
        /// Address of the fakes (ADDR:PORT, or just a port on 127.0.0.1).
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8090")]
        bind: String,
        /// The Bwenge server the fakes call back (Stripe webhooks, Airtel callbacks).
        #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:8080")]
        server_url: String,
    },
    /// Print the version.
    Version,
}

fn load(common: &Common, bind: Option<&str>) -> Result<(Settings, Vec<String>), String> {
    let mut opts = LoadOptions::from_process();
    opts.config_file = common.config.clone();
    if let Some(bind) = bind {
        opts.overrides.push(("bind".into(), bind.into()));
    }
    if let Some(dir) = &common.data_dir {
        opts.overrides
            .push(("data_dir".into(), dir.display().to_string()));
    }
    Settings::load(&opts).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    // The PDF child: parse one file under tight limits and exit, before
    // anything else (no config, no runtime, no logging to stdout).
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args
        .get(1)
        .is_some_and(|a| a == bwenge_parsers::PDF_CHILD_SUBCOMMAND)
    {
        let code = match args.get(2) {
            Some(path) => bwenge_parsers::pdf_child_main(std::path::Path::new(path)),
            None => 2,
        };
        return ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    let cli = Cli::parse();
    match cli.command {
        Command::Version => {
            println!("bwenge {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Serve { bind, common } => run(load(&common, bind.as_deref()), serve),
        Command::DevPayments { bind, server_url } => dev_payments(&bind, &server_url),
        Command::Migrate { common } => run(load(&common, None), migrate),
        Command::Reindex { common } => run(load(&common, None), reindex),
        Command::Seed {
            admin_email,
            admin_password,
            org_name,
            common,
        } => run(load(&common, None), move |settings| {
            seed(settings, org_name, admin_email, admin_password)
        }),
    }
}

/// `bwenge dev-payments`: the fakes of `bwenge_payments` until Ctrl-C.
fn dev_payments(bind: &str, server_url: &str) -> ExitCode {
    let addr = match bind.parse::<u16>() {
        Ok(port) => std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Err(_) => match bind.parse() {
            Ok(addr) => addr,
            Err(_) => {
                eprintln!("bwenge: --bind wants ADDR:PORT or PORT, not {bind:?}");
                return ExitCode::from(2);
            }
        },
    };
    let outcome = actix_web::rt::System::new().block_on(async {
        let fake = bwenge_payments::fake::FakeProviders::start_development(addr, server_url)?;
        // A reader that has gone (a closed pipe) must not stop the fakes.
        let _ = writeln!(std::io::stdout(), "{}", fake.dev_instructions());
        tokio::signal::ctrl_c().await
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bwenge: dev-payments: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run<F, Fut>(loaded: Result<(Settings, Vec<String>), String>, f: F) -> ExitCode
where
    F: FnOnce(Settings) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let (settings, warnings) = match loaded {
        Ok(v) => v,
        Err(message) => {
            eprintln!("bwenge: {message}");
            return ExitCode::from(2);
        }
    };
    bwenge::telemetry::init(&settings);
    for w in warnings {
        tracing::warn!("{w}");
    }
    let system = actix_web::rt::System::new();
    match system.block_on(f(settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = ?e, "bwenge failed");
            eprintln!("bwenge: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let app = Application::build(settings).await?;
    let handle = app.handle();
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on http://{}", app.local_addr())?;
        out.flush()?;
    }
    tracing::info!(addr = %app.local_addr(), "listening");
    actix_web::rt::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutdown requested: finishing in-flight requests");
        handle.stop(true).await;
    });
    app.run_until_stopped().await?;
    Ok(())
}

async fn migrate(settings: Settings) -> anyhow::Result<()> {
    let db = bwenge::db::Db::connect(&settings).await?;
    db.migrate().await?;
    db.close().await;
    println!("migrations applied ({})", db.backend());
    Ok(())
}

async fn reindex(settings: Settings) -> anyhow::Result<()> {
    let db = bwenge::db::Db::connect(&settings).await?;
    db.migrate().await?;
    let embedder = bwenge::knowledge::embedders::build(&settings).await;
    let id = embedder.id();
    let search = bwenge::knowledge::index::SearchService::new(
        db.clone(),
        embedder,
        settings.data_dir.join("index"),
    );
    let n = search.reindex_all().await?;
    db.close().await;
    println!("rebuilt the search indexes of {n} organisation(s) with {id}");
    Ok(())
}

async fn seed(
    settings: Settings,
    org_name: String,
    email: String,
    password: String,
) -> anyhow::Result<()> {
    let db = bwenge::db::Db::connect(&settings).await?;
    db.migrate().await?;
    let created = bwenge::auth::service::seed(&db, &org_name, &email, &password).await;
    db.close().await;
    if created? {
        println!("created organisation \"{org_name}\" with admin {email}");
    } else {
        println!("admin {email} already exists; nothing changed");
    }
    Ok(())
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
