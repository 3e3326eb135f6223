//! Typed, layered configuration.
//!
//! Layers, later ones winning: `config/default.toml` → `config/{BWENGE_ENV}.toml`
//! → `--config FILE` → `BWENGE_*` variables (`__` between nested keys) →
//! command-line flags. The files are compiled into the binary and read from
//! `./config` (or `BWENGE_CONFIG_DIR`) when present there, so the binary runs
//! from anywhere. `config/default.toml` is the list of every key: any other key,
//! from any layer, is an error that names it.
//!
//! Secrets are wrapped in [`Secret`] so they never print. In production a
//! missing or placeholder secret stops start-up; in development and test they
//! are generated once and kept in `<data_dir>/secrets` (mode 0600).

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use config::{Config, Environment, File, FileFormat};
use serde::Deserialize;

const DEFAULT_TOML: &str = include_str!("../config/default.toml");
const DEVELOPMENT_TOML: &str = include_str!("../config/development.toml");
const PRODUCTION_TOML: &str = include_str!("../config/production.toml");
const TEST_TOML: &str = include_str!("../config/test.toml");

/// Environment variables of the test harness and the benches (this prefix),
/// and those read before configuration (these names): not configuration keys.
const NON_CONFIG_PREFIXES: &[&str] = &["BWENGE_TEST_", "BWENGE_PDF_", "BWENGE_BENCH_"];
const NON_CONFIG_NAMES: &[&str] = &["BWENGE_CONFIG_DIR", "BWENGE_BIN"];

/// Why the configuration could not be loaded. Every message is a sentence an
/// operator can act on.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("unknown configuration key `{key}`{origin}; see config/default.toml for every key")]
    UnknownKey { key: String, origin: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
    #[error(
        "{variable} must be set to a random value of at least 32 characters in production \
         (for example the output of `openssl rand -hex 32`)"
    )]
    MissingSecret { variable: &'static str },
    #[error("{0}")]
    Refused(String),
    #[error("could not read or write {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The running environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunEnv {
    Development,
    Test,
    Production,
}

impl RunEnv {
    fn parse(s: &str) -> Result<Self, ConfigError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "development" | "dev" => Ok(Self::Development),
            "test" => Ok(Self::Test),
            "production" | "prod" => Ok(Self::Production),
            other => Err(ConfigError::Invalid(format!(
                "BWENGE_ENV is `{other}`; use `development`, `test` or `production`"
            ))),
        }
    }

    fn file_name(self) -> &'static str {
        match self {
            Self::Development => "development",
            Self::Test => "test",
            Self::Production => "production",
        }
    }

    fn embedded(self) -> &'static str {
        match self {
            Self::Development => DEVELOPMENT_TOML,
            Self::Test => TEST_TOML,
            Self::Production => PRODUCTION_TOML,
        }
    }
}

/// A secret value: never printed by `Debug` or `Display`.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub env: RunEnv,
    pub bind: String,
    pub data_dir: PathBuf,
    pub database_url: String,
    pub redis_url: String,
    pub http: HttpSettings,
    pub log: LogSettings,
    pub database: DatabaseSettings,
    pub redis: RedisSettings,
    pub registry: RegistrySettings,
    pub auth: AuthSettings,
    pub mail: MailSettings,
    pub knowledge: KnowledgeSettings,
    #[serde(default)]
    pub search: SearchSettings,
    pub transcription: TranscriptionSettings,
    pub embeddings: EmbeddingSettings,
    pub personas: PersonaSettings,
    pub chat: ChatSettings,
    pub llm: LlmSettings,
    pub assets: AssetSettings,
    pub secrets: SecretSettings,
    #[serde(default)]
    pub analytics: AnalyticsSettings,
    #[serde(default)]
    pub classroom: ClassroomSettings,
    pub billing: BillingSettings,
    pub ops: OpsSettings,
}

/// `[search]`: each school's index is opened on first use and closed when
/// idle or when the open ones hold more than a budget (least recently used
/// first); a closed index reopens from disk.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SearchSettings {
    /// Memory the open indexes may hold together (estimated: vectors, graph
    /// links, searchers and writers); 0 means no limit.
    pub max_open_bytes: u64,
    /// An index unused this long is closed; 0 means never.
    pub idle_close_secs: u64,
}

impl Default for SearchSettings {
    fn default() -> Self {
        Self {
            max_open_bytes: 1 << 30,
            idle_close_secs: 900,
        }
    }
}

/// `[classroom]`: the teachers' live view.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClassroomSettings {
    /// Questions in a watcher's first snapshot (`recent`).
    pub snapshot_questions: usize,
    /// Chat events waiting to be published to watchers; beyond it they are
    /// dropped (and counted), never delaying chat.
    pub queue: usize,
    /// Frames a watcher may fall behind before it is disconnected (its
    /// client reconnects to a fresh snapshot).
    pub watcher_buffer: usize,
    /// How long a student stays "online" without a sign of life (the
    /// presence record is refreshed at a third of it).
    pub presence_ttl_secs: u64,
}

impl Default for ClassroomSettings {
    fn default() -> Self {
        Self {
            snapshot_questions: 50,
            queue: 8192,
            watcher_buffer: 1024,
            presence_ttl_secs: 30,
        }
    }
}

