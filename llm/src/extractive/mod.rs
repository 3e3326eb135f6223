//! [`Extractive`]: the built-in responder that needs no network and no
//! model. It answers by choosing, ordering and citing sentences of the given
//! passages, in the persona's voice for the request's language.
//!
//! How an answer is made:
//!
//! 1. **Sentences.** Each passage is split into sentences: blank lines and
//!    bullet lines separate; lines broken mid-sentence (PDF text) are
//!    joined; short unpunctuated lines followed by a capitalised line are
//!    headings; a `.`/`!`/`?`/`…` ends a sentence only when followed by
//!    whitespace and not by a lower-case word, and not after an
//!    abbreviation ("e.g.", "Fig.", "Dr.", "k.m.", …), an initial ("J.") or
//!    a list number ("1."); decimals ("3.5") never split.
//! 2. **Terms.** Words are lower-cased, accents folded, stop words (English,
//!    French, Swahili, Kinyarwanda) and question words removed, and a light
//!    suffix stemmer applied (plural -s/-es/-ies, -ing, -ed, -ly, final -e).
//!    A question with no content word (e.g. "tell me more") borrows the
//!    terms of the student's previous turn.
//! 3. **Scores.** Per sentence: the IDF-weighted share of question terms it
//!    contains (IDF over the given passages' sentences), plus bonuses for
//!    question-term pairs in order, for focus (question terms among few
//!    words), for cue matches — a definitional sentence ("X is a…",
//!    "X refers to…", "X est…", "X ni…") for "what is"/"define" questions,
//!    a causal one for "why", a number for "how many"/"when" — for early
//!    position in its passage and for passage rank; times a length-sanity
//!    factor (very short, very long, heading-like sentences lose).
//! 4. **Choice.** Sentences covering at least [`RELEVANCE_FLOOR`] of the
//!    question's weight are candidates; the best is taken, then up to three
//!    more — the second whenever one exists, the others only if they score
//!    at least half the best — skipping near-duplicates (stem Jaccard ≥ 0.6)
//!    and staying within the answer token limit. A chosen sentence that
//!    starts with a pronoun ("It", "This", "Il", "Hii", …) brings its
//!    predecessor along when there is room.
//! 5. **Writing.** Reading order (passage rank, then position; a defining
//!    sentence leads for "what is" questions), each sentence followed by its
//!    passage's `[n]`, after a per-language lead-in ("Here is what your
//!    course material says:", "In short:" for one sentence).
//!
//! Greetings with nothing relevant get [`i18n::greeting`] (greeting/happy);
//! answers citing a figure, table or diagram point (pointing/neutral);
//! others explain (explaining/neutral); nothing above the floor gets
//! [`i18n::not_covered`] (thinking/concerned). The same input always gives
//! the same output.

use std::collections::{BTreeSet, HashMap, HashSet};

use async_trait::async_trait;
use futures_util::StreamExt;

use crate::i18n::{self, Lang};
use crate::tokens::{EstimateCounter, TokenCounter};
use crate::types::{
    Animation, AnswerRequest, Emotion, EventStream, Gesture, LanguageModel, LlmError, Role,
    StreamEvent, Usage,
};

/// A sentence must contain at least this share of the question's IDF
/// weight to be used.
pub const RELEVANCE_FLOOR: f64 = 0.3;
/// At most this many sentences in an answer.
pub const MAX_SENTENCES: usize = 4;
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

