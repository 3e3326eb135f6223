//! 3D avatars through the real server: a teacher uploads the robot, sees its
//! clips and bounding box, attaches it to a persona whose gestures map to
//! real clips; signed URLs serve the exact bytes with ranges, validators and
//! expiry; versions stay downloadable until the model is deleted; hostile
//! files are refused with a clear reason and leave nothing behind.

use std::time::Duration;

use reqwest::Method;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};

use crate::helpers::{Backend, Member, TestApp, assert_problem, email, spawn_app, spawn_app_with};
use crate::on_both_databases;

on_both_databases!(
    a_teacher_uploads_the_robot_and_its_gestures_map_to_clips,
    signed_urls_serve_the_exact_bytes,
    expired_urls_are_refused,
    versions_stay_downloadable_until_the_model_is_deleted,
    hostile_files_are_refused_and_leave_nothing,
);

const ROBOT_CLIPS: [&str; 14] = [
    "Dance", "Death", "Idle", "Jump", "No", "Punch", "Running", "Sitting", "Standing", "ThumbsUp",
    "Walking", "WalkJump", "Wave", "Yes",
];
const ROBOT_BYTES: usize = 584_468;

/// A model from `tests/fixtures/models` (see its README for sources and licences).
pub fn model_file(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/models")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn robot() -> Vec<u8> {
    model_file("RobotExpressive.glb")
}

/// Posts a model upload form to `path`.
pub async fn post_model(
    app: &TestApp,
    who: &Member,
    path: &str,
    file: Option<(&str, Vec<u8>)>,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    let mut form = Form::new();
    for (k, v) in fields {
        form = form.text((*k).to_owned(), (*v).to_owned());
    }
    if let Some((name, bytes)) = file {
        form = form.part("file", Part::bytes(bytes).file_name(name.to_owned()));
    }
    app.authed(Method::POST, path, &who.access)
        .multipart(form)
        .send()
        .await
        .unwrap()
}

/// Uploads the robot as a new model and returns it.
pub async fn upload_robot(app: &TestApp, who: &Member, fields: &[(&str, &str)]) -> Value {
    let res = post_model(
        app,
        who,
        "/v1/models",
        Some(("RobotExpressive.glb", robot())),
        fields,
    )
    .await;
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    res.json().await.unwrap()
}

async fn get_json(app: &TestApp, who: &Member, path: &str) -> Value {
    let res = app
        .authed(Method::GET, path, &who.access)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{path}: {}", res.text().await.unwrap());
    res.json().await.unwrap()
}

/// Fetches a signed URL with no bearer token.
fn fetch(app: &TestApp, url: &str) -> reqwest::RequestBuilder {
    assert!(url.starts_with("/assets/"), "{url}");
    app.client.get(app.url(url))
}

/// Number of files under `dir` (recursively).
fn files_under(dir: &std::path::Path) -> usize {
    match std::fs::read_dir(dir) {
        Err(_) => 0,
        Ok(rd) => rd
            .flatten()
            .map(|e| {
                if e.path().is_dir() {
                    files_under(&e.path())
                } else {
                    1
                }
            })
            .sum(),
    }
}

fn model_files(app: &TestApp) -> usize {
    files_under(&app.dir.path().join("files").join("models"))
}

fn leftovers(app: &TestApp) -> usize {
    model_files(app) + files_under(&app.dir.path().join("tmp"))
}

async fn teacher_of(app: &TestApp) -> (Member, Member) {
    let admin = app.register("Avatar School", &email("admin")).await;
    let teacher = app
        .invite_and_accept(&admin, &email("teacher"), "teacher")
        .await;
    (admin, teacher)
}

async fn create_persona(app: &TestApp, who: &Member, name: &str) -> String {
    let p = crate::personas::create_persona(app, who, json!({ "name": name })).await;
    p["id"].as_str().unwrap().to_owned()
}

fn close(a: &Value, b: f64) -> bool {
    (a.as_f64().unwrap() - b).abs() < 2e-3
}

