//! Scoring: each sentence of the passages as words and stems
//! ([`Sentence`]), and [`rank_sentences`], which scores them against the
//! question — IDF-weighted coverage of its terms, in-order pairs, focus, the
//! cues of definitional, causal and quantity questions, position and passage
//! rank, a length-sanity factor — and keeps those above a floor (the
//! pipeline's [`RELEVANCE_FLOOR`](super::RELEVANCE_FLOOR), or any shared
//! term as a fallback).

use std::collections::{HashMap, HashSet};

use super::sentences::{ends_sentence, split_sentences};
use super::words::{Lexicon, any_phrase, stem, words};
use crate::types::Passage;

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
    "hence",
    "consequently",
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
    &["how", "big"],
    &["how", "wide"],
    &["how", "fast"],
    &["how", "far"],
    &["how", "high"],
    &["how", "low"],
    &["how", "accurate"],
    &["how", "precise"],
    &["when"],
    &["what", "value"],
    &["what", "number"],
    &["which", "value"],
    &["maximum"],
    &["minimum"],
    &["max"],
    &["min"],
    &["largest"],
    &["biggest"],
    &["smallest"],
    &["highest"],
    &["lowest"],
    &["at", "most"],
    &["at", "least"],
    &["range"],
    &["limit"],
    &["accuracy"],
    &["combien"],
    &["quand"],
    &["ngapi"],
    &["lini"],
    &["angahe"],
    &["ryari"],
];

/// Nouns of measured quantities: "what X" or "what's the X" with one of
/// them asks for a number ("what's the resistance of the coil", "what
/// frequency did they measure").
const MEASURES: &[&str] = &[
    "voltage",
    "frequency",
    "resistance",
    "impedance",
    "capacitance",
    "inductance",
    "current",
    "speed",
    "velocity",
    "width",
    "length",
    "height",
    "depth",
    "distance",
    "size",
    "weight",
    "mass",
    "temperature",
    "pressure",
    "value",
    "number",
    "factor",
    "constant",
    "resolution",
    "gain",
    "amplitude",
    "rate",
    "period",
    "wavelength",
    "time",
    "duration",
    "power",
    "energy",
    "price",
    "cost",
    "age",
    "year",
];

/// "what … did they get/find/measure": asks for a result.
const RESULT_VERBS: &[&str] = &[
    "get",
    "got",
    "find",
    "found",
    "measure",
    "measured",
    "obtain",
    "obtained",
    "calculate",
    "calculated",
    "come",
];

/// Questions answered by a name to type or a place to connect: a command,
/// a function, a file, a terminal ("how do i load it into gp?", "where do
/// i plug in the microphone?").
const COMMAND_CUES: &[&[&str]] = &[
    &["how", "do", "i"],
    &["how", "can", "i"],
    &["how", "do", "you"],
    &["how", "to"],
    &["command"],
    &["function"],
    &["where", "do", "i"],
    &["where", "does"],
    &["where", "is"],
    &["which", "file"],
    &["what", "file"],
    &["which", "pin"],
    &["which", "terminal"],
];

/// Whether `w` holds a digit and is not one of the question's words: a
/// number or identifier the answer adds ("1.93", "T16"), not one the
/// student gave ("1N4148").
fn is_new_number(w: &str, q_words: &HashSet<&str>) -> bool {
    w.chars().any(|c| c.is_ascii_digit()) && !q_words.contains(w)
}

/// Whether a sentence names something to type or connect: a call
/// (`polred(T)`), a backslash command (`\p`), an assignment, a file name
/// (`eyeplot.py`), or an identifier with digits (`T15`, `SQR1`) that the
/// question does not already give.
fn names_something(s: &Sentence, q_words: &HashSet<&str>) -> bool {
    let b = s.text.as_bytes();
    let call = b
        .windows(2)
        .any(|w| w[0].is_ascii_alphanumeric() && w[1] == b'(');
    let backslash = b
        .windows(2)
        .any(|w| w[0] == b'\\' && w[1].is_ascii_alphabetic());
    let assignment = s.text.contains(" = ");
    // A token "name.ext": the extension two to four letters and digits,
    // from a letter ("eyeplot.py", not "1.25" or "e.g.").
    let file = s.text.split_whitespace().any(|t| {
        let t = t.trim_end_matches([',', ')', ';', ':']);
        t.split_once('.').is_some_and(|(name, ext)| {
            !name.is_empty()
                && (2..=4).contains(&ext.len())
                && ext.starts_with(|c: char| c.is_ascii_lowercase())
                && ext.chars().all(|c| c.is_ascii_alphanumeric())
        })
    });
    let identifier = s
        .words
        .iter()
        .any(|w| is_new_number(w, q_words) && w.chars().any(|c| c.is_ascii_alphabetic()));
    call || backslash || assignment || file || identifier
}

