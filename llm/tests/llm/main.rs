//! Integration tests of the LanguageModel port: the HTTP providers against
//! the local protocol stubs, the chain and its breakers, the extractive
//! responder and the metrics. One test binary (faster to build and link).

mod anthropic;
mod chain;
mod common;
mod extractive;
mod metrics;
mod openai;
