//! What the avatar routes do, with no HTTP in it: accept an uploaded model
//! (inspect, store the file under a generated key, record it), add versions,
//! list, delete, the persona's avatar with its gesture map, and find the
//! file behind a signed asset URL.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bwenge_avatars::gestures::{match_clips, merge};
use bwenge_avatars::signing::{SignatureError, is_valid_key};
use bwenge_avatars::{ModelError, ModelInfo};
use chrono::Utc;
use parking_lot::Mutex;

use super::store::{self, ModelRow, VersionRow};
use super::{MODEL_REJECTIONS_TOTAL, MODEL_UPLOADS_TOTAL};
use crate::db::{Db, StoreError};
use crate::ids::{ModelId, OrgId, PersonaId, UserId};
use crate::pagination::Page;

/// What avatars need to know of personas, implemented over the personas
/// domain (avatars do not import it): a persona's avatar settings, and the
/// `PersonaChanged` event when a model change alters what a persona shows.
#[async_trait::async_trait]
pub trait PersonaLinks: Send + Sync + 'static {
    /// The persona's avatar settings, `None` when the organisation has no
    /// such persona.
    async fn persona_avatar(
        &self,
        org: OrgId,
        persona: PersonaId,
    ) -> Result<Option<PersonaAvatar>, StoreError>;

    /// A persona's avatar changed: its loaded copies must reload.
    async fn changed(&self, persona: PersonaId);
}

/// The organisation's storage allowance (billing's, through
/// `crate::adapters`): every version reserves its size before it is kept;
/// a deleted model gives back all of its versions'.
#[async_trait::async_trait]
pub trait StorageQuota: Send + Sync + 'static {
    /// Refused with [`AvatarError::QuotaExceeded`] past the allowance.
    async fn reserve(&self, org: OrgId, bytes: u64) -> Result<(), AvatarError>;
    async fn release(&self, org: OrgId, bytes: u64);
}

/// A persona's avatar settings.
#[derive(Debug, Clone)]
pub struct PersonaAvatar {
    pub avatar_model_id: Option<ModelId>,
    /// The teacher's gesture overrides, as stored (JSON object).
    pub gestures: String,
}

/// 3D avatar models of every organisation, and the files behind them.
#[derive(Clone)]
pub struct AvatarService {
    inner: Arc<Inner>,
}

struct Inner {
    db: Db,
    data_dir: PathBuf,
    node_id: String,
    personas: Arc<dyn PersonaLinks>,
    quota: Arc<dyn StorageQuota>,
}

impl AvatarService {
    pub fn new(
        db: Db,
        data_dir: PathBuf,
        node_id: String,
        personas: Arc<dyn PersonaLinks>,
        quota: Arc<dyn StorageQuota>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                db,
                data_dir,
                node_id,
                personas,
                quota,
            }),
        }
    }
}

/// Longest model name, in characters.
pub const MAX_NAME_CHARS: usize = 100;

/// Why an avatar operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AvatarError {
    /// No such model or persona in the organisation (or no such asset).
    #[error("not found")]
    NotFound,
    /// The uploaded file is not a model this server accepts.
    #[error("{}", .0.message())]
    Refused(ModelError),
    /// A form field is wrong.
    #[error("{field}: {detail}")]
    Invalid { field: &'static str, detail: String },
    /// An asset URL's signature is wrong or expired.
    #[error("asset link refused: {0}")]
    Link(SignatureError),
    /// The storage allowance would be passed; the sentence says which.
    #[error("quota exceeded: {0}")]
    QuotaExceeded(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// The reasons of `bwenge_model_rejections_total`, a fixed set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// Over `assets.max_model_bytes` (413).
    TooLarge,
    /// Not a glTF 2.0 model at all (415).
    UnsupportedType,
    /// Broken or inconsistent glTF, or no file / an empty one (422).
    Invalid,
    /// Needs files that were not uploaded with it (422).
    ExternalReference,
    /// Over one of the model limits (422).
    TooComplex,
}

impl Rejection {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TooLarge => "too_large",
            Self::UnsupportedType => "unsupported_type",
            Self::Invalid => "invalid",
            Self::ExternalReference => "external_reference",
            Self::TooComplex => "too_complex",
        }
    }

    pub fn of(e: &ModelError) -> Self {
        match e {
            ModelError::UnsupportedType(_) => Self::UnsupportedType,
            ModelError::Invalid(_) => Self::Invalid,
            ModelError::ExternalReference(_) => Self::ExternalReference,
            ModelError::TooComplex(_) => Self::TooComplex,
        }
    }

    pub fn record(self) {
        metrics::counter!(MODEL_REJECTIONS_TOTAL, "reason" => self.as_str()).increment(1);
    }
}

