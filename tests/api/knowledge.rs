//! Knowledge through the real server: uploads of every accepted kind reach
//! `ready` and are found by search at the right page; hostile uploads get
//! clear errors and leave nothing behind; deletion leaves search at once;
//! restarts lose nothing.

use std::io::Write;
use std::time::Duration;

use reqwest::Method;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};

use crate::helpers::{Backend, Member, TestApp, assert_problem, email, spawn_app, spawn_app_with};
use crate::on_both_databases;

on_both_databases!(
    every_text_kind_becomes_searchable_at_the_right_place,
    hostile_uploads_are_refused_and_leave_nothing,
    deleting_a_source_removes_it_from_search_at_once,
);

pub async fn upload(
    app: &TestApp,
    who: &Member,
    name: &str,
    bytes: Vec<u8>,
    title: Option<&str>,
) -> reqwest::Response {
    let mut form = Form::new().part("file", Part::bytes(bytes).file_name(name.to_owned()));
    if let Some(t) = title {
        form = form.text("title", t.to_owned());
    }
    app.authed(Method::POST, "/v1/knowledge", &who.access)
        .multipart(form)
        .send()
        .await
        .unwrap()
}

/// Uploads and waits for a final status.
pub async fn upload_and_wait(app: &TestApp, who: &Member, name: &str, bytes: Vec<u8>) -> Value {
    let res = upload(app, who, name, bytes, None).await;
    assert_eq!(res.status(), 202, "{}", res.text().await.unwrap());
    let source: Value = res.json().await.unwrap();
    wait_done(app, who, source["id"].as_str().unwrap()).await
}

pub async fn wait_done(app: &TestApp, who: &Member, id: &str) -> Value {
    wait_done_within(app, who, id, Duration::from_secs(30)).await
}