/// Splits text into pieces of `n` words, each keeping the whitespace that
/// follows it, so the pieces concatenate to the text.
fn word_groups(text: &str, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut words = 0;
    let mut in_word = false;
    for c in text.chars() {
        if c.is_whitespace() {
            if in_word {
                words += 1;
                in_word = false;
            }
        } else {
            if !in_word && words >= n {
                out.push(std::mem::take(&mut cur));
                words = 0;
            }
            in_word = true;
        }
        cur.push(c);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

// ---------------------------------------------------------------------------
// Words

fn fold_char(c: char, out: &mut String) {
    let s = match c {
        'à' | 'á' | 'â' | 'ä' | 'ã' | 'å' | 'ā' => "a",
        'ç' => "c",
        'è' | 'é' | 'ê' | 'ë' | 'ē' => "e",
        'ì' | 'í' | 'î' | 'ï' | 'ī' => "i",
        'ñ' => "n",
        'ò' | 'ó' | 'ô' | 'ö' | 'õ' | 'ō' => "o",
        'ù' | 'ú' | 'û' | 'ü' | 'ū' => "u",
        'ý' | 'ÿ' => "y",
        'œ' => "oe",
        'æ' => "ae",
        'ß' => "ss",
        _ => {
            out.push(c);
            return;
        }
    };
    out.push_str(s);
}

/// Lower-cased, accent-folded words (letters and digits), apostrophes and
/// hyphens splitting.
fn words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for c in text.chars() {
        if c.is_alphanumeric() {
            for l in c.to_lowercase() {
                fold_char(l, &mut cur);
            }
        } else if !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

const STOP_WORDS: &[&str] = &[
    // English
    "a", "about", "above", "after", "again", "all", "also", "am", "an", "and", "any", "are", "as",
    "at", "be", "because", "been", "before", "being", "between", "both", "but", "by", "can",
    "could", "did", "do", "does", "doing", "down", "during", "each", "few", "for", "from",
    "further", "had", "has", "have", "having", "he", "her", "here", "hers", "him", "his", "i",
    "if", "in", "into", "is", "it", "its", "itself", "just", "me", "more", "most", "my", "no",
    "nor", "not", "now", "of", "off", "on", "once", "only", "or", "other", "our", "out", "over",
    "own", "same", "she", "should", "so", "some", "such", "than", "that", "the", "their", "them",
    "then", "there", "these", "they", "this", "those", "through", "to", "too", "under", "until",
    "up", "us", "very", "was", "we", "were", "will", "with", "would", "you", "your", "yours", "s",
    "t", "d", "ll", "re", "ve", "m", "don", "doesn", "isn", "aren", "let", "lets",
    // French
    "le", "la", "les", "l", "un", "une", "des", "du", "de", "d", "et", "ou", "en", "dans", "sur",
    "au", "aux", "par", "pour", "avec", "sans", "sous", "ce", "cet", "cette", "ces", "se", "sa",
    "son", "ses", "leur", "leurs", "il", "elle", "ils", "elles", "on", "nous", "vous", "je", "tu",
    "me", "te", "moi", "toi", "mon", "ma", "mes", "ton", "ta", "tes", "est", "sont", "etre", "ete",
    "a", "ont", "avoir", "fait", "faire", "y", "ne", "pas", "plus", "que", "qu", "qui", "dont",
    "c", "j", "n", "s", "m", "t", "mais", "donc", "car", "si", "tout", "tous", "toute", "toutes",
    "tres", "aussi", "comme", "entre", "vers", "chez", // Swahili
    "na", "ya", "wa", "za", "la", "kwa", "katika", "ni", "si", "au", "lakini", "hii", "huu",
    "hiyo", "hilo", "hizi", "hao", "hayo", "yake", "wake", "zake", "lake", "kama", "pia", "sana",
    "ndani", "kwenye", "kuhusu", "mimi", "wewe", "yeye", "sisi", "ninyi", "wao", "je", "tu", "ili",
    "hata", "bado", "sasa", "huo", "kila", "cha", "vya", // Kinyarwanda
    "mu", "ku", "kuri", "ya", "bya", "cya", "rya", "twa", "bwa", "kwa", "no", "na", "ni", "nka",
    "ko", "iki", "ibi", "ibyo", "icyo", "uyu", "iyi", "aba", "abo", "ariko", "kandi", "cyangwa",
    "naho", "ngo", "cyane", "nanone", "ndetse",
];

/// Words that mark the kind of question but carry no content.
const QUESTION_WORDS: &[&str] = &[
    // English
    "what",
    "which",
    "who",
    "whom",
    "whose",
    "when",
    "where",
    "why",
    "how",
    "define",
    "definition",
    "meaning",
    "mean",
    "means",
    "explain",
    "describe",
    "tell",
    "give",
    "list",
    "name",
    "please",
    "many",
    "much",
    "kind",
    "type",
    // French
    "quoi",
    "quel",
    "quelle",
    "quels",
    "quelles",
    "quand",
    "ou",
    "pourquoi",
    "comment",
    "combien",
    "definir",
    "definis",
    "definition",
    "explique",
    "expliquer",
    "expliquez",
    "decris",
    "decrire",
    "dis",
    "donne",
    "signifie",
    "veut",
    "dire",
    "stp",
    "svp",
    // Swahili
    "nini",
    "nani",
    "lini",
    "wapi",
    "vipi",
    "gani",
    "kwanini",
    "ngapi",
    "eleza",
    "elezea",
    "fafanua",
    "maana",
    "tafadhali",
    "nieleze",
    "niambie",
    // Kinyarwanda
    "nde",
    "ryari",
    "he",
    "gute",
    "kuki",
    "kubera",
    "angahe",
    "sobanura",
    "nsobanurira",
    "bisobanura",
    "ibisobanuro",
    "mbwira",
];

const GREETINGS: &[&[&str]] = &[
    &["hello"],
    &["hi"],
    &["hey"],
    &["hiya"],
    &["greetings"],
    &["good", "morning"],
    &["good", "afternoon"],
    &["good", "evening"],
    &["good", "day"],
    &["bonjour"],
    &["bonsoir"],
    &["salut"],
    &["coucou"],
    &["muraho"],
    &["mwaramutse"],
    &["mwiriwe"],
    &["amakuru"],
    &["habari"],
    &["jambo"],
    &["hujambo"],
    &["shikamoo"],
    &["mambo"],
    &["salama"],
    &["hodi"],
];

const FIGURE_WORDS: &[&str] = &[
    "figure",
    "figures",
    "fig",
    "figs",
    "table",
    "tables",
    "diagram",
    "diagrams",
    "chart",
    "charts",
    "graph",
    "graphs",
    "illustration",
    "illustrations",
    "tableau",
    "tableaux",
    "schema",
    "schemas",
    "diagramme",
    "diagrammes",
    "graphique",
    "graphiques",
    "picha",
    "jedwali",
    "mchoro",
    "michoro",
    "ishusho",
    "imbonerahamwe",
    "igishushanyo",
    "ibishushanyo",
];

const DEFINITION_CUES: &[&[&str]] = &[
    &["what", "is"],
    &["what", "are"],
    &["what", "s"],
    &["does", "mean"],
    &["define"],
    &["definition"],
    &["meaning"],
    &["qu", "est", "ce"],
    &["c", "est", "quoi"],
    &["definir"],
    &["definis"],
    &["definition"],
    &["que", "signifie"],
    &["ni", "nini"],
    &["maana"],
    &["fafanua"],
    &["ni", "iki"],
    &["bisobanura"],
    &["ibisobanuro"],
];

/// Words that, right after the term, make a sentence a definition.
const COPULAS: &[&str] = &[
    "is",
    "are",
    "means",
    "refers",
    "defined",
    "describes",
    "est",
    "sont",
    "designe",
    "signifie",
    "definit",
    "ni",
    "inamaanisha",
    "bivuga",
    "bisobanura",
];

const WHY_CUES: &[&[&str]] = &[
    &["why"],
    &["pourquoi"],
    &["kwa", "nini"],
    &["kwanini"],
    &["kuki"],
    &["kubera", "iki"],
];

const CAUSAL_WORDS: &[&str] = &[
    "because",
    "since",
    "therefore",
    "thus",
    "causes",
    "caused",
    "due",
    "leads",
    "so",
    "parce",
    "car",
    "cause",
    "donc",
    "grace",
    "sababu",
    "kwasababu",
    "kubera",
    "kuko",
    "bitewe",
];

const QUANTITY_CUES: &[&[&str]] = &[
    &["how", "many"],
    &["how", "much"],
    &["how", "long"],
    &["how", "old"],
    &["when"],
    &["combien"],
    &["quand"],
    &["ngapi"],
    &["lini"],
    &["angahe"],
    &["ryari"],
];

const ANAPHORS: &[&str] = &[
    "it", "this", "these", "they", "its", "their", "such", "those", "il", "elle", "ils", "elles",
    "ce", "cela", "ceci", "hii", "huu", "hizi", "hiyo", "ibi", "ibyo", "iyi", "uwo",
];

fn contains_phrase(words: &[String], phrase: &[&str]) -> bool {
    !phrase.is_empty()
        && words.len() >= phrase.len()
        && words
            .windows(phrase.len())
            .any(|w| w.iter().zip(phrase).all(|(a, b)| a == b))
}

fn any_phrase(words: &[String], phrases: &[&[&str]]) -> bool {
    phrases.iter().any(|p| contains_phrase(words, p))
}

/// The light stemmer: plural -s/-es/-ies, -ing, -ed, -ly, final -e.
fn stem(word: &str) -> String {
    let len = word.chars().count();
    if len <= 3 || word.chars().all(|c| c.is_ascii_digit()) {
        return word.to_owned();
    }
    let mut s = word.to_owned();
    if s.ends_with("sses") {
        s.truncate(s.len() - 2);
    } else if s.ends_with("ies") && len > 4 {
        s.truncate(s.len() - 3);
        s.push('y');
    } else if s.ends_with('s') && !s.ends_with("ss") && !s.ends_with("us") && !s.ends_with("is") {
        s.truncate(s.len() - 1);
    }
    let count = |s: &str| s.chars().count();
    if s.ends_with("ing") && count(&s) >= 6 {
        s.truncate(s.len() - 3);
    } else if (s.ends_with("ed") && count(&s) >= 5) || (s.ends_with("ly") && count(&s) >= 6) {
        s.truncate(s.len() - 2);
    }
    if s.ends_with('e') && count(&s) >= 4 {
        s.truncate(s.len() - 1);
    }
    s
}

struct Lexicon {
    stop: HashSet<&'static str>,
    question: HashSet<&'static str>,
}

impl Lexicon {
    fn new() -> Self {
        Self {
            stop: STOP_WORDS.iter().copied().collect(),
            question: QUESTION_WORDS.iter().copied().collect(),
        }
    }

    fn is_content(&self, w: &str) -> bool {
        !self.stop.contains(w)
            && !self.question.contains(w)
            && (w.chars().count() > 1 || w.chars().all(|c| c.is_ascii_digit()))
    }

    /// Content stems in order (duplicates kept).
    fn content_stems(&self, words: &[String]) -> Vec<String> {
        words
            .iter()
            .filter(|w| self.is_content(w))
            .map(|w| stem(w))
            .collect()
    }
}

// ---------------------------------------------------------------------------
// Sentences

const ABBREVIATIONS: &[&str] = &[
    "e.g", "i.e", "eg", "ie", "fig", "figs", "eq", "eqs", "no", "nos", "vol", "vols", "p", "pp",
    "ch", "chap", "sec", "tab", "dr", "mr", "mrs", "ms", "prof", "st", "vs", "cf", "approx", "al",
    "inc", "ltd", "jr", "sr", "dept", "mt", "ca", "resp", "ex", "env", "mme", "mlle", "av", "apr",
    "j.-c", "k.m", "n.k", "nk", "op", "ed", "eds", "min", "max", "gen", "col", "art", "viz",
];

/// Splits a passage into sentences.
fn split_sentences(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for segment in segments(text) {
        split_segment(&segment, &mut out);
    }
    out.retain(|s| s.chars().any(char::is_alphanumeric));
    out
}

fn is_bullet(line: &str) -> bool {
    let t = line.trim_start();
    if t.starts_with(['-', '•', '*', '–', '—', '▪', '◦']) {
        return true;
    }
    let digits = t.chars().take_while(char::is_ascii_digit).count();
    digits > 0 && digits < 4 && {
        let rest = &t[digits..];
        (rest.starts_with(". ") || rest.starts_with(") ")) && rest.len() > 2
    }
}

fn ends_sentence(line: &str) -> bool {
    line.trim_end()
        .trim_end_matches(['"', '\'', ')', ']', '»', '”', '’'])
        .ends_with(['.', '!', '?', '…', ':', ';'])
}

/// Paragraphs, bullet items and headings as separate segments; broken
/// lines joined.
fn segments(text: &str) -> Vec<String> {
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    let mut out = Vec::new();
    for para in text.split("\n\n") {
        let lines: Vec<&str> = para
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        let mut cur = String::new();
        for (i, line) in lines.iter().enumerate() {
            let next_starts_upper = lines
                .get(i + 1)
                .and_then(|l| l.chars().next())
                .is_some_and(char::is_uppercase);
            if is_bullet(line) && !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            if !cur.is_empty() {
                cur.push(' ');
            }
            let item = if is_bullet(line) {
                line.trim_start_matches(['-', '•', '*', '–', '—', '▪', '◦'])
                    .trim_start()
            } else {
                line
            };
            cur.push_str(item);
            let heading = cur == *item
                && !ends_sentence(line)
                && line.split_whitespace().count() < 8
                && next_starts_upper;
            if heading {
                out.push(std::mem::take(&mut cur));
            }
        }
        if !cur.is_empty() {
            out.push(cur);
        }
    }
    out
}

fn split_segment(seg: &str, out: &mut Vec<String>) {
    let chars: Vec<(usize, char)> = seg.char_indices().collect();
    let mut start = 0usize; // byte offset of the current sentence
    let mut i = 0usize;
    while i < chars.len() {
        let (_, c) = chars[i];
        if !matches!(c, '.' | '!' | '?' | '…' | '。') {
            i += 1;
            continue;
        }
        let mut j = i + 1;
        while j < chars.len()
            && matches!(
                chars[j].1,
                '.' | '!' | '?' | '…' | '"' | '\'' | ')' | ']' | '»' | '”' | '’'
            )
        {
            j += 1;
        }
        if j < chars.len() && !chars[j].1.is_whitespace() {
            i = j;
            continue;
        }
        let mut k = j;
        while k < chars.len() && chars[k].1.is_whitespace() {
            k += 1;
        }
        let end_byte = chars.get(j).map_or(seg.len(), |&(b, _)| b);
        if k < chars.len() {
            let next = chars[k].1;
            // A lower-case word, a closing quote or bracket, or more
            // punctuation: the sentence goes on ("approx. three", "« Oui ! » dit-il").
            if next.is_lowercase() || matches!(next, '»' | '”' | '’' | ')' | ']' | ',' | ';' | ':')
            {
                i = j;
                continue;
            }
            if c == '.' && j == i + 1 {
                let word_start = seg[start..chars[i].0]
                    .rfind(char::is_whitespace)
                    .map_or(start, |p| start + p + 1);
                let token = seg[word_start..chars[i].0]
                    .trim_start_matches(['(', '"', '\'', '«', '“'])
                    .to_lowercase();
                let is_abbrev = ABBREVIATIONS.contains(&token.as_str());
                let is_initial = token.chars().count() == 1
                    && seg[word_start..]
                        .chars()
                        .next()
                        .is_some_and(char::is_uppercase);
                let is_list_number = !token.is_empty()
                    && token.chars().all(|c| c.is_ascii_digit())
                    && seg[start..word_start].trim().is_empty();
                if is_abbrev || is_initial || is_list_number {
                    i = j;
                    continue;
                }
            }
        }
        let sentence = seg[start..end_byte].trim();
        if !sentence.is_empty() {
            out.push(sentence.to_owned());
        }
        start = chars.get(k).map_or(seg.len(), |&(b, _)| b);
        i = k;
    }
    let rest = seg[start.min(seg.len())..].trim();
    if !rest.is_empty() {
        out.push(rest.to_owned());
    }
}

// ---------------------------------------------------------------------------
// Scoring and choice

struct Sentence {
    /// Index of the passage in rank order.
    rank: usize,
    /// The passage's marker number.
    n: usize,
    /// Position within the passage.
    pos: usize,
    text: String,
    words: Vec<String>,
    stems: Vec<String>,
    stem_set: HashSet<String>,
}

struct Scored {
    idx: usize,
    score: f64,
    definitional: bool,
}

fn is_greeting(words: &[String]) -> bool {
    GREETINGS
        .iter()
        .any(|g| words.len() >= g.len() && words.iter().zip(g.iter()).all(|(a, b)| a == b))
}

/// Whether the sentence reads as a definition of one of `terms`: the term
/// (possibly several words) among its first five words directly followed by
/// a copula ("X is …", "X ni …"), or "… called X" / "… known as X".
fn is_definitional(s: &Sentence, terms: &HashSet<String>) -> bool {
    let w = &s.words;
    let is_term = |i: usize| w.get(i).is_some_and(|x| terms.contains(&stem(x)));
    for i in 0..w.len().min(5) {
        if !is_term(i) {
            continue;
        }
        let mut j = i + 1;
        while is_term(j) {
            j += 1;
        }
        if w.get(j).is_some_and(|c| COPULAS.contains(&c.as_str())) {
            return true;
        }
    }
    w.windows(2).enumerate().any(|(i, pair)| {
        let named = matches!(
            (pair[0].as_str(), pair[1].as_str()),
            ("called", _) | ("known", "as") | ("appele", _) | ("appelle", _) | ("nomme", _)
        ) || matches!(
            pair[0].as_str(),
            "huitwa" | "bita" | "yitwa" | "bwitwa" | "cyitwa"
        );
        let after = if pair[0] == "known" { i + 2 } else { i + 1 };
        named && is_term(after)
    })
}

fn jaccard(a: &HashSet<String>, b: &HashSet<String>) -> f64 {
    if a.is_empty() && b.is_empty() {
        return 1.0;
    }
    let inter = a.intersection(b).count() as f64;
    let union = a.union(b).count() as f64;
    inter / union
}

fn answer(req: &AnswerRequest) -> ExtractiveAnswer {
    let lang = Lang::from_tag(&req.language);
    let lex = Lexicon::new();
    let q_words = words(&req.question);

    let mut sentences: Vec<Sentence> = Vec::new();
    for (rank, p) in req.passages.iter().enumerate() {
        for (pos, text) in split_sentences(&p.text).into_iter().enumerate() {
            let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
            let w = words(&text);
            let stems = lex.content_stems(&w);
            let stem_set = stems.iter().cloned().collect();
            sentences.push(Sentence {
                rank,
                n: p.n,
                pos,
                text,
                words: w,
                stems,
                stem_set,
            });
        }
    }

    // Question terms, in order, deduplicated; borrowed from the previous
    // student turn when the question has none.
    let mut q_stems = dedup(lex.content_stems(&q_words));
    if q_stems.is_empty()
        && !is_greeting(&q_words)
        && let Some(prev) = req.history.iter().rev().find(|t| t.role == Role::User)
    {
        q_stems = dedup(lex.content_stems(&words(&prev.text)));
    }

    let ranked = rank_sentences(&sentences, &q_stems, &q_words);
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

    let chosen = choose(&sentences, &ranked, req.max_answer_tokens);
    let (one, many) = lead_ins(lang);
    let lead = if chosen.len() == 1 { one } else { many };
    let mut text = String::from(lead);
    let mut cited = Vec::new();
    for &idx in &chosen {
        let s = &sentences[idx];
        text.push(' ');
        text.push_str(&with_marker(&s.text, s.n));
        if !cited.contains(&s.n) {
            cited.push(s.n);
        }
    }
    let points = chosen.iter().any(|&i| {
        sentences[i]
            .words
            .iter()
            .any(|w| FIGURE_WORDS.contains(&w.as_str()))
    });
    let animation = if points {
        Animation::new(Gesture::Pointing, Emotion::Neutral)
    } else {
        Animation::new(Gesture::Explaining, Emotion::Neutral)
    };
    ExtractiveAnswer {
        text,
        kind: ExtractiveKind::Answer,
        animation,
        cited,
    }
}

fn dedup(v: Vec<String>) -> Vec<String> {
    let mut seen = HashSet::new();
    v.into_iter().filter(|s| seen.insert(s.clone())).collect()
}

fn lead_ins(lang: Lang) -> (&'static str, &'static str) {
    match lang {
        Lang::En => ("In short:", "Here is what your course material says:"),
        Lang::Fr => ("En bref :", "Voici ce que dit ton support de cours :"),
        Lang::Sw => (
            "Kwa ufupi:",
            "Hivi ndivyo maelezo ya somo lako yanavyosema:",
        ),
        Lang::Rw => ("Muri make:", "Dore ibyo isomo ryawe rivuga:"),
    }
}

/// Puts ` [n]` before the sentence's final punctuation (or after it, with a
/// full stop added, when it has none).
fn with_marker(sentence: &str, n: usize) -> String {
    let s = sentence.trim();
    let body = s.trim_end_matches(['.', '!', '?', '…', ':', ';']);
    let punct = &s[body.len()..];
    let punct = if punct.is_empty() || punct.starts_with([':', ';']) {
        "."
    } else {
        punct
    };
    format!("{} [{n}]{punct}", body.trim_end())
}

fn rank_sentences(sentences: &[Sentence], q_stems: &[String], q_words: &[String]) -> Vec<Scored> {
    if q_stems.is_empty() || sentences.is_empty() {
        return Vec::new();
    }
    let n = sentences.len() as f64;
    let mut df: HashMap<&str, usize> = HashMap::new();
    for s in sentences {
        for st in &s.stem_set {
            *df.entry(st.as_str()).or_default() += 1;
        }
    }
    let idf = |t: &str| {
        let d = df.get(t).copied().unwrap_or(0) as f64;
        (1.0 + (n - d + 0.5) / (d + 0.5)).ln()
    };
    let weights: Vec<f64> = q_stems.iter().map(|t| idf(t)).collect();
    let total: f64 = weights.iter().sum();
    let q_set: HashSet<String> = q_stems.iter().cloned().collect();
    let wants_definition = any_phrase(q_words, DEFINITION_CUES);
    let wants_cause = any_phrase(q_words, WHY_CUES);
    let wants_quantity = any_phrase(q_words, QUANTITY_CUES);

    let mut scored = Vec::new();
    for (idx, s) in sentences.iter().enumerate() {
        let matched: f64 = q_stems
            .iter()
            .zip(&weights)
            .filter(|(t, _)| s.stem_set.contains(*t))
            .map(|(_, w)| w)
            .sum();
        if matched <= 0.0 || total <= 0.0 {
            continue;
        }
        let coverage = matched / total;
        if coverage + 1e-9 < RELEVANCE_FLOOR {
            continue;
        }
        let pairs = q_stems
            .windows(2)
            .filter(|p| s.stems.windows(2).any(|w| w[0] == p[0] && w[1] == p[1]))
            .count();
        let matched_count = q_stems.iter().filter(|t| s.stem_set.contains(*t)).count() as f64;
        let focus = matched_count / (s.stems.len().max(1) as f64);
        let definitional = wants_definition && is_definitional(s, &q_set);
        let mut score = coverage + (0.15 * pairs as f64).min(0.3) + 0.1 * focus;
        if definitional {
            score += 0.35;
        }
        if wants_cause && s.words.iter().any(|w| CAUSAL_WORDS.contains(&w.as_str())) {
            score += 0.2;
        }
        if wants_quantity
            && s.words
                .iter()
                .any(|w| w.chars().any(|c| c.is_ascii_digit()))
        {
            score += 0.2;
        }
        score += 0.05 / (1.0 + s.pos as f64);
        score += 0.05 / (1.0 + s.rank as f64);
        let word_count = s.words.len();
        let heading_like = !ends_sentence(&s.text) && word_count < 8;
        if word_count < 4 || heading_like {
            score *= 0.6;
        } else if word_count > 60 {
            score *= 0.7;
        }
        scored.push(Scored {
            idx,
            score,
            definitional,
        });
    }
    scored.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then(sentences[a.idx].rank.cmp(&sentences[b.idx].rank))
            .then(sentences[a.idx].pos.cmp(&sentences[b.idx].pos))
    });
    scored
}

/// Picks the sentences and returns them in reading order.
fn choose(sentences: &[Sentence], ranked: &[Scored], max_tokens: u32) -> Vec<usize> {
    let counter = EstimateCounter;
    // Leave room for the lead-in and markers.
    let budget = max_tokens.saturating_sub(16).max(24);
    let best = &ranked[0];
    let mut chosen: Vec<usize> = vec![best.idx];
    let mut used = counter.count(&sentences[best.idx].text);
    let is_dup = |chosen: &[usize], idx: usize| {
        chosen
            .iter()
            .any(|&c| jaccard(&sentences[c].stem_set, &sentences[idx].stem_set) >= 0.6)
    };
    for cand in &ranked[1..] {
        if chosen.len() >= MAX_SENTENCES {
            break;
        }
        if chosen.len() >= 2 && cand.score < 0.5 * best.score {
            break;
        }
        if is_dup(&chosen, cand.idx) {
            continue;
        }
        let cost = counter.count(&sentences[cand.idx].text);
        if used + cost > budget {
            continue;
        }
        chosen.push(cand.idx);
        used += cost;
    }
    // Pronoun-led sentences bring their predecessor along.
    let mut extra = Vec::new();
    for &idx in &chosen {
        let s = &sentences[idx];
        let starts_with_anaphor = s
            .words
            .first()
            .is_some_and(|w| ANAPHORS.contains(&w.as_str()));
        if !starts_with_anaphor || s.pos == 0 || idx == 0 {
            continue;
        }
        let prev = idx - 1;
        let same_passage = sentences[prev].rank == s.rank && sentences[prev].pos + 1 == s.pos;
        if !same_passage || chosen.contains(&prev) || extra.contains(&prev) {
            continue;
        }
        let cost = counter.count(&sentences[prev].text);
        if chosen.len() + extra.len() < MAX_SENTENCES && used + cost <= budget {
            extra.push(prev);
            used += cost;
        }
    }
    chosen.extend(extra);

    let lead = ranked
        .iter()
        .find(|r| r.definitional && chosen.contains(&r.idx))
        .map(|r| r.idx);
    let mut order: BTreeSet<(usize, usize, usize)> = BTreeSet::new();
    for &idx in &chosen {
        if Some(idx) != lead {
            order.insert((sentences[idx].rank, sentences[idx].pos, idx));
        }
    }
    lead.into_iter()
        .chain(order.into_iter().map(|(_, _, idx)| idx))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentence_splitting_handles_abbreviations_decimals_and_layout() {
        let text = "Water boils at 100 °C. It boils at about 3.5 degrees lower on \
                    a mountain, e.g. on Mt. Kenya. See Fig. 2 for the curve! Dr. Amani \
                    measured it, cf. Table 1. J. K. Nyerere spoke. Ends here";
        assert_eq!(
            split_sentences(text),
            vec![
                "Water boils at 100 °C.",
                "It boils at about 3.5 degrees lower on a mountain, e.g. on Mt. Kenya.",
                "See Fig. 2 for the curve!",
                "Dr. Amani measured it, cf. Table 1.",
                "J. K. Nyerere spoke.",
                "Ends here",
            ]
        );
        let layout = "Photosynthesis\nPlants make food from\nlight and water.\n\n\
                      - Roots take up water.\n- Leaves take in carbon dioxide.\n\
                      1. First step. 2. Second step.";
        assert_eq!(
            split_sentences(layout),
            vec![
                "Photosynthesis",
                "Plants make food from light and water.",
                "Roots take up water.",
                "Leaves take in carbon dioxide.",
                "1. First step.",
                "2. Second step.",
            ]
        );
        assert_eq!(
            split_sentences("Il est là… Puis « Bonjour ! » dit-il. Fin."),
            vec!["Il est là…", "Puis « Bonjour ! » dit-il.", "Fin."]
        );
        assert!(split_sentences("  ...  ").is_empty());
    }

    #[test]
    fn words_fold_and_stem() {
        assert_eq!(
            words("L'énergie, c'est ÇA!"),
            vec!["l", "energie", "c", "est", "ca"]
        );
        assert_eq!(stem("plants"), "plant");
        assert_eq!(stem("producing"), stem("produced"));
        assert_eq!(stem("produces"), stem("produce"));
        assert_eq!(stem("energies"), "energy");
        assert_eq!(stem("processes"), "process");
        assert_eq!(stem("photosynthesis"), "photosynthesis");
        assert_eq!(stem("use"), stem("uses"));
        assert_eq!(stem("2010"), "2010");
        assert_eq!(stem("mimea"), "mimea");
    }

    #[test]
    fn markers_go_before_final_punctuation() {
        assert_eq!(with_marker("Plants grow.", 2), "Plants grow [2].");
        assert_eq!(with_marker("Why?", 1), "Why [1]?");
        assert_eq!(with_marker("A list:", 1), "A list [1].");
        assert_eq!(with_marker("No stop", 3), "No stop [3].");
        assert_eq!(word_groups("a b  c d e", 2), vec!["a b  ", "c d ", "e"]);
        assert_eq!(word_groups("a b  c d e", 2).concat(), "a b  c d e");
    }
}