/// An uploaded file, received in full into a temporary file (deleted when
/// dropped unless kept), with the form's text fields.
pub struct Upload {
    pub temp: tempfile::TempPath,
    /// The client's file name, sanitised: only to default the name.
    pub file_name: String,
    pub sha256: String,
    /// `name`, as sent.
    pub name: Option<String>,
    /// `persona_id`, as sent.
    pub persona_id: Option<String>,
}

/// A model with every version (oldest first) and the first persona using it.
#[derive(Debug, Clone)]
pub struct ModelDetail {
    pub model: ModelRow,
    pub versions: Vec<VersionRow>,
    pub persona_id: Option<PersonaId>,
}

impl ModelDetail {
    /// The current version (the newest).
    pub fn current(&self) -> Option<&VersionRow> {
        self.versions
            .iter()
            .find(|v| v.version == self.model.current_version)
            .or_else(|| self.versions.last())
    }
}

/// A persona's avatar: its model (if any) and the full gesture map.
#[derive(Debug, Clone)]
pub struct Avatar {
    pub model: Option<ModelDetail>,
    pub gestures: BTreeMap<String, Option<String>>,
}

/// Where a kept model file lives.
pub fn file_path(data_dir: &Path, key: &str) -> PathBuf {
    crate::storage::storage_path(data_dir, key)
}

/// A fresh storage key: `models/<model id>/v<version>-<random>.<ext>`.
fn storage_key(model: ModelId, version: i64, ext: &str) -> String {
    let random = crate::config::random_hex(8);
    format!("models/{model}/v{version}-{random}.{ext}")
}

/// The model name sent, if any (blank counts as none).
fn model_name(sent: Option<&str>) -> Result<Option<String>, AvatarError> {
    let name = match sent.map(str::trim).filter(|n| !n.is_empty()) {
        Some(n) => n.to_owned(),
        None => return Ok(None),
    };
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(AvatarError::Invalid {
            field: "name",
            detail: format!("name must be at most {MAX_NAME_CHARS} characters."),
        });
    }
    Ok(Some(name))
}

/// The file name without its extension: the name of a model sent without
/// one.
fn default_name(file_name: &str) -> String {
    let stem = file_name
        .rsplit_once('.')
        .map_or(file_name, |(stem, _)| stem)
        .trim();
    let stem: String = stem.chars().take(MAX_NAME_CHARS).collect();
    if stem.is_empty() {
        "Avatar".to_owned()
    } else {
        stem
    }
}

/// Reads and inspects the uploaded file (off the async threads).
async fn inspect(upload: &Upload) -> Result<ModelInfo, AvatarError> {
    let bytes = tokio::fs::read(&upload.temp)
        .await
        .context("reading the uploaded model")?;
    let name = upload.file_name.clone();
    let result = crate::work::blocking(move || bwenge_avatars::inspect(&bytes, Some(&name)))
        .await
        .context("inspecting the uploaded model")?;
    result.map_err(|e| {
        Rejection::of(&e).record();
        AvatarError::Refused(e)
    })
}

fn version_row(
    model: ModelId,
    version: i64,
    org: OrgId,
    key: String,
    info: &ModelInfo,
    sha256: &str,
) -> VersionRow {
    let b = info.bounding_box;
    VersionRow {
        model_id: model,
        version,
        organization_id: org,
        storage_key: key,
        media_type: info.format.media_type().to_owned(),
        size_bytes: i64::try_from(info.size_bytes).unwrap_or(i64::MAX),
        sha256: sha256.to_owned(),
        bounding_box: serde_json::json!({"min": b.min, "max": b.max}).to_string(),
        animations: serde_json::to_string(&info.animations).unwrap_or_else(|_| "[]".into()),
        triangle_count: i64::try_from(info.triangle_count).unwrap_or(i64::MAX),
        vertex_count: i64::try_from(info.vertex_count).unwrap_or(i64::MAX),
        created_at: Utc::now(),
    }
}

