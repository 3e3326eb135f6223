//! Model inspection: owns the decision whether uploaded bytes are an avatar
//! the server accepts, and the summary ([`ModelInfo`]) it keeps about one.
//!
//! Accepted are glTF 2.0 models that a browser can load as *one* file: a
//! binary `.glb`, or a JSON `.gltf` whose buffers are embedded as `data:`
//! URIs. Nothing is read from disk or the network, and the input is treated
//! as hostile until proven otherwise. The steps, each in its own submodule:
//!
//! 1. `container`: the format is decided from the bytes (never from the file
//!    name), and the GLB framing (header, chunk lengths, alignment) is
//!    checked before anything inside it is trusted.
//! 2. `census`: a streaming, allocation-free pass over the JSON checks the
//!    glTF version and counts objects against the limits below *before* the
//!    full JSON is deserialized.
//! 3. The JSON is deserialized into the `gltf` crate's model and checked
//!    with the crate's own validator (schema and indices). This is what
//!    `gltf::Gltf::from_slice` does, but run here step by step so that a
//!    POSITION accessor index the validator itself would index out of
//!    bounds with is refused first, and so that a POSITION accessor missing
//!    its `min`/`max` is repaired from the data instead of refused.
//! 4. `data`: buffers must be the GLB binary chunk or `data:` URIs, and
//!    images `data:` URIs or buffer views (anything else is an external
//!    reference, refused before schema problems are reported, as it is the
//!    more useful message); every buffer view and accessor (including sparse
//!    storage) must lie within the bytes it points into.
//! 5. `scene`: the node graph must be a forest of bounded depth; the default
//!    scene's bounding box and triangle/vertex counts are computed from it.

mod census;
mod container;
mod data;
mod scene;

use gltf::json;
use gltf::json::validation::{Checked, Error as ValidationError, Validate};
use thiserror::Error;

/// Largest model file accepted, in bytes (64 MiB).
pub const MAX_MODEL_BYTES: u64 = 64 * 1024 * 1024;
/// Most nodes a model may have.
pub const MAX_NODES: u64 = 10_000;
/// Most meshes a model may have.
pub const MAX_MESHES: u64 = 10_000;
/// Most mesh primitives a model may have, summed over all meshes.
pub const MAX_PRIMITIVES: u64 = 20_000;
/// Most accessors a model may have.
pub const MAX_ACCESSORS: u64 = 10_000;
/// Most animation clips a model may have.
pub const MAX_ANIMATIONS: u64 = 1_000;
/// Most objects of any other top-level kind (buffers, buffer views, images,
/// textures, materials, samplers, skins, cameras, scenes).
pub const MAX_OTHER_OBJECTS: u64 = 10_000;
/// Deepest node nesting accepted (the root nodes of a scene are depth 1).
pub const MAX_NODE_DEPTH: usize = 128;
/// Most bytes all `data:` URI buffers of a `.gltf` may decode to, together.
pub const MAX_DATA_URI_BYTES: u64 = 64 * 1024 * 1024;
/// Most elements a single accessor may have. Bounds the work done for
/// sparse accessors without a buffer view, whose count no data limits.
pub const MAX_ACCESSOR_COUNT: u64 = 16 * 1024 * 1024;

/// The two container formats of glTF 2.0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ModelFormat {
    /// Binary glTF (`.glb`): a header, a JSON chunk and a binary chunk.
    Glb,
    /// JSON glTF (`.gltf`) with every buffer embedded as a `data:` URI.
    Gltf,
}

impl ModelFormat {
    /// The IANA media type to serve the model with.
    pub fn media_type(self) -> &'static str {
        match self {
            ModelFormat::Glb => "model/gltf-binary",
            ModelFormat::Gltf => "model/gltf+json",
        }
    }

    /// The file extension (without a dot) that matches the format.
    pub fn extension(self) -> &'static str {
        match self {
            ModelFormat::Glb => "glb",
            ModelFormat::Gltf => "gltf",
        }
    }
}

