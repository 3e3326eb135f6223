//! Pre-parse census: owns the glTF version check and the object-count limits,
//! done in one streaming pass that stores nothing but counters, so that a
//! hostile JSON (millions of tiny objects) is refused before it is
//! deserialized into memory.
//!
//! The pass is lenient about types: a value of an unexpected type counts as
//! zero objects here and is reported by the full deserialization later. This
//! keeps the version check first, so a glTF 1.0 file (whose top-level
//! collections are objects, not arrays) gets the message about its version.

use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::container::gltf1_error;
use super::{
    ACCEPTED, MAX_ACCESSORS, MAX_ANIMATIONS, MAX_MESHES, MAX_NODES, MAX_OTHER_OBJECTS,
    MAX_PRIMITIVES, ModelError, ModelFormat, clip_text,
};

/// Top-level collections counted, with their limits.
const COUNTED: &[(&str, u64)] = &[
    ("nodes", MAX_NODES),
    ("meshes", MAX_MESHES),
    ("accessors", MAX_ACCESSORS),
    ("animations", MAX_ANIMATIONS),
    ("buffers", MAX_OTHER_OBJECTS),
    ("bufferViews", MAX_OTHER_OBJECTS),
    ("images", MAX_OTHER_OBJECTS),
    ("textures", MAX_OTHER_OBJECTS),
    ("materials", MAX_OTHER_OBJECTS),
    ("samplers", MAX_OTHER_OBJECTS),
    ("skins", MAX_OTHER_OBJECTS),
    ("cameras", MAX_OTHER_OBJECTS),
    ("scenes", MAX_OTHER_OBJECTS),
];

/// What the census found.
#[derive(Default)]
struct Census {
    asset: Asset,
    /// Count per entry of [`COUNTED`], same order.
    counts: Vec<u64>,
    primitives: u64,
    /// A top-level collection was a JSON object (the glTF 1.0 layout).
    legacy_layout: bool,
}

/// What the `asset` property looked like.
#[derive(Default)]
enum Asset {
    #[default]
    Absent,
    NotObject,
    Object {
        version: Loose,
        min_version: Loose,
    },
}

/// A property that should be a string.
#[derive(Default)]
enum Loose {
    #[default]
    Absent,
    Text(String),
    Other,
}

/// Runs the census over `json` and applies the version check and limits.
pub(super) fn check(
    json: &[u8],
    format: ModelFormat,
    file_name: Option<&str>,
) -> Result<(), ModelError> {
    let census = take(json).map_err(|e| syntax_error(&e, format, file_name))?;
    check_version(&census, format)?;
    for ((kind, limit), count) in COUNTED.iter().zip(&census.counts) {
        if count > limit {
            return Err(too_many(*count, kind, *limit));
        }
    }
    if census.primitives > MAX_PRIMITIVES {
        return Err(too_many(
            census.primitives,
            "mesh primitives",
            MAX_PRIMITIVES,
        ));
    }
    Ok(())
}

fn too_many(count: u64, kind: &str, limit: u64) -> ModelError {
    ModelError::TooComplex(format!(
        "The model has {count} {kind}; at most {limit} are accepted. Simplify the model and export it again."
    ))
}

fn take(json: &[u8]) -> Result<Census, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(json);
    let census = de.deserialize_map(TopVisitor)?;
    de.end()?;
    Ok(census)
}

fn syntax_error(e: &serde_json::Error, format: ModelFormat, file_name: Option<&str>) -> ModelError {
    let named_gltf = file_name
        .and_then(|n| n.rsplit_once('.'))
        .is_some_and(|(_, ext)| ext.eq_ignore_ascii_case("gltf"));
    let where_ = format!("line {}, column {}", e.line(), e.column());
    match format {
        ModelFormat::Glb => ModelError::Invalid(format!(
            "The GLB's JSON chunk is not valid JSON (error at {where_}); the file is corrupted. Export it again."
        )),
        ModelFormat::Gltf if named_gltf || e.is_eof() => ModelError::Invalid(format!(
            "The .gltf file is not valid JSON (error at {where_}); it may be truncated or corrupted. Export it again."
        )),
        ModelFormat::Gltf => ModelError::UnsupportedType(format!(
            "The file is not a glTF 2.0 model (it is not valid JSON: error at {where_}). {ACCEPTED}"
        )),
    }
}