/// Overrides that still name clips of `clips` (a `null` override, "this
/// gesture off", always stays); `None` when nothing changes.
fn fitting_overrides(json: &str, clips: &[String]) -> Option<String> {
    let overrides: BTreeMap<String, Option<String>> = serde_json::from_str(json).ok()?;
    let kept: BTreeMap<&String, &Option<String>> = overrides
        .iter()
        .filter(|(_, clip)| clip.as_ref().is_none_or(|c| clips.contains(c)))
        .collect();
    (kept.len() != overrides.len()).then(|| serde_json::to_string(&kept).unwrap_or_default())
}

/// Moves the temporary file to `key` under the data directory.
fn place_file(data_dir: &Path, temp: tempfile::TempPath, key: &str) -> anyhow::Result<PathBuf> {
    let dest = file_path(data_dir, key);
    if let Some(dir) = dest.parent() {
        std::fs::create_dir_all(dir).context("creating the model directory")?;
    }
    temp.persist(&dest)
        .map_err(|e| anyhow::Error::new(e.error).context("keeping the uploaded model"))?;
    Ok(dest)
}

/// Removes a kept file (and its model directory once empty).
async fn remove_file(path: &Path) {
    if let Err(e) = tokio::fs::remove_file(path).await
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(error = %e, "could not remove a model file");
    }
    if let Some(dir) = path.parent() {
        // Fails, harmlessly, while other versions are still there.
        let _ = tokio::fs::remove_dir(dir).await;
    }
}

fn record_upload(info: &ModelInfo) {
    metrics::counter!(MODEL_UPLOADS_TOTAL, "format" => info.format.extension()).increment(1);
}

/// How long the asset route trusts a version row it read (see
/// [`find_asset`]).
pub const ASSET_CACHE_TTL: Duration = Duration::from_secs(5);
/// Most version rows the asset route keeps.
const ASSET_CACHE_ENTRIES: usize = 4096;

/// Version rows recently served, by (node id, storage key): a row never
/// changes once written (a new file is a new version with a new key), so
/// only its deletion matters, and [`delete`] evicts at once on this node.
static ASSET_CACHE: LazyLock<Mutex<AssetCache>> = LazyLock::new(|| Mutex::new(HashMap::new()));

type AssetCache = HashMap<(String, String), (Instant, Arc<VersionRow>)>;

fn cached(node: &str, key: &str) -> Option<Arc<VersionRow>> {
    let cache = ASSET_CACHE.lock();
    let (at, row) = cache.get(&(node.to_owned(), key.to_owned()))?;
    (at.elapsed() < ASSET_CACHE_TTL).then(|| row.clone())
}

fn remember(node: &str, row: Arc<VersionRow>) {
    let mut cache = ASSET_CACHE.lock();
    if cache.len() >= ASSET_CACHE_ENTRIES {
        cache.retain(|_, (at, _)| at.elapsed() < ASSET_CACHE_TTL);
        if cache.len() >= ASSET_CACHE_ENTRIES {
            cache.clear();
        }
    }
    cache.insert(
        (node.to_owned(), row.storage_key.clone()),
        (Instant::now(), row),
    );
}

fn forget(node: &str, keys: &[String]) {
    let mut cache = ASSET_CACHE.lock();
    for key in keys {
        cache.remove(&(node.to_owned(), key.clone()));
    }
}

impl AvatarService {
    /// The persona named by `persona_id`, which must be the organisation's.
    async fn persona_of(
        &self,
        org: OrgId,
        sent: Option<&str>,
    ) -> Result<Option<PersonaId>, AvatarError> {
        let Some(text) = sent.map(str::trim).filter(|t| !t.is_empty()) else {
            return Ok(None);
        };
        let invalid = || AvatarError::Invalid {
            field: "persona_id",
            detail: "persona_id names no persona of your organisation.".to_owned(),
        };
        let id: PersonaId = text.parse().map_err(|_| invalid())?;
        match self.inner.personas.persona_avatar(org, id).await? {
            Some(_) => Ok(Some(id)),
            None => Err(invalid()),
        }
    }