async fn a_teacher_uploads_the_robot_and_its_gestures_map_to_clips(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (admin, teacher) = teacher_of(&app).await;
    let student = app
        .invite_and_accept(&admin, &email("student"), "student")
        .await;
    let persona = create_persona(&app, &teacher, "Robot tutor").await;

    // Students may not upload.
    let res = post_model(
        &app,
        &student,
        "/v1/models",
        Some(("RobotExpressive.glb", robot())),
        &[("name", "Mine")],
    )
    .await;
    assert_problem(res, 403, "forbidden").await;

    // A persona of nowhere, an over-long name: refused, nothing kept.
    let res = post_model(
        &app,
        &teacher,
        "/v1/models",
        Some(("RobotExpressive.glb", robot())),
        &[("persona_id", &uuid::Uuid::new_v4().to_string())],
    )
    .await;
    let p = assert_problem(res, 422, "validation_failed").await;
    assert_eq!(p["field"], "persona_id");
    let res = post_model(
        &app,
        &teacher,
        "/v1/models",
        Some(("RobotExpressive.glb", robot())),
        &[("name", &"n".repeat(101))],
    )
    .await;
    let p = assert_problem(res, 422, "validation_failed").await;
    assert_eq!(p["field"], "name");
    assert_eq!(leftovers(&app), 0);

    // The teacher uploads the robot for the persona.
    let model = upload_robot(
        &app,
        &teacher,
        &[("name", "Robot"), ("persona_id", &persona)],
    )
    .await;
    let id = model["id"].as_str().unwrap().to_owned();
    assert_eq!(model["name"], "Robot");
    assert_eq!(model["version"], 1);
    assert_eq!(model["size_bytes"], ROBOT_BYTES);
    assert_eq!(model["media_type"], "model/gltf-binary");
    assert_eq!(model["triangle_count"], 3237);
    assert_eq!(model["vertex_count"], 7214);
    assert_eq!(model["persona_id"], persona.as_str());
    let clips: Vec<&str> = model["animations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(clips, ROBOT_CLIPS);
    let b = &model["bounding_box"];
    for (k, (lo, hi)) in [(-3.312, 3.307), (-0.020, 4.590), (-1.343, 1.413)]
        .into_iter()
        .enumerate()
    {
        assert!(close(&b["min"][k], lo) && close(&b["max"][k], hi), "{b}");
    }
    let versions = model["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 1);
    assert_eq!(versions[0]["version"], 1);
    assert_eq!(versions[0]["size_bytes"], ROBOT_BYTES);
    assert!(versions[0]["created_at"].is_string());
    assert_eq!(versions[0]["url"], model["url"]);
    assert!(
        model["url"]
            .as_str()
            .unwrap()
            .starts_with("/assets/models/")
    );
    let expires =
        chrono::DateTime::parse_from_rfc3339(model["url_expires_at"].as_str().unwrap()).unwrap();
    let left = expires.timestamp() - chrono::Utc::now().timestamp();
    assert!((3000..=3600).contains(&left), "{left}");
    // Stored by generated key, never the client's name.
    assert_eq!(model_files(&app), 1);
    assert!(!model["url"].as_str().unwrap().contains("RobotExpressive"));

    // The persona uses it; every member sees it.
    let p = get_json(&app, &student, &format!("/v1/personas/{persona}")).await;
    assert_eq!(p["avatar_model_id"], id.as_str());
    let list = get_json(&app, &student, "/v1/models").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert_eq!(list["items"][0]["id"], id.as_str());
    assert!(list["next_cursor"].is_null());
    let one = get_json(&app, &student, &format!("/v1/models/{id}")).await;
    assert_eq!(one["animations"], model["animations"]);

    // The avatar maps the tutor's gestures to real clips.
    let avatar = get_json(&app, &student, &format!("/v1/personas/{persona}/avatar")).await;
    assert_eq!(avatar["model"]["id"], id.as_str());
    let g = &avatar["gestures"];
    assert_eq!(g["waving"], "Wave");
    assert_eq!(g["nodding"], "Yes");
    assert_eq!(g["shaking_head"], "No");
    assert_eq!(g["idle"], "Idle");
    assert_eq!(g["happy"], "ThumbsUp");
    for gesture in [
        "idle",
        "talking",
        "thinking",
        "happy",
        "sad",
        "excited",
        "greeting",
        "explaining",
        "pointing",
        "nodding",
        "shaking_head",
        "waving",
    ] {
        let v = &g[gesture];
        assert!(
            v.is_null() || ROBOT_CLIPS.contains(&v.as_str().unwrap()),
            "{gesture}: {v}"
        );
    }

    // Overrides: a real clip wins, null switches a gesture off, a clip the
    // model lacks is refused.
    let res = app
        .authed(
            Method::PATCH,
            &format!("/v1/personas/{persona}"),
            &teacher.access,
        )
        .json(&json!({"gestures": {"waving": "Dance", "idle": null}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    let avatar = get_json(&app, &student, &format!("/v1/personas/{persona}/avatar")).await;
    assert_eq!(avatar["gestures"]["waving"], "Dance");
    assert!(avatar["gestures"]["idle"].is_null());
    assert_eq!(avatar["gestures"]["nodding"], "Yes");
    let res = app
        .authed(
            Method::PATCH,
            &format!("/v1/personas/{persona}"),
            &teacher.access,
        )
        .json(&json!({"gestures": {"waving": "Moonwalk"}}))
        .send()
        .await
        .unwrap();
    let p = assert_problem(res, 422, "validation_failed").await;
    assert_eq!(p["field"], "gestures");
    assert!(p["detail"].as_str().unwrap().contains("Moonwalk"), "{p}");

    // A persona without a model: no model, every gesture null.
    let bare = create_persona(&app, &teacher, "Plain tutor").await;
    let avatar = get_json(&app, &student, &format!("/v1/personas/{bare}/avatar")).await;
    assert!(avatar["model"].is_null());
    let gestures = avatar["gestures"].as_object().unwrap();
    assert_eq!(gestures.len(), 12);
    assert!(gestures.values().all(Value::is_null), "{gestures:?}");
    // Unknown persona or model: 404.
    let res = app
        .authed(
            Method::GET,
            &format!("/v1/personas/{}/avatar", uuid::Uuid::new_v4()),
            &student.access,
        )
        .send()
        .await
        .unwrap();
    assert_problem(res, 404, "not_found").await;
    let res = app
        .authed(
            Method::GET,
            &format!("/v1/models/{}", uuid::Uuid::new_v4()),
            &student.access,
        )
        .send()
        .await
        .unwrap();
    assert_problem(res, 404, "not_found").await;
    // Students may not delete or add versions either.
    let res = app
        .authed(Method::DELETE, &format!("/v1/models/{id}"), &student.access)
        .send()
        .await
        .unwrap();
    assert_problem(res, 403, "forbidden").await;

    // Without a name, the file name (without extension) is used.
    let unnamed = upload_robot(&app, &teacher, &[]).await;
    assert_eq!(unnamed["name"], "RobotExpressive");
    assert!(unnamed["persona_id"].is_null());

    // The counters moved.
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("bwenge_model_uploads_total{format=\"glb\"}"),
        "{metrics}"
    );
}

async fn signed_urls_serve_the_exact_bytes(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (_, teacher) = teacher_of(&app).await;
    let model = upload_robot(&app, &teacher, &[("name", "Robot")]).await;
    let url = model["url"].as_str().unwrap().to_owned();
    let bytes = robot();

    // The whole file, with its type and validators; no bearer token.
    let res = fetch(&app, &url).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let h = res.headers().clone();
    assert_eq!(h["content-type"], "model/gltf-binary");
    assert_eq!(h["accept-ranges"], "bytes");
    assert_eq!(h["content-length"], ROBOT_BYTES.to_string().as_str());
    assert_eq!(h["x-content-type-options"], "nosniff");
    let etag = h["etag"].to_str().unwrap().to_owned();
    assert!(
        etag.starts_with("\"sha256-") && etag.ends_with('"'),
        "{etag}"
    );
    let cache = h["cache-control"].to_str().unwrap();
    let max_age: u64 = cache
        .strip_prefix("private, max-age=")
        .unwrap_or_else(|| panic!("{cache}"))
        .parse()
        .unwrap();
    assert!((3000..=3600).contains(&max_age), "{cache}");
    let body = res.bytes().await.unwrap();
    assert_eq!(body.len(), bytes.len());
    assert!(body[..] == bytes[..], "the served bytes differ");

    // Ranges.
    let res = fetch(&app, &url)
        .header("range", "bytes=100-1099")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 206);
    assert_eq!(
        res.headers()["content-range"],
        format!("bytes 100-1099/{ROBOT_BYTES}").as_str()
    );
    assert_eq!(res.headers()["content-type"], "model/gltf-binary");
    let part = res.bytes().await.unwrap();
    assert!(part[..] == bytes[100..1100]);
    let res = fetch(&app, &url)
        .header("range", "bytes=-500")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 206);
    assert_eq!(
        res.headers()["content-range"],
        format!(
            "bytes {}-{}/{ROBOT_BYTES}",
            ROBOT_BYTES - 500,
            ROBOT_BYTES - 1
        )
        .as_str()
    );
    assert!(res.bytes().await.unwrap()[..] == bytes[ROBOT_BYTES - 500..]);
    // Past the end: 416 with the length.
    let res = fetch(&app, &url)
        .header("range", format!("bytes={ROBOT_BYTES}-"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.headers()["content-range"],
        format!("bytes */{ROBOT_BYTES}").as_str()
    );
    assert_problem(res, 416, "range_not_satisfiable").await;
    // An If-Range for another version: the whole file.
    let res = fetch(&app, &url)
        .header("range", "bytes=0-9")
        .header("if-range", "\"sha256-other\"")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.bytes().await.unwrap().len(), ROBOT_BYTES);

    // Revalidation.
    let res = fetch(&app, &url)
        .header("if-none-match", etag.as_str())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 304);
    assert_eq!(res.headers()["etag"], etag.as_str());
    assert!(res.headers().contains_key("cache-control"));
    assert!(res.bytes().await.unwrap().is_empty());
    let res = fetch(&app, &url)
        .header("if-none-match", "\"sha256-other\"")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    // HEAD: the headers, no body.
    let res = app.client.head(app.url(&url)).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()["content-length"],
        ROBOT_BYTES.to_string().as_str()
    );
    assert_eq!(res.headers()["etag"], etag.as_str());
    assert!(res.bytes().await.unwrap().is_empty());

    // Tampering: signature, expiry, key; missing parts.
    let (path, query) = url.split_once('?').unwrap();
    let exp: i64 = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("exp="))
        .unwrap()
        .parse()
        .unwrap();
    let sig = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("sig="))
        .unwrap();
    let flipped: String = sig
        .chars()
        .enumerate()
        .map(|(i, c)| {
            if i == 0 {
                if c == '0' { '1' } else { '0' }
            } else {
                c
            }
        })
        .collect();
    let other_key = path.replace("/v1-", "/v2-");
    for bad in [
        format!("{path}?exp={exp}&sig={flipped}"),
        format!("{path}?exp={}&sig={sig}", exp + 3600),
        format!("{other_key}?exp={exp}&sig={sig}"),
        format!("{path}?exp={exp}"),
        format!("{path}?sig={sig}"),
        path.to_owned(),
        format!("/assets/models%2F..%2F..%2Fsecrets?exp={exp}&sig={sig}"),
    ] {
        let res = app.client.get(app.url(&bad)).send().await.unwrap();
        let p = assert_problem(res, 403, "forbidden").await;
        assert!(
            p["detail"].as_str().unwrap().contains("not valid"),
            "{bad}: {p}"
        );
    }
}

