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
    pub transcription: TranscriptionSettings,
    pub embeddings: EmbeddingSettings,
    pub personas: PersonaSettings,
    pub chat: ChatSettings,
    pub llm: LlmSettings,
    pub assets: AssetSettings,
    pub secrets: SecretSettings,
    pub testing: TestingSettings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    pub json_limit_bytes: usize,
    pub shutdown_grace_secs: u64,
    pub cors_origins: Vec<String>,
    pub workers: usize,
    pub trust_forwarded_headers: bool,
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestingSettings {
    pub routes: bool,
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
                .with_list_parse_key("llm.chain")
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
        if self.env == RunEnv::Production && self.testing.routes {
            return Err(ConfigError::Refused(
                "testing.routes must be false in production (unset BWENGE_TESTING__ROUTES)".into(),
            ));
        }
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
        if self.http.json_limit_bytes == 0 {
            return Err(ConfigError::Invalid(
                "http.json_limit_bytes must be greater than 0".into(),
            ));
        }
        if self.database.max_connections == 0 {
            return Err(ConfigError::Invalid(
                "database.max_connections must be at least 1".into(),
            ));
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
