//! The fixed sentences a persona says without a model — "not covered",
//! refusals, greetings — in English, French, Swahili and Kinyarwanda, with
//! English as the fallback for every other language; and [`Lang`], the
//! normalised language those sentences (and the extractive responder's voice
//! templates) are chosen by.
//!
//! Subjects are interpolated verbatim; the functions that take one accept
//! `&str`, `Some(&str)` or `None`.

/// A language this crate has phrases for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lang {
    /// English (also the fallback).
    En,
    /// French.
    Fr,
    /// Swahili.
    Sw,
    /// Kinyarwanda.
    Rw,
}

impl Lang {
    /// Reads a BCP-47-ish tag ("fr", "fr-CA", "FR_fr", "swa", "kin"); anything
    /// unknown is English.
    pub fn from_tag(tag: &str) -> Self {
        let primary = tag
            .trim()
            .split(['-', '_'])
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        match primary.as_str() {
            "fr" | "fra" | "fre" => Lang::Fr,
            "sw" | "swa" | "swh" => Lang::Sw,
            "rw" | "kin" => Lang::Rw,
            _ => Lang::En,
        }
    }

    /// The ISO 639-1 code.
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Fr => "fr",
            Lang::Sw => "sw",
            Lang::Rw => "rw",
        }
    }
}

/// The English name of a language tag, for telling a model which language to
/// answer in. Common tags beyond the four phrase languages are named too;
/// anything else is returned as given.
pub fn language_name(tag: &str) -> String {
    let primary = tag
        .trim()
        .split(['-', '_'])
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    let name = match primary.as_str() {
        "en" | "eng" => "English",
        "fr" | "fra" | "fre" => "French",
        "sw" | "swa" | "swh" => "Swahili (Kiswahili)",
        "rw" | "kin" => "Kinyarwanda",
        "rn" | "run" => "Kirundi",
        "lg" | "lug" => "Luganda",
        "am" | "amh" => "Amharic",
        "so" | "som" => "Somali",
        "ha" | "hau" => "Hausa",
        "yo" | "yor" => "Yoruba",
        "ig" | "ibo" => "Igbo",
        "zu" | "zul" => "Zulu",
        "xh" | "xho" => "Xhosa",
        "ar" | "ara" => "Arabic",
        "pt" | "por" => "Portuguese",
        "es" | "spa" => "Spanish",
        "de" | "deu" | "ger" => "German",
        "" => "English",
        _ => return tag.trim().to_owned(),
    };
    name.to_owned()
}

/// "My course material doesn't cover that question, so I won't guess. …"
pub fn not_covered<'a>(lang: &str, subject: impl Into<Option<&'a str>>) -> String {
    let subject = clean(subject.into());
    match (Lang::from_tag(lang), subject) {
        (Lang::En, Some(s)) => format!(
            "My course material doesn't cover that question, so I won't guess. \
             I can help with {s} questions that your course material covers."
        ),
        (Lang::En, None) => "My course material doesn't cover that question, so I won't guess. \
             Try asking me about something from your course material."
            .to_owned(),
        (Lang::Fr, Some(s)) => format!(
            "Mon support de cours ne traite pas cette question, alors je préfère ne pas deviner. \
             Je peux t'aider pour les questions de {s} abordées dans ton cours."
        ),
        (Lang::Fr, None) => {
            "Mon support de cours ne traite pas cette question, alors je préfère ne pas deviner. \
             Pose-moi plutôt une question sur ton cours."
                .to_owned()
        }
        (Lang::Sw, Some(s)) => format!(
            "Maelezo ya somo langu hayajibu swali hilo, kwa hiyo sitabahatisha. \
             Ninaweza kukusaidia na maswali ya {s} yaliyomo kwenye maelezo ya somo lako."
        ),
        (Lang::Sw, None) => "Maelezo ya somo langu hayajibu swali hilo, kwa hiyo sitabahatisha. \
             Jaribu kuniuliza kuhusu jambo lililo kwenye maelezo ya somo lako."
            .to_owned(),
        (Lang::Rw, Some(s)) => format!(
            "Ibikoresho by'isomo ryanjye ntibisubiza icyo kibazo, bityo sinshaka gukeka. \
             Nshobora kugufasha ku bibazo bya {s} biri mu isomo ryawe."
        ),
        (Lang::Rw, None) => {
            "Ibikoresho by'isomo ryanjye ntibisubiza icyo kibazo, bityo sinshaka gukeka. \
             Gerageza kumbaza ikintu kiri mu isomo ryawe."
                .to_owned()
        }
    }
}