    /// The rewrites of the overrides of the personas using `model` (and of
    /// `persona`) once the model's clips are `clips`.
    async fn cleaned_overrides(
        &self,
        org: OrgId,
        model: Option<ModelId>,
        persona: Option<PersonaId>,
        clips: &[String],
    ) -> Result<Vec<(PersonaId, String)>, AvatarError> {
        Ok(store::overrides(&self.inner.db, org, model, persona)
            .await?
            .into_iter()
            .filter_map(|(id, json)| fitting_overrides(&json, clips).map(|j| (id, j)))
            .collect())
    }

    async fn announce(&self, personas: impl IntoIterator<Item = PersonaId>) {
        let mut seen = Vec::new();
        for p in personas {
            if !seen.contains(&p) {
                seen.push(p);
                self.inner.personas.changed(p).await;
            }
        }
    }

    /// Accepts a new model (its version 1), attached to `persona_id` if given.
    pub async fn create(
        &self,
        org: OrgId,
        user: UserId,
        upload: Upload,
    ) -> Result<ModelDetail, AvatarError> {
        let name =
            model_name(upload.name.as_deref())?.unwrap_or_else(|| default_name(&upload.file_name));
        let persona = self.persona_of(org, upload.persona_id.as_deref()).await?;
        let info = inspect(&upload).await?;

        let id = ModelId::new();
        let key = storage_key(id, 1, info.format.extension());
        let v = version_row(id, 1, org, key.clone(), &info, &upload.sha256);
        let now = v.created_at;
        let m = ModelRow {
            id,
            organization_id: org,
            name,
            current_version: 1,
            created_by: Some(user),
            created_at: now,
            updated_at: now,
        };
        let gestures = self
            .cleaned_overrides(org, None, persona, &info.animations)
            .await?;
        let size = u64::try_from(v.size_bytes).unwrap_or(0);
        self.inner.quota.reserve(org, size).await?;
        let dest = match place_file(&self.inner.data_dir, upload.temp, &key) {
            Ok(dest) => dest,
            Err(e) => {
                self.inner.quota.release(org, size).await;
                return Err(e.into());
            }
        };
        if let Err(e) = store::create(&self.inner.db, &m, &v, persona, &gestures).await {
            remove_file(&dest).await;
            self.inner.quota.release(org, size).await;
            return Err(e.into());
        }
        record_upload(&info);
        self.announce(persona.into_iter().chain(gestures.iter().map(|g| g.0)))
            .await;
        Ok(ModelDetail {
            model: m,
            versions: vec![v],
            persona_id: persona,
        })
    }

    /// Whether the organisation has this model (checked before an upload's
    /// body is read).
    pub async fn exists(&self, org: OrgId, id: ModelId) -> Result<bool, AvatarError> {
        Ok(store::model(&self.inner.db, org, id).await?.is_some())
    }

    /// Adds a version to a model (it becomes current; earlier ones stay).
    /// `name`, when sent, renames the model; `persona_id` attaches it.
    pub async fn add_version(
        &self,
        org: OrgId,
        id: ModelId,
        upload: Upload,
    ) -> Result<ModelDetail, AvatarError> {
        let rename = model_name(upload.name.as_deref())?;
        let persona = self.persona_of(org, upload.persona_id.as_deref()).await?;
        if !self.exists(org, id).await? {
            return Err(AvatarError::NotFound);
        }
        let info = inspect(&upload).await?;
        let gestures = self
            .cleaned_overrides(org, Some(id), persona, &info.animations)
            .await?;
        let v = version_row(id, 0, org, String::new(), &info, &upload.sha256);
        let size = u64::try_from(v.size_bytes).unwrap_or(0);
        self.inner.quota.reserve(org, size).await?;
        let data_dir = self.inner.data_dir.clone();
        let ext = info.format.extension();
        let temp = upload.temp;
        let mut placed: Option<PathBuf> = None;
        let result = store::add_version(
            &self.inner.db,
            org,
            id,
            v,
            rename.as_deref(),
            persona,
            &gestures,
            |version| {
                let key = storage_key(id, version, ext);
                placed = Some(place_file(&data_dir, temp, &key)?);
                Ok(key)
            },
        )
        .await;
        match result {
            Ok(Some(_)) => {}
            Ok(None) => {
                self.inner.quota.release(org, size).await;
                return Err(AvatarError::NotFound);
            }
            Err(e) => {
                if let Some(path) = &placed {
                    remove_file(path).await;
                }
                self.inner.quota.release(org, size).await;
                return Err(e.into());
            }
        }
        record_upload(&info);
        self.announce(persona.into_iter().chain(gestures.iter().map(|g| g.0)))
            .await;
        self.get(org, id).await
    }