fn check_version(census: &Census, format: ModelFormat) -> Result<(), ModelError> {
    let (version, min_version) = match &census.asset {
        Asset::Object {
            version,
            min_version,
        } => (version, min_version),
        Asset::Absent | Asset::NotObject if census.legacy_layout => return Err(gltf1_error()),
        Asset::Absent | Asset::NotObject => {
            return Err(match format {
                ModelFormat::Glb => ModelError::Invalid(
                    "The GLB's JSON has no \"asset\" object stating the glTF version; the file is corrupted. Export it again."
                        .to_owned(),
                ),
                ModelFormat::Gltf => ModelError::UnsupportedType(format!(
                    "The file is JSON but not a glTF model (it has no \"asset\" object stating the glTF version). {ACCEPTED}"
                )),
            });
        }
    };
    let Loose::Text(version) = version else {
        return Err(ModelError::Invalid(
            "The model's \"asset\" object has no \"version\" string; the file is not valid glTF. Export it again."
                .to_owned(),
        ));
    };
    match parse_version(version) {
        Some((2, _)) => {}
        Some((1, _)) => return Err(gltf1_error()),
        _ => {
            return Err(ModelError::UnsupportedType(format!(
                "The model says it is glTF version \"{}\"; only glTF 2.0 is supported. {ACCEPTED}",
                clip_text(version)
            )));
        }
    }
    match min_version {
        Loose::Absent => Ok(()),
        Loose::Text(min) if parse_version(min).is_some_and(|v| v <= (2, 0)) => Ok(()),
        Loose::Text(min) => Err(ModelError::UnsupportedType(format!(
            "The model needs a glTF reader of version \"{}\" or newer; only glTF 2.0 is supported. Export it again as glTF 2.0.",
            clip_text(min)
        ))),
        Loose::Other => Err(ModelError::Invalid(
            "The model's \"asset.minVersion\" is not a string; the file is not valid glTF. Export it again."
                .to_owned(),
        )),
    }
}