/// Whether the question asks for a number: a quantity cue, a measured
/// quantity after "what"/"which", or "what … did they find".
fn asks_for_number(q_words: &[String]) -> bool {
    if any_phrase(q_words, QUANTITY_CUES) {
        return true;
    }
    let asks_what = q_words
        .iter()
        .any(|w| matches!(w.as_str(), "what" | "which" | "whats"));
    if !asks_what {
        return false;
    }
    // The word as written ("voltage") or its stem ("frequencies").
    let measured = q_words
        .iter()
        .any(|w| MEASURES.contains(&w.as_str()) || MEASURES.contains(&stem(w).as_str()));
    let result = q_words.iter().any(|w| w == "did")
        && q_words.iter().any(|w| RESULT_VERBS.contains(&w.as_str()));
    measured || result
}

/// The kind of answer a question asks for, beyond its words: a number it
/// does not already hold, or a name to type or connect.
pub(super) struct Asks<'q> {
    number: bool,
    name: bool,
    /// The question's words, to tell a new number from one it gave.
    words: HashSet<&'q str>,
}

impl<'q> Asks<'q> {
    pub(super) fn of(q_words: &'q [String]) -> Self {
        let number = asks_for_number(q_words);
        Asks {
            number,
            name: !number && any_phrase(q_words, COMMAND_CUES),
            words: q_words.iter().map(String::as_str).collect(),
        }
    }

    /// Whether `s` gives a number the question asks for and does not hold.
    fn number_in(&self, s: &Sentence) -> bool {
        self.number && s.words.iter().any(|w| is_new_number(w, &self.words))
    }

    /// Whether `s` names something to type or connect, when the question
    /// asks how or where.
    fn name_in(&self, s: &Sentence) -> bool {
        self.name && names_something(s, &self.words)
    }

    /// Whether `s` holds what the question asks for (a number or a name);
    /// false for questions that ask for neither.
    pub(super) fn supplied_by(&self, s: &Sentence) -> bool {
        self.number_in(s) || self.name_in(s)
    }
}

pub(super) struct Sentence {
    /// Index of the passage in rank order.
    pub(super) rank: usize,
    /// The passage's marker number.
    pub(super) n: usize,
    /// Position within the passage.
    pub(super) pos: usize,
    /// The passage's closeness in meaning to the question, when known.
    pub(super) relevance: Option<f32>,
    pub(super) text: String,
    pub(super) words: Vec<String>,
    pub(super) stems: Vec<String>,
    pub(super) stem_set: HashSet<String>,
}

pub(super) struct Scored {
    pub(super) idx: usize,
    pub(super) score: f64,
    pub(super) definitional: bool,
}