async fn expired_urls_are_refused(backend: Backend) {
    let Some(app) = spawn_app_with(backend, |s| s.assets.url_ttl_secs = 1).await else {
        return;
    };
    let (_, teacher) = teacher_of(&app).await;
    let model = upload_robot(&app, &teacher, &[("name", "Robot")]).await;
    let url = model["url"].as_str().unwrap().to_owned();
    let expires =
        chrono::DateTime::parse_from_rfc3339(model["url_expires_at"].as_str().unwrap()).unwrap();
    assert!(expires.timestamp() - chrono::Utc::now().timestamp() <= 1);
    // Valid through its expiry second, then refused.
    let wait = (expires.timestamp() + 1) * 1000 - chrono::Utc::now().timestamp_millis() + 200;
    tokio::time::sleep(Duration::from_millis(wait.max(0) as u64)).await;
    let res = app.client.get(app.url(&url)).send().await.unwrap();
    let p = assert_problem(res, 403, "forbidden").await;
    assert!(p["detail"].as_str().unwrap().contains("expired"), "{p}");
    // A fresh URL works again.
    let id = model["id"].as_str().unwrap();
    let fresh = get_json(&app, &teacher, &format!("/v1/models/{id}")).await;
    let res = app
        .client
        .get(app.url(fresh["url"].as_str().unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

async fn versions_stay_downloadable_until_the_model_is_deleted(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (_, teacher) = teacher_of(&app).await;
    let persona = create_persona(&app, &teacher, "Robot tutor").await;
    let v1 = upload_robot(
        &app,
        &teacher,
        &[("name", "Robot"), ("persona_id", &persona)],
    )
    .await;
    let id = v1["id"].as_str().unwrap().to_owned();
    let res = app
        .authed(
            Method::PATCH,
            &format!("/v1/personas/{persona}"),
            &teacher.access,
        )
        .json(&json!({"gestures": {"waving": "Dance"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    // A second file, a little different (an extra clip name would need a
    // re-export; a renamed model and a new upload of the robot do).
    let res = post_model(
        &app,
        &teacher,
        &format!("/v1/models/{id}/versions"),
        Some(("robot-v2.glb", robot())),
        &[("name", "Robot v2")],
    )
    .await;
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    let v2: Value = res.json().await.unwrap();
    assert_eq!(v2["id"], id.as_str());
    assert_eq!(v2["version"], 2);
    assert_eq!(v2["name"], "Robot v2");
    assert_eq!(v2["persona_id"], persona.as_str());
    let versions = v2["versions"].as_array().unwrap();
    assert_eq!(
        versions
            .iter()
            .map(|v| v["version"].clone())
            .collect::<Vec<_>>(),
        [json!(1), json!(2)]
    );
    assert_eq!(versions[1]["url"], v2["url"]);
    assert_ne!(versions[0]["url"], versions[1]["url"]);
    assert!(v2["url"].as_str().unwrap().contains("/v2-"));
    assert_eq!(model_files(&app), 2);
    // Both versions download.
    let urls: Vec<String> = versions
        .iter()
        .map(|v| v["url"].as_str().unwrap().to_owned())
        .collect();
    for url in &urls {
        let res = app.client.get(app.url(url)).send().await.unwrap();
        assert_eq!(res.status(), 200, "{url}");
        assert!(res.bytes().await.unwrap()[..] == robot()[..]);
    }
    // The overrides that still fit stay.
    let avatar = get_json(&app, &teacher, &format!("/v1/personas/{persona}/avatar")).await;
    assert_eq!(avatar["model"]["version"], 2);
    assert_eq!(avatar["gestures"]["waving"], "Dance");

    // A refused version changes nothing.
    let res = post_model(
        &app,
        &teacher,
        &format!("/v1/models/{id}/versions"),
        Some(("Duck.gltf", model_file("Duck.gltf"))),
        &[],
    )
    .await;
    assert_problem(res, 422, "validation_failed").await;
    let now = get_json(&app, &teacher, &format!("/v1/models/{id}")).await;
    assert_eq!(now["version"], 2);
    assert_eq!(now["versions"].as_array().unwrap().len(), 2);
    assert_eq!(model_files(&app), 2);
    // Versions of nothing: 404.
    let res = post_model(
        &app,
        &teacher,
        &format!("/v1/models/{}/versions", uuid::Uuid::new_v4()),
        Some(("robot.glb", robot())),
        &[],
    )
    .await;
    assert_problem(res, 404, "not_found").await;

    // Delete: everything goes.
    let res = app
        .authed(Method::DELETE, &format!("/v1/models/{id}"), &teacher.access)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    for url in &urls {
        let res = app.client.get(app.url(url)).send().await.unwrap();
        assert_problem(res, 404, "not_found").await;
    }
    assert_eq!(model_files(&app), 0);
    assert!(!app.dir.path().join("files/models").join(&id).exists());
    let res = app
        .authed(Method::GET, &format!("/v1/models/{id}"), &teacher.access)
        .send()
        .await
        .unwrap();
    assert_problem(res, 404, "not_found").await;
    let res = app
        .authed(Method::DELETE, &format!("/v1/models/{id}"), &teacher.access)
        .send()
        .await
        .unwrap();
    assert_problem(res, 404, "not_found").await;
    let list = get_json(&app, &teacher, "/v1/models").await;
    assert!(list["items"].as_array().unwrap().is_empty());
    // The persona is left without a model (and can still be edited).
    let p = get_json(&app, &teacher, &format!("/v1/personas/{persona}")).await;
    assert!(p["avatar_model_id"].is_null());
    let res = app
        .authed(
            Method::PATCH,
            &format!("/v1/personas/{persona}"),
            &teacher.access,
        )
        .json(&json!({"name": "Robotless tutor"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    let avatar = get_json(&app, &teacher, &format!("/v1/personas/{persona}/avatar")).await;
    assert!(avatar["model"].is_null());
    assert!(
        avatar["gestures"]
            .as_object()
            .unwrap()
            .values()
            .all(Value::is_null)
    );
}

fn set_u32(bytes: &mut [u8], at: usize, value: u32) {
    bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
}

async fn hostile_files_are_refused_and_leave_nothing(backend: Backend) {
    const LIMIT: u64 = 600_000;
    let Some(app) = spawn_app_with(backend, |s| s.assets.max_model_bytes = LIMIT).await else {
        return;
    };
    let (_, teacher) = teacher_of(&app).await;
    let robot = robot();

    let truncated = robot[..robot.len() - 100].to_vec();
    let mut lying = robot.clone();
    let json_len = u32::from_le_bytes(robot[12..16].try_into().unwrap());
    set_u32(&mut lying, 12, json_len + 4);
    let png =
        b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89".to_vec();
    let text = b"This is not a model, only a few words of text.".to_vec();

    // (file name, bytes, status, code, words the detail must contain)
    let cases: Vec<HostileCase> = vec![
        (
            "Duck.gltf",
            model_file("Duck.gltf"),
            422,
            "validation_failed",
            &["Duck0.bin"],
        ),
        (
            "robot.glb",
            truncated,
            422,
            "validation_failed",
            &["truncated"],
        ),
        (
            "robot.glb",
            lying,
            422,
            "validation_failed",
            &["chunk length"],
        ),
        (
            "avatar.glb",
            png,
            415,
            "unsupported_media_type",
            &["PNG", ".glb"],
        ),
        ("avatar.glb", text, 415, "unsupported_media_type", &[".glb"]),
    ];
    for (name, bytes, status, code, words) in cases {
        let res = post_model(&app, &teacher, "/v1/models", Some((name, bytes)), &[]).await;
        let p = assert_problem(res, status, code).await;
        let detail = p["detail"].as_str().unwrap();
        for w in words {
            assert!(detail.contains(w), "{name}: {detail:?} lacks {w:?}");
        }
        if status == 422 {
            assert_eq!(p["field"], "file", "{p}");
        }
    }
    // No file, an empty one.
    let res = post_model(&app, &teacher, "/v1/models", None, &[("name", "Nothing")]).await;
    let p = assert_problem(res, 422, "validation_failed").await;
    assert_eq!(p["field"], "file");
    let res = post_model(
        &app,
        &teacher,
        "/v1/models",
        Some(("e.glb", Vec::new())),
        &[],
    )
    .await;
    assert_problem(res, 422, "validation_failed").await;
    // Not multipart at all.
    let res = app
        .authed(Method::POST, "/v1/models", &teacher.access)
        .json(&json!({"name": "json"}))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_client_error());

    // Too large: declared up front, then streamed without a length.
    let mut big = robot.clone();
    big.extend(std::iter::repeat_n(0u8, 200_000));
    let res = post_model(&app, &teacher, "/v1/models", Some(("big.glb", big)), &[]).await;
    assert_problem(res, 413, "payload_too_large").await;
    let stream =
        futures_util::stream::iter((0..100).map(|_| Ok::<_, std::io::Error>(vec![b'a'; 8192])));
    let form = Form::new().part(
        "file",
        Part::stream(reqwest::Body::wrap_stream(stream)).file_name("chunked.glb"),
    );
    let res = app
        .authed(Method::POST, "/v1/models", &teacher.access)
        .multipart(form)
        .send()
        .await;
    if let Ok(res) = res {
        // The server may also close the connection once it has answered.
        assert_problem(res, 413, "payload_too_large").await;
    }

    // Nothing was kept: no row, no file.
    let list = get_json(&app, &teacher, "/v1/models").await;
    assert!(list["items"].as_array().unwrap().is_empty(), "{list}");
    assert_eq!(leftovers(&app), 0, "refused uploads left files behind");

    let metrics = app.get("/metrics").await.text().await.unwrap();
    for reason in [
        "external_reference",
        "invalid",
        "unsupported_type",
        "too_large",
    ] {
        assert!(
            metrics.contains(&format!(
                "bwenge_model_rejections_total{{reason=\"{reason}\"}}"
            )),
            "{reason}"
        );
    }
}

/// A hostile upload: file name, bytes, status, code, words the detail must contain.
type HostileCase = (
    &'static str,
    Vec<u8>,
    u16,
    &'static str,
    &'static [&'static str],
);