/// Axis-aligned bounding box in model space (glTF units are metres, +Y up).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BoundingBox {
    /// Smallest x, y, z.
    pub min: [f32; 3],
    /// Largest x, y, z.
    pub max: [f32; 3],
}

impl BoundingBox {
    /// Extent along each axis (`max - min`).
    pub fn size(&self) -> [f32; 3] {
        [
            self.max[0] - self.min[0],
            self.max[1] - self.min[1],
            self.max[2] - self.min[2],
        ]
    }

    /// Centre point.
    pub fn center(&self) -> [f32; 3] {
        [
            (self.min[0] + self.max[0]) / 2.0,
            (self.min[1] + self.max[1]) / 2.0,
            (self.min[2] + self.max[2]) / 2.0,
        ]
    }
}

/// What the server keeps about an accepted model.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelInfo {
    /// Container format, decided from the bytes.
    pub format: ModelFormat,
    /// Bounds of the default scene in bind pose (skinning and morph targets
    /// ignored), with node transforms applied.
    pub bounding_box: BoundingBox,
    /// Animation clip names in file order; an unnamed clip is called
    /// `animation_<index>`.
    pub animations: Vec<String>,
    /// Triangles drawn by the default scene: summed over every mesh
    /// *instance* (a mesh used by two nodes counts twice).
    pub triangle_count: u64,
    /// Vertices (POSITION accessor counts) summed the same way.
    pub vertex_count: u64,
    /// Nodes in the file.
    pub node_count: u64,
    /// Meshes in the file.
    pub mesh_count: u64,
    /// Size of the uploaded file in bytes.
    pub size_bytes: u64,
}

/// Why a model was refused. Each message is a sentence a teacher can act on.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ModelError {
    /// The bytes are not a glTF 2.0 model at all (HTTP 415).
    #[error("{0}")]
    UnsupportedType(String),
    /// The bytes claim to be glTF 2.0 but are broken or inconsistent.
    #[error("{0}")]
    Invalid(String),
    /// The model needs files that were not uploaded with it.
    #[error("{0}")]
    ExternalReference(String),
    /// The model exceeds a limit of this server.
    #[error("{0}")]
    TooComplex(String),
}

impl ModelError {
    /// Whether this is [`ModelError::UnsupportedType`] (HTTP 415; every other
    /// kind maps to 422).
    pub fn is_unsupported_type(&self) -> bool {
        matches!(self, ModelError::UnsupportedType(_))
    }

    /// The teacher-facing message.
    pub fn message(&self) -> &str {
        match self {
            ModelError::UnsupportedType(m)
            | ModelError::Invalid(m)
            | ModelError::ExternalReference(m)
            | ModelError::TooComplex(m) => m,
        }
    }
}

/// Sentence appended to refusals that tell the teacher what to upload.
pub(crate) const ACCEPTED: &str = "Accepted are .glb files, or .gltf files with embedded buffers.";

/// Validates `bytes` as an avatar model and describes it.
///
/// `file_name` is only used to word error messages; the format is decided
/// from the bytes. Never panics, whatever the input.
pub fn inspect(bytes: &[u8], file_name: Option<&str>) -> Result<ModelInfo, ModelError> {
    let size_bytes = bytes.len() as u64;
    if size_bytes > MAX_MODEL_BYTES {
        return Err(ModelError::TooComplex(format!(
            "The file is {} MB; the largest model accepted is {} MB. Reduce texture sizes or polygon count and export it again.",
            size_bytes.div_ceil(1024 * 1024),
            MAX_MODEL_BYTES / (1024 * 1024)
        )));
    }
    let container = container::open(bytes, file_name)?;
    census::check(container.json, container.format, file_name)?;

    let root: json::Root = serde_json::from_slice(container.json).map_err(|e| {
        ModelError::Invalid(format!(
            "The model's glTF JSON does not follow the glTF 2.0 format ({e}). Export it again from your 3D tool."
        ))
    })?;
    data::refuse_external(&root)?;
    validate_schema(&root)?;

    let buffers = data::load_buffers(&root, container.bin)?;
    data::check_views(&root, &buffers)?;
    data::check_accessors(&root, &buffers)?;

    let graph = scene::Graph::build(&root)?;
    let summary = scene::summarize(&root, &graph, &buffers)?;

    let animations = root
        .animations
        .iter()
        .enumerate()
        .map(|(i, a)| match a.name.as_deref() {
            Some(name) if !name.trim().is_empty() => name.to_owned(),
            _ => format!("animation_{i}"),
        })
        .collect();

    Ok(ModelInfo {
        format: container.format,
        bounding_box: summary.bounding_box,
        animations,
        triangle_count: summary.triangle_count,
        vertex_count: summary.vertex_count,
        node_count: root.nodes.len() as u64,
        mesh_count: root.meshes.len() as u64,
        size_bytes,
    })
}

