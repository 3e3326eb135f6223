//! The chain over real providers talking to stub servers.

use std::sync::Arc;
use std::time::Duration;

use bwenge_llm::testing::{StubBehaviour, StubServer};
use bwenge_llm::{
    Anthropic, BreakerConfig, BreakerState, Chain, Extractive, LanguageModel, LlmError,
    OpenAiCompatible, StreamEvent,
};

use crate::common::{assert_complete, collect, request, shown_text};

async fn openai(srv: &StubServer, model: &str) -> Arc<dyn LanguageModel> {
    Arc::new(OpenAiCompatible::new(srv.openai_config(model)).expect("provider"))
}

fn done_provider(events: &[Result<StreamEvent, LlmError>]) -> Option<String> {
    match events.last() {
        Some(Ok(StreamEvent::Done { provider, .. })) => Some(provider.clone()),
        _ => None,
    }
}

#[tokio::test]
async fn first_provider_500_second_answers() {
    let first = StubServer::openai(StubBehaviour::status(500))
        .await
        .expect("stub");
    let second = StubServer::anthropic(StubBehaviour::stream("Second answer [1].", 3))
        .await
        .expect("stub");
    let chain = Chain::new(
        vec![
            openai(&first, "gpt-4o-mini").await,
            Arc::new(Anthropic::new(second.anthropic_config("claude-test")).expect("provider")),
        ],
        BreakerConfig::default(),
    );
    assert_eq!(chain.name(), "chain");
    assert_eq!(chain.context_window(), 16_384);
    let events = collect(chain.stream(&request("Why?")).await.expect("stream")).await;
    assert_complete(&events);
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Ok(StreamEvent::Restart { .. })))
    );
    assert_eq!(shown_text(&events), "Second answer [1].");
    assert_eq!(
        done_provider(&events).as_deref(),
        Some("anthropic:claude-test")
    );
    assert_eq!((first.request_count(), second.request_count()), (1, 1));
}

#[tokio::test]
async fn first_dies_midway_restart_then_second_answers() {
    let first = StubServer::openai(StubBehaviour::DieMidway {
        text: "This answer will never finish properly".into(),
        after_chunks: 3,
    })
    .await
    .expect("stub");
    let second = StubServer::openai(StubBehaviour::stream("Complete answer [2].", 2))
        .await
        .expect("stub");
    let chain = Chain::new(
        vec![
            openai(&first, "model-a").await,
            openai(&second, "model-b").await,
        ],
        BreakerConfig::default(),
    );
    let events = collect(chain.stream(&request("Why?")).await.expect("stream")).await;
    assert_complete(&events);
    let restart = events
        .iter()
        .position(|e| matches!(e, Ok(StreamEvent::Restart { .. })))
        .expect("a Restart event");
    assert!(restart > 0, "partial deltas came before the Restart");
    assert!(matches!(
        &events[restart],
        Ok(StreamEvent::Restart { provider, reason }) if provider == "openai:model-a" && reason.contains("bad response")
    ));
    assert!(matches!(&events[0], Ok(StreamEvent::Delta(d)) if d.starts_with("This")));
    assert_eq!(shown_text(&events), "Complete answer [2].");
    assert_eq!(done_provider(&events).as_deref(), Some("openai:model-b"));
}

#[tokio::test]
async fn breaker_opens_skips_the_provider_and_half_opens() {
    let first = StubServer::openai(StubBehaviour::status(503))
        .await
        .expect("stub");
    let open_for = Duration::from_millis(400);
    let chain = Chain::new(
        vec![openai(&first, "flaky").await, Arc::new(Extractive::new())],
        BreakerConfig {
            failure_threshold: 3,
            open_for,
        },
    );
    let req = request("What is chlorophyll?");
    for _ in 0..3 {
        let events = collect(chain.stream(&req).await.expect("stream")).await;
        assert_eq!(done_provider(&events).as_deref(), Some("extractive"));
    }
    assert_eq!(first.request_count(), 3);
    assert_eq!(chain.status()[0].state, BreakerState::Open);
    // Open: the stub sees no more requests.
    for _ in 0..5 {
        let events = collect(chain.stream(&req).await.expect("stream")).await;
        assert_eq!(done_provider(&events).as_deref(), Some("extractive"));
    }
    assert_eq!(first.request_count(), 3);

    // After open_for, one probe goes through; it fails, so the breaker re-opens.
    tokio::time::sleep(open_for + Duration::from_millis(100)).await;
    assert_eq!(chain.status()[0].state, BreakerState::HalfOpen);
    collect(chain.stream(&req).await.expect("stream")).await;
    assert_eq!(first.request_count(), 4);
    collect(chain.stream(&req).await.expect("stream")).await;
    assert_eq!(first.request_count(), 4);

    // The provider recovers: the next probe succeeds and closes the breaker.
    first.set_behaviour(StubBehaviour::stream("Recovered [2].", 2));
    tokio::time::sleep(open_for + Duration::from_millis(100)).await;
    let events = collect(chain.stream(&req).await.expect("stream")).await;
    assert_eq!(done_provider(&events).as_deref(), Some("openai:flaky"));
    assert_eq!(chain.status()[0].state, BreakerState::Closed);
    collect(chain.stream(&req).await.expect("stream")).await;
    assert_eq!(first.request_count(), 6);
}

#[tokio::test]
async fn all_failing_is_all_failed_with_a_retry_hint() {
    let first = StubServer::openai(StubBehaviour::rate_limited(20))
        .await
        .expect("stub");
    let second = StubServer::anthropic(StubBehaviour::status(529))
        .await
        .expect("stub");
    let chain = Chain::new(
        vec![
            openai(&first, "gpt-4o-mini").await,
            Arc::new(Anthropic::new(second.anthropic_config("claude-test")).expect("provider")),
        ],
        BreakerConfig {
            failure_threshold: 1,
            open_for: Duration::from_secs(30),
        },
    );
    let Err(err) = chain.stream(&request("Why?")).await else {
        panic!("expected AllFailed");
    };
    let LlmError::AllFailed { last } = &err else {
        panic!("expected AllFailed, got {err:?}");
    };
    assert!(matches!(**last, LlmError::Unavailable(_)), "{last:?}");
    assert!(err.is_transient());
    // The first asked for 20 s, the second's breaker is open for 30 s.
    let hint = chain.retry_after();
    assert!(
        hint >= Duration::from_secs(19) && hint <= Duration::from_secs(20),
        "{hint:?}"
    );
    // Nothing is called while both wait.
    let Err(LlmError::AllFailed { last }) = chain.stream(&request("Why?")).await else {
        panic!("expected AllFailed");
    };
    assert_eq!(*last, LlmError::CircuitOpen);
    assert_eq!((first.request_count(), second.request_count()), (1, 1));
}