/// "Not covered", pointing at the nearest thing the material does cover:
/// passage `[1]`, `title` at `page`. Said when the evidence is too weak to
/// answer from, yet some passage is close to the question.
pub fn not_covered_nearest(lang: &str, title: &str, page: i64) -> String {
    let title = title.trim();
    match Lang::from_tag(lang) {
        Lang::En => format!(
            "My course material doesn't answer that question, so I won't guess. \
             The closest it comes is \u{201c}{title}\u{201d}, page {page} [1]."
        ),
        Lang::Fr => format!(
            "Mon support de cours ne répond pas à cette question, alors je préfère ne pas deviner. \
             Le passage le plus proche est dans \u{ab}\u{a0}{title}\u{a0}\u{bb}, page {page} [1]."
        ),
        Lang::Sw => format!(
            "Maelezo ya somo langu hayajibu swali hilo, kwa hiyo sitabahatisha. \
             Kinachokaribia zaidi ni \u{201c}{title}\u{201d}, ukurasa {page} [1]."
        ),
        Lang::Rw => format!(
            "Ibikoresho by'isomo ryanjye ntibisubiza icyo kibazo, bityo sinshaka gukeka. \
             Ibiri hafi yacyo ni \u{201c}{title}\u{201d}, urupapuro {page} [1]."
        ),
    }
}

/// The refusal for a message the safety checks blocked.
pub fn refusal_blocked(lang: &str) -> String {
    match Lang::from_tag(lang) {
        Lang::En => {
            "I can't help with that request. Let's keep our conversation about your lessons."
        }
        Lang::Fr => "Je ne peux pas t'aider avec cette demande. Restons concentrés sur tes leçons.",
        Lang::Sw => "Siwezi kukusaidia na ombi hilo. Tuendelee kuzungumza kuhusu masomo yako.",
        Lang::Rw => {
            "Sinshobora kugufasha kuri icyo cyifuzo. Reka dukomeze tuganire ku masomo yawe."
        }
    }
    .to_owned()
}

/// The refusal for a question outside the persona's subject.
pub fn refusal_off_subject<'a>(lang: &str, subject: impl Into<Option<&'a str>>) -> String {
    let subject = clean(subject.into());
    match (Lang::from_tag(lang), subject) {
        (Lang::En, Some(s)) => format!(
            "That question is outside {s}, which is what I teach. Ask me something about {s}!"
        ),
        (Lang::En, None) => {
            "That question is outside what I teach. Ask me something about your course!".to_owned()
        }
        (Lang::Fr, Some(s)) => format!(
            "Cette question sort du cadre de {s}, la matière que j'enseigne. \
             Pose-moi une question sur {s} !"
        ),
        (Lang::Fr, None) => "Cette question sort du cadre de ce que j'enseigne. \
             Pose-moi une question sur ton cours !"
            .to_owned(),
        (Lang::Sw, Some(s)) => {
            format!("Swali hilo liko nje ya {s}, somo ninalofundisha. Niulize kuhusu {s}!")
        }
        (Lang::Sw, None) => {
            "Swali hilo liko nje ya ninachofundisha. Niulize kuhusu somo lako!".to_owned()
        }
        (Lang::Rw, Some(s)) => format!(
            "Icyo kibazo ntikiri mu bijyanye na {s}, isomo nigisha. \
             Mbaza ikibazo kijyanye na {s}!"
        ),
        (Lang::Rw, None) => {
            "Icyo kibazo ntikiri mu byo nigisha. Mbaza ikibazo kijyanye n'isomo ryawe!".to_owned()
        }
    }
}

