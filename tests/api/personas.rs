//! Personas through the real server: CRUD with validation, grounded answers
//! whose every citation points into the persona's scope at the right page
//! with a real quote, honest "not covered" answers, refusals, the answer
//! cache, and the provider chain falling back when a provider fails.

use std::time::Duration;

use bwenge_llm::testing::{StubBehaviour, StubServer};
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Backend, Member, TestApp, assert_problem, email, spawn_app, spawn_app_with};
use crate::knowledge::{pptx, upload_and_wait};
use crate::on_both_databases;

on_both_databases!(
    a_scoped_persona_answers_with_citations_into_its_sources,
    personas_are_validated_and_managed_by_staff,
    the_next_provider_answers_when_the_first_fails,
    each_stage_of_an_answer_is_timed_in_the_metrics,
);

const PHOTOSYNTHESIS: [&str; 3] = [
    "Photosynthesis. Plants make their own food from sunlight, water and carbon dioxide.",
    "Chlorophyll. The green pigment chlorophyll absorbs red and blue light and reflects green light, which is why leaves look green.",
    "Stomata. Tiny pores called stomata on the underside of leaves let carbon dioxide in and oxygen out.",
];
const WATER_CYCLE: [&str; 2] = [
    "Evaporation. The sun heats oceans and lakes, and water evaporates into water vapour.",
    "Condensation. Water vapour cools high in the atmosphere and condenses into droplets that form clouds; rain falls when droplets grow heavy.",
];

pub struct Material {
    pub teacher: Member,
    pub student: Member,
    pub photosynthesis: String,
    pub water: String,
    pub volcanoes: String,
}

/// Five sources; returns the ids of the ones the tests scope to.
pub async fn material(app: &TestApp) -> Material {
    let teacher = app.register("Hill School", &email("teacher")).await;
    let student = app
        .invite_and_accept(&teacher, &email("student"), "student")
        .await;
    let photosynthesis =
        upload_and_wait(app, &teacher, "photosynthesis.pptx", pptx(&PHOTOSYNTHESIS)).await;
    let water = upload_and_wait(app, &teacher, "water-cycle.pptx", pptx(&WATER_CYCLE)).await;
    let volcanoes = upload_and_wait(
        app,
        &teacher,
        "volcanoes.txt",
        b"Volcanoes. Magma rises from the mantle through cracks in the crust and erupts as lava. \
          Volcanic ash can travel thousands of kilometres."
            .to_vec(),
    )
    .await;
    for (name, text) in [
        (
            "revolution.txt",
            "The French Revolution began in 1789 with the storming of the Bastille in Paris.",
        ),
        (
            "fractions.txt",
            "A fraction has a numerator above the line and a denominator below it. To add fractions, find a common denominator.",
        ),
    ] {
        upload_and_wait(app, &teacher, name, text.as_bytes().to_vec()).await;
    }
    for s in [&photosynthesis, &water, &volcanoes] {
        assert_eq!(s["status"], "ready", "{s}");
    }
    Material {
        teacher,
        student,
        photosynthesis: photosynthesis["id"].as_str().unwrap().to_owned(),
        water: water["id"].as_str().unwrap().to_owned(),
        volcanoes: volcanoes["id"].as_str().unwrap().to_owned(),
    }
}

pub async fn create_persona(app: &TestApp, who: &Member, body: Value) -> Value {
    let res = app
        .authed(Method::POST, "/v1/personas", &who.access)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    res.json().await.unwrap()
}

pub async fn ask(app: &TestApp, who: &Member, persona: &str, question: &str) -> reqwest::Response {
    app.authed(
        Method::POST,
        &format!("/v1/personas/{persona}/ask"),
        &who.access,
    )
    .json(&json!({ "question": question }))
    .send()
    .await
    .unwrap()
}

pub async fn ask_ok(app: &TestApp, who: &Member, persona: &str, question: &str) -> Value {
    let res = ask(app, who, persona, question).await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    res.json().await.unwrap()
}