pub async fn wait_done_within(app: &TestApp, who: &Member, id: &str, limit: Duration) -> Value {
    let rounds = limit.as_millis() / 50;
    for _ in 0..rounds {
        let s: Value = app
            .authed(Method::GET, &format!("/v1/knowledge/{id}"), &who.access)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if s["status"] == "ready" || s["status"] == "failed" {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("source {id} never finished");
}

pub async fn search(app: &TestApp, who: &Member, q: &str) -> Vec<Value> {
    let res = app
        .authed(Method::GET, "/v1/search", &who.access)
        .query(&[("q", q), ("k", "5")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    body["hits"].as_array().unwrap().clone()
}

fn docx(paragraphs: &[(&str, Option<&str>)]) -> Vec<u8> {
    let mut body = String::new();
    for (text, style) in paragraphs {
        let ppr = style
            .map(|s| format!("<w:pPr><w:pStyle w:val=\"{s}\"/></w:pPr>"))
            .unwrap_or_default();
        if *text == "<pagebreak>" {
            body.push_str("<w:p><w:r><w:br w:type=\"page\"/></w:r></w:p>");
        } else {
            body.push_str(&format!("<w:p>{ppr}<w:r><w:t>{text}</w:t></w:r></w:p>"));
        }
    }
    let document = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\
         <w:document xmlns:w=\"http://schemas.openxmlformats.org/wordprocessingml/2006/main\"><w:body>{body}</w:body></w:document>"
    );
    zip_of(&[
        (
            "[Content_Types].xml",
            "<?xml version=\"1.0\"?><Types xmlns=\"http://schemas.openxmlformats.org/package/2006/content-types\"><Override PartName=\"/word/document.xml\" ContentType=\"application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml\"/></Types>",
        ),
        (
            "_rels/.rels",
            "<?xml version=\"1.0\"?><Relationships xmlns=\"http://schemas.openxmlformats.org/package/2006/relationships\"><Relationship Id=\"rId1\" Type=\"http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument\" Target=\"word/document.xml\"/></Relationships>",
        ),
        ("word/document.xml", &document),
    ])
}

pub fn pptx(slides: &[&str]) -> Vec<u8> {
    let mut files: Vec<(String, String)> = vec![
        ("[Content_Types].xml".into(), "<?xml version=\"1.0\"?><Types xmlns=\"http://schemas.openxmlformats.org/package/2006/content-types\"><Override PartName=\"/ppt/presentation.xml\" ContentType=\"application/vnd.openxmlformats-officedocument.presentationml.presentation.main+xml\"/></Types>".into()),
        ("_rels/.rels".into(), "<?xml version=\"1.0\"?><Relationships xmlns=\"http://schemas.openxmlformats.org/package/2006/relationships\"><Relationship Id=\"rId1\" Type=\"http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument\" Target=\"ppt/presentation.xml\"/></Relationships>".into()),
    ];
    let mut ids = String::new();
    let mut rels = String::new();
    for (i, text) in slides.iter().enumerate() {
        let n = i + 1;
        ids.push_str(&format!("<p:sldId id=\"{}\" r:id=\"rId{n}\"/>", 255 + n));
        rels.push_str(&format!("<Relationship Id=\"rId{n}\" Type=\"http://schemas.openxmlformats.org/officeDocument/2006/relationships/slide\" Target=\"slides/slide{n}.xml\"/>"));
        files.push((
            format!("ppt/slides/slide{n}.xml"),
            format!("<?xml version=\"1.0\"?><p:sld xmlns:a=\"http://schemas.openxmlformats.org/drawingml/2006/main\" xmlns:p=\"http://schemas.openxmlformats.org/presentationml/2006/main\"><p:cSld><p:spTree><p:sp><p:txBody><a:p><a:r><a:t>{text}</a:t></a:r></a:p></p:txBody></p:sp></p:spTree></p:cSld></p:sld>"),
        ));
    }
    files.push(("ppt/presentation.xml".into(), format!("<?xml version=\"1.0\"?><p:presentation xmlns:p=\"http://schemas.openxmlformats.org/presentationml/2006/main\" xmlns:r=\"http://schemas.openxmlformats.org/officeDocument/2006/relationships\"><p:sldIdLst>{ids}</p:sldIdLst></p:presentation>")));
    files.push(("ppt/_rels/presentation.xml.rels".into(), format!("<?xml version=\"1.0\"?><Relationships xmlns=\"http://schemas.openxmlformats.org/package/2006/relationships\">{rels}</Relationships>")));
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    zip_of(&refs)
}

fn zip_of(files: &[(&str, &str)]) -> Vec<u8> {
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut w = zip::ZipWriter::new(&mut buf);
        let opts = zip::write::SimpleFileOptions::default();
        for (name, body) in files {
            w.start_file(*name, opts).unwrap();
            w.write_all(body.as_bytes()).unwrap();
        }
        w.finish().unwrap();
    }
    buf.into_inner()
}

fn filler(topic: &str, n: usize) -> String {
    (0..n)
        .map(|i| format!("Paragraph {i} about {topic} continues with ordinary classroom words."))
        .collect::<Vec<_>>()
        .join(" ")
}

async fn every_text_kind_becomes_searchable_at_the_right_place(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let teacher = app.register("School", &email("teacher")).await;

    let text = format!(
        "{}\n\nPhotosynthesis turns sunlight, water and carbon dioxide into glucose in the chloroplasts.",
        filler("botany", 5)
    );
    let md = format!(
        "# Algebra\n\n{}\n\n## Quadratics\n\nThe discriminant b squared minus four a c tells how many real roots a quadratic has.\n",
        filler("numbers", 5)
    );
    let srt = "1\n00:00:01,000 --> 00:00:04,000\nWelcome to the history lesson.\n\n2\n00:02:05,000 --> 00:02:09,000\nThe Berlin Wall fell in November 1989.\n";
    let doc = docx(&[
        ("Volcanoes", Some("Heading1")),
        (&filler("geology", 3), None),
        ("<pagebreak>", None),
        (
            "Magma that reaches the surface is called lava and cools into basalt.",
            None,
        ),
    ]);
    let deck = pptx(&[
        "Introduction to fractions",
        "Equivalent fractions",
        "Mitochondria are the powerhouse of the cell",
    ]);

    let cases: Vec<(&str, Vec<u8>, &str, &str, i64)> = vec![
        (
            "notes.txt",
            text.into_bytes(),
            "text/plain",
            "chloroplasts glucose sunlight",
            1,
        ),
        (
            "algebra.md",
            md.into_bytes(),
            "text/markdown",
            "discriminant real roots quadratic",
            1,
        ),
        (
            "history.srt",
            srt.as_bytes().to_vec(),
            "application/x-subrip",
            "Berlin Wall 1989",
            3,
        ),
        (
            "volcano.docx",
            doc,
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            "lava basalt magma",
            2,
        ),
        (
            "cells.pptx",
            deck,
            "application/vnd.openxmlformats-officedocument.presentationml.presentation",
            "mitochondria powerhouse cell",
            3,
        ),
    ];
    for (name, bytes, mime, query, page) in cases {
        let res = upload(&app, &teacher, name, bytes, None).await;
        assert_eq!(res.status(), 202, "{name}");
        let source: Value = res.json().await.unwrap();
        for key in [
            "id",
            "title",
            "filename",
            "media_type",
            "size_bytes",
            "status",
            "stage",
            "progress",
            "created_at",
            "updated_at",
        ] {
            assert!(!source[key].is_null(), "{key} in {source}");
        }
        assert_eq!(source["filename"], name);
        assert_eq!(source["media_type"], mime, "{name}");
        let done = wait_done(&app, &teacher, source["id"].as_str().unwrap()).await;
        assert_eq!(done["status"], "ready", "{name}: {done}");
        assert_eq!(done["progress"], 1.0);
        assert!(done["chunk_count"].as_i64().unwrap() >= 1);
        let hits = search(&app, &teacher, query).await;
        let top = hits.first().unwrap_or_else(|| panic!("no hit for {query}"));
        assert_eq!(top["source_id"], source["id"], "{name}: {hits:?}");
        assert_eq!(top["page"], page, "{name}: {top}");
        assert_eq!(top["source_title"], name.rsplit_once('.').unwrap().0);
        for key in ["chunk_id", "text", "score"] {
            assert!(!top[key].is_null());
        }
    }
    let list: Value = app
        .authed(Method::GET, "/v1/knowledge", &teacher.access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 5);

    // Students search through a persona (the whole library is staff's),
    // and cannot upload.
    let student = app
        .invite_and_accept(&teacher, &email("student"), "student")
        .await;
    let persona =
        crate::personas::create_persona(&app, &teacher, json!({"name": "Historian"})).await;
    let res = app
        .authed(Method::GET, "/v1/search", &student.access)
        .query(&[
            ("q", "Berlin Wall"),
            ("persona_id", persona["id"].as_str().unwrap()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert!(!body["hits"].as_array().unwrap().is_empty());
    let res = upload(&app, &student, "x.txt", b"hello there".to_vec(), None).await;
    assert_problem(res, 403, "forbidden").await;
}

fn leftovers(app: &TestApp) -> usize {
    let count = |p: std::path::PathBuf| walk(&p);
    count(app.dir.path().join("files")) + count(app.dir.path().join("tmp"))
}

fn walk(p: &std::path::Path) -> usize {
    match std::fs::read_dir(p) {
        Err(_) => 0,
        Ok(rd) => rd
            .flatten()
            .map(|e| {
                if e.path().is_dir() {
                    walk(&e.path())
                } else {
                    1
                }
            })
            .sum(),
    }
}

async fn hostile_uploads_are_refused_and_leave_nothing(backend: Backend) {
    let Some(app) = spawn_app_with(backend, |s| s.knowledge.max_upload_bytes = 1024 * 1024).await
    else {
        return;
    };
    let teacher = app.register("School", &email("teacher")).await;

    // Bytes that are no accepted type, whatever the name says.
    let png = [&b"\x89PNG\r\n\x1a\n"[..], &[0u8; 64]].concat();
    let res = upload(&app, &teacher, "lesson.pdf", png, None).await;
    let p = assert_problem(res, 415, "unsupported_media_type").await;
    assert!(p["detail"].as_str().unwrap().contains("PDF"), "{p}");
    let binary: Vec<u8> = (0..4096u32).map(|i| (i * 7919 % 251) as u8).collect();
    assert_problem(
        upload(&app, &teacher, "notes.txt", binary, None).await,
        415,
        "unsupported_media_type",
    )
    .await;

    // Audio without a transcription service: 415 saying how to enable it.
    let mut wav = b"RIFF\x24\x08\x00\x00WAVEfmt ".to_vec();
    wav.extend_from_slice(&[
        16, 0, 0, 0, 1, 0, 1, 0, 0x44, 0xac, 0, 0, 0x88, 0x58, 1, 0, 2, 0, 16, 0,
    ]);
    wav.extend_from_slice(b"data\x00\x08\x00\x00");
    wav.extend(std::iter::repeat_n(0u8, 2048));
    let p = assert_problem(
        upload(&app, &teacher, "talk.wav", wav, None).await,
        415,
        "unsupported_media_type",
    )
    .await;
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("BWENGE_TRANSCRIPTION__BASE_URL"),
        "{p}"
    );

    // Over the limit, declared up front and streamed.
    let big = "word ".repeat(300_000).into_bytes();
    assert_problem(
        upload(&app, &teacher, "big.txt", big.clone(), None).await,
        413,
        "payload_too_large",
    )
    .await;
    let stream =
        futures_util::stream::iter((0..200).map(|_| Ok::<_, std::io::Error>(vec![b'a'; 8192])));
    let body = reqwest::Body::wrap_stream(stream);
    let form = Form::new().part("file", Part::stream(body).file_name("chunked.txt"));
    let res = app
        .authed(Method::POST, "/v1/knowledge", &teacher.access)
        .multipart(form)
        .send()
        .await;
    if let Ok(res) = res {
        // The server may also close the connection once it has answered.
        assert_problem(res, 413, "payload_too_large").await;
    }
    // Missing file part.
    let res = app
        .authed(Method::POST, "/v1/knowledge", &teacher.access)
        .multipart(Form::new().text("title", "no file"))
        .send()
        .await
        .unwrap();
    let p = assert_problem(res, 422, "validation_failed").await;
    assert_eq!(p["field"], "file");

    assert_eq!(leftovers(&app), 0, "refused uploads left files behind");
    let list: Value = app
        .authed(Method::GET, "/v1/knowledge", &teacher.access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(list["items"].as_array().unwrap().is_empty());

    // Accepted but unusable: they end `failed` with a reason a person can read.
    let mut bomb = std::io::Cursor::new(Vec::new());
    {
        let mut w = zip::ZipWriter::new(&mut bomb);
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        w.start_file("[Content_Types].xml", opts).unwrap();
        w.write_all(b"<Types/>").unwrap();
        w.start_file("word/document.xml", opts).unwrap();
        let zeros = vec![0u8; 1024 * 1024];
        for _ in 0..300 {
            w.write_all(&zeros).unwrap();
        }
        w.finish().unwrap();
    }
    let bomb = bomb.into_inner();
    assert!(bomb.len() < 1024 * 1024, "{}", bomb.len());
    let done = upload_and_wait(&app, &teacher, "bomb.docx", bomb).await;
    assert_eq!(done["status"], "failed", "{done}");
    assert!(!done["error"].as_str().unwrap().is_empty());

    let truncated =
        b"%PDF-1.7\n1 0 obj << /Type /Catalog /Pages 2 0 R >>\nendobj\n2 0 obj << /Type /Pa"
            .to_vec();
    let done = upload_and_wait(&app, &teacher, "broken.pdf", truncated).await;
    assert_eq!(done["status"], "failed", "{done}");
    let error = done["error"].as_str().unwrap();
    assert!(!error.contains("/tmp") && !error.contains(".rs"), "{error}");
    // The server is fine.
    assert_eq!(app.get("/healthz").await.status(), 200);
}

async fn deleting_a_source_removes_it_from_search_at_once(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let teacher = app.register("School", &email("teacher")).await;
    let a = upload_and_wait(
        &app,
        &teacher,
        "tides.txt",
        b"The moon's gravity pulls the oceans and makes the tides rise and fall twice a day."
            .to_vec(),
    )
    .await;
    let b = upload_and_wait(
        &app,
        &teacher,
        "seasons.txt",
        b"Seasons come from the tilt of the earth's axis, not from its distance to the sun."
            .to_vec(),
    )
    .await;
    assert_eq!(
        search(&app, &teacher, "moon tides oceans").await[0]["source_id"],
        a["id"]
    );
    let files_before = walk(&app.dir.path().join("files"));
    let path = format!("/v1/knowledge/{}", a["id"].as_str().unwrap());
    assert_eq!(
        app.authed(Method::DELETE, &path, &teacher.access)
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    let hits = search(&app, &teacher, "moon tides oceans").await;
    assert!(hits.iter().all(|h| h["source_id"] != a["id"]), "{hits:?}");
    assert_problem(
        app.authed(Method::GET, &path, &teacher.access)
            .send()
            .await
            .unwrap(),
        404,
        "not_found",
    )
    .await;
    assert_problem(
        app.authed(Method::DELETE, &path, &teacher.access)
            .send()
            .await
            .unwrap(),
        404,
        "not_found",
    )
    .await;
    assert_eq!(walk(&app.dir.path().join("files")), files_before - 1);
    assert_eq!(
        search(&app, &teacher, "tilt axis seasons").await[0]["source_id"],
        b["id"]
    );
}

#[actix_web::test]
async fn a_restart_loses_nothing_and_resumes_interrupted_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let settings = crate::helpers::test_settings(dir.path(), &url);
    let keep = tempfile::tempdir().unwrap();
    let app = crate::helpers::start(settings.clone(), Backend::Sqlite, keep).await;
    let teacher = app.register("School", &email("teacher")).await;
    let src = upload_and_wait(
        &app,
        &teacher,
        "rivers.txt",
        b"The Nile is the longest river in Africa and flows north into the Mediterranean.".to_vec(),
    )
    .await;
    // Pretend the node died mid-job: the job is left `processing`.
    let id: uuid::Uuid = src["id"].as_str().unwrap().parse().unwrap();
    bwenge::knowledge::store::set_stage(
        &app.state.db,
        bwenge::ids::SourceId(id),
        bwenge::knowledge::store::SourceStatus::Processing,
        "embedding",
        0.5,
    )
    .await
    .unwrap();
    app.handle.stop(true).await;
    drop(app);
    // And its index is gone too: rebuilt from the database.
    let _ = std::fs::remove_dir_all(dir.path().join("index"));

    let app = crate::helpers::start(settings, Backend::Sqlite, tempfile::tempdir().unwrap()).await;
    let done = wait_done(&app, &teacher, src["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "ready");
    let hits = search(&app, &teacher, "Nile longest river Africa").await;
    assert_eq!(hits[0]["source_id"], src["id"]);
    assert_eq!(
        hits.iter().filter(|h| h["source_id"] == src["id"]).count(),
        1,
        "{hits:?}"
    );
}

#[actix_web::test]
async fn a_real_school_manual_finds_the_right_page() {
    let pdf = std::path::Path::new("/usr/share/expeyes/doc/en-eyes.pdf");
    if !pdf.exists() {
        assert!(
            !crate::helpers::services_required(),
            "install expeyes-doc-en (.ci/run does)"
        );
        eprintln!("skipping: {} is not installed", pdf.display());
        return;
    }
    let model = std::env::var("BWENGE_TEST_MODEL_DIR")
        .ok()
        .filter(|d| !d.is_empty());
    let app = spawn_app_with(Backend::Sqlite, |s| {
        if let Some(dir) = model {
            s.embeddings.provider = bwenge::config::EmbeddingProvider::Local;
            s.embeddings.model_dir = dir;
        }
    })
    .await
    .unwrap();
    let teacher = app.register("School", &email("teacher")).await;
    let res = upload(
        &app,
        &teacher,
        "en-eyes.pdf",
        std::fs::read(pdf).unwrap(),
        None,
    )
    .await;
    assert_eq!(res.status(), 202);
    let id = res.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // 130 pages through the real model take a while on 2 cores.
    let done = wait_done_within(&app, &teacher, &id, Duration::from_secs(600)).await;
    assert_eq!(done["status"], "ready", "{done}");
    assert_eq!(done["page_count"], 130);
    // The manual says "long pendulum resonated at around 2.3 Hz" (page 110).
    let hits = search(
        &app,
        &teacher,
        "at what frequency does a long pendulum resonate",
    )
    .await;
    assert!(
        hits.iter().take(3).any(|h| h["page"] == 110),
        "{:?}",
        hits.iter().map(|h| h["page"].clone()).collect::<Vec<_>>()
    );
}