/// The refusal for a request that could hurt the student or others, with a
/// pointer to a trusted adult.
pub fn refusal_unsafe(lang: &str) -> String {
    match Lang::from_tag(lang) {
        Lang::En => {
            "I can't help with that, because it could be unsafe. If you or someone else is in \
             danger, please talk to a teacher or another adult you trust right away."
        }
        Lang::Fr => {
            "Je ne peux pas t'aider avec ça, car cela pourrait être dangereux. Si toi ou \
             quelqu'un d'autre êtes en danger, parle tout de suite à un enseignant ou à un \
             adulte de confiance."
        }
        Lang::Sw => {
            "Siwezi kukusaidia na hilo kwa sababu linaweza kuwa hatari. Ikiwa wewe au mtu \
             mwingine yuko hatarini, tafadhali mwambie mwalimu au mtu mzima unayemwamini \
             mara moja."
        }
        Lang::Rw => {
            "Sinshobora kugufasha kuri ibyo kuko bishobora guteza akaga. Niba wowe cyangwa \
             undi muntu ari mu kaga, bwira mwarimu cyangwa undi muntu mukuru wizeye ako kanya."
        }
    }
    .to_owned()
}

/// The persona's greeting: "Hello! I'm {name}. What would you like to learn about today?"
pub fn greeting(lang: &str, persona_name: &str) -> String {
    let name = persona_name.trim();
    match (Lang::from_tag(lang), name.is_empty()) {
        (Lang::En, false) => {
            format!("Hello! I'm {name}. What would you like to learn about today?")
        }
        (Lang::En, true) => "Hello! What would you like to learn about today?".to_owned(),
        (Lang::Fr, false) => {
            format!("Bonjour ! Je suis {name}. Qu'aimerais-tu apprendre aujourd'hui ?")
        }
        (Lang::Fr, true) => "Bonjour ! Qu'aimerais-tu apprendre aujourd'hui ?".to_owned(),
        (Lang::Sw, false) => format!("Habari! Mimi ni {name}. Ungependa kujifunza nini leo?"),
        (Lang::Sw, true) => "Habari! Ungependa kujifunza nini leo?".to_owned(),
        (Lang::Rw, false) => format!("Muraho! Nitwa {name}. Ni iki wifuza kwiga uyu munsi?"),
        (Lang::Rw, true) => "Muraho! Ni iki wifuza kwiga uyu munsi?".to_owned(),
    }
}

fn clean(subject: Option<&str>) -> Option<&str> {
    subject.map(str::trim).filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_normalise_with_english_fallback() {
        assert_eq!(Lang::from_tag("fr-CA"), Lang::Fr);
        assert_eq!(Lang::from_tag("FR_fr"), Lang::Fr);
        assert_eq!(Lang::from_tag("swa"), Lang::Sw);
        assert_eq!(Lang::from_tag("kin"), Lang::Rw);
        assert_eq!(Lang::from_tag("rw"), Lang::Rw);
        assert_eq!(Lang::from_tag("de"), Lang::En);
        assert_eq!(Lang::from_tag(""), Lang::En);
        assert_eq!(Lang::Sw.code(), "sw");
        assert_eq!(language_name("rw"), "Kinyarwanda");
        assert_eq!(language_name("fr-FR"), "French");
        assert_eq!(language_name("xx-klingon"), "xx-klingon");
    }

    #[test]
    fn phrases_exist_in_every_language_and_fall_back_to_english() {
        for lang in ["en", "fr", "sw", "rw"] {
            let nc = not_covered(lang, "Biology");
            assert!(nc.contains("Biology"), "{lang}: {nc}");
            assert!(!not_covered(lang, None).contains("{"), "{lang}");
            assert!(refusal_off_subject(lang, Some("Chemistry")).contains("Chemistry"));
            assert!(!refusal_blocked(lang).is_empty());
            assert!(!refusal_unsafe(lang).is_empty());
            assert!(greeting(lang, "Amani").contains("Amani"));
        }
        assert_eq!(not_covered("de", "Maths"), not_covered("en", "Maths"));
        assert!(not_covered("en", Some("Maths")).starts_with(
            "My course material doesn't cover that question, so I won't guess. I can help with Maths"
        ));
        assert_eq!(not_covered("en", Some("  ")), not_covered("en", None));
        assert_ne!(greeting("fr", "Amani"), greeting("en", "Amani"));
        assert_ne!(refusal_unsafe("sw"), refusal_unsafe("rw"));
        assert_eq!(
            greeting("en", ""),
            "Hello! What would you like to learn about today?"
        );
    }
}