    /// Builds the details of `models` (versions, first persona).
    async fn details(
        &self,
        org: OrgId,
        models: Vec<ModelRow>,
    ) -> Result<Vec<ModelDetail>, AvatarError> {
        let ids: Vec<ModelId> = models.iter().map(|m| m.id).collect();
        let mut versions: HashMap<ModelId, Vec<VersionRow>> = HashMap::new();
        for v in store::versions_of(&self.inner.db, org, &ids).await? {
            versions.entry(v.model_id).or_default().push(v);
        }
        let mut personas: HashMap<ModelId, PersonaId> = HashMap::new();
        for (m, p) in store::personas_using(&self.inner.db, org, &ids).await? {
            personas.entry(m).or_insert(p);
        }
        Ok(models
            .into_iter()
            .map(|m| ModelDetail {
                versions: versions.remove(&m.id).unwrap_or_default(),
                persona_id: personas.get(&m.id).copied(),
                model: m,
            })
            .collect())
    }

    /// One model of the organisation.
    pub async fn get(&self, org: OrgId, id: ModelId) -> Result<ModelDetail, AvatarError> {
        let model = store::model(&self.inner.db, org, id)
            .await?
            .ok_or(AvatarError::NotFound)?;
        self.details(org, vec![model])
            .await?
            .pop()
            .ok_or(AvatarError::NotFound)
    }

    /// A page of the organisation's models, oldest first (`limit + 1` rows:
    /// the extra one tells whether there is more).
    pub async fn list(&self, org: OrgId, page: Page) -> Result<Vec<ModelDetail>, AvatarError> {
        let models = store::list(&self.inner.db, org, page).await?;
        self.details(org, models).await
    }

    /// Deletes a model, every version's row and file.
    pub async fn delete(&self, org: OrgId, id: ModelId) -> Result<(), AvatarError> {
        let users: Vec<PersonaId> = store::personas_using(&self.inner.db, org, &[id])
            .await?
            .into_iter()
            .map(|(_, p)| p)
            .collect();
        let size: i64 = store::versions_of(&self.inner.db, org, &[id])
            .await?
            .iter()
            .map(|v| v.size_bytes)
            .sum();
        let keys = store::delete(&self.inner.db, org, id)
            .await?
            .ok_or(AvatarError::NotFound)?;
        self.inner
            .quota
            .release(org, u64::try_from(size).unwrap_or(0))
            .await;
        forget(&self.inner.node_id, &keys);
        for key in &keys {
            remove_file(&file_path(&self.inner.data_dir, key)).await;
        }
        self.announce(users).await;
        Ok(())
    }

    /// A persona's avatar: its model and every gesture's clip, matched from the
    /// clip names with the persona's overrides applied. Overrides naming a clip
    /// the model does not have are ignored (the match applies).
    pub async fn avatar(&self, org: OrgId, persona: PersonaId) -> Result<Avatar, AvatarError> {
        let row = self
            .inner
            .personas
            .persona_avatar(org, persona)
            .await?
            .ok_or(AvatarError::NotFound)?;
        let model = match row.avatar_model_id {
            Some(id) => match self.get(org, id).await {
                Ok(d) => Some(d),
                Err(AvatarError::NotFound) => None,
                Err(e) => return Err(e),
            },
            None => None,
        };
        let clips = model
            .as_ref()
            .and_then(|m| m.current())
            .map(VersionRow::animations)
            .unwrap_or_default();
        let overrides: BTreeMap<String, Option<String>> =
            serde_json::from_str(&row.gestures).unwrap_or_default();
        let overrides: BTreeMap<String, Option<String>> = overrides
            .into_iter()
            .filter(|(_, clip)| clip.as_ref().is_none_or(|c| clips.contains(c)))
            .collect();
        Ok(Avatar {
            gestures: merge(&match_clips(&clips), &overrides),
            model,
        })
    }

