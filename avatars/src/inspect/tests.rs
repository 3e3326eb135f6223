//! Tests of model inspection: the real robot and duck files, hand-made
//! glTF files, hostile variants of both, and a mutation run.

use base64::Engine;
use serde_json::{Value, json};

use super::*;

/// The repository's model fixtures (see the README there for sources and
/// licences), shared with the server's API tests.
const MODELS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/models/");

fn model(name: &str) -> Vec<u8> {
    let path = format!("{MODELS}{name}");
    std::fs::read(&path).unwrap_or_else(|e| panic!("test model {path}: {e}"))
}

fn robot() -> Vec<u8> {
    model("RobotExpressive.glb")
}

fn ok(bytes: &[u8], name: Option<&str>) -> ModelInfo {
    match inspect(bytes, name) {
        Ok(info) => info,
        Err(e) => panic!("expected the model to be accepted, got {e:?}"),
    }
}

fn err(bytes: &[u8], name: Option<&str>) -> ModelError {
    match inspect(bytes, name) {
        Ok(info) => panic!("expected a refusal, got {info:?}"),
        Err(e) => e,
    }
}

fn assert_invalid(bytes: &[u8], needle: &str) {
    let e = err(bytes, None);
    assert!(
        matches!(e, ModelError::Invalid(_)),
        "expected Invalid, got {e:?}"
    );
    assert!(
        e.message().contains(needle),
        "message {:?} lacks {needle:?}",
        e.message()
    );
}

fn assert_close(actual: [f32; 3], expected: [f32; 3], tolerance: f32) {
    for k in 0..3 {
        assert!(
            (actual[k] - expected[k]).abs() <= tolerance,
            "axis {k}: {actual:?} vs {expected:?}"
        );
    }
}