/// `[analytics]`: how events are recorded, kept and reported.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnalyticsSettings {
    /// Record events at all; off, reports show nothing new (an operator's
    /// switch, and the `ws` bench's analytics-off run).
    pub record: bool,
    /// Raw events older than this are deleted; daily totals stay.
    pub retention_days: u32,
    /// How often the retention job runs.
    pub retention_interval_secs: u64,
    /// Events waiting to be written; beyond it new events are dropped
    /// (and counted) rather than slow anyone down.
    pub queue: usize,
    /// Events written per transaction at most.
    pub batch: usize,
    /// How long the writer lets events gather into one transaction.
    pub linger_ms: u64,
    /// Cosine similarity from which two declined questions are one gap.
    pub gap_similarity: f32,
    /// Declined questions considered by the gaps report (newest first).
    pub gap_max_questions: usize,
    /// Send the weekly digest to staff who opted in.
    pub weekly_digest: bool,
    /// How often the digest job looks whether a week has passed.
    pub digest_check_secs: u64,
}

impl Default for AnalyticsSettings {
    fn default() -> Self {
        Self {
            record: true,
            retention_days: 180,
            retention_interval_secs: 3600,
            queue: 10_000,
            batch: 256,
            linger_ms: 200,
            gap_similarity: 0.7,
            gap_max_questions: 2000,
            weekly_digest: true,
            digest_check_secs: 3600,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpsSettings {
    /// When set, `GET /metrics` wants `Authorization: Bearer <token>`.
    /// Production refuses a public bind without it.
    pub metrics_token: Secret,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    pub json_limit_bytes: usize,
    pub shutdown_grace_secs: u64,
    pub cors_origins: Vec<String>,
    pub workers: usize,
    /// CIDRs of the proxies in front of the server (see [`Cidr`]).
    pub trusted_proxies: Vec<String>,
}

impl HttpSettings {
    /// [`Self::trusted_proxies`], parsed (checked at load).
    pub fn trusted_proxies(&self) -> Vec<Cidr> {
        self.trusted_proxies
            .iter()
            .filter_map(|c| Cidr::parse(c))
            .collect()
    }
}

/// An IP network: an address and how many leading bits matter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: std::net::IpAddr,
    bits: u8,
}

impl Cidr {
    /// `10.0.0.0/8`, `fd00::/8`, or one address (`192.0.2.7`).
    pub fn parse(raw: &str) -> Option<Cidr> {
        let raw = raw.trim();
        let (addr, bits) = match raw.split_once('/') {
            Some((a, b)) => (a, Some(b.parse::<u8>().ok()?)),
            None => (raw, None),
        };
        let net: std::net::IpAddr = addr
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .ok()?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let bits = bits.unwrap_or(max);
        (bits <= max).then_some(Cidr { net, bits })
    }

    /// Whether `ip` is in the network (an IPv4-mapped IPv6 address counts
    /// as its IPv4 address).
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        use std::net::IpAddr;
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.bits)).unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.bits))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    pub access_token_ttl_secs: u64,
    pub refresh_token_ttl_days: u64,
    pub lockout_threshold: u32,
    pub lockout_minutes: u64,
    pub hash_concurrency: usize,
    pub hash_queue_wait_ms: u64,
    pub ip_burst: u32,
    pub ip_refill_per_sec: f64,
    /// Mails a user may cause per hour (invitations sent, verification
    /// mails asked for, password resets of their account), and an
    /// organisation in all.
    pub mails_per_user_per_hour: u32,
    pub mails_per_org_per_hour: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KnowledgeSettings {
    pub max_upload_bytes: u64,
    pub ingest_concurrency: usize,
    pub max_attempts: u32,
    pub pdf_timeout_secs: u64,
    pub pdf_max_memory_mb: u64,
    pub pdf_extractor: String,
    /// Chunk sizes, in estimated tokens (see `bwenge_parsers::chunk`).
    pub chunk_target_tokens: usize,
    pub chunk_max_tokens: usize,
    pub chunk_overlap_tokens: usize,
}