/// Runs the `gltf` crate's validator (schema, enum values, indices), after
/// refusing what the validator cannot handle itself.
fn validate_schema(root: &json::Root) -> Result<(), ModelError> {
    for ext in &root.extensions_required {
        if !json::extensions::ENABLED_EXTENSIONS.contains(&ext.as_str()) {
            return Err(ModelError::Invalid(format!(
                "The model requires the glTF extension \"{}\", which this server cannot read. Export it again without that extension (for example without mesh compression).",
                clip_text(ext)
            )));
        }
    }
    // The validator's primitive hook indexes `accessors[POSITION]` without a
    // bounds check: refuse such indices before it runs.
    for (m, mesh) in root.meshes.iter().enumerate() {
        for (p, prim) in mesh.primitives.iter().enumerate() {
            if let Some(index) = prim
                .attributes
                .get(&Checked::Valid(json::mesh::Semantic::Positions))
                && index.value() >= root.accessors.len()
            {
                return Err(ModelError::Invalid(format!(
                    "Mesh {m}, primitive {p} takes its POSITION from accessor {}, which does not exist (the model has {} accessors). Export it again from your 3D tool.",
                    index.value(),
                    root.accessors.len()
                )));
            }
        }
    }

    // Paths are built lazily: only for the first problem, and for "missing"
    // reports, which may be the tolerated POSITION bounds. A hostile file can
    // hold millions of bad indices; none of them costs an allocation.
    let mut first: Option<(String, ValidationError)> = None;
    let mut others = 0usize;
    root.validate(root, json::Path::new, &mut |path, error| {
        if error == ValidationError::Missing {
            let path = path();
            let p = path.as_str();
            // A POSITION accessor without min/max is repaired from the data.
            if p.ends_with("[\"POSITION\"].min") || p.ends_with("[\"POSITION\"].max") {
                return;
            }
            if first.is_none() {
                first = Some((path.to_string(), error));
                return;
            }
        } else if first.is_none() {
            first = Some((path().to_string(), error));
            return;
        }
        others += 1;
    });
    let Some((path, error)) = first else {
        return Ok(());
    };
    let what = match error {
        ValidationError::IndexOutOfBounds => "refers to an object that does not exist",
        ValidationError::Invalid => "has an invalid value",
        ValidationError::Missing => "is missing",
        ValidationError::Oversize => "is too large",
        ValidationError::Unsupported => "names an unsupported extension",
    };
    let more = match others {
        0 => String::new(),
        1 => " (and 1 more problem)".to_owned(),
        n => format!(" (and {n} more problems)"),
    };
    Err(ModelError::Invalid(format!(
        "The model is not valid glTF 2.0: {} {what}{more}. Export it again from your 3D tool.",
        clip_text(&path)
    )))
}

/// Shortens text from the file before it is quoted in a message.
pub(crate) fn clip_text(text: &str) -> String {
    const MAX_CHARS: usize = 80;
    let mut out: String = text
        .chars()
        .take(MAX_CHARS)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if text.chars().nth(MAX_CHARS).is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests;
