//! Anthropic against the Messages-protocol stub.

use std::time::Duration;

use bwenge_llm::testing::{StubBehaviour, StubServer};
use bwenge_llm::{
    Animation, Anthropic, AnthropicConfig, Emotion, Gesture, LanguageModel, LlmError, StreamEvent,
    Usage,
};

use crate::common::{
    assert_complete, assert_failed, collect, deltas, prompt_words, request, shown_text,
};

const ANSWER: &str = "Chlorophyll absorbs light energy [2]. Figure 3 shows a chloroplast [1].\n\
                      [[animation gesture=pointing emotion=neutral]]";

async fn server(b: StubBehaviour) -> StubServer {
    StubServer::anthropic(b).await.expect("stub server")
}

fn provider(cfg: AnthropicConfig) -> Anthropic {
    Anthropic::new(cfg).expect("provider")
}

#[tokio::test]
async fn happy_path_streams_text_deltas_then_done() {
    let srv = server(StubBehaviour::Stream {
        text: ANSWER.into(),
        chunks: 8,
        chunk_delay: Duration::from_millis(3),
    })
    .await;
    let p = provider(srv.anthropic_config("claude-test"));
    assert_eq!(p.name(), "anthropic:claude-test");
    let events = collect(
        p.stream(&request("What does chlorophyll do?"))
            .await
            .expect("stream"),
    )
    .await;
    assert_complete(&events);
    assert!(deltas(&events) >= 4);
    assert_eq!(
        shown_text(&events),
        "Chlorophyll absorbs light energy [2]. Figure 3 shows a chloroplast [1]."
    );

    let rec = srv.last_request().expect("request");
    assert_eq!(rec.path, "/v1/messages");
    assert_eq!(rec.header("x-api-key"), Some("sk-ant-stub"));
    assert_eq!(rec.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(rec.header("authorization"), None);
    assert_eq!(rec.body["model"], "claude-test");
    assert_eq!(rec.body["stream"], true);
    assert_eq!(rec.body["max_tokens"], 200);
    assert!(
        rec.body["system"]
            .as_str()
            .unwrap_or("")
            .contains("<passage n=")
    );
    let msgs = rec.body["messages"].as_array().expect("messages");
    assert_eq!(msgs[0]["role"], "user");
    assert_eq!(
        msgs.last().map(|m| &m["role"]),
        Some(&serde_json::json!("user"))
    );
    assert!(
        rec.last_user_message()
            .unwrap_or_default()
            .contains("<passage n=\"2\" source=\"Biology Book\" page=\"13\">")
    );

    let Some(Ok(StreamEvent::Done {
        provider,
        usage,
        animation,
    })) = events.last()
    else {
        panic!("no Done");
    };
    assert_eq!(provider, "anthropic:claude-test");
    assert_eq!(
        *usage,
        Usage {
            prompt_tokens: prompt_words(&rec.body),
            completion_tokens: u32::try_from(ANSWER.split_whitespace().count()).expect("small"),
        }
    );
    assert_eq!(
        *animation,
        Some(Animation::new(Gesture::Pointing, Emotion::Neutral))
    );
}

#[tokio::test]
async fn fragmented_writes_still_decode() {
    let srv = server(StubBehaviour::stream("Ça va très bien — 水 [1].", 5)).await;
    srv.fragment_writes(Some(3));
    let p = provider(srv.anthropic_config("claude-test"));
    let events = collect(p.stream(&request("Why?")).await.expect("stream")).await;
    assert_complete(&events);
    assert_eq!(shown_text(&events), "Ça va très bien — 水 [1].");
}

#[tokio::test]
async fn error_event_midway_is_unavailable() {
    let srv = server(StubBehaviour::ErrorEvent {
        text: "Chlorophyll absorbs light".into(),
        after_chunks: 2,
    })
    .await;
    let p = provider(srv.anthropic_config("claude-test"));
    let events = collect(p.stream(&request("Why?")).await.expect("stream")).await;
    assert!(deltas(&events) >= 1);
    let err = assert_failed(&events);
    assert!(
        matches!(&err, LlmError::Unavailable(m) if m.contains("overloaded_error")),
        "{err:?}"
    );
}

#[tokio::test]
async fn overloaded_and_rate_limited_statuses() {
    let srv = server(StubBehaviour::status(529)).await;
    let p = provider(srv.anthropic_config("claude-test"));
    let Err(err) = p.stream(&request("Why?")).await else {
        panic!("expected an error");
    };
    assert!(
        matches!(&err, LlmError::Unavailable(m) if m.contains("529") && m.contains("Overloaded")),
        "{err:?}"
    );
    srv.set_behaviour(StubBehaviour::rate_limited(4));
    let Err(err) = p.stream(&request("Why?")).await else {
        panic!("expected an error");
    };
    assert_eq!(
        err,
        LlmError::RateLimited {
            retry_after: Some(Duration::from_secs(4))
        }
    );
    srv.set_behaviour(StubBehaviour::status(401));
    let Err(err) = p.stream(&request("Why?")).await else {
        panic!("expected an error");
    };
    assert!(matches!(err, LlmError::Config(_)), "{err:?}");
}

#[tokio::test]
async fn dying_midway_or_missing_message_stop_is_never_done() {
    let srv = server(StubBehaviour::DieMidway {
        text: "Chlorophyll absorbs light energy".into(),
        after_chunks: 3,
    })
    .await;
    let p = provider(srv.anthropic_config("claude-test"));
    let events = collect(p.stream(&request("Why?")).await.expect("stream")).await;
    assert!(matches!(assert_failed(&events), LlmError::BadResponse(_)));

    srv.set_behaviour(StubBehaviour::EndWithoutMarker {
        text: "Chlorophyll absorbs".into(),
        after_chunks: 2,
    });
    let events = collect(p.stream(&request("Why?")).await.expect("stream")).await;
    let err = assert_failed(&events);
    assert!(
        matches!(&err, LlmError::BadResponse(m) if m.contains("message_stop")),
        "{err:?}"
    );
}

#[tokio::test]
async fn slow_first_byte_times_out() {
    let srv = server(StubBehaviour::Slow {
        first_byte_after: Duration::from_secs(3),
        text: "Late.".into(),
    })
    .await;
    let p = provider(AnthropicConfig {
        first_token_timeout: Duration::from_millis(250),
        ..srv.anthropic_config("claude-test")
    });
    let Err(err) = p.stream(&request("Why?")).await else {
        panic!("expected a timeout");
    };
    assert_eq!(err, LlmError::Timeout);
}