impl KnowledgeSettings {
    /// The chunker's sizes.
    pub fn chunking(&self) -> bwenge_parsers::ChunkConfig {
        bwenge_parsers::ChunkConfig {
            target_tokens: self.chunk_target_tokens,
            max_tokens: self.chunk_max_tokens,
            overlap_tokens: self.chunk_overlap_tokens,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TranscriptionSettings {
    pub base_url: String,
    pub api_key: Secret,
    pub model: String,
    pub timeout_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersonaSettings {
    pub top_k: usize,
    pub min_coverage: f64,
    pub min_similarity: f64,
    pub similarity_floor: f64,
    pub max_question_chars: usize,
    pub history_turns: usize,
    pub cache_ttl_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatSettings {
    pub heartbeat_interval_secs: u64,
    pub client_timeout_secs: u64,
    pub max_frame_bytes: usize,
    pub outbound_queue: usize,
    pub messages_burst: u32,
    pub messages_per_sec: f64,
    pub max_bad_frames: u32,
    pub orphan_grace_ms: u64,
    /// New sessions (`start` frames) per user (token bucket).
    pub starts_burst: u32,
    pub starts_per_sec: f64,
    /// Open sockets per user on one node; more are closed with 4429.
    pub max_sockets_per_user: usize,
    /// How often a socket checks that its user's tokens still hold (token
    /// version, role), in case a revocation's broadcast was lost.
    pub auth_check_secs: u64,
    /// Questions this node answers at once (0: automatic, see
    /// `chat::admission`).
    pub answer_concurrency: usize,
    /// Questions that may wait for a turn beyond those; more are refused
    /// (`overloaded`, with Retry-After) before they are stored.
    pub answer_queue: usize,
    /// The longest expected wait for an answer's turn a new question is
    /// admitted to, in seconds (0: only `answer_queue` bounds the line).
    pub answer_max_wait_secs: u64,
    /// How much nicer (0–19) than the process the threads that answer
    /// questions run (`crate::work`, Linux).
    pub answering_nice: i32,
}

/// A language-model provider of the answer chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LlmProvider {
    Openai,
    Anthropic,
    Extractive,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlmSettings {
    pub chain: Vec<LlmProvider>,
    pub max_answer_tokens: u32,
    pub breaker_failures: u32,
    pub breaker_open_secs: u64,
    pub openai: LlmEndpoint,
    pub anthropic: LlmEndpoint,
}

/// One remote provider's endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlmEndpoint {
    pub base_url: String,
    pub api_key: Secret,
    pub model: String,
    pub context_window: u32,
    pub timeout_secs: u64,
    pub first_token_timeout_secs: u64,
    #[serde(default)]
    pub azure: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssetSettings {
    pub url_ttl_secs: u64,
    pub public_base_url: String,
    pub max_model_bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EmbeddingProvider {
    Auto,
    Local,
    Http,
    Hashing,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbeddingSettings {
    pub provider: EmbeddingProvider,
    pub model_dir: String,
    pub allow_download: bool,
    pub http_base_url: String,
    pub http_api_key: Secret,
    pub http_model: String,
    /// Questions whose vectors a model's embedder remembers (see
    /// `knowledge::embedders`); 0 turns remembering off.
    pub remembered_questions: usize,
    /// Run the local model's products on the CPU's matrix unit (AMX) in
    /// bfloat16 where it has one.
    pub matrix_tiles: bool,
}

impl EmbeddingSettings {
    /// The local model's directory.
    pub fn model_dir(&self, data_dir: &Path) -> PathBuf {
        if self.model_dir.trim().is_empty() {
            data_dir.join("models").join("all-MiniLM-L6-v2")
        } else {
            PathBuf::from(self.model_dir.trim())
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MailTransport {
    File,
    Smtp,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailSettings {
    pub transport: MailTransport,
    pub from: String,
    pub link_base_url: String,
    pub smtp_host: String,
    pub smtp_port: u16,
    pub smtp_starttls: bool,
    pub smtp_username: String,
    pub smtp_password: Secret,
    pub smtp_timeout_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    pub level: String,
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Auto,
    Pretty,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    pub max_connections: u32,
    pub busy_timeout_ms: u64,
    pub acquire_timeout_ms: u64,
    /// SQLite's `synchronous`: `full` (default: an acknowledged chat
    /// message survives a power cut) or `normal` (faster; the last commits
    /// may be lost to a power cut, never to a crash of the process).
    #[serde(default)]
    pub sqlite_synchronous: SqliteSync,
}

/// SQLite's `synchronous` pragma, as far as Bwenge allows it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SqliteSync {
    #[default]
    Full,
    Normal,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSettings {
    pub key_prefix: String,
    pub pool_size: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrySettings {
    pub idle_timeout_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretSettings {
    pub jwt_secret: Secret,
    pub asset_signing_key: Secret,
}

/// Plans, quotas, renewal and the payment providers (`[billing]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BillingSettings {
    /// A mobile-money renewal is requested this many days before a period ends.
    pub renew_days_before: u32,
    /// Days an unpaid subscription stays `past_due` before returning to `free`.
    pub grace_days: u32,
    /// A pending mobile-money payment not final after this long is `expired`.
    pub payment_expiry_minutes: u64,
    /// First wait between status look-ups of a pending payment; doubles up to
    /// `poll_max_secs`.
    pub poll_initial_secs: u64,
    pub poll_max_secs: u64,
    /// How often the background job reconciles usage and runs renewals.
    pub job_interval_secs: u64,
    /// This server's public base URL, for provider callbacks and Stripe's
    /// return pages.
    pub public_base_url: String,
    pub plans: PlanTable,
    pub mtn_momo: MtnMomoSettings,
    pub airtel_money: AirtelMoneySettings,
    pub stripe: StripeSettings,
}

/// The four plans; ids are fixed, prices and allowances are not.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanTable {
    pub free: PlanSettings,
    pub basic: PlanSettings,
    pub pro: PlanSettings,
    pub enterprise: PlanSettings,
}

/// One plan. Allowances below 0 mean unlimited.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanSettings {
    pub name: String,
    /// Monthly price in RWF (no minor unit).
    pub price_rwf: i64,
    /// Monthly price in US cents.
    pub price_usd: i64,
    pub questions_per_month: i64,
    pub storage_bytes: i64,
    pub members: i64,
    /// The Stripe Price (recurring, monthly) of this plan; empty: not sold on Stripe.
    pub stripe_price_id: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MtnMomoSettings {
    pub enabled: bool,
    pub base_url: String,
    pub subscription_key: Secret,
    pub api_user: String,
    pub api_key: Secret,
    /// `sandbox` or the production environment name MTN gives (`mtnrwanda`).
    pub target_environment: String,
    pub currency: String,
    pub timeout_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AirtelMoneySettings {
    pub enabled: bool,
    pub base_url: String,
    pub client_id: String,
    pub client_secret: Secret,
    pub country: String,
    pub currency: String,
    pub timeout_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StripeSettings {
    pub enabled: bool,
    pub base_url: String,
    pub secret_key: Secret,
    pub webhook_secret: Secret,
    /// Extra webhook secrets accepted during a rotation.
    pub previous_webhook_secrets: Vec<Secret>,
    pub currency: String,
    pub timeout_secs: u64,
}

/// Where the layers come from. `main` fills it from the process; tests build
/// it by hand so they never depend on the process environment.
#[derive(Debug, Default, Clone)]
pub struct LoadOptions {
    /// Directory holding `default.toml` and `{env}.toml`; files missing there
    /// fall back to the copies compiled into the binary.
    pub config_dir: Option<PathBuf>,
    /// `--config FILE`.
    pub config_file: Option<PathBuf>,
    /// The `BWENGE_*` environment variables.
    pub env: HashMap<String, String>,
    /// Flags, as dotted keys (`bind`, `data_dir`).
    pub overrides: Vec<(String, String)>,
}

impl LoadOptions {
    /// Reads the layers' sources from this process: its `BWENGE_*` variables
    /// and `BWENGE_CONFIG_DIR` (default `./config`).
    pub fn from_process() -> Self {
        let env: HashMap<String, String> = std::env::vars()
            .filter(|(k, _)| k.starts_with("BWENGE_"))
            .collect();
        let config_dir = env
            .get("BWENGE_CONFIG_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("config"));
        Self {
            config_dir: Some(config_dir),
            env,
            ..Self::default()
        }
    }
}

impl Settings {
    /// Loads and checks the configuration, then resolves the secrets (see the
    /// module doc). Returns the settings and warnings to log once logging runs.
    pub fn load(opts: &LoadOptions) -> Result<(Settings, Vec<String>), ConfigError> {
        let run_env = match opts.env.get("BWENGE_ENV") {
            Some(v) => RunEnv::parse(v)?,
            None => RunEnv::Development,
        };
        let read_layer = |name: &str, embedded: &'static str| -> Result<String, ConfigError> {
            match &opts.config_dir {
                Some(dir) => {
                    let path = dir.join(format!("{name}.toml"));
                    match std::fs::read_to_string(&path) {
                        Ok(s) => Ok(s),
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                            Ok(embedded.to_owned())
                        }
                        Err(source) => Err(ConfigError::Io { path, source }),
                    }
                }
                None => Ok(embedded.to_owned()),
            }
        };
        let default_layer = read_layer("default", DEFAULT_TOML)?;
        let env_layer = read_layer(run_env.file_name(), run_env.embedded())?;

        let env_vars: HashMap<String, String> = opts
            .env
            .iter()
            .filter(|(k, _)| {
                !NON_CONFIG_PREFIXES.iter().any(|p| k.starts_with(p))
                    && !NON_CONFIG_NAMES.contains(&k.as_str())
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();

        let mut builder = Config::builder()
            .add_source(File::from_str(&default_layer, FileFormat::Toml))
            .add_source(File::from_str(&env_layer, FileFormat::Toml));
        if let Some(file) = &opts.config_file {
            if !file.is_file() {
                return Err(ConfigError::Invalid(format!(
                    "the file given with --config, {}, does not exist",
                    file.display()
                )));
            }
            builder = builder.add_source(File::from(file.as_path()).format(FileFormat::Toml));
        }
        builder = builder.add_source(
            Environment::with_prefix("BWENGE")
                .prefix_separator("_")
                .separator("__")
                .try_parsing(true)
                .list_separator(",")
                .with_list_parse_key("http.cors_origins")
                .with_list_parse_key("http.trusted_proxies")
                .with_list_parse_key("llm.chain")
                .with_list_parse_key("billing.stripe.previous_webhook_secrets")
                .source(Some(env_vars.clone())),
        );
        for (key, value) in &opts.overrides {
            builder = builder
                .set_override(key.as_str(), value.as_str())
                .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        }
        let merged = builder
            .build()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;

        // Unknown keys: compare every key of the merged tree with default.toml.
        let known: serde_json::Value = Config::builder()
            .add_source(File::from_str(DEFAULT_TOML, FileFormat::Toml))
            .build()
            .and_then(|c| c.try_deserialize())
            .map_err(|e| ConfigError::Invalid(format!("built-in defaults: {e}")))?;
        let actual: serde_json::Value = merged
            .clone()
            .try_deserialize()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        if let Some(key) = first_unknown_key(&known, &actual, "") {
            let var = format!("BWENGE_{}", key.replace('.', "__").to_ascii_uppercase());
            let origin = if env_vars.contains_key(&var) {
                format!(" (from the variable {var})")
            } else {
                String::new()
            };
            return Err(ConfigError::UnknownKey { key, origin });
        }

        let mut settings: Settings = merged
            .try_deserialize()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        settings.env = run_env;
        let warnings = settings.resolve_secrets()?;
        settings.check()?;
        Ok((settings, warnings))
    }

    fn check(&self) -> Result<(), ConfigError> {
        if self.mail.transport == MailTransport::Smtp && self.mail.smtp_host.trim().is_empty() {
            return Err(ConfigError::Refused(
                "mail.transport is smtp, so BWENGE_MAIL__SMTP_HOST must name the SMTP server \
                 (or set BWENGE_MAIL__TRANSPORT=file)"
                    .into(),
            ));
        }
        if self.auth.lockout_threshold == 0 || self.auth.ip_burst == 0 {
            return Err(ConfigError::Invalid(
                "auth.lockout_threshold and auth.ip_burst must be at least 1".into(),
            ));
        }
        if let Some(bad) = self
            .http
            .trusted_proxies
            .iter()
            .find(|c| Cidr::parse(c).is_none())
        {
            return Err(ConfigError::Invalid(format!(
                "http.trusted_proxies: `{bad}` is not an address or a CIDR such as 10.0.0.0/8"
            )));
        }
        if !(0..=19).contains(&self.chat.answering_nice) {
            return Err(ConfigError::Invalid(
                "chat.answering_nice must be between 0 and 19".into(),
            ));
        }
        if self.http.json_limit_bytes == 0 {
            return Err(ConfigError::Invalid(
                "http.json_limit_bytes must be greater than 0".into(),
            ));
        }
        let k = &self.knowledge;
        if k.chunk_target_tokens < 32
            || k.chunk_max_tokens < k.chunk_target_tokens
            || k.chunk_overlap_tokens >= k.chunk_target_tokens
        {
            return Err(ConfigError::Invalid(
                "knowledge.chunk_target_tokens must be at least 32, at most \
                 knowledge.chunk_max_tokens, and more than knowledge.chunk_overlap_tokens"
                    .into(),
            ));
        }
        self.check_billing()?;
        if self.database.max_connections == 0 {
            return Err(ConfigError::Invalid(
                "database.max_connections must be at least 1".into(),
            ));
        }
        if self.env == RunEnv::Production {
            self.check_production()?;
        }
        Ok(())
    }

    /// What production refuses beyond missing secrets: links in mail that
    /// point at the server's own machine, a wildcard CORS origin, and
    /// metrics open to the world.
    fn check_production(&self) -> Result<(), ConfigError> {
        let link_host = reqwest::Url::parse(self.mail.link_base_url.trim())
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned));
        if link_host.as_deref().is_none_or(is_local_link_host) {
            return Err(ConfigError::Refused(format!(
                "mail.link_base_url is `{}`: links in mail would point at the reader's own \
                 machine; set BWENGE_MAIL__LINK_BASE_URL to the web app's public address",
                self.mail.link_base_url
            )));
        }
        if self.http.cors_origins.iter().any(|o| o.trim() == "*") {
            return Err(ConfigError::Refused(
                "http.cors_origins contains `*`: any site could call the API with a user's \
                 credentials; list the web app's origins in BWENGE_HTTP__CORS_ORIGINS"
                    .into(),
            ));
        }
        let bind_host = self
            .bind
            .rsplit_once(':')
            .map_or(self.bind.as_str(), |(h, _)| h);
        if !is_loopback_host(bind_host) && self.ops.metrics_token.is_empty() {
            return Err(ConfigError::Refused(format!(
                "bind is `{}` (public) and ops.metrics_token is empty: /metrics would be open to \
                 anyone; set BWENGE_OPS__METRICS_TOKEN (or bind to a loopback address)",
                self.bind
            )));
        }
        Ok(())
    }

    /// Billing: sane numbers, and in production the secrets of every
    /// enabled payment method.
    fn check_billing(&self) -> Result<(), ConfigError> {
        let b = &self.billing;
        if b.poll_initial_secs == 0 || b.poll_max_secs < b.poll_initial_secs {
            return Err(ConfigError::Invalid(
                "billing.poll_initial_secs must be at least 1 and at most billing.poll_max_secs"
                    .into(),
            ));
        }
        if b.job_interval_secs == 0 || b.payment_expiry_minutes == 0 {
            return Err(ConfigError::Invalid(
                "billing.job_interval_secs and billing.payment_expiry_minutes must be at least 1"
                    .into(),
            ));
        }
        for (id, p) in [
            ("free", &b.plans.free),
            ("basic", &b.plans.basic),
            ("pro", &b.plans.pro),
            ("enterprise", &b.plans.enterprise),
        ] {
            if p.price_rwf < 0 || p.price_usd < 0 {
                return Err(ConfigError::Invalid(format!(
                    "billing.plans.{id}: prices cannot be negative"
                )));
            }
        }
        if self.env != RunEnv::Production {
            return Ok(());
        }
        let mut missing: Vec<&str> = Vec::new();
        if b.mtn_momo.enabled {
            if b.mtn_momo.subscription_key.is_empty() {
                missing.push("BWENGE_BILLING__MTN_MOMO__SUBSCRIPTION_KEY");
            }
            if b.mtn_momo.api_key.is_empty() {
                missing.push("BWENGE_BILLING__MTN_MOMO__API_KEY");
            }
            if b.mtn_momo.api_user.trim().is_empty() {
                missing.push("BWENGE_BILLING__MTN_MOMO__API_USER");
            }
        }
        if b.airtel_money.enabled {
            if b.airtel_money.client_id.trim().is_empty() {
                missing.push("BWENGE_BILLING__AIRTEL_MONEY__CLIENT_ID");
            }
            if b.airtel_money.client_secret.is_empty() {
                missing.push("BWENGE_BILLING__AIRTEL_MONEY__CLIENT_SECRET");
            }
        }
        if b.stripe.enabled {
            if b.stripe.secret_key.is_empty() {
                missing.push("BWENGE_BILLING__STRIPE__SECRET_KEY");
            }
            if b.stripe.webhook_secret.is_empty() {
                missing.push("BWENGE_BILLING__STRIPE__WEBHOOK_SECRET");
            }
        }
        if !missing.is_empty() {
            return Err(ConfigError::Refused(format!(
                "an enabled payment method needs its secrets in production: set {}",
                missing.join(", ")
            )));
        }
        Ok(())
    }

    /// The database URL, defaulting to a SQLite file in the data directory.
    pub fn database_url(&self) -> String {
        if self.database_url.trim().is_empty() {
            format!("sqlite://{}", self.data_dir.join("bwenge.db").display())
        } else {
            self.database_url.trim().to_owned()
        }
    }

    pub fn redis_url(&self) -> Option<&str> {
        let url = self.redis_url.trim();
        (!url.is_empty()).then_some(url)
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.http.shutdown_grace_secs)
    }

    pub fn json_logs(&self) -> bool {
        match self.log.format {
            LogFormat::Json => true,
            LogFormat::Pretty => false,
            LogFormat::Auto => self.env == RunEnv::Production,
        }
    }

    /// Production: every secret must be set and not a placeholder.
    /// Elsewhere: missing secrets come from (or are generated into)
    /// `<data_dir>/secrets`, so tokens survive a restart.
    fn resolve_secrets(&mut self) -> Result<Vec<String>, ConfigError> {
        let mut warnings = Vec::new();
        let slots: [(&'static str, &'static str, &mut Secret); 2] = [
            (
                "jwt_secret",
                "BWENGE_SECRETS__JWT_SECRET",
                &mut self.secrets.jwt_secret,
            ),
            (
                "asset_signing_key",
                "BWENGE_SECRETS__ASSET_SIGNING_KEY",
                &mut self.secrets.asset_signing_key,
            ),
        ];
        if self.env == RunEnv::Production {
            for (_, variable, secret) in slots {
                if is_placeholder(secret.expose()) {
                    return Err(ConfigError::MissingSecret { variable });
                }
            }
            return Ok(warnings);
        }
        if slots.iter().all(|(_, _, s)| !s.is_empty()) {
            return Ok(warnings);
        }
        let path = self.data_dir.join("secrets");
        let mut stored = read_secrets_file(&path)?;
        let mut changed = false;
        for (name, _, secret) in slots {
            if !secret.is_empty() {
                continue;
            }
            let value = stored.entry(name.to_owned()).or_insert_with(|| {
                changed = true;
                random_hex(32)
            });
            *secret = Secret::new(value.clone());
        }
        if changed {
            write_secrets_file(&path, &stored)?;
            warnings.push(format!(
                "generated development secrets in {}; set BWENGE_SECRETS__* in production",
                path.display()
            ));
        }
        Ok(warnings)
    }
}

/// A host only this machine reaches: `localhost` or a loopback address.
fn is_loopback_host(host: &str) -> bool {
    let host = host.trim().trim_start_matches('[').trim_end_matches(']');
    let lower = host.to_ascii_lowercase();
    lower == "localhost"
        || lower.ends_with(".localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A link host that cannot reach this server from elsewhere: a loopback
/// host, or the unspecified address.
fn is_local_link_host(host: &str) -> bool {
    is_loopback_host(host)
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_unspecified())
}

/// The first dotted key present in `actual` but not in `known`.
fn first_unknown_key(
    known: &serde_json::Value,
    actual: &serde_json::Value,
    prefix: &str,
) -> Option<String> {
    let (serde_json::Value::Object(known), serde_json::Value::Object(actual)) = (known, actual)
    else {
        return None;
    };
    let mut keys: Vec<&String> = actual.keys().collect();
    keys.sort();
    for key in keys {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match known.get(key) {
            None => return Some(path),
            Some(k) => {
                if let Some(found) = actual.get(key).and_then(|a| first_unknown_key(k, a, &path)) {
                    return Some(found);
                }
            }
        }
    }
    None
}

/// Values people leave in place of a real secret.
fn is_placeholder(value: &str) -> bool {
    let v = value.trim().to_ascii_lowercase();
    const PLACEHOLDERS: &[&str] = &[
        "changeme",
        "change-me",
        "change_me",
        "secret",
        "password",
        "placeholder",
        "example",
        "dev",
        "development",
        "test",
        "xxx",
        "todo",
    ];
    v.len() < 32
        || PLACEHOLDERS.iter().any(|p| v == *p)
        || v.starts_with("changeme")
        || v.starts_with("change-me")
        || v.starts_with("change_me")
        || v.contains("placeholder")
        || v.chars().all(|c| c == v.chars().next().unwrap_or('x'))
}

pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::fill(&mut buf[..]);
    hex::encode(buf)
}

fn read_secrets_file(
    path: &Path,
) -> Result<std::collections::BTreeMap<String, String>, ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Default::default()),
        Err(source) => {
            return Err(ConfigError::Io {
                path: path.to_owned(),
                source,
            });
        }
    };
    Ok(text
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .filter(|(k, v)| !k.starts_with('#') && !v.is_empty())
        .collect())
}

fn write_secrets_file(
    path: &Path,
    values: &std::collections::BTreeMap<String, String>,
) -> Result<(), ConfigError> {
    use std::io::Write;
    let io = |source| ConfigError::Io {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let mut body = String::from("# Generated by bwenge for development. Do not share.\n");
    for (k, v) in values {
        body.push_str(&format!("{k}={v}\n"));
    }
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp).map_err(io)?;
    file.write_all(body.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn opts(dir: &Path, env: &[(&str, &str)]) -> LoadOptions {
        let mut e: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        e.entry("BWENGE_DATA_DIR".into())
            .or_insert_with(|| dir.display().to_string());
        LoadOptions {
            config_dir: None,
            config_file: None,
            env: e,
            overrides: vec![],
        }
    }

    #[test]
    fn defaults_load_and_generate_secrets_once() {
        let dir = tempfile::tempdir().unwrap();
        let (s, warnings) = Settings::load(&opts(dir.path(), &[])).unwrap();
        assert_eq!(s.env, RunEnv::Development);
        assert_eq!(s.bind, "127.0.0.1:8080");
        assert_eq!(s.http.json_limit_bytes, 1024 * 1024);
        assert_eq!(s.secrets.jwt_secret.expose().len(), 64);
        assert_eq!(warnings.len(), 1);
        let (again, warnings) = Settings::load(&opts(dir.path(), &[])).unwrap();
        assert_eq!(again.secrets.jwt_secret, s.secrets.jwt_secret);
        assert!(warnings.is_empty());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("secrets"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(!format!("{s:?}").contains(s.secrets.jwt_secret.expose()));
    }

    #[test]
    fn the_answer_chain_is_a_list_in_variables() {
        let dir = tempfile::tempdir().unwrap();
        let (s, _) = Settings::load(&opts(dir.path(), &[])).unwrap();
        assert_eq!(s.llm.chain, vec![LlmProvider::Extractive]);
        let (s, _) = Settings::load(&opts(
            dir.path(),
            &[("BWENGE_LLM__CHAIN", "openai,anthropic,extractive")],
        ))
        .unwrap();
        assert_eq!(
            s.llm.chain,
            vec![
                LlmProvider::Openai,
                LlmProvider::Anthropic,
                LlmProvider::Extractive
            ]
        );
        assert!(Settings::load(&opts(dir.path(), &[("BWENGE_LLM__CHAIN", "gpt5")])).is_err());
    }

    #[test]
    fn layers_apply_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("extra.toml");
        std::fs::write(&file, "bind = \"0.0.0.0:1\"\n[http]\nworkers = 3\n").unwrap();
        let mut o = opts(
            dir.path(),
            &[
                ("BWENGE_BIND", "127.0.0.1:9"),
                ("BWENGE_HTTP__WORKERS", "5"),
                (
                    "BWENGE_HTTP__CORS_ORIGINS",
                    "https://a.example,https://b.example",
                ),
            ],
        );
        o.config_file = Some(file);
        let (s, _) = Settings::load(&o).unwrap();
        // The variable beats the file.
        assert_eq!(s.bind, "127.0.0.1:9");
        assert_eq!(s.http.workers, 5);
        assert_eq!(
            s.http.cors_origins,
            vec!["https://a.example", "https://b.example"]
        );
        o.overrides.push(("bind".into(), "127.0.0.1:0".into()));
        let (s, _) = Settings::load(&o).unwrap();
        assert_eq!(s.bind, "127.0.0.1:0");
    }

    #[test]
    fn unknown_keys_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let err = Settings::load(&opts(dir.path(), &[("BWENGE_HTTP__JSON_LIMT", "5")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("`http.json_limt`"), "{err}");
        assert!(err.contains("BWENGE_HTTP__JSON_LIMT"), "{err}");

        let file = dir.path().join("bad.toml");
        std::fs::write(&file, "[databse]\nmax_connections = 3\n").unwrap();
        let mut o = opts(dir.path(), &[]);
        o.config_file = Some(file);
        let err = Settings::load(&o).unwrap_err().to_string();
        assert!(err.contains("`databse`"), "{err}");
        // Variables of the test harness are not configuration.
        Settings::load(&opts(dir.path(), &[("BWENGE_TEST_DATABASE_URL", "x")])).unwrap();
    }

    #[test]
    fn production_refuses_missing_and_placeholder_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let err = Settings::load(&opts(dir.path(), &[("BWENGE_ENV", "production")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("BWENGE_SECRETS__JWT_SECRET"), "{err}");
        let err = Settings::load(&opts(
            dir.path(),
            &[
                ("BWENGE_ENV", "production"),
                ("BWENGE_SECRETS__JWT_SECRET", "changeme"),
            ],
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("BWENGE_SECRETS__JWT_SECRET"), "{err}");
        let good = random_hex(32);
        let err = Settings::load(&opts(
            dir.path(),
            &[
                ("BWENGE_ENV", "production"),
                ("BWENGE_SECRETS__JWT_SECRET", &good),
            ],
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("BWENGE_SECRETS__ASSET_SIGNING_KEY"), "{err}");
        let other = random_hex(32);
        let (s, _) = Settings::load(&opts(
            dir.path(),
            &[
                ("BWENGE_ENV", "production"),
                ("BWENGE_SECRETS__JWT_SECRET", &good),
                ("BWENGE_SECRETS__ASSET_SIGNING_KEY", &other),
                ("BWENGE_MAIL__SMTP_HOST", "smtp.school.example"),
                ("BWENGE_MAIL__LINK_BASE_URL", "https://app.school.example"),
                ("BWENGE_OPS__METRICS_TOKEN", &random_hex(16)),
            ],
        ))
        .unwrap();
        assert!(s.json_logs());
        assert_eq!(s.mail.transport, MailTransport::Smtp);
        // Production without an SMTP host is refused with the variable named.
        let err = Settings::load(&opts(
            dir.path(),
            &[
                ("BWENGE_ENV", "production"),
                ("BWENGE_SECRETS__JWT_SECRET", &good),
                ("BWENGE_SECRETS__ASSET_SIGNING_KEY", &other),
            ],
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("BWENGE_MAIL__SMTP_HOST"), "{err}");
        assert!(!dir.path().join("secrets").exists());
    }

    #[test]
    fn production_refuses_local_links_wildcard_origins_and_open_metrics() {
        let dir = tempfile::tempdir().unwrap();
        let (jwt, asset, token) = (random_hex(32), random_hex(32), random_hex(16));
        let load = |extra: &[(&str, &str)]| {
            let mut vars = vec![
                ("BWENGE_ENV", "production"),
                ("BWENGE_SECRETS__JWT_SECRET", jwt.as_str()),
                ("BWENGE_SECRETS__ASSET_SIGNING_KEY", asset.as_str()),
                ("BWENGE_MAIL__SMTP_HOST", "smtp.school.example"),
                ("BWENGE_MAIL__LINK_BASE_URL", "https://app.school.example"),
                ("BWENGE_OPS__METRICS_TOKEN", token.as_str()),
            ];
            for (k, v) in extra {
                vars.retain(|(key, _)| key != k);
                vars.push((k, v));
            }
            Settings::load(&opts(dir.path(), &vars)).map(|_| ())
        };
        load(&[]).unwrap();
        for link in [
            "http://127.0.0.1:8080",
            "http://localhost:3000",
            "http://[::1]/",
            "http://0.0.0.0",
            "not a url",
        ] {
            let err = load(&[("BWENGE_MAIL__LINK_BASE_URL", link)]).unwrap_err();
            assert!(
                err.to_string().contains("BWENGE_MAIL__LINK_BASE_URL"),
                "{link}: {err}"
            );
        }
        let err =
            load(&[("BWENGE_HTTP__CORS_ORIGINS", "https://app.school.example,*")]).unwrap_err();
        assert!(err.to_string().contains("cors_origins"), "{err}");
        // A public bind needs a metrics token; a loopback bind does not.
        let err = load(&[("BWENGE_OPS__METRICS_TOKEN", "")]).unwrap_err();
        assert!(
            err.to_string().contains("BWENGE_OPS__METRICS_TOKEN"),
            "{err}"
        );
        load(&[
            ("BWENGE_OPS__METRICS_TOKEN", ""),
            ("BWENGE_BIND", "127.0.0.1:8080"),
        ])
        .unwrap();
        // Elsewhere none of this is refused.
        Settings::load(&opts(
            dir.path(),
            &[
                ("BWENGE_HTTP__CORS_ORIGINS", "*"),
                ("BWENGE_BIND", "0.0.0.0:1"),
            ],
        ))
        .unwrap();
    }

    #[test]
    fn cidrs_parse_and_match() {
        let net = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(net.contains("10.1.200.3".parse().unwrap()));
        assert!(net.contains("::ffff:10.1.0.9".parse().unwrap()));
        assert!(!net.contains("10.2.0.1".parse().unwrap()));
        assert!(!net.contains("::1".parse().unwrap()));
        let one = Cidr::parse("192.0.2.7").unwrap();
        assert!(one.contains("192.0.2.7".parse().unwrap()));
        assert!(!one.contains("192.0.2.8".parse().unwrap()));
        assert!(
            Cidr::parse("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        let v6 = Cidr::parse("fd00::/8").unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        assert!(!v6.contains("fe80::1".parse().unwrap()));
        for bad in ["10.0.0.0/33", "nonsense", "10.0.0/8", "::/129", ""] {
            assert!(Cidr::parse(bad).is_none(), "{bad}");
        }
        let dir = tempfile::tempdir().unwrap();
        let err = Settings::load(&opts(
            dir.path(),
            &[("BWENGE_HTTP__TRUSTED_PROXIES", "10.0.0.0/8,bad")],
        ))
        .unwrap_err();
        assert!(err.to_string().contains("`bad`"), "{err}");
        let (s, _) = Settings::load(&opts(
            dir.path(),
            &[("BWENGE_HTTP__TRUSTED_PROXIES", "10.0.0.0/8,::1")],
        ))
        .unwrap();
        assert_eq!(s.http.trusted_proxies().len(), 2);
    }

    #[test]
    fn placeholders_are_recognised() {
        assert!(is_placeholder(""));
        assert!(is_placeholder("changeme"));
        assert!(is_placeholder(&"a".repeat(40)));
        assert!(is_placeholder(
            "change-me-please-to-something-long-and-random"
        ));
        assert!(!is_placeholder(&random_hex(32)));
    }
}
