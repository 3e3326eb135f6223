//! `GET /v1/knowledge/{id}/file`: the original of a source, for citations.
//! Staff read any source of their organisation; a student only a source in
//! the scope of one of its personas; another organisation gets 404. The
//! file comes back with its type, a strong ETag and byte ranges.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, assert_problem, email, spawn_app};
use crate::knowledge::upload_and_wait;
use crate::on_both_databases;

on_both_databases!(
    staff_get_the_original_with_type_etag_and_ranges,
    students_get_only_sources_their_personas_use,
    signed_links_open_the_file_without_a_token,
);

const LESSON: &[u8] = b"Volcanoes. Magma rises through the crust and erupts as lava.\n";

async fn get(app: &TestApp, path: &str, token: &str) -> reqwest::Response {
    app.authed(Method::GET, path, token).send().await.unwrap()
}

async fn staff_get_the_original_with_type_etag_and_ranges(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let admin = app.register("File School", &email("file-admin")).await;
    let source = upload_and_wait(&app, &admin, "volcanoes.txt", LESSON.to_vec()).await;
    let path = format!("/v1/knowledge/{}/file", source["id"].as_str().unwrap());

    let res = get(&app, &path, &admin.access).await;
    assert_eq!(res.status(), 200);
    let header = |res: &reqwest::Response, name: &str| {
        res.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    assert!(
        header(&res, "content-type").starts_with("text/plain"),
        "{}",
        header(&res, "content-type")
    );
    assert_eq!(header(&res, "accept-ranges"), "bytes");
    assert_eq!(header(&res, "x-content-type-options"), "nosniff");
    assert!(header(&res, "cache-control").contains("private"));
    assert!(header(&res, "content-disposition").contains("volcanoes.txt"));
    let etag = header(&res, "etag");
    assert!(etag.starts_with('"') && etag.len() > 10, "{etag}");
    assert_eq!(res.bytes().await.unwrap().as_ref(), LESSON);

    // Revalidation, a range, a range past the end.
    let res = app
        .authed(Method::GET, &path, &admin.access)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 304);
    let res = app
        .authed(Method::GET, &path, &admin.access)
        .header("range", "bytes=0-8")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 206);
    assert_eq!(
        header(&res, "content-range"),
        format!("bytes 0-8/{}", LESSON.len())
    );
    assert_eq!(res.bytes().await.unwrap().as_ref(), &LESSON[..9]);
    let res = app
        .authed(Method::GET, &path, &admin.access)
        .header("range", "bytes=9999-")
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(&res, "content-range"),
        format!("bytes */{}", LESSON.len())
    );
    assert_problem(res, 416, "range_not_satisfiable").await;

    // No token; another organisation; an unknown id.
    let res = app.get(&path).await;
    assert_eq!(res.status(), 401);
    let other = app.register("Other School", &email("file-other")).await;
    assert_problem(get(&app, &path, &other.access).await, 404, "not_found").await;
    let unknown = format!("/v1/knowledge/{}/file", uuid::Uuid::new_v4());
    assert_problem(get(&app, &unknown, &admin.access).await, 404, "not_found").await;
    assert_problem(
        get(&app, "/v1/knowledge/not-a-uuid/file", &admin.access).await,
        404,
        "not_found",
    )
    .await;

    // A deleted source's file is gone.
    let res = app
        .authed(
            Method::DELETE,
            &format!("/v1/knowledge/{}", source["id"].as_str().unwrap()),
            &admin.access,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    assert_problem(get(&app, &path, &admin.access).await, 404, "not_found").await;
}