    /// The version stored under an asset key (whose URL signature the caller
    /// checked). Rows are cached for [`ASSET_CACHE_TTL`]: a model deleted
    /// through another node may still be revalidated (304) that long, while its
    /// file, gone at once, is no longer served.
    pub async fn find_asset(&self, key: &str) -> Result<Arc<VersionRow>, AvatarError> {
        if !is_valid_key(key) {
            return Err(AvatarError::NotFound);
        }
        if let Some(row) = cached(&self.inner.node_id, key) {
            return Ok(row);
        }
        let row = Arc::new(
            store::by_storage_key(&self.inner.db, key)
                .await?
                .ok_or(AvatarError::NotFound)?,
        );
        remember(&self.inner.node_id, row.clone());
        Ok(row)
    }

    /// Opens the file of an asset key: the file and its length.
    pub async fn open_asset(&self, key: &str) -> Result<(std::fs::File, u64), AvatarError> {
        let path = file_path(&self.inner.data_dir, key);
        let opened = crate::work::blocking(move || {
            let file = std::fs::File::open(&path)?;
            let len = file.metadata()?.len();
            Ok::<_, std::io::Error>((file, len))
        })
        .await
        .context("opening a model file")?;
        match opened {
            Ok(found) => Ok(found),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(AvatarError::NotFound),
            Err(e) => Err(anyhow::Error::new(e).context("opening a model file").into()),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::http::files::{SERVE_CHUNK_BYTES, file_stream};
    use actix_web::web::Bytes;

    #[test]
    fn names_default_to_the_file_stem() {
        assert_eq!(default_name("Robot Expressive.glb"), "Robot Expressive");
        assert_eq!(default_name("robot"), "robot");
        assert_eq!(default_name(".glb"), "Avatar");
        assert_eq!(model_name(Some("  ")).unwrap(), None);
        assert_eq!(
            model_name(Some(" Robot ")).unwrap().as_deref(),
            Some("Robot")
        );
        assert!(matches!(
            model_name(Some(&"n".repeat(101))),
            Err(AvatarError::Invalid { field: "name", .. })
        ));
    }

    #[test]
    fn keys_are_valid_asset_keys() {
        let key = storage_key(ModelId::new(), 3, "glb");
        assert!(is_valid_key(&key), "{key}");
        assert!(key.starts_with("models/") && key.contains("/v3-") && key.ends_with(".glb"));
    }

    #[test]
    fn overrides_naming_missing_clips_are_dropped() {
        let clips = vec!["Wave".to_owned(), "Idle".to_owned()];
        assert_eq!(
            fitting_overrides(r#"{"waving":"Wave","idle":null}"#, &clips),
            None
        );
        assert_eq!(
            fitting_overrides(r#"{"waving":"Hello","idle":null}"#, &clips).as_deref(),
            Some(r#"{"idle":null}"#)
        );
    }

    #[actix_web::test]
    async fn files_stream_in_bounded_chunks_from_an_offset() {
        use futures_util::StreamExt;
        let mut f = tempfile::NamedTempFile::new().unwrap();
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        std::io::Write::write_all(&mut f, &data).unwrap();
        let seen = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = seen.clone();
        let chunks: Vec<Bytes> = file_stream(f.reopen().unwrap(), 10, 290_000, move |n| {
            counter.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        })
        .map(Result::unwrap)
        .collect()
        .await;
        assert!(chunks.iter().all(|c| c.len() <= SERVE_CHUNK_BYTES));
        let joined: Vec<u8> = chunks.concat();
        assert_eq!(joined, data[10..290_010]);
        assert_eq!(seen.load(std::sync::atomic::Ordering::Relaxed), 290_000);
        // Past the end: an error, then the end.
        let mut s = Box::pin(file_stream(f.reopen().unwrap(), 299_990, 20, |_| {}));
        assert!(s.next().await.unwrap().is_err());
        assert!(s.next().await.is_none());
    }
}