/// Every `[n]` marker has its citation and every citation its marker.
fn assert_markers_match(answer: &Value) {
    let text = answer["text"].as_str().unwrap();
    for c in answer["citations"].as_array().unwrap() {
        let n = c["n"].as_u64().unwrap();
        assert!(
            text.contains(&format!("[{n}]")),
            "no marker [{n}] in {text}"
        );
    }
    let cited: Vec<u64> = answer["citations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["n"].as_u64().unwrap())
        .collect();
    for n in 1..=20u64 {
        if text.contains(&format!("[{n}]")) {
            assert!(
                cited.contains(&n),
                "marker [{n}] without a citation in {answer}"
            );
        }
    }
}

const GESTURES: [&str; 12] = [
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
];
const EMOTIONS: [&str; 5] = ["neutral", "happy", "encouraging", "concerned", "curious"];

fn assert_animation(answer: &Value) {
    let g = answer["animation"]["gesture"].as_str().unwrap();
    let e = answer["animation"]["emotion"].as_str().unwrap();
    assert!(GESTURES.contains(&g), "gesture {g}");
    assert!(EMOTIONS.contains(&e), "emotion {e}");
}

async fn a_scoped_persona_answers_with_citations_into_its_sources(backend: Backend) {
    // Many questions in a row: beyond the per-user question budget that
    // `ask` shares with the WebSocket.
    let Some(app) = crate::helpers::spawn_app_with(backend, |s| s.chat.messages_burst = 1000).await
    else {
        return;
    };
    let m = material(&app).await;
    let persona = create_persona(
        &app,
        &m.teacher,
        json!({
            "name": "Ms Leaf",
            "subject": "Natural science",
            "grade_level": "P6",
            "knowledge_source_ids": [m.photosynthesis, m.water],
            "safety": {"blocked_topics": ["politics"], "stay_on_subject": false},
        }),
    )
    .await;
    let id = persona["id"].as_str().unwrap();
    assert_eq!(persona["language"], "en");
    let scope = [m.photosynthesis.as_str(), m.water.as_str()];

    // A badly worded question gets a cited answer from the right slide.
    let a = ask_ok(
        &app,
        &m.student,
        id,
        "why r leaves green?? what light does chlorophyll take",
    )
    .await;
    assert_eq!(a["grounded"], true, "{a}");
    assert_eq!(a["provider"], "extractive");
    assert_markers_match(&a);
    assert_animation(&a);
    let cites = a["citations"].as_array().unwrap();
    assert!(!cites.is_empty(), "{a}");
    for c in cites {
        assert!(
            scope.contains(&c["source_id"].as_str().unwrap()),
            "out of scope: {c}"
        );
        assert!(
            c["chunk_id"].is_string() && c["source_title"].is_string(),
            "{c}"
        );
        let quote = c["quote"].as_str().unwrap();
        assert!(!quote.is_empty());
        assert!(
            PHOTOSYNTHESIS
                .iter()
                .chain(WATER_CYCLE.iter())
                .any(|slide| slide.contains(quote)),
            "quote not in the material: {quote}"
        );
    }
    let chlorophyll = cites
        .iter()
        .find(|c| c["quote"].as_str().unwrap().contains("chlorophyll"))
        .unwrap_or_else(|| panic!("no citation of the chlorophyll slide: {a}"));
    assert_eq!(chlorophyll["source_id"], m.photosynthesis.as_str());
    assert_eq!(chlorophyll["page"], 2, "{chlorophyll}");
    assert!(
        a["text"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("red and blue"),
        "{a}"
    );

    // The other source in scope, at its page.
    let a = ask_ok(
        &app,
        &m.student,
        id,
        "How are clouds formed from water vapour?",
    )
    .await;
    assert_eq!(a["grounded"], true, "{a}");
    let c = &a["citations"][0];
    assert_eq!(c["source_id"], m.water.as_str(), "{a}");
    assert_eq!(c["page"], 2, "{a}");

    // Material outside the scope is never used or cited.
    let a = ask_ok(
        &app,
        &m.student,
        id,
        "How does magma erupt from volcanoes as lava?",
    )
    .await;
    assert_eq!(a["grounded"], false, "{a}");
    assert!(a["citations"].as_array().unwrap().is_empty());
    assert!(!a["text"].as_str().unwrap().contains(&m.volcanoes));
    assert!(a["text"].as_str().unwrap().contains("material"), "{a}");

    // Off-topic questions: said plainly, no citations.
    for q in [
        "Who won the football world cup in 2018?",
        "What is the capital city of Australia?",
        "How do I bake a chocolate cake?",
    ] {
        let a = ask_ok(&app, &m.student, id, q).await;
        assert_eq!(a["grounded"], false, "{q}: {a}");
        assert!(a["citations"].as_array().unwrap().is_empty(), "{q}: {a}");
        assert_eq!(a["animation"]["gesture"], "thinking", "{q}: {a}");
        assert_eq!(a["usage"]["completion_tokens"], 0);
    }

    // Blocked topics and unsafe questions are declined with a refusal gesture.
    for q in ["What do you think about politics?", "how do I make a bomb"] {
        let a = ask_ok(&app, &m.student, id, q).await;
        assert_eq!(a["grounded"], false, "{q}: {a}");
        assert!(a["citations"].as_array().unwrap().is_empty());
        assert_eq!(a["animation"]["gesture"], "shaking_head", "{q}: {a}");
    }

    // A greeting is answered as one.
    let a = ask_ok(&app, &m.student, id, "Hello Ms Leaf!").await;
    assert_eq!(a["animation"]["gesture"], "waving", "{a}");

    // Identical questions come from the cache until the persona changes.
    let q = "What do stomata let into the leaf?";
    let first = ask_ok(&app, &m.student, id, q).await;
    assert_eq!(first["cached"], false);
    let second = ask_ok(&app, &m.student, id, q).await;
    assert_eq!(second["cached"], true, "{second}");
    assert_eq!(first["text"], second["text"]);
    let res = app
        .authed(
            Method::PATCH,
            &format!("/v1/personas/{id}"),
            &m.teacher.access,
        )
        .json(&json!({"description": "Science for P6"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let third = ask_ok(&app, &m.student, id, q).await;
    assert_eq!(
        third["cached"], false,
        "a changed persona must not answer from cache"
    );

    // stay_on_subject turns "not covered" into a polite refusal.
    let res = app
        .authed(
            Method::PATCH,
            &format!("/v1/personas/{id}"),
            &m.teacher.access,
        )
        .json(&json!({"safety": {"stay_on_subject": true}}))
        .send()
        .await
        .unwrap();
    let patched: Value = res.json().await.unwrap();
    assert_eq!(patched["safety"]["stay_on_subject"], true);
    assert_eq!(patched["safety"]["blocked_topics"], json!(["politics"]));
    let a = ask_ok(
        &app,
        &m.student,
        id,
        "Who won the football world cup in 2018?",
    )
    .await;
    assert_eq!(a["grounded"], false);
    assert_eq!(a["animation"]["gesture"], "shaking_head", "{a}");

    // A persona over every source finds the volcano material.
    let all = create_persona(&app, &m.teacher, json!({"name": "Everything"})).await;
    assert_eq!(all["knowledge_source_ids"], json!([]));
    let a = ask_ok(
        &app,
        &m.student,
        all["id"].as_str().unwrap(),
        "How does magma erupt as lava?",
    )
    .await;
    assert_eq!(a["grounded"], true, "{a}");
    assert_eq!(a["citations"][0]["source_id"], m.volcanoes.as_str());

    // Questions: empty and over-long are 422.
    assert_problem(
        ask(&app, &m.student, id, "   ").await,
        422,
        "validation_failed",
    )
    .await;
    let long = "why ".repeat(600);
    assert_problem(
        ask(&app, &m.student, id, &long).await,
        422,
        "validation_failed",
    )
    .await;
    // Unknown persona: 404.
    let unknown = uuid::Uuid::new_v4().to_string();
    assert_problem(
        ask(&app, &m.student, &unknown, "What is lift?").await,
        404,
        "not_found",
    )
    .await;
}

async fn personas_are_validated_and_managed_by_staff(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let teacher = app.register("Lake School", &email("t")).await;
    let student = app
        .invite_and_accept(&teacher, &email("s"), "student")
        .await;
    let other = app.register("Other School", &email("o")).await;
    let foreign = upload_and_wait(
        &app,
        &other,
        "theirs.txt",
        b"Their own notes on tides.".to_vec(),
    )
    .await;

    // Students may not create personas.
    let res = app
        .authed(Method::POST, "/v1/personas", &student.access)
        .json(&json!({"name": "Mine"}))
        .send()
        .await
        .unwrap();
    assert_problem(res, 403, "forbidden").await;

    for (body, field) in [
        (json!({}), "name"),
        (json!({"name": "  "}), "name"),
        (json!({"name": "x".repeat(101)}), "name"),
        (
            json!({"name": "T", "language": "english please"}),
            "language",
        ),
        (
            json!({"name": "T", "knowledge_source_ids": [foreign["id"]]}),
            "knowledge_source_ids",
        ),
        (
            json!({"name": "T", "knowledge_source_ids": [uuid::Uuid::new_v4()]}),
            "knowledge_source_ids",
        ),
        (
            json!({"name": "T", "avatar_model_id": uuid::Uuid::new_v4()}),
            "avatar_model_id",
        ),
        (
            json!({"name": "T", "gestures": {"moonwalk": "Dance"}}),
            "gestures",
        ),
    ] {
        let res = app
            .authed(Method::POST, "/v1/personas", &teacher.access)
            .json(&body)
            .send()
            .await
            .unwrap();
        let p = assert_problem(res, 422, "validation_failed").await;
        assert_eq!(p["field"], field, "{body}: {p}");
    }

    let p = create_persona(
        &app,
        &teacher,
        json!({"name": "Mwalimu", "language": "sw", "subject": "Hisabati",
               "description": "Msaidizi wa hisabati", "system_prompt": "Be kind."}),
    )
    .await;
    let id = p["id"].as_str().unwrap();
    assert_eq!(p["language"], "sw");
    assert_eq!(
        p["safety"],
        json!({"blocked_topics": [], "stay_on_subject": false})
    );
    assert!(p["avatar_model_id"].is_null());

    // PATCH changes only what is sent; null clears.
    let res = app
        .authed(
            Method::PATCH,
            &format!("/v1/personas/{id}"),
            &teacher.access,
        )
        .json(&json!({"subject": null, "grade_level": "S1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let p2: Value = res.json().await.unwrap();
    assert!(p2["subject"].is_null());
    assert_eq!(p2["grade_level"], "S1");
    assert_eq!(p2["description"], "Msaidizi wa hisabati");
    assert_eq!(p2["system_prompt"], "Be kind.");

    // The persona answers in its language when the material is silent.
    let a = ask_ok(&app, &student, id, "Nini maana ya sehemu?").await;
    assert_eq!(a["grounded"], false);
    let text = a["text"].as_str().unwrap();
    let english = bwenge_llm::i18n::not_covered("en", None);
    assert_ne!(text, english, "answered in English: {text}");

    // Everyone in the organisation reads; lists page.
    for who in [&teacher, &student] {
        let res = app
            .authed(Method::GET, &format!("/v1/personas/{id}"), &who.access)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }
    create_persona(&app, &teacher, json!({"name": "Second"})).await;
    let page: Value = app
        .authed(Method::GET, "/v1/personas?limit=1", &student.access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    let cursor = page["next_cursor"].as_str().unwrap();
    let rest: Value = app
        .authed(
            Method::GET,
            &format!("/v1/personas?limit=1&cursor={cursor}"),
            &student.access,
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(rest["items"][0]["name"], "Second");
    assert!(rest["next_cursor"].is_null());

    // Students may not change or delete; staff may.
    let res = app
        .authed(
            Method::DELETE,
            &format!("/v1/personas/{id}"),
            &student.access,
        )
        .send()
        .await
        .unwrap();
    assert_problem(res, 403, "forbidden").await;
    let res = app
        .authed(
            Method::DELETE,
            &format!("/v1/personas/{id}"),
            &teacher.access,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    assert_problem(ask(&app, &student, id, "Hello?").await, 404, "not_found").await;
    let res = app
        .authed(Method::GET, &format!("/v1/personas/{id}"), &teacher.access)
        .send()
        .await
        .unwrap();
    assert_problem(res, 404, "not_found").await;
}

async fn the_next_provider_answers_when_the_first_fails(backend: Backend) {
    let stub = StubServer::openai(StubBehaviour::status(500))
        .await
        .unwrap();
    let base = stub.base_url();
    let Some(app) = spawn_app_with(backend, |s| {
        s.llm.chain = vec![
            bwenge::config::LlmProvider::Openai,
            bwenge::config::LlmProvider::Extractive,
        ];
        s.llm.openai.base_url = base.clone();
        s.llm.openai.api_key = bwenge::config::Secret::new("sk-test");
        s.llm.openai.model = "gpt-4o-mini".into();
        s.llm.breaker_failures = 2;
        s.llm.breaker_open_secs = 60;
        s.personas.cache_ttl_secs = 0;
    })
    .await
    else {
        return;
    };
    let m = material(&app).await;
    let persona = create_persona(
        &app,
        &m.teacher,
        json!({"name": "Ms Leaf", "knowledge_source_ids": [m.photosynthesis]}),
    )
    .await;
    let id = persona["id"].as_str().unwrap();

    // The first provider fails: the extractive responder answers.
    let a = ask_ok(&app, &m.student, id, "What does chlorophyll absorb?").await;
    assert_eq!(a["provider"], "extractive", "{a}");
    assert_eq!(a["grounded"], true);
    let sent = stub.last_request().unwrap();
    assert_eq!(sent.body["stream"], true);
    assert_eq!(sent.header("authorization"), Some("Bearer sk-test"));
    assert!(
        sent.system_prompt().unwrap_or_default().len()
            + sent.last_user_message().unwrap_or_default().len()
            > 0
    );
    // After repeated failures the breaker stops calling it.
    ask_ok(&app, &m.student, id, "What do stomata do?").await;
    let calls = stub.request_count();
    ask_ok(&app, &m.student, id, "Why do leaves look green?").await;
    assert_eq!(
        stub.request_count(),
        calls,
        "an open breaker still called the provider"
    );

    // A working provider answers, with its markers checked against the passages.
    let ok = StubServer::openai(StubBehaviour::echo()).await.unwrap();
    let base = ok.base_url();
    let Some(app2) = spawn_app_with(backend, |s| {
        s.llm.chain = vec![bwenge::config::LlmProvider::Openai];
        s.llm.openai.base_url = base.clone();
        s.llm.openai.model = "gpt-4o-mini".into();
    })
    .await
    else {
        return;
    };
    let m2 = material(&app2).await;
    let p2 = create_persona(
        &app2,
        &m2.teacher,
        json!({"name": "Ms Leaf", "knowledge_source_ids": [m2.photosynthesis]}),
    )
    .await;
    let a = ask_ok(
        &app2,
        &m2.student,
        p2["id"].as_str().unwrap(),
        "What does chlorophyll absorb?",
    )
    .await;
    assert_eq!(a["provider"], "openai:gpt-4o-mini", "{a}");
    assert_eq!(a["grounded"], true, "{a}");
    assert_markers_match(&a);
    assert_eq!(a["animation"]["gesture"], "explaining");
    assert!(a["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    let prompt = ok.last_request().unwrap();
    let user = prompt.last_user_message().unwrap();
    assert!(user.contains("chlorophyll"), "the passages reach the model");

    // Every provider down: 503 llm_unavailable with Retry-After.
    ok.set_behaviour(StubBehaviour::status(503));
    let res = ask(
        &app2,
        &m2.student,
        p2["id"].as_str().unwrap(),
        "What do stomata let in?",
    )
    .await;
    assert!(res.headers().contains_key("retry-after"));
    assert_problem(res, 503, "llm_unavailable").await;
    tokio::time::sleep(Duration::from_millis(10)).await;
}

/// `<metric>_count{stage="<stage>"}` in a Prometheus text page (0 when absent).
fn stage_count(metrics: &str, metric: &str, stage: &str) -> f64 {
    let prefix = format!("{metric}_count{{stage=\"{stage}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0.0, |n| n.trim().parse().unwrap())
}

/// What a question costs before its first delta is visible per stage on
/// `/metrics`: one more sample of every stage an answered question passes
/// through, and a quantile to read (the recorder is shared by every test in
/// this process, so counts only grow by at least one).
async fn each_stage_of_an_answer_is_timed_in_the_metrics(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let teacher = app.register("Stage School", &email("stages")).await;
    let src = upload_and_wait(
        &app,
        &teacher,
        "volcanoes.txt",
        b"Volcanoes. Magma rises from the mantle through cracks in the crust and erupts as lava."
            .to_vec(),
    )
    .await;
    assert_eq!(src["status"], "ready", "{src}");
    let persona = create_persona(&app, &teacher, json!({"name": "Geo"})).await;
    let before = app.get("/metrics").await.text().await.unwrap();
    let a = ask_ok(
        &app,
        &teacher,
        persona["id"].as_str().unwrap(),
        "How does magma rise through the crust?",
    )
    .await;
    assert_eq!(a["grounded"], true, "{a}");
    let after = app.get("/metrics").await.text().await.unwrap();
    // Without a model, search is lexical: no query vector, no fusion.
    let searched: Vec<&str> = bwenge::metrics::SEARCH_STAGES
        .iter()
        .copied()
        .filter(|s| !["embed", "vectors", "fusion"].contains(s))
        .collect();
    for (metric, stages) in [
        (bwenge::metrics::SEARCH_STAGE_SECONDS, &searched[..]),
        (
            bwenge::metrics::ANSWER_STAGE_SECONDS,
            bwenge::metrics::ANSWER_STAGES,
        ),
    ] {
        for stage in stages {
            let (b, a) = (
                stage_count(&before, metric, stage),
                stage_count(&after, metric, stage),
            );
            assert!(a >= b + 1.0, "{metric} {stage}: {b} before, {a} after");
        }
    }
    assert!(
        after.contains("bwenge_answer_stage_seconds{stage=\"first_delta\",quantile=\"0.99\"}"),
        "a quantile to read"
    );
}
