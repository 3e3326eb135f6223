//! [`Extractive`]: the built-in responder that needs no network and no
//! model. It answers by choosing, ordering and citing sentences of the given
//! passages, in the persona's voice for the request's language.
//!
//! How an answer is made:
//!
//! 1. **Sentences** (`sentences`). Each passage is split into sentences: blank
//!    lines and bullet lines separate; lines broken mid-sentence (PDF text) are
//!    joined; short unpunctuated lines followed by a capitalised line are
//!    headings; a `.`/`!`/`?`/`…` ends a sentence only when followed by
//!    whitespace and not by a lower-case word, and not after an abbreviation
//!    ("e.g.", "Fig.", "Dr.", "k.m.", …), an initial ("J.") or a list number
//!    ("1."); decimals ("3.5") never split.
//! 2. **Terms** (`words`). Words are lower-cased, accents folded, stop words
//!    (English, French, Swahili, Kinyarwanda) and question words removed, and a
//!    light suffix stemmer applied (plural -s/-es/-ies, -ing, -ed, -ly, final
//!    -e; a measured quantity's noun stems as its adjective, "width" as
//!    "wide", "length" as "long"). A question with no content word (e.g.
//!    "tell me more") borrows the
//!    terms of the student's previous turn.
//! 3. **Scores** (`score`). Per sentence: the IDF-weighted share of question
//!    terms it contains (IDF over the given passages' sentences), plus bonuses
//!    for question-term pairs in order, for focus (question terms among few
//!    words), for cue matches — a definitional sentence ("X is a…", "X refers
//!    to…", "X est…", "X ni…") for "what is"/"define" questions, a causal one
//!    for "why", a number the question does not already hold for "how
//!    many"/"when"/"largest"/"range"/"what's the resistance"/"what … did
//!    they find"…, something to type or connect (a call, a `\` command, a
//!    file name, an identifier with digits) for "how do i"/"where do i"/
//!    "which function"… — for
//!    early position in its passage and for passage rank, minus a small
//!    penalty per unit of similarity its passage lies below the passage
//!    closest in meaning to the question ([`Passage::relevance`], when the
//!    caller gives it); times a length-sanity factor (very short, very long,
//!    heading-like sentences lose). Sentences of the passages closest in
//!    meaning need only half the floor (a quarter when the question asks for
//!    a number and the sentence gives one): a student's paraphrase shares
//!    few words with the sentence that answers it.
//!
//!    [`Passage::relevance`]: crate::Passage::relevance
//! 4. **Choice** (`select`). Sentences covering at least [`RELEVANCE_FLOOR`] of
//!    the question's weight are candidates (when none does, any sentence of
//!    the [`FALLBACK_PASSAGES`] best passages that shares a term: the server
//!    only gives passages it judged relevant, possibly by meaning); the best
//!    is taken with the sentence that follows it in its passage when the
//!    answer runs on into it: the two share a content word ("The positive
//!    input goes to SEN. The negative input is tied to 1.25 V."), the second
//!    starts with a pronoun, or it holds the number or name the question
//!    asks for and the best does not. Then more up to [`MAX_SENTENCES`] — the
//!    second whenever one exists, the others only if they score at least half
//!    the best, each with its follower when that one holds what the question
//!    asks for and it does not — skipping near-duplicates (stem Jaccard ≥
//!    0.6) and staying within the answer token limit. A chosen sentence that
//!    starts with a pronoun ("It", "This", "Il", "Hii", …) brings its
//!    predecessor along when there is room, and a line between two chosen
//!    sentences of a passage (a call between its explanation and its
//!    result) is kept.
//! 5. **Writing** (`render`). Reading order (passage rank, then position; a
//!    defining sentence leads for "what is" questions), each sentence followed
//!    by its passage's `[n]`, after a per-language lead-in ("Here is what your
//!    course material says:", "In short:" for one sentence).
//!
//! Greetings with nothing relevant get [`i18n::greeting`] (greeting/happy);
//! answers citing a figure, table or diagram point (pointing/neutral);
//! others explain (explaining/neutral); nothing above the floor gets
//! [`i18n::not_covered`] (thinking/concerned). The same input always gives
//! the same output.
//!
//! This module holds the public types, the responder and the pipeline
//! (`answer`) that runs the steps; each step lives in the submodule named
//! above (the reading order of step 5 is decided in `select`).

mod render;
mod score;
mod select;
mod sentences;
mod words;

use async_trait::async_trait;
use futures_util::StreamExt;

use crate::i18n::{self, Lang};
use crate::tokens::{EstimateCounter, TokenCounter};
use crate::types::{
    Animation, AnswerRequest, Emotion, EventStream, Gesture, LanguageModel, LlmError, Role,
    StreamEvent, Usage,
};
use render::word_groups;
use score::{Asks, Sentence, rank_sentences};
use words::{Lexicon, dedup, is_greeting, words};