async fn students_get_only_sources_their_personas_use(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let admin = app.register("Scope School", &email("scope-admin")).await;
    let student = app
        .invite_and_accept(&admin, &email("scope-student"), "student")
        .await;
    let used = upload_and_wait(&app, &admin, "volcanoes.txt", LESSON.to_vec()).await;
    let unused = upload_and_wait(
        &app,
        &admin,
        "draft.txt",
        b"Teacher's private draft notes about exams.\n".to_vec(),
    )
    .await;
    let file = |s: &Value| format!("/v1/knowledge/{}/file", s["id"].as_str().unwrap());

    // No persona yet: nothing is readable by a student.
    assert_problem(
        get(&app, &file(&used), &student.access).await,
        404,
        "not_found",
    )
    .await;

    let res = app
        .authed(Method::POST, "/v1/personas", &admin.access)
        .json(&json!({"name": "Geography", "knowledge_source_ids": [used["id"]]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let persona: Value = res.json().await.unwrap();

    let res = get(&app, &file(&used), &student.access).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.bytes().await.unwrap().as_ref(), LESSON);
    assert_problem(
        get(&app, &file(&unused), &student.access).await,
        404,
        "not_found",
    )
    .await;
    // Staff still read both.
    assert_eq!(get(&app, &file(&unused), &admin.access).await.status(), 200);

    // A persona over every source opens them all.
    let res = app
        .authed(
            Method::PATCH,
            &format!("/v1/personas/{}", persona["id"].as_str().unwrap()),
            &admin.access,
        )
        .json(&json!({"knowledge_source_ids": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        get(&app, &file(&unused), &student.access).await.status(),
        200
    );
}

/// `GET /v1/knowledge/{id}/file-url`: a five-minute link a browser tab can
/// open without a token, for exactly the readers of the file.
async fn signed_links_open_the_file_without_a_token(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let admin = app.register("Link School", &email("link-admin")).await;
    let student = app
        .invite_and_accept(&admin, &email("link-student"), "student")
        .await;
    let used = upload_and_wait(&app, &admin, "volcanoes.txt", LESSON.to_vec()).await;
    let unused = upload_and_wait(&app, &admin, "draft.txt", b"Exam drafts.\n".to_vec()).await;
    let res = app
        .authed(Method::POST, "/v1/personas", &admin.access)
        .json(&json!({"name": "Geography", "knowledge_source_ids": [used["id"]]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let link_of = |s: &Value| format!("/v1/knowledge/{}/file-url", s["id"].as_str().unwrap());

    // Only for a reader of the file.
    assert_eq!(app.get(&link_of(&used)).await.status(), 401);
    assert_problem(
        get(&app, &link_of(&unused), &student.access).await,
        404,
        "not_found",
    )
    .await;
    let other = app
        .register("Other Link School", &email("link-other"))
        .await;
    assert_problem(
        get(&app, &link_of(&used), &other.access).await,
        404,
        "not_found",
    )
    .await;

    let res = get(&app, &link_of(&used), &student.access).await;
    assert_eq!(res.status(), 200);
    let link: Value = res.json().await.unwrap();
    let url = link["url"].as_str().unwrap().to_owned();
    assert!(
        url.starts_with(&format!(
            "/v1/knowledge/{}/file?",
            used["id"].as_str().unwrap()
        )),
        "{url}"
    );
    let expires: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(link["expires_at"].clone()).unwrap();
    let left = expires - chrono::Utc::now();
    assert!(
        left > chrono::Duration::seconds(200) && left <= chrono::Duration::seconds(300),
        "{left}"
    );

    // Opened with no token at all, as a new tab does; anything but a PDF is
    // sandboxed so an uploaded page runs no script on the app's origin.
    let res = app.get(&url).await;
    assert_eq!(res.status(), 200);
    let csp = res
        .headers()
        .get("content-security-policy")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    assert!(csp.starts_with("sandbox"), "{csp}");
    assert_eq!(res.bytes().await.unwrap().as_ref(), LESSON);
    let res = app
        .client
        .get(app.url(&url))
        .header("range", "bytes=0-8")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 206);

    // A link is good for its own source and organisation only.
    let tampered = [
        url.replace(used["id"].as_str().unwrap(), unused["id"].as_str().unwrap()),
        url.replace(&admin.org_id, &other.org_id),
        format!("{}0", url.trim_end_matches(|c: char| c.is_ascii_hexdigit())),
        url.split("&sig=").next().unwrap().to_owned() + "&sig=",
        url.replacen("org=", "o=", 1),
    ];
    for bad in tampered {
        assert_problem(app.get(&bad).await, 403, "forbidden").await;
    }

    // A deleted source's link is dead.
    let res = app
        .authed(
            Method::DELETE,
            &format!("/v1/knowledge/{}", used["id"].as_str().unwrap()),
            &admin.access,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    assert_problem(app.get(&url).await, 404, "not_found").await;
}
