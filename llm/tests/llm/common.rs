//! Shared fixtures: a request about photosynthesis and stream helpers.

use bwenge_llm::{AnswerRequest, EventStream, LlmError, Passage, Role, StreamEvent, Turn};
use futures_util::StreamExt;

pub fn passages() -> Vec<Passage> {
    vec![
        Passage {
            relevance: None,
            n: 1,
            source_title: "Biology Book".into(),
            page: 12,
            text: "Plants need sunlight to grow. Photosynthesis is the process by which green \
                   plants use sunlight, water and carbon dioxide to make glucose and oxygen. It \
                   takes place in the chloroplasts of leaf cells. Figure 3 shows a chloroplast."
                .into(),
        },
        Passage {
            relevance: None,
            n: 2,
            source_title: "Biology Book".into(),
            page: 13,
            text: "Chlorophyll is the green pigment that absorbs light energy. Without \
                   chlorophyll, plants could not carry out photosynthesis. Oxygen is released \
                   into the air as a by-product."
                .into(),
        },
        Passage {
            relevance: None,
            n: 3,
            source_title: "Biology Book".into(),
            page: 20,
            text: "Respiration releases energy from glucose in all living cells. It happens in \
                   the mitochondria."
                .into(),
        },
    ]
}

pub fn request(question: &str) -> AnswerRequest {
    AnswerRequest {
        persona_name: "Mwalimu Amani".into(),
        subject: Some("Biology".into()),
        language: "en".into(),
        grade_level: Some("Senior 2".into()),
        instructions: Some("Use short sentences.".into()),
        rules: vec!["Never ask for personal information.".into()],
        passages: passages(),
        history: vec![
            Turn {
                role: Role::User,
                text: "Hello".into(),
            },
            Turn {
                role: Role::Assistant,
                text: "Hello! What would you like to learn?".into(),
            },
        ],
        question: question.into(),
        max_answer_tokens: 200,
    }
}

pub async fn collect(stream: EventStream) -> Vec<Result<StreamEvent, LlmError>> {
    stream.collect().await
}

/// The text a consumer would show: deltas concatenated, reset on Restart.
pub fn shown_text(events: &[Result<StreamEvent, LlmError>]) -> String {
    let mut text = String::new();
    for e in events {
        match e {
            Ok(StreamEvent::Delta(d)) => text.push_str(d),
            Ok(StreamEvent::Restart { .. }) => text.clear(),
            _ => {}
        }
    }
    text
}

pub fn deltas(events: &[Result<StreamEvent, LlmError>]) -> usize {
    events
        .iter()
        .filter(|e| matches!(e, Ok(StreamEvent::Delta(_))))
        .count()
}

pub fn dones(events: &[Result<StreamEvent, LlmError>]) -> usize {
    events
        .iter()
        .filter(|e| matches!(e, Ok(StreamEvent::Done { .. })))
        .count()
}

/// Asserts the stream succeeded: exactly one Done, last, no error.
pub fn assert_complete(events: &[Result<StreamEvent, LlmError>]) {
    assert_eq!(dones(events), 1, "{events:?}");
    assert!(
        matches!(events.last(), Some(Ok(StreamEvent::Done { .. }))),
        "{events:?}"
    );
    assert!(events.iter().all(Result::is_ok), "{events:?}");
}

/// Asserts the stream failed: it ends with an error and has no Done.
pub fn assert_failed(events: &[Result<StreamEvent, LlmError>]) -> LlmError {
    assert_eq!(
        dones(events),
        0,
        "a failed stream must never be Done: {events:?}"
    );
    match events.last() {
        Some(Err(e)) => e.clone(),
        other => panic!("expected a final error, got {other:?}"),
    }
}

/// A port on 127.0.0.1 with nothing listening.
pub async fn closed_port() -> u16 {
    let l = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .expect("bind");
    let port = l.local_addr().expect("addr").port();
    drop(l);
    port
}

/// Words of the system prompt and message contents of a recorded request,
/// which is what the stubs report as prompt tokens.
pub fn prompt_words(body: &serde_json::Value) -> u32 {
    let mut n = body
        .get("system")
        .and_then(|s| s.as_str())
        .map(|s| s.split_whitespace().count())
        .unwrap_or(0);
    for m in body["messages"].as_array().into_iter().flatten() {
        n += m["content"]
            .as_str()
            .unwrap_or("")
            .split_whitespace()
            .count();
    }
    u32::try_from(n).expect("small")
}