/// A sentence must contain at least this share of the question's IDF
/// weight to be used.
pub const RELEVANCE_FLOOR: f64 = 0.3;
/// When no sentence reaches the floor, sentences of this many best passages
/// that share any question term are used.
pub const FALLBACK_PASSAGES: usize = 2;
/// At most this many sentences in an answer: the best, the sentence it runs
/// on into, and up to three more chosen on their own merit.
pub const MAX_SENTENCES: usize = 5;
/// Words per streamed delta.
pub const WORDS_PER_DELTA: usize = 4;

/// What kind of reply the extractive responder produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExtractiveKind {
    /// Sentences from the passages, cited.
    Answer,
    /// A greeting (the question was one, and nothing relevant was found).
    Greeting,
    /// Nothing in the passages answers the question.
    NotCovered,
}

/// A complete extractive reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtractiveAnswer {
    /// The text, with `[n]` markers.
    pub text: String,
    /// What kind of reply it is.
    pub kind: ExtractiveKind,
    /// The animation derived from it.
    pub animation: Animation,
    /// Passage numbers cited, in order of first citation.
    pub cited: Vec<usize>,
}

/// The built-in, offline language model; see the module docs.
#[derive(Debug, Clone, Default)]
pub struct Extractive {
    _private: (),
}

impl Extractive {
    /// The responder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Computes the whole reply for `req` (what [`LanguageModel::stream`] streams).
    pub fn answer(&self, req: &AnswerRequest) -> ExtractiveAnswer {
        answer(req)
    }
}

#[async_trait]
impl LanguageModel for Extractive {
    fn name(&self) -> &str {
        "extractive"
    }

    /// Effectively unbounded: it reads every passage it is given.
    fn context_window(&self) -> u32 {
        1_000_000
    }

    async fn stream(&self, req: &AnswerRequest) -> Result<EventStream, LlmError> {
        let reply = answer(req);
        let counter = EstimateCounter;
        let read: String = std::iter::once(req.question.as_str())
            .chain(req.passages.iter().map(|p| p.text.as_str()))
            .collect::<Vec<_>>()
            .join("\n");
        let usage = Usage {
            prompt_tokens: counter.count(&read),
            completion_tokens: counter.count(&reply.text),
        };
        let mut events: Vec<Result<StreamEvent, LlmError>> =
            word_groups(&reply.text, WORDS_PER_DELTA)
                .into_iter()
                .map(|g| Ok(StreamEvent::Delta(g)))
                .collect();
        events.push(Ok(StreamEvent::Done {
            provider: self.name().to_owned(),
            usage,
            animation: Some(reply.animation),
        }));
        Ok(futures_util::stream::iter(events).boxed())
    }
}

/// The whole pipeline: sentences, question terms, scores, choice, writing.
fn answer(req: &AnswerRequest) -> ExtractiveAnswer {
    let lang = Lang::from_tag(&req.language);
    let lex = Lexicon::new();
    let q_words = words(&req.question);
    let sentences = Sentence::all(&req.passages, &lex);

    // Question terms, in order, deduplicated; borrowed from the previous
    // student turn when the question has none.
    let mut q_stems = dedup(lex.content_stems(&q_words));
    if q_stems.is_empty()
        && !is_greeting(&q_words)
        && let Some(prev) = req.history.iter().rev().find(|t| t.role == Role::User)
    {
        q_stems = dedup(lex.content_stems(&words(&prev.text)));
    }

    let mut ranked = rank_sentences(&sentences, &q_stems, &q_words, RELEVANCE_FLOOR, None);
    if ranked.is_empty() && !is_greeting(&q_words) {
        // The caller gives passages it judged relevant, possibly by meaning
        // (a student's paraphrase shares few words with the manual): answer
        // from the best two passages' sentences that share any term.
        ranked = rank_sentences(&sentences, &q_stems, &q_words, 0.0, Some(FALLBACK_PASSAGES));
    }
    if ranked.is_empty() {
        return if is_greeting(&q_words) {
            ExtractiveAnswer {
                text: i18n::greeting(&req.language, &req.persona_name),
                kind: ExtractiveKind::Greeting,
                animation: Animation::new(Gesture::Greeting, Emotion::Happy),
                cited: Vec::new(),
            }
        } else {
            ExtractiveAnswer {
                text: i18n::not_covered(&req.language, req.subject.as_deref()),
                kind: ExtractiveKind::NotCovered,
                animation: Animation::new(Gesture::Thinking, Emotion::Concerned),
                cited: Vec::new(),
            }
        };
    }

    let chosen = select::choose(
        &sentences,
        &ranked,
        &Asks::of(&q_words),
        req.max_answer_tokens,
    );
    let (text, cited) = render::write(lang, &sentences, &chosen);
    ExtractiveAnswer {
        text,
        kind: ExtractiveKind::Answer,
        animation: render::animation(&sentences, &chosen),
        cited,
    }
}