impl Sentence {
    /// Every sentence of `passages` (in rank order), with its words and
    /// content stems.
    pub(super) fn all(passages: &[Passage], lex: &Lexicon) -> Vec<Sentence> {
        let mut sentences: Vec<Sentence> = Vec::new();
        for (rank, p) in passages.iter().enumerate() {
            for (pos, text) in split_sentences(&p.text).into_iter().enumerate() {
                let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
                let w = words(&text);
                let stems = lex.content_stems(&w);
                let stem_set = stems.iter().cloned().collect();
                sentences.push(Sentence {
                    rank,
                    n: p.n,
                    pos,
                    relevance: p.relevance,
                    text,
                    words: w,
                    stems,
                    stem_set,
                });
            }
        }
        sentences
    }
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

/// A sentence loses this much per unit of cosine similarity its passage
/// lies below the passage closest in meaning to the question (a nudge: the
/// passages' rank already weighs meaning and words; larger weights lost
/// answers on the training split).
const RELEVANCE_WEIGHT: f64 = 0.25;
/// Sentences of passages within this similarity of the closest need only
/// [`NEAR_FLOOR`] of the floor: a paraphrase shares few words with the
/// sentence that answers it, and the passage's meaning vouches for it.
const RELEVANCE_MARGIN: f64 = 0.05;
const NEAR_FLOOR: f64 = 0.5;
/// What a sentence of those passages needs when the question asks for a
/// number and the sentence gives one: the sentence that answers "how wide
/// is the pulse at switch-on" is "On powerup the width is 13
/// microseconds", which shares almost none of its words.
const NUMBER_NEAR_FLOOR: f64 = 0.25;

/// Ranks the sentences that hold at least `floor` of the question's weight
/// (and at least one of its terms), best first; with `max_rank`, only those
/// of the first `max_rank` passages.
pub(super) fn rank_sentences(
    sentences: &[Sentence],
    q_stems: &[String],
    q_words: &[String],
    floor: f64,
    max_rank: Option<usize>,
) -> Vec<Scored> {
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
    let asks = Asks::of(q_words);

    let closest = sentences
        .iter()
        .filter_map(|s| s.relevance)
        .reduce(f32::max);

    let mut scored = Vec::new();
    for (idx, s) in sentences.iter().enumerate() {
        if max_rank.is_some_and(|m| s.rank >= m) {
            continue;
        }
        // How far below the closest passage in meaning this one lies.
        let gap = s.relevance.zip(closest).map(|(r, c)| f64::from(c - r));
        let near = gap.is_some_and(|g| g <= RELEVANCE_MARGIN);
        let gives_number = asks.number_in(s);
        let names = asks.name_in(s);
        let floor = if gives_number && near {
            floor * NUMBER_NEAR_FLOOR
        } else if near {
            floor * NEAR_FLOOR
        } else {
            floor
        };
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
        if coverage + 1e-9 < floor {
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
        if gives_number {
            score += 0.2;
        }
        if names {
            score += 0.2;
        }
        score += 0.05 / (1.0 + s.pos as f64);
        score += 0.05 / (1.0 + s.rank as f64);
        score -= RELEVANCE_WEIGHT * gap.unwrap_or(0.0);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extractive::words::dedup;

    /// The sentences of one passage, as the responder reads them.
    fn passage_sentences(text: &str) -> Vec<Sentence> {
        let passage = Passage {
            n: 1,
            source_title: "Manual".into(),
            page: 1,
            text: text.into(),
            relevance: None,
        };
        Sentence::all(&[passage], &Lexicon::new())
    }

    fn sentence(text: &str) -> Sentence {
        passage_sentences(text).remove(0)
    }

    #[test]
    fn questions_that_ask_for_a_number() {
        for q in [
            "what frequency did they measure with just a wire?",
            "what's the resistance of the 3000 turn coil?",
            "what did they find for the diode?",
            "how many points can i record?",
        ] {
            assert!(asks_for_number(&words(q)), "{q}");
        }
        for q in [
            "what is a diode?",
            "how do i load a file into gp?",
            "why does the buzzer sit on a cloth?",
        ] {
            assert!(!asks_for_number(&words(q)), "{q}");
        }
    }

    #[test]
    fn sentences_that_name_something_to_type_or_connect() {
        let q = words("how do i connect the buzzer to T15?");
        let q: HashSet<&str> = q.iter().map(String::as_str).collect();
        for s in [
            "Type \\r myfile at the prompt.",
            "P = polred(T)",
            "Power spectrum is saved to exploreFFT.dat in text form.",
            "Connect the microphone between T15 & T16.",
            "Call ellap(E, p) for the count.",
        ] {
            assert!(names_something(&sentence(s), &q), "{s}");
        }
        for s in [
            "Connect the buzzer to T15.",
            "Connect the buzzer to the ground terminal.",
            "The result is stored in the history, e.g. for later use.",
            "The step is 1.25 millivolts.",
        ] {
            assert!(!names_something(&sentence(s), &q), "{s}");
        }
    }

    #[test]
    fn a_how_do_i_question_ranks_the_command_first() {
        // The same words; the second sentence names what to type, the
        // first (earlier, so ahead on position) does not.
        let sentences = passage_sentences(
            "To load a script file, type its name in gp. To load a script file, type \\r \
             myscript in gp.",
        );
        let q_words = words("how do i load my script file into gp?");
        let q_stems = dedup(Lexicon::new().content_stems(&q_words));
        let ranked = rank_sentences(&sentences, &q_stems, &q_words, 0.3, None);
        assert_eq!(ranked.first().map(|r| r.idx), Some(1));
        // A question that does not ask how: position decides.
        let q_words = words("is there a script file for gp?");
        let q_stems = dedup(Lexicon::new().content_stems(&q_words));
        let ranked = rank_sentences(&sentences, &q_stems, &q_words, 0.3, None);
        assert_eq!(ranked.first().map(|r| r.idx), Some(0));
    }
}
