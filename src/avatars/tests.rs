//! The avatar service built alone: a real store and files, a one-triangle
//! model made here, and the persona side seen through its port.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;

use base64::Engine;
use parking_lot::Mutex;
use serde_json::json;

use super::service::{AvatarError, AvatarService, PersonaAvatar, PersonaLinks, Upload};
use crate::auth::model::Role;
use crate::db::StoreError;
use crate::ids::{OrgId, PersonaId};
use crate::testkit;

/// Personas as a table the test fills, and the changes announced.
#[derive(Default)]
struct Personas {
    rows: Mutex<HashMap<(OrgId, PersonaId), PersonaAvatar>>,
    changed: Mutex<Vec<PersonaId>>,
}

#[async_trait::async_trait]
impl PersonaLinks for Personas {
    async fn persona_avatar(
        &self,
        org: OrgId,
        persona: PersonaId,
    ) -> Result<Option<PersonaAvatar>, StoreError> {
        Ok(self.rows.lock().get(&(org, persona)).cloned())
    }

    async fn changed(&self, persona: PersonaId) {
        self.changed.lock().push(persona);
    }
}

/// A one-triangle `.gltf` with its buffer inline and two clips.
fn model(clips: &[&str]) -> Vec<u8> {
    let floats = |v: &[f32]| v.iter().flat_map(|f| f.to_le_bytes()).collect::<Vec<u8>>();
    let mut buffer = floats(&[0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0]);
    buffer.extend(floats(&[0.0, 1.0]));
    buffer.extend(floats(&[0.0, 0.0, 0.0, 0.0, 1.0, 0.0]));
    let uri = format!(
        "data:application/octet-stream;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(&buffer)
    );
    let animations: Vec<_> = clips
        .iter()
        .map(|name| {
            json!({
                "name": name,
                "channels": [{ "sampler": 0, "target": { "node": 0, "path": "translation" } }],
                "samplers": [{ "input": 1, "output": 2 }]
            })
        })
        .collect();
    serde_json::to_vec(&json!({
        "asset": { "version": "2.0" },
        "scene": 0,
        "scenes": [{ "nodes": [0] }],
        "nodes": [{ "mesh": 0 }],
        "meshes": [{ "primitives": [{ "attributes": { "POSITION": 0 } }] }],
        "buffers": [{ "byteLength": buffer.len(), "uri": uri }],
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
        ],
        "animations": animations
    }))
    .expect("JSON")
}

fn upload(dir: &std::path::Path, bytes: &[u8], persona: Option<PersonaId>) -> Upload {
    let mut file = tempfile::NamedTempFile::new_in(dir).expect("a temporary file");
    file.write_all(bytes).expect("written");
    Upload {
        temp: file.into_temp_path(),
        file_name: "tutor.gltf".into(),
        sha256: "0".repeat(64),
        name: None,
        persona_id: persona.map(|p| p.to_string()),
    }
}

#[actix_web::test]
async fn a_model_is_read_kept_matched_to_gestures_and_announced_to_its_persona() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (settings, db) = testkit::sqlite(dir.path()).await;
    let teacher = testkit::member(&db, Role::Teacher).await;
    let stranger = testkit::member(&db, Role::Teacher).await;
    let quotas = testkit::quotas(&settings, &db);
    let personas = Arc::new(Personas::default());
    let persona = PersonaId::new();
    personas.rows.lock().insert(
        (teacher.org_id, persona),
        PersonaAvatar {
            avatar_model_id: None,
            gestures: "{}".into(),
        },
    );
    let avatars = AvatarService::new(
        db,
        dir.path().to_path_buf(),
        "test".into(),
        personas.clone(),
        quotas,
    );

    let detail = avatars
        .create(
            teacher.org_id,
            teacher.user_id,
            upload(dir.path(), &model(&["Wave", "Idle"]), Some(persona)),
        )
        .await
        .expect("accepted");
    assert_eq!(detail.model.name, "tutor");
    assert_eq!(detail.persona_id, Some(persona));
    let version = detail.current().expect("version 1");
    assert_eq!(
        version.animations(),
        vec!["Wave".to_owned(), "Idle".to_owned()]
    );
    assert_eq!(*personas.changed.lock(), vec![persona], "PersonaChanged");

    personas.rows.lock().insert(
        (teacher.org_id, persona),
        PersonaAvatar {
            avatar_model_id: Some(detail.model.id),
            gestures: r#"{"nodding": "Wave"}"#.into(),
        },
    );
    let avatar = avatars
        .avatar(teacher.org_id, persona)
        .await
        .expect("the persona's avatar");
    assert_eq!(avatar.gestures["waving"].as_deref(), Some("Wave"));
    assert_eq!(avatar.gestures["idle"].as_deref(), Some("Idle"));
    assert_eq!(
        avatar.gestures["nodding"].as_deref(),
        Some("Wave"),
        "override"
    );

    // Another school sees nothing of it and cannot attach its persona.
    assert!(matches!(
        avatars.get(stranger.org_id, detail.model.id).await,
        Err(AvatarError::NotFound)
    ));
    assert!(matches!(
        avatars
            .create(
                stranger.org_id,
                stranger.user_id,
                upload(dir.path(), &model(&["Wave"]), Some(persona)),
            )
            .await,
        Err(AvatarError::Invalid {
            field: "persona_id",
            ..
        })
    ));
    assert!(matches!(
        avatars
            .create(
                teacher.org_id,
                teacher.user_id,
                upload(dir.path(), b"not a model at all", None),
            )
            .await,
        Err(AvatarError::Refused(_))
    ));

    avatars
        .delete(teacher.org_id, detail.model.id)
        .await
        .expect("deleted");
    assert!(matches!(
        avatars.get(teacher.org_id, detail.model.id).await,
        Err(AvatarError::NotFound)
    ));
}