/// Parses `"<major>.<minor>"`, the only version form glTF allows (a third
/// component is tolerated for old glTF 1.0 files, which are refused anyway).
fn parse_version(text: &str) -> Option<(u32, u32)> {
    let mut parts = text.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

struct TopVisitor;

impl<'de> Visitor<'de> for TopVisitor {
    type Value = Census;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a glTF JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Census, A::Error> {
        let mut census = Census {
            counts: vec![0; COUNTED.len()],
            ..Census::default()
        };
        while let Some(key) = map.next_key::<String>()? {
            if key == "asset" {
                census.asset = map.next_value::<AssetProbe>()?.0;
            } else if let Some(slot) = COUNTED.iter().position(|(k, _)| *k == key) {
                let count = if key == "meshes" {
                    let meshes = map.next_value::<MeshesProbe>()?;
                    census.primitives = census.primitives.saturating_add(meshes.primitives);
                    meshes.count
                } else {
                    map.next_value::<Count>()?
                };
                census.legacy_layout |= count.legacy;
                if let Some(c) = census.counts.get_mut(slot) {
                    *c = c.saturating_add(count.items);
                }
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(census)
    }
}

/// Number of items in a collection; other values count as zero.
#[derive(Default, Clone, Copy)]
struct Count {
    items: u64,
    /// The collection was an object (glTF 1.0 layout).
    legacy: bool,
}

/// Implements the scalar visits of a lenient visitor, all yielding `$value`.
/// With `strings`, strings yield `$value` too.
macro_rules! lenient_scalars {
    ($ty:ty, $value:expr) => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<$ty, E> {
            Ok($value)
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<$ty, E> {
            Ok($value)
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<$ty, E> {
            Ok($value)
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<$ty, E> {
            Ok($value)
        }
        fn visit_unit<E: de::Error>(self) -> Result<$ty, E> {
            Ok($value)
        }
    };
    ($ty:ty, $value:expr, strings) => {
        lenient_scalars!($ty, $value);
        fn visit_str<E: de::Error>(self, _: &str) -> Result<$ty, E> {
            Ok($value)
        }
    };
}

impl<'de> de::Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Count;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a collection")
            }
            lenient_scalars!(Count, Count::default(), strings);
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Count, A::Error> {
                let mut items = 0u64;
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    items += 1;
                }
                Ok(Count {
                    items,
                    legacy: false,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Count, A::Error> {
                let mut items = 0u64;
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {
                    items += 1;
                }
                Ok(Count {
                    items,
                    legacy: true,
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// The `meshes` collection: its count and the primitives of all meshes.
#[derive(Default)]
struct MeshesProbe {
    count: Count,
    primitives: u64,
}

impl<'de> de::Deserialize<'de> for MeshesProbe {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = MeshesProbe;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a collection of meshes")
            }
            lenient_scalars!(MeshesProbe, MeshesProbe::default(), strings);
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<MeshesProbe, A::Error> {
                let mut out = MeshesProbe::default();
                while let Some(mesh) = seq.next_element::<MeshProbe>()? {
                    out.count.items += 1;
                    out.primitives = out.primitives.saturating_add(mesh.primitives);
                }
                Ok(out)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<MeshesProbe, A::Error> {
                let mut out = MeshesProbe::default();
                out.count.legacy = true;
                while let Some((_, mesh)) = map.next_entry::<IgnoredAny, MeshProbe>()? {
                    out.count.items += 1;
                    out.primitives = out.primitives.saturating_add(mesh.primitives);
                }
                Ok(out)
            }
        }
        d.deserialize_any(V)
    }
}

/// One mesh: only the number of its primitives is kept.
#[derive(Default)]
struct MeshProbe {
    primitives: u64,
}

impl<'de> de::Deserialize<'de> for MeshProbe {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = MeshProbe;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mesh")
            }
            lenient_scalars!(MeshProbe, MeshProbe::default(), strings);
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<MeshProbe, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(MeshProbe::default())
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<MeshProbe, A::Error> {
                let mut out = MeshProbe::default();
                while let Some(key) = map.next_key::<String>()? {
                    if key == "primitives" {
                        out.primitives = out
                            .primitives
                            .saturating_add(map.next_value::<Count>()?.items);
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(out)
            }
        }
        d.deserialize_any(V)
    }
}

/// The `asset` object: only `version` and `minVersion` are kept.
struct AssetProbe(Asset);

impl<'de> de::Deserialize<'de> for AssetProbe {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = AssetProbe;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an asset object")
            }
            lenient_scalars!(AssetProbe, AssetProbe(Asset::NotObject), strings);
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<AssetProbe, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(AssetProbe(Asset::NotObject))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<AssetProbe, A::Error> {
                let mut version = Loose::Absent;
                let mut min_version = Loose::Absent;
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "version" => version = map.next_value::<LooseProbe>()?.0,
                        "minVersion" => min_version = map.next_value::<LooseProbe>()?.0,
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(AssetProbe(Asset::Object {
                    version,
                    min_version,
                }))
            }
        }
        d.deserialize_any(V)
    }
}

/// A value kept only if it is a short string: longer "versions" are not
/// versions, and are not copied.
struct LooseProbe(Loose);

impl<'de> de::Deserialize<'de> for LooseProbe {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        const MAX_LEN: usize = 64;
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = LooseProbe;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            lenient_scalars!(LooseProbe, LooseProbe(Loose::Other));
            fn visit_str<E: de::Error>(self, v: &str) -> Result<LooseProbe, E> {
                Ok(LooseProbe(if v.len() <= MAX_LEN {
                    Loose::Text(v.to_owned())
                } else {
                    Loose::Other
                }))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<LooseProbe, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(LooseProbe(Loose::Other))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<LooseProbe, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(LooseProbe(Loose::Other))
            }
        }
        d.deserialize_any(V)
    }
}
