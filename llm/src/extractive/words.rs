//! Words: cutting text into lower-cased, accent-folded words, the light
//! suffix stemmer, and the [`Lexicon`] of words that carry no content (stop
//! words and question words in English, French, Swahili and Kinyarwanda) plus
//! the greetings. Pure functions over strings.

use std::collections::HashSet;

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
pub(super) fn words(text: &str) -> Vec<String> {
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

fn contains_phrase(words: &[String], phrase: &[&str]) -> bool {
    !phrase.is_empty()
        && words.len() >= phrase.len()
        && words
            .windows(phrase.len())
            .any(|w| w.iter().zip(phrase).all(|(a, b)| a == b))
}

pub(super) fn any_phrase(words: &[String], phrases: &[&[&str]]) -> bool {
    phrases.iter().any(|p| contains_phrase(words, p))
}

/// A measured quantity's noun and the adjective a student asks with ("how
/// wide" / "the width"): each pair stems alike.
const SAME_STEM: &[(&str, &str)] = &[
    ("width", "wide"),
    ("widths", "wide"),
    ("length", "long"),
    ("lengths", "long"),
    ("height", "high"),
    ("heights", "high"),
    ("depth", "deep"),
    ("strength", "strong"),
];

/// The light stemmer: plural -s/-es/-ies, -ing, -ed, -ly, final -e.
pub(super) fn stem(word: &str) -> String {
    let word = SAME_STEM
        .iter()
        .find(|(from, _)| *from == word)
        .map_or(word, |(_, to)| to);
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

pub(super) struct Lexicon {
    stop: HashSet<&'static str>,
    question: HashSet<&'static str>,
}

impl Lexicon {
    pub(super) fn new() -> Self {
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
    pub(super) fn content_stems(&self, words: &[String]) -> Vec<String> {
        words
            .iter()
            .filter(|w| self.is_content(w))
            .map(|w| stem(w))
            .collect()
    }
}

/// Whether the words start with a greeting ("hello", "good morning", "muraho", …).
pub(super) fn is_greeting(words: &[String]) -> bool {
    GREETINGS
        .iter()
        .any(|g| words.len() >= g.len() && words.iter().zip(g.iter()).all(|(a, b)| a == b))
}

/// `v` without repeats, first occurrence kept.
pub(super) fn dedup(v: Vec<String>) -> Vec<String> {
    let mut seen = HashSet::new();
    v.into_iter().filter(|s| seen.insert(s.clone())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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
        // "how wide is the pulse" / "the width is 13 microseconds".
        assert_eq!(stem("width"), stem("wide"));
        assert_eq!(stem("lengths"), stem("long"));
        assert_ne!(stem("wide"), stem("window"));
        assert_eq!(stem("mimea"), "mimea");
    }
}