/// Little-endian bytes of f32s.
fn floats(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn data_uri(bytes: &[u8]) -> String {
    format!(
        "data:application/octet-stream;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

/// The buffer of [`triangle`]: 3 positions (36 bytes), then 2 key times
/// (8 bytes) and 2 translations (24 bytes) for an animation.
fn triangle_buffer() -> Vec<u8> {
    let mut b = floats(&[0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0]);
    b.extend(floats(&[0.0, 1.0]));
    b.extend(floats(&[0.0, 0.0, 0.0, 0.0, 1.0, 0.0]));
    b
}

/// A one-triangle `.gltf` with its buffer in a data URI.
fn triangle() -> Value {
    let buffer = triangle_buffer();
    json!({
        "asset": { "version": "2.0", "generator": "bwenge tests" },
        "scene": 0,
        "scenes": [{ "nodes": [0] }],
        "nodes": [{ "mesh": 0, "name": "tri" }],
        "meshes": [{ "primitives": [{ "attributes": { "POSITION": 0 } }] }],
        "buffers": [{ "byteLength": buffer.len(), "uri": data_uri(&buffer) }],
        "bufferViews": [
            { "buffer": 0, "byteOffset": 0, "byteLength": 36 },
            { "buffer": 0, "byteOffset": 36, "byteLength": 32 }
        ],
        "accessors": [
            { "bufferView": 0, "componentType": 5126, "count": 3, "type": "VEC3",
              "min": [0.0, 0.0, 0.0], "max": [1.0, 1.0, 0.0] },
            { "bufferView": 1, "byteOffset": 0, "componentType": 5126, "count": 2, "type": "SCALAR",
              "min": [0.0], "max": [1.0] },
            { "bufferView": 1, "byteOffset": 8, "componentType": 5126, "count": 2, "type": "VEC3" }
        ]
    })
}

fn bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).expect("serialize test JSON")
}

fn animation(name: Option<&str>) -> Value {
    let mut a = json!({
        "channels": [{ "sampler": 0, "target": { "node": 0, "path": "translation" } }],
        "samplers": [{ "input": 1, "output": 2 }]
    });
    if let Some(name) = name {
        a["name"] = json!(name);
    }
    a
}

/// Builds a GLB from a JSON text and an optional binary chunk (padded).
fn glb(json_text: &[u8], bin: Option<&[u8]>) -> Vec<u8> {
    let mut json_chunk = json_text.to_vec();
    while !json_chunk.len().is_multiple_of(4) {
        json_chunk.push(b' ');
    }
    let mut out = Vec::new();
    out.extend(b"glTF");
    out.extend(2u32.to_le_bytes());
    out.extend(0u32.to_le_bytes());
    out.extend((json_chunk.len() as u32).to_le_bytes());
    out.extend(b"JSON");
    out.extend(&json_chunk);
    if let Some(bin) = bin {
        let mut bin = bin.to_vec();
        while !bin.len().is_multiple_of(4) {
            bin.push(0);
        }
        out.extend((bin.len() as u32).to_le_bytes());
        out.extend(b"BIN\0");
        out.extend(&bin);
    }
    let len = out.len() as u32;
    out[8..12].copy_from_slice(&len.to_le_bytes());
    out
}

fn push(array: &mut Value, item: Value) {
    array.as_array_mut().expect("a JSON array").push(item);
}

fn set_u32(bytes: &mut [u8], at: usize, value: u32) {
    bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
}

// ---------------------------------------------------------------- the robot

#[test]
fn robot_is_a_glb_with_its_clips_bounds_and_counts() {
    let robot = robot();
    let info = ok(&robot, Some("RobotExpressive.glb"));
    println!("robot: {info:#?}");
    println!(
        "robot size: {:?}, centre: {:?}",
        info.bounding_box.size(),
        info.bounding_box.center()
    );

    assert_eq!(info.format, ModelFormat::Glb);
    assert_eq!(info.format.media_type(), "model/gltf-binary");
    assert_eq!(info.format.extension(), "glb");
    assert_eq!(
        info.animations,
        [
            "Dance", "Death", "Idle", "Jump", "No", "Punch", "Running", "Sitting", "Standing",
            "ThumbsUp", "Walking", "WalkJump", "Wave", "Yes"
        ]
    );
    for clip in ["Idle", "Wave", "Yes", "No", "ThumbsUp"] {
        assert!(info.animations.iter().any(|a| a == clip), "{clip}");
    }

    let b = info.bounding_box;
    for k in 0..3 {
        assert!(b.min[k].is_finite() && b.max[k].is_finite());
        assert!(b.min[k] < b.max[k], "axis {k}: {b:?}");
    }
    // A humanoid about 4.6 units tall standing on y = 0, arms out to ±3.3
    // (the box of the transformed mesh boxes, so a little generous).
    assert_close(b.min, [-3.312, -0.020, -1.343], 2e-3);
    assert_close(b.max, [3.307, 4.590, 1.413], 2e-3);
    let height = b.size()[1];
    assert!((4.0..5.0).contains(&height), "height {height}");

    assert_eq!(info.triangle_count, 3237);
    assert_eq!(info.vertex_count, 7214);
    assert_eq!(info.node_count, 84);
    assert_eq!(info.mesh_count, 19);
    assert_eq!(info.size_bytes, 584_468);
    assert_eq!(info.size_bytes, robot.len() as u64);
}

#[test]
fn format_comes_from_the_bytes_not_the_name() {
    let robot = robot();
    assert_eq!(ok(&robot, Some("avatar.gltf")).format, ModelFormat::Glb);
    assert_eq!(ok(&robot, Some("avatar.png")).format, ModelFormat::Glb);
    assert_eq!(ok(&robot, None).format, ModelFormat::Glb);
    let tri = bytes(&triangle());
    let info = ok(&tri, Some("avatar.glb"));
    assert_eq!(info.format, ModelFormat::Gltf);
    assert_eq!(info.format.media_type(), "model/gltf+json");
}

#[test]
fn truncated_robot_is_invalid() {
    let robot = robot();
    assert_invalid(&robot[..1000], "truncated");
    assert_invalid(&robot[..robot.len() - 100], "truncated");
    assert_invalid(&robot[..11], "truncated");
    assert_invalid(&robot[..12], "truncated");
    assert_invalid(&robot[..19], "truncated");
    // Header length fixed up to match: the chunk itself is now cut short.
    let mut cut = robot[..robot.len() - 100].to_vec();
    let len = cut.len() as u32;
    set_u32(&mut cut, 8, len);
    assert_invalid(&cut, "chunk 1");
}

#[test]
fn lying_lengths_are_invalid() {
    let robot = robot();
    let json_len = u32::from_le_bytes(robot[12..16].try_into().expect("4 bytes"));

    for lie in [
        json_len + 4,
        json_len - 4,
        json_len + 1,
        0,
        u32::MAX,
        robot.len() as u32,
    ] {
        let mut bad = robot.clone();
        set_u32(&mut bad, 12, lie);
        let e = err(&bad, None);
        assert!(
            matches!(e, ModelError::Invalid(_)),
            "JSON length {lie}: {e:?}"
        );
    }
    // Misaligned JSON length names the problem.
    let mut bad = robot.clone();
    set_u32(&mut bad, 12, json_len + 1);
    assert_invalid(&bad, "multiple of 4");

    // The BIN chunk length lies.
    let bin_at = 20 + json_len as usize;
    let bin_len = u32::from_le_bytes(robot[bin_at..bin_at + 4].try_into().expect("4 bytes"));
    for lie in [bin_len + 4, u32::MAX] {
        let mut bad = robot.clone();
        set_u32(&mut bad, bin_at, lie);
        assert_invalid(&bad, "claims");
    }
    let mut bad = robot.clone();
    set_u32(&mut bad, bin_at, bin_len - 4);
    assert!(matches!(err(&bad, None), ModelError::Invalid(_)));

    // The header's total length lies.
    for lie in [robot.len() as u32 + 1, robot.len() as u32 - 4, 0, 12] {
        let mut bad = robot.clone();
        set_u32(&mut bad, 8, lie);
        assert_invalid(&bad, "GLB header says");
    }
    // Trailing bytes after the file.
    let mut long = robot.clone();
    long.extend([0u8; 8]);
    assert_invalid(&long, "GLB header says");
    // The first chunk is not JSON.
    let mut bad = robot.clone();
    bad[16..20].copy_from_slice(b"BIN\0");
    assert_invalid(&bad, "first GLB chunk");
}

#[test]
fn the_robot_json_chunk_is_checked_like_a_gltf() {
    // Swap the JSON chunk of a GLB for one whose asset is glTF 1.0.
    let json_text = br#"{"asset":{"version":"1.0"},"nodes":{}}"#;
    let e = err(&glb(json_text, None), None);
    assert!(e.is_unsupported_type(), "{e:?}");
    assert!(e.message().contains("1.0"));
    // No asset at all inside a GLB: a broken GLB, not another file type.
    assert_invalid(&glb(br#"{"nodes":[]}"#, None), "asset");
    // JSON chunk that is not JSON.
    assert_invalid(&glb(b"{\"asset\": ", None), "not valid JSON");
}

// ---------------------------------------------------------------- other types

#[test]
fn non_models_are_unsupported() {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let random: Vec<u8> = (0..4096)
        .map(|_| (xorshift(&mut state) & 0xFF) as u8)
        .collect();
    let png =
        b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89".to_vec();
    let zip = b"PK\x03\x04\x14\0\0\0\x08\0robot.glb".to_vec();
    let fbx = b"Kaydara FBX Binary  \0\x1a\0".to_vec();
    let cases: [(&[u8], &str); 8] = [
        (&random, "not a glTF 2.0 model"),
        (&png, "PNG image"),
        (&zip, "ZIP archive"),
        (&fbx, "FBX"),
        (b"", "empty"),
        (b"[1, 2, 3]", "not a glTF 2.0 model"),
        (br#"{"hello": "world"}"#, "no \"asset\""),
        (br#"{"asset": "2.0"}"#, "no \"asset\""),
    ];
    for (data, needle) in cases {
        let e = err(data, Some("avatar.glb"));
        assert!(e.is_unsupported_type(), "{needle}: {e:?}");
        assert!(
            e.message().contains(needle),
            "{:?} lacks {needle:?}",
            e.message()
        );
        assert!(
            e.message().contains(".glb"),
            "{:?} should say what is accepted",
            e.message()
        );
        assert_eq!(e.to_string(), e.message());
    }
    // The name is quoted.
    assert!(
        err(&png, Some("photo.glb"))
            .message()
            .contains("\"photo.glb\"")
    );
}

#[test]
fn broken_json_is_invalid_when_named_gltf_or_cut_short() {
    let tri = bytes(&triangle());
    let cut = &tri[..tri.len() / 2];
    assert!(matches!(err(cut, Some("a.gltf")), ModelError::Invalid(_)));
    assert!(matches!(err(cut, None), ModelError::Invalid(_)));
    // Not JSON, not named .gltf: not a model.
    assert!(err(b"{ this is not json }", Some("notes.txt")).is_unsupported_type());
    assert!(matches!(
        err(b"{ this is not json }", Some("a.GLTF")),
        ModelError::Invalid(_)
    ));
    // A byte-order mark and leading whitespace are tolerated.
    let mut bom = b"\xEF\xBB\xBF \n".to_vec();
    bom.extend(&tri);
    assert_eq!(ok(&bom, None).format, ModelFormat::Gltf);
}

#[test]
fn other_gltf_versions_are_refused() {
    for version in ["1.0", "1.0.3"] {
        let mut v = triangle();
        v["asset"]["version"] = json!(version);
        let e = err(&bytes(&v), Some("old.gltf"));
        assert!(e.is_unsupported_type(), "{e:?}");
        assert!(e.message().contains("glTF 1.0"), "{}", e.message());
    }
    // glTF 1.0 layout without an asset object.
    let e = err(
        br#"{"meshes": {"m": {"primitives": []}}, "nodes": {}}"#,
        None,
    );
    assert!(
        e.is_unsupported_type() && e.message().contains("1.0"),
        "{e:?}"
    );

    for version in ["3.0", "2", "two", ""] {
        let mut v = triangle();
        v["asset"]["version"] = json!(version);
        let e = err(&bytes(&v), None);
        assert!(e.is_unsupported_type(), "{version}: {e:?}");
    }
    let mut v = triangle();
    v["asset"]["version"] = json!(2.0);
    assert!(matches!(err(&bytes(&v), None), ModelError::Invalid(_)));
    let mut v = triangle();
    v["asset"]["minVersion"] = json!("2.1");
    assert!(err(&bytes(&v), None).is_unsupported_type());
    let mut v = triangle();
    v["asset"]["version"] = json!("2.1");
    v["asset"]["minVersion"] = json!("2.0");
    ok(&bytes(&v), None);

    // Binary glTF 1.0 header.
    let mut robot = robot();
    set_u32(&mut robot, 4, 1);
    let e = err(&robot, None);
    assert!(
        e.is_unsupported_type() && e.message().contains("glTF 1.0"),
        "{e:?}"
    );
    set_u32(&mut robot, 4, 3);
    assert!(err(&robot, None).is_unsupported_type());
}

// ---------------------------------------------------------------- the duck

#[test]
fn duck_with_an_external_buffer_is_refused() {
    let duck = model("Duck.gltf");
    let e = err(&duck, Some("Duck.gltf"));
    println!("duck: {e}");
    assert!(matches!(e, ModelError::ExternalReference(_)), "{e:?}");
    assert!(!e.is_unsupported_type());
    assert!(e.message().contains("\"Duck0.bin\""), "{}", e.message());
    assert!(e.message().contains("\"DuckCM.png\""), "{}", e.message());
    assert!(e.message().contains(".glb"), "{}", e.message());
}

#[test]
fn external_references_are_refused_in_both_formats() {
    let mut v = triangle();
    v["buffers"][0]["uri"] = json!("triangle.bin");
    let e = err(&bytes(&v), None);
    assert_eq!(
        e.message(),
        "The file references an external buffer \"triangle.bin\" that is not part of the upload; export the model as .glb or a .gltf with embedded buffers."
    );
    let mut v = triangle();
    v["images"] = json!([{ "uri": "https://example.invalid/skin.png" }, { "uri": "data:image/png;base64,AAAA" }]);
    let e = err(&bytes(&v), None);
    assert!(matches!(e, ModelError::ExternalReference(_)), "{e:?}");
    assert!(
        e.message()
            .contains("external image \"https://example.invalid/skin.png\"")
    );
    // Many references are summarised.
    let mut v = triangle();
    v["images"] = json!(
        (0..9)
            .map(|i| json!({ "uri": format!("t{i}.png") }))
            .collect::<Vec<_>>()
    );
    let message = err(&bytes(&v), None).message().to_owned();
    assert!(message.contains("\"t4.png\" and 4 more"), "{message}");
    // Inside a GLB too.
    let mut v = triangle();
    v["buffers"][0]["uri"] = json!("../../etc/passwd");
    assert!(matches!(
        err(&glb(&bytes(&v), None), None),
        ModelError::ExternalReference(_)
    ));
}

// ---------------------------------------------------------------- hand-made models

#[test]
fn embedded_triangle_is_accepted_with_its_positions_as_bounds() {
    let info = ok(&bytes(&triangle()), Some("tri.gltf"));
    assert_eq!(info.format, ModelFormat::Gltf);
    assert_eq!(
        info.bounding_box,
        BoundingBox {
            min: [0.0, 0.0, 0.0],
            max: [1.0, 1.0, 0.0]
        }
    );
    assert_eq!(info.triangle_count, 1);
    assert_eq!(info.vertex_count, 3);
    assert_eq!(info.node_count, 1);
    assert_eq!(info.mesh_count, 1);
    assert!(info.animations.is_empty());
}

#[test]
fn node_transforms_move_the_bounds() {
    let mut v = triangle();
    v["nodes"][0]["translation"] = json!([1.0, 2.0, 3.0]);
    let b = ok(&bytes(&v), None).bounding_box;
    assert_eq!(
        b,
        BoundingBox {
            min: [1.0, 2.0, 3.0],
            max: [2.0, 3.0, 3.0]
        }
    );

    // 90° about +Z: (1,0,0) → (0,1,0), (0,1,0) → (-1,0,0).
    let mut v = triangle();
    let h = std::f32::consts::FRAC_1_SQRT_2;
    v["nodes"][0]["rotation"] = json!([0.0, 0.0, h, h]);
    let b = ok(&bytes(&v), None).bounding_box;
    assert_close(b.min, [-1.0, 0.0, 0.0], 1e-6);
    assert_close(b.max, [0.0, 1.0, 0.0], 1e-6);

    // Parent translation × child matrix (scale 2), the mesh instanced twice.
    let mut v = triangle();
    v["nodes"] = json!([
        { "translation": [10.0, 0.0, 0.0], "children": [1, 2] },
        { "mesh": 0, "matrix": [2.0, 0.0, 0.0, 0.0, 0.0, 2.0, 0.0, 0.0, 0.0, 0.0, 2.0, 0.0, 0.0, 0.0, 5.0, 1.0] },
        { "mesh": 0, "scale": [1.0, 1.0, 1.0], "translation": [0.0, -1.0, 0.0] }
    ]);
    let info = ok(&bytes(&v), None);
    assert_eq!(
        info.bounding_box,
        BoundingBox {
            min: [10.0, -1.0, 0.0],
            max: [12.0, 2.0, 5.0]
        }
    );
    assert_eq!(info.triangle_count, 2, "two instances");
    assert_eq!(info.vertex_count, 6);
    assert_eq!(info.mesh_count, 1);

    // Nodes outside the default scene do not count.
    let mut v = triangle();
    v["nodes"] = json!([{ "mesh": 0 }, { "mesh": 0, "translation": [100.0, 0.0, 0.0] }]);
    let b = ok(&bytes(&v), None).bounding_box;
    assert_eq!(b.max, [1.0, 1.0, 0.0]);
    // Without scenes, every root node counts.
    v.as_object_mut().expect("object").remove("scenes");
    v.as_object_mut().expect("object").remove("scene");
    let b = ok(&bytes(&v), None).bounding_box;
    assert_eq!(b.max, [101.0, 1.0, 0.0]);
    // `scene` picks the default scene.
    let mut v = triangle();
    v["nodes"] = json!([{ "mesh": 0 }, { "mesh": 0, "translation": [100.0, 0.0, 0.0] }]);
    v["scenes"] = json!([{ "nodes": [0] }, { "nodes": [1] }]);
    v["scene"] = json!(1);
    assert_eq!(ok(&bytes(&v), None).bounding_box.min, [100.0, 0.0, 0.0]);
}

#[test]
fn missing_position_bounds_are_computed_from_the_data() {
    let mut v = triangle();
    v["nodes"][0]["translation"] = json!([0.0, 0.0, -1.0]);
    let accessor = v["accessors"][0].as_object_mut().expect("object");
    accessor.remove("min");
    accessor.remove("max");
    let b = ok(&bytes(&v), None).bounding_box;
    assert_eq!(
        b,
        BoundingBox {
            min: [0.0, 0.0, -1.0],
            max: [1.0, 1.0, -1.0]
        }
    );

    // Sparse values override the dense data: vertex 1 moves to (4, -2, 7),
    // read from the key-time/translation view reused as sparse storage.
    let mut v = triangle();
    let mut buffer = triangle_buffer();
    buffer.extend(1u32.to_le_bytes()); // sparse index at 68
    buffer.extend(floats(&[4.0, -2.0, 7.0])); // sparse value at 72
    v["buffers"][0] = json!({ "byteLength": buffer.len(), "uri": data_uri(&buffer) });
    push(
        &mut v["bufferViews"],
        json!({ "buffer": 0, "byteOffset": 68, "byteLength": 16 }),
    );
    let accessor = v["accessors"][0].as_object_mut().expect("object");
    accessor.remove("min");
    accessor.remove("max");
    accessor.insert(
        "sparse".to_owned(),
        json!({ "count": 1,
                "indices": { "bufferView": 2, "byteOffset": 0, "componentType": 5125 },
                "values": { "bufferView": 2, "byteOffset": 4 } }),
    );
    let b = ok(&bytes(&v), None).bounding_box;
    assert_eq!(
        b,
        BoundingBox {
            min: [0.0, -2.0, 0.0],
            max: [4.0, 1.0, 7.0]
        }
    );

    // Sparse-only accessor (no buffer view): zeros plus the sparse value.
    v["accessors"][0]
        .as_object_mut()
        .expect("object")
        .remove("bufferView");
    let b = ok(&bytes(&v), None).bounding_box;
    assert_eq!(
        b,
        BoundingBox {
            min: [0.0, -2.0, 0.0],
            max: [4.0, 0.0, 7.0]
        }
    );

    // Sparse index beyond the count.
    let mut bad = buffer.clone();
    bad[68..72].copy_from_slice(&3u32.to_le_bytes());
    v["buffers"][0] = json!({ "byteLength": bad.len(), "uri": data_uri(&bad) });
    assert_invalid(&bytes(&v), "sparse indices");
}

#[test]
fn primitive_modes_and_indices_count_triangles() {
    let mut v = triangle();
    let mut buffer = triangle_buffer();
    buffer.extend([0u16, 1, 2, 0, 2, 1].iter().flat_map(|i| i.to_le_bytes()));
    v["buffers"][0] = json!({ "byteLength": buffer.len(), "uri": data_uri(&buffer) });
    push(
        &mut v["bufferViews"],
        json!({ "buffer": 0, "byteOffset": 68, "byteLength": 12 }),
    );
    push(
        &mut v["accessors"],
        json!({ "bufferView": 2, "componentType": 5123, "count": 6, "type": "SCALAR" }),
    );
    v["meshes"][0]["primitives"][0]["indices"] = json!(3);
    assert_eq!(ok(&bytes(&v), None).triangle_count, 2);
    v["meshes"][0]["primitives"][0]["mode"] = json!(5);
    assert_eq!(ok(&bytes(&v), None).triangle_count, 4);
    v["meshes"][0]["primitives"][0]["mode"] = json!(6);
    assert_eq!(ok(&bytes(&v), None).triangle_count, 4);
    v["meshes"][0]["primitives"][0]["mode"] = json!(1);
    let info = ok(&bytes(&v), None);
    assert_eq!(info.triangle_count, 0);
    assert_eq!(info.vertex_count, 3);
}

#[test]
fn animation_names_are_kept_in_order_with_defaults() {
    let mut v = triangle();
    v["animations"] = json!([
        animation(None),
        animation(Some("Wave")),
        animation(Some(" "))
    ]);
    assert_eq!(
        ok(&bytes(&v), None).animations,
        ["animation_0", "Wave", "animation_2"]
    );
}

#[test]
fn a_glb_with_a_bin_chunk_and_extra_chunks_is_read() {
    let buffer = triangle_buffer();
    let mut v = triangle();
    v["buffers"][0] = json!({ "byteLength": buffer.len() });
    let mut file = glb(&bytes(&v), Some(&buffer));
    let info = ok(&file, None);
    assert_eq!(info.format, ModelFormat::Glb);
    assert_eq!(info.bounding_box.max, [1.0, 1.0, 0.0]);

    // An unknown chunk after BIN is ignored.
    file.extend(4u32.to_le_bytes());
    file.extend(b"XTRA");
    file.extend([1, 2, 3, 4]);
    let len = file.len() as u32;
    set_u32(&mut file, 8, len);
    ok(&file, None);
    // ...but a second BIN chunk is not allowed.
    let at = file.len() - 8;
    file[at..at + 4].copy_from_slice(b"BIN\0");
    assert_invalid(&file, "second");

    // Buffer 0 without a URI but no BIN chunk.
    assert_invalid(&glb(&bytes(&v), None), "binary chunk");
    // BIN chunk shorter than the declared buffer.
    assert_invalid(&glb(&bytes(&v), Some(&buffer[..32])), "declares");
    // A second buffer without URI.
    let mut two = v.clone();
    push(&mut two["buffers"], json!({ "byteLength": 4 }));
    assert_invalid(&glb(&bytes(&two), Some(&buffer)), "only buffer 0");
}

#[test]
fn out_of_bounds_views_and_accessors_are_invalid() {
    let mut v = triangle();
    v["accessors"][0]["byteOffset"] = json!(4);
    assert_invalid(&bytes(&v), "reads past the end of buffer view 0");

    let mut v = triangle();
    v["accessors"][0]["count"] = json!(4);
    assert_invalid(&bytes(&v), "reads past the end of buffer view 0");

    let mut v = triangle();
    v["accessors"][0]["count"] = json!(u32::MAX);
    assert_invalid(&bytes(&v), "reads past the end");
    let mut v = triangle();
    v["accessors"][0]["count"] = json!(0);
    v["accessors"][0]["byteOffset"] = json!(1_000_000);
    assert_invalid(&bytes(&v), "no geometry");

    // Stride wide enough for 2 elements only.
    let mut v = triangle();
    v["bufferViews"][0]["byteStride"] = json!(16);
    assert_invalid(&bytes(&v), "reads past the end");
    // Stride narrower than an element.
    let mut v = triangle();
    v["bufferViews"][0]["byteStride"] = json!(8);
    assert_invalid(&bytes(&v), "steps only 8 bytes");

    let mut v = triangle();
    v["bufferViews"][1]["byteLength"] = json!(40);
    assert_invalid(&bytes(&v), "Buffer view 1");

    let mut v = triangle();
    v["bufferViews"][0]["byteOffset"] = json!(u64::MAX);
    assert!(matches!(err(&bytes(&v), None), ModelError::Invalid(_)));

    // Buffer larger than its data.
    let mut v = triangle();
    v["buffers"][0]["byteLength"] = json!(1000);
    assert_invalid(&bytes(&v), "declares 1000 bytes");

    // Index to an accessor that does not exist (the gltf crate's own
    // validator would index out of bounds on this one).
    let mut v = triangle();
    v["meshes"][0]["primitives"][0]["attributes"]["POSITION"] = json!(7);
    assert_invalid(&bytes(&v), "accessor 7");
    let mut v = triangle();
    v["meshes"][0]["primitives"][0]["indices"] = json!(9);
    assert_invalid(&bytes(&v), "not valid glTF 2.0");
    let mut v = triangle();
    v["nodes"][0]["mesh"] = json!(3);
    assert_invalid(&bytes(&v), "nodes[0].mesh");
}

#[test]
fn bad_embedded_data_is_invalid() {
    let mut v = triangle();
    v["buffers"][0]["uri"] = json!("data:application/octet-stream;base64,@@@@");
    assert_invalid(&bytes(&v), "not valid base64");
    let mut v = triangle();
    v["buffers"][0]["uri"] = json!("data:application/octet-stream,abc");
    assert_invalid(&bytes(&v), "not base64");
    let mut v = triangle();
    v["buffers"][0]["uri"] = json!("data:nocomma");
    assert_invalid(&bytes(&v), "no comma");
    // Unpadded base64 is tolerated; the upper-case scheme too.
    let mut v = triangle();
    let uri = data_uri(&triangle_buffer()[..35])
        .trim_end_matches('=')
        .replace("data:", "DATA:");
    v["buffers"][0] = json!({ "byteLength": 35, "uri": uri });
    v["bufferViews"] = json!([{ "buffer": 0, "byteLength": 35 }]);
    v["accessors"] = json!([{ "bufferView": 0, "componentType": 5121, "count": 35, "type": "SCALAR" },
                            { "bufferView": 0, "componentType": 5126, "count": 2, "type": "VEC3",
                              "min": [0, 0, 0], "max": [1, 0, 0] }]);
    v["meshes"][0]["primitives"][0]["attributes"]["POSITION"] = json!(1);
    ok(&bytes(&v), None);
}

#[test]
fn non_finite_or_odd_positions_are_invalid() {
    let mut v = triangle();
    v["accessors"][0]["max"] = json!([1.0, 1e39, 0.0]);
    assert_invalid(&bytes(&v), "min/max");
    let mut v = triangle();
    v["accessors"][0]["min"] = json!([2.0, 0.0, 0.0]);
    assert_invalid(&bytes(&v), "min above max");
    let mut v = triangle();
    v["nodes"][0]["scale"] = json!([1e38, 1e38, 1e38]);
    v["nodes"][0]["translation"] = json!([3e38, 0, 0]);
    assert_invalid(&bytes(&v), "not a finite number");
    let mut v = triangle();
    v["nodes"][0]["rotation"] = json!([0, 0, 0, 0]);
    assert_invalid(&bytes(&v), "rotation");
    // Positions that are NaN in the data, with no min/max to trust.
    let mut v = triangle();
    let mut buffer = triangle_buffer();
    buffer[0..4].copy_from_slice(&f32::NAN.to_le_bytes());
    v["buffers"][0] = json!({ "byteLength": buffer.len(), "uri": data_uri(&buffer) });
    let accessor = v["accessors"][0].as_object_mut().expect("object");
    accessor.remove("min");
    accessor.remove("max");
    assert_invalid(&bytes(&v), "not a finite number");
    // Integer positions (quantized) are not read.
    let mut v = triangle();
    v["accessors"][0]["componentType"] = json!(5123);
    assert_invalid(&bytes(&v), "float VEC3");
}

#[test]
fn models_without_geometry_are_invalid() {
    let mut v = triangle();
    v["nodes"][0]
        .as_object_mut()
        .expect("object")
        .remove("mesh");
    assert_invalid(&bytes(&v), "no geometry");
    let mut v = triangle();
    v["scenes"] = json!([{ "nodes": [] }]);
    assert_invalid(&bytes(&v), "no geometry");
    let v = json!({ "asset": { "version": "2.0" } });
    assert_invalid(&bytes(&v), "no geometry");
}

#[test]
fn node_graphs_must_be_forests() {
    let mut v = triangle();
    v["nodes"] = json!([{ "children": [1] }, { "children": [0], "mesh": 0 }]);
    assert_invalid(&bytes(&v), "cycle");
    let mut v = triangle();
    v["nodes"] = json!([{ "children": [0], "mesh": 0 }]);
    assert_invalid(&bytes(&v), "own child");
    // A cycle away from the scene's tree is still refused.
    let mut v = triangle();
    v["nodes"] =
        json!([{ "mesh": 0 }, { "children": [2] }, { "children": [3] }, { "children": [1] }]);
    assert_invalid(&bytes(&v), "cycle");
    let mut v = triangle();
    v["nodes"] = json!([{ "children": [2] }, { "children": [2] }, { "mesh": 0 }]);
    v["scenes"] = json!([{ "nodes": [0, 1] }]);
    assert_invalid(&bytes(&v), "only one parent");
    let mut v = triangle();
    v["nodes"] = json!([{ "children": [1] }, { "mesh": 0 }]);
    v["scenes"] = json!([{ "nodes": [0, 1] }]);
    assert_invalid(&bytes(&v), "child of node 0");
    let mut v = triangle();
    v["scenes"] = json!([{ "nodes": [0, 0] }]);
    assert_invalid(&bytes(&v), "twice");
}

#[test]
fn limits_are_enforced() {
    // Too many nodes: refused by the census before deserialization.
    let mut v = triangle();
    v["nodes"] = Value::Array(vec![json!({}); MAX_NODES as usize + 1]);
    let e = err(&bytes(&v), None);
    assert!(matches!(e, ModelError::TooComplex(_)), "{e:?}");
    assert!(e.message().contains("10001 nodes"), "{}", e.message());

    let mut v = triangle();
    let prims = vec![json!({ "attributes": { "POSITION": 0 } }); 200];
    v["meshes"] = Value::Array(vec![json!({ "primitives": prims }); 101]);
    assert!(
        err(&bytes(&v), None)
            .message()
            .contains("20200 mesh primitives")
    );

    let mut v = triangle();
    v["animations"] = Value::Array(vec![animation(None); MAX_ANIMATIONS as usize + 1]);
    assert!(matches!(err(&bytes(&v), None), ModelError::TooComplex(_)));

    // A chain deeper than the limit.
    let depth = MAX_NODE_DEPTH + 1;
    let mut nodes: Vec<Value> = (0..depth - 1)
        .map(|i| json!({ "children": [i + 1] }))
        .collect();
    nodes.push(json!({ "mesh": 0 }));
    let mut v = triangle();
    v["nodes"] = Value::Array(nodes);
    let e = err(&bytes(&v), None);
    assert!(
        matches!(e, ModelError::TooComplex(_)) && e.message().contains("levels deep"),
        "{e:?}"
    );
    // At the limit it is fine.
    let mut nodes: Vec<Value> = (0..MAX_NODE_DEPTH - 1)
        .map(|i| json!({ "children": [i + 1] }))
        .collect();
    nodes.push(json!({ "mesh": 0, "translation": [0.0, 1.0, 0.0] }));
    let mut v = triangle();
    v["nodes"] = Value::Array(nodes);
    assert_eq!(ok(&bytes(&v), None).bounding_box.min, [0.0, 1.0, 0.0]);

    // An accessor too large to walk.
    let mut v = triangle();
    v["accessors"][0] = json!({ "componentType": 5126, "count": MAX_ACCESSOR_COUNT + 1, "type": "VEC3",
                                "sparse": { "count": 1,
                                            "indices": { "bufferView": 0, "componentType": 5125 },
                                            "values": { "bufferView": 0 } } });
    assert!(matches!(err(&bytes(&v), None), ModelError::TooComplex(_)));

    // A file over the size limit.
    let big = vec![b' '; MAX_MODEL_BYTES as usize + 1];
    assert!(matches!(err(&big, None), ModelError::TooComplex(_)));
}

#[test]
fn required_extensions() {
    let mut v = triangle();
    v["extensionsUsed"] = json!(["KHR_draco_mesh_compression"]);
    v["extensionsRequired"] = json!(["KHR_draco_mesh_compression"]);
    assert_invalid(&bytes(&v), "\"KHR_draco_mesh_compression\"");
    let mut v = triangle();
    v["extensionsUsed"] = json!([
        "KHR_materials_unlit",
        "KHR_texture_transform",
        "EXT_unknown"
    ]);
    v["extensionsRequired"] = json!(["KHR_materials_unlit", "KHR_texture_transform"]);
    v["materials"] = json!([{ "extensions": { "KHR_materials_unlit": {} } }]);
    v["meshes"][0]["primitives"][0]["material"] = json!(0);
    ok(&bytes(&v), None);
}

#[test]
fn custom_attributes_and_extras_are_accepted() {
    let mut v = triangle();
    v["meshes"][0]["primitives"][0]["attributes"]["_BATCHID"] = json!(1);
    v["nodes"][0]["extras"] = json!({ "anything": [1, 2, { "x": null }] });
    ok(&bytes(&v), None);
}

// ---------------------------------------------------------------- never panics

#[test]
fn deeply_nested_json_is_refused_without_overflowing_the_stack() {
    let depth = 100_000;
    for place in [
        "extras",
        "asset\":{\"version\":\"2.0\"},\"nodes",
        "unknownKey",
    ] {
        let mut text = format!("{{\"asset\":{{\"version\":\"2.0\"}},\"{place}\":");
        text.push_str(&"[".repeat(depth));
        text.push_str(&"]".repeat(depth));
        text.push('}');
        let e = err(text.as_bytes(), None);
        assert!(matches!(e, ModelError::Invalid(_)), "{place}: {e:?}");
        let e = err(&glb(text.as_bytes(), None), None);
        assert!(matches!(e, ModelError::Invalid(_)), "{place}: {e:?}");
    }
}

#[test]
fn millions_of_bad_indices_are_reported_once() {
    let mut v = triangle();
    v["nodes"][0]["children"] = Value::Array(vec![json!(4_000_000); 1_000_000]);
    let e = err(&bytes(&v), None);
    assert!(e.message().contains("more problems"), "{}", e.message());
    assert!(e.message().len() < 300, "{}", e.message());
}

fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn mutated_robots_never_panic() {
    let robot = robot();
    let json_end = 20 + u32::from_le_bytes(robot[12..16].try_into().expect("4 bytes")) as usize;
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut accepted = 0;
    let mut kinds = [0usize; 4];
    const MUTATIONS: usize = 2_000;
    for round in 0..MUTATIONS {
        let mut bytes = robot.clone();
        let edits = 1 + (xorshift(&mut state) % 4) as usize;
        for _ in 0..edits {
            let r = xorshift(&mut state);
            // Half the edits land in the header and JSON, where they matter most.
            let at = if round % 2 == 0 {
                (r % json_end as u64) as usize
            } else {
                (r % bytes.len() as u64) as usize
            };
            let value = (xorshift(&mut state) >> 24) as u8;
            bytes[at] = match r % 3 {
                // In the JSON, digits turn into other digits more often.
                0 if at < json_end && bytes[at].is_ascii_digit() => b'0' + value % 10,
                1 => bytes[at] ^ (1 << (value % 8)),
                _ => value,
            };
        }
        match inspect(&bytes, Some("mutant.glb")) {
            Ok(info) => {
                accepted += 1;
                let b = info.bounding_box;
                assert!(b.min.iter().chain(&b.max).all(|v| v.is_finite()), "{b:?}");
            }
            Err(e) => {
                assert!(!e.message().is_empty());
                kinds[match e {
                    ModelError::UnsupportedType(_) => 0,
                    ModelError::Invalid(_) => 1,
                    ModelError::ExternalReference(_) => 2,
                    ModelError::TooComplex(_) => 3,
                }] += 1;
            }
        }
    }
    println!(
        "{MUTATIONS} mutants: {accepted} accepted; refused as unsupported {}, invalid {}, external {}, too complex {}",
        kinds[0], kinds[1], kinds[2], kinds[3]
    );
    assert!(kinds[1] > 0 && accepted > 0);
}

/// Replaces every number in the triangle's JSON, one at a time, with hostile
/// values, and every string with odd ones.
#[test]
fn hostile_values_in_every_field_never_panic() {
    fn paths(v: &Value, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        match v {
            Value::Object(map) => {
                for (k, child) in map {
                    prefix.push(k.clone());
                    paths(child, prefix, out);
                    prefix.pop();
                }
            }
            Value::Array(items) => {
                for (i, child) in items.iter().enumerate() {
                    prefix.push(i.to_string());
                    paths(child, prefix, out);
                    prefix.pop();
                }
            }
            _ => out.push(prefix.clone()),
        }
    }
    fn slot<'a>(v: &'a mut Value, path: &[String]) -> &'a mut Value {
        path.iter().fold(v, |v, key| match v {
            Value::Array(items) => &mut items[key.parse::<usize>().expect("index")],
            other => &mut other[key.as_str()],
        })
    }

    let mut base = triangle();
    base["animations"] = json!([animation(Some("Wave"))]);
    base["meshes"][0]["primitives"][0]["indices"] = json!(1);
    base["accessors"][0]["sparse"] = json!({ "count": 1,
        "indices": { "bufferView": 1, "byteOffset": 0, "componentType": 5121 },
        "values": { "bufferView": 1, "byteOffset": 4 } });
    let mut leaves = Vec::new();
    paths(&base, &mut Vec::new(), &mut leaves);
    let hostile = [
        json!(0),
        json!(1),
        json!(3),
        json!(-1),
        json!(2.5),
        json!(4_294_967_295u64),
        json!(4_294_967_296u64),
        json!(u64::MAX),
        json!(1e300),
        json!(null),
        json!("x"),
        json!([]),
        json!({}),
    ];
    let mut runs = 0;
    for leaf in &leaves {
        for value in &hostile {
            let mut v = base.clone();
            *slot(&mut v, leaf) = value.clone();
            let _ = inspect(&bytes(&v), None);
            let _ = inspect(&glb(&bytes(&v), None), None);
            runs += 2;
        }
    }
    println!("{runs} hostile variants of {} fields", leaves.len());
    assert!(runs > 100);
}
