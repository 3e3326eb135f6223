//! The extractive responder.

use bwenge_llm::extractive::ExtractiveKind;
use bwenge_llm::{
    Animation, AnswerRequest, Emotion, EstimateCounter, Extractive, Gesture, LanguageModel,
    Passage, Role, StreamEvent, TokenCounter, Turn, i18n,
};

use crate::common::{assert_complete, collect, deltas, passages, request, shown_text};

/// Every `[n]` marker in the text.
fn markers(text: &str) -> Vec<usize> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find('[') {
        rest = &rest[start + 1..];
        if let Some(end) = rest.find(']')
            && let Ok(n) = rest[..end].parse()
        {
            out.push(n);
        }
    }
    out
}

fn passage(n: usize, text: &str) -> Passage {
    Passage {
        relevance: None,
        n,
        source_title: "Course".into(),
        page: 1,
        text: text.into(),
    }
}

#[test]
fn what_is_picks_the_defining_sentence_first() {
    let ex = Extractive::new();
    let a = ex.answer(&request("What is photosynthesis?"));
    assert_eq!(a.kind, ExtractiveKind::Answer);
    assert!(
        a.text.starts_with(
            "Here is what your course material says: Photosynthesis is the process by which \
             green plants use sunlight, water and carbon dioxide to make glucose and oxygen [1]."
        ),
        "{}",
        a.text
    );
    assert!(
        a.text
            .contains("Without chlorophyll, plants could not carry out photosynthesis [2].")
    );
    assert!(!a.text.contains("Respiration"), "{}", a.text);
    assert_eq!(
        a.animation,
        Animation::new(Gesture::Explaining, Emotion::Neutral)
    );
    assert_eq!(a.cited, vec![1, 2]);

    let a = ex.answer(&request("Define chlorophyll."));
    assert!(
        a.text
            .contains(": Chlorophyll is the green pigment that absorbs light energy [2]."),
        "{}",
        a.text
    );
    let first_marker = markers(&a.text)[0];
    assert_eq!(first_marker, 2);
}

#[test]
fn markers_only_name_given_passages() {
    let mut req = request("Where does photosynthesis take place and what does chlorophyll absorb?");
    req.passages = vec![
        Passage {
            relevance: None,
            n: 4,
            ..passages()[0].clone()
        },
        Passage {
            relevance: None,
            n: 7,
            ..passages()[1].clone()
        },
    ];
    let a = Extractive::new().answer(&req);
    let ms = markers(&a.text);
    assert!(!ms.is_empty(), "{}", a.text);
    assert!(ms.iter().all(|m| *m == 4 || *m == 7), "{ms:?}: {}", a.text);
    assert!(ms.contains(&4) && ms.contains(&7), "{}", a.text);
    // Each chosen sentence carries exactly one marker.
    let sentences = a.text.matches(" [").count();
    assert_eq!(sentences, ms.len());
    assert!(
        (2..=bwenge_llm::extractive::MAX_SENTENCES).contains(&ms.len()),
        "{}",
        a.text
    );
}

#[test]
fn a_pronoun_sentence_brings_its_antecedent() {
    let a = Extractive::new().answer(&request(
        "Where is respiration happening, in the mitochondria?",
    ));
    let i = a
        .text
        .find("Respiration releases")
        .expect("antecedent present");
    let j = a
        .text
        .find("It happens in the mitochondria [3].")
        .expect("answer present");
    assert!(i < j, "{}", a.text);
}

#[test]
fn figures_make_it_point() {
    let a = Extractive::new().answer(&request("Which figure shows a chloroplast?"));
    assert!(
        a.text.contains("Figure 3 shows a chloroplast [1]."),
        "{}",
        a.text
    );
    assert_eq!(
        a.animation,
        Animation::new(Gesture::Pointing, Emotion::Neutral)
    );
}

#[test]
fn why_questions_favour_causal_sentences() {
    let mut req = request("Why do leaves look green?");
    req.passages = vec![
        passage(
            1,
            "Leaves are usually flat and thin. Leaves have veins that carry water.",
        ),
        passage(
            2,
            "Leaves look green because chlorophyll reflects green light. In autumn some \
             leaves turn yellow.",
        ),
    ];
    let a = Extractive::new().answer(&req);
    assert!(
        a.text
            .contains("Leaves look green because chlorophyll reflects green light [2]."),
        "{}",
        a.text
    );
    let first = a.text.find("Leaves look green").unwrap_or(usize::MAX);
    let flat = a.text.find("flat and thin").unwrap_or(usize::MAX);
    assert!(flat == usize::MAX || first != usize::MAX, "{}", a.text);
}

#[test]
fn greetings_greet_back_without_markers() {
    let ex = Extractive::new();
    for (lang, q) in [
        ("en", "Hello!"),
        ("en", "good morning"),
        ("fr", "Bonjour"),
        ("sw", "Habari"),
        ("rw", "Muraho"),
    ] {
        let mut req = request(q);
        req.language = lang.into();
        let a = ex.answer(&req);
        assert_eq!(a.kind, ExtractiveKind::Greeting, "{q}");
        assert_eq!(a.text, i18n::greeting(lang, "Mwalimu Amani"));
        assert_eq!(
            a.animation,
            Animation::new(Gesture::Greeting, Emotion::Happy)
        );
        assert!(markers(&a.text).is_empty());
    }
    // A greeting with a real question is answered.
    let a = ex.answer(&request("Hi! What is chlorophyll?"));
    assert_eq!(a.kind, ExtractiveKind::Answer);
    assert!(a.text.contains("[2]"));
}

#[test]
fn nothing_relevant_is_not_covered() {
    let a = Extractive::new().answer(&request("Who won the football world cup in 2010?"));
    assert_eq!(a.kind, ExtractiveKind::NotCovered);
    assert_eq!(a.text, i18n::not_covered("en", Some("Biology")));
    assert_eq!(
        a.animation,
        Animation::new(Gesture::Thinking, Emotion::Concerned)
    );
    let mut req = request("What is photosynthesis?");
    req.passages.clear();
    assert_eq!(
        Extractive::new().answer(&req).kind,
        ExtractiveKind::NotCovered
    );
}

#[test]
fn follow_ups_borrow_the_previous_question() {
    let mut req = request("Tell me more, please.");
    req.history = vec![
        Turn {
            role: Role::User,
            text: "What is chlorophyll?".into(),
        },
        Turn {
            role: Role::Assistant,
            text: "It is a pigment [2].".into(),
        },
    ];
    let a = Extractive::new().answer(&req);
    assert_eq!(a.kind, ExtractiveKind::Answer);
    assert!(
        a.text.contains("Chlorophyll is the green pigment"),
        "{}",
        a.text
    );
}

#[test]
fn answers_in_the_persona_language() {
    let ex = Extractive::new();
    let cases: [(&str, &str, &str, &str); 4] = [
        (
            "fr",
            "Qu'est-ce que la photosynthèse ?",
            "La photosynthèse est le processus par lequel les plantes vertes fabriquent du \
             glucose à partir de la lumière. Elle se déroule dans les chloroplastes, p. ex. \
             dans les feuilles. Les racines absorbent l'eau.",
            "La photosynthèse est le processus par lequel les plantes vertes fabriquent du glucose à partir de la lumière [1].",
        ),
        (
            "sw",
            "Usanisinuru ni nini?",
            "Usanisinuru ni mchakato ambao mimea hutumia mwanga wa jua kutengeneza chakula. \
             Mizizi hufyonza maji kutoka udongoni.",
            "Usanisinuru ni mchakato ambao mimea hutumia mwanga wa jua kutengeneza chakula [1].",
        ),
        (
            "rw",
            "Fotosintezi ni iki?",
            "Fotosintezi ni uburyo ibimera bikoramo ibiryo bikoresheje urumuri rw'izuba. \
             Imizi ikurura amazi mu butaka.",
            "Fotosintezi ni uburyo ibimera bikoramo ibiryo bikoresheje urumuri rw'izuba [1].",
        ),
        (
            "de",
            "What is photosynthesis?",
            "Photosynthesis is how plants make food. Roots take up water.",
            "Photosynthesis is how plants make food [1].",
        ),
    ];
    let leads = [
        (
            "fr",
            ["En bref :", "Voici ce que dit ton support de cours :"],
        ),
        (
            "sw",
            [
                "Kwa ufupi:",
                "Hivi ndivyo maelezo ya somo lako yanavyosema:",
            ],
        ),
        ("rw", ["Muri make:", "Dore ibyo isomo ryawe rivuga:"]),
        (
            "de",
            ["In short:", "Here is what your course material says:"],
        ),
    ];
    for ((lang, q, text, want), (_, lead)) in cases.iter().zip(leads.iter()) {
        let mut req = request(q);
        req.language = (*lang).into();
        req.passages = vec![passage(1, text)];
        let a = ex.answer(&req);
        assert_eq!(a.kind, ExtractiveKind::Answer, "{lang}: {}", a.text);
        assert!(
            lead.iter().any(|l| a.text.starts_with(l)),
            "{lang}: {}",
            a.text
        );
        assert!(a.text.contains(want), "{lang}: {}", a.text);
        assert!(
            !a.text.contains("absorbent")
                && !a.text.contains("Mizizi")
                && !a.text.contains("Imizi"),
            "{lang}: {}",
            a.text
        );
    }
    let mut req = request("Qui a gagné la coupe du monde ?");
    req.language = "fr".into();
    assert_eq!(
        ex.answer(&req).text,
        i18n::not_covered("fr", Some("Biology"))
    );
}

#[test]
fn it_is_deterministic() {
    let ex = Extractive::new();
    let req = request("How do plants use sunlight, water and carbon dioxide?");
    let first = ex.answer(&req);
    for _ in 0..5 {
        assert_eq!(ex.answer(&req), first);
    }
    assert_eq!(first.kind, ExtractiveKind::Answer);
}

#[test]
fn long_answers_respect_the_token_limit() {
    let mut req = request("What do plants make?");
    let long = [
        "Plants make glucose in their leaves when sunlight falls on them.",
        "Plants make oxygen as a by-product, and it escapes through tiny pores.",
        "Plants make starch to store energy in roots, stems and seeds for later.",
        "Plants make proteins from nitrates that their roots take up from the soil.",
        "Plants make cellulose, which builds strong cell walls around every cell.",
        "Plants make nectar in flowers to attract the insects that carry pollen.",
        "Plants make seeds after pollination so that new plants can grow next season.",
        "Plants make fruits that protect seeds and help animals spread them widely.",
    ]
    .join(" ");
    req.passages = vec![passage(1, &long)];
    req.max_answer_tokens = 60;
    let a = Extractive::new().answer(&req);
    assert!(EstimateCounter.count(&a.text) <= 60, "{}", a.text);
    assert!(markers(&a.text).len() >= 2, "{}", a.text);
}

#[tokio::test]
async fn streams_word_groups_then_done() {
    let ex = Extractive::new();
    assert_eq!(ex.name(), "extractive");
    let req: AnswerRequest = request("What is photosynthesis?");
    let events = collect(ex.stream(&req).await.expect("stream")).await;
    assert_complete(&events);
    assert!(deltas(&events) >= 4);
    let want = ex.answer(&req);
    assert_eq!(shown_text(&events), want.text);
    let Some(Ok(StreamEvent::Done {
        provider,
        usage,
        animation,
    })) = events.last()
    else {
        panic!("no Done");
    };
    assert_eq!(provider, "extractive");
    assert_eq!(usage.completion_tokens, EstimateCounter.count(&want.text));
    assert!(usage.prompt_tokens > 50);
    assert_eq!(*animation, Some(want.animation));
    let again = collect(ex.stream(&req).await.expect("stream")).await;
    assert_eq!(events, again);
}

/// A manual page and an aside that shares more of a student's words.
fn comparator_passages(relevance: [Option<f32>; 2]) -> Vec<Passage> {
    vec![
        Passage {
            relevance: relevance[0],
            ..passage(
                1,
                "Channel 0 represents the analog comparator output. The positive input of \
                 the comparator should be connected to SEN. Its negative input is internally \
                 connected to 1.25 volts.",
            )
        },
        Passage {
            relevance: relevance[1],
            ..passage(
                2,
                "Any voltage on a pin can be shown on the screen. The screen refreshes ten \
                 times a second.",
            )
        },
    ]
}

#[test]
fn a_paraphrase_is_answered_from_the_passage_closest_in_meaning() {
    // Not a question for a number: the sentence after one that matches
    // would then be brought for its number (see
    // `the_sentence_after_brings_the_number_a_question_asks_for`).
    let question = "what is the SEN pin being compared against inside the chip?";
    let mut req = request(question);
    req.history.clear();

    // Words alone: the sentence that answers (1.25 volts) shares none of
    // the student's words and is not used.
    req.passages = comparator_passages([None, None]);
    let a = Extractive::new().answer(&req);
    assert!(!a.text.contains("1.25"), "{}", a.text);

    // The server knows passage 1 is far closer in meaning: its sentences
    // count with half the words, and the answer gives the voltage, cited.
    req.passages = comparator_passages([Some(0.62), Some(0.31)]);
    let a = Extractive::new().answer(&req);
    assert!(
        a.text
            .contains("Its negative input is internally connected to 1.25 volts [1]."),
        "{}",
        a.text
    );
    assert!(a.cited.contains(&1), "{:?}", a.cited);
}

#[test]
fn the_best_sentence_brings_the_one_after_it() {
    let mut req = request("where should the positive input of the comparator be connected?");
    req.history.clear();
    req.passages = comparator_passages([None, None]);
    let a = Extractive::new().answer(&req);
    // The sentence that answers, and the one it runs on into, which shares
    // only words of the first sentence, not of the question.
    assert!(
        a.text.contains(
            "The positive input of the comparator should be connected to SEN [1]. Its \
             negative input is internally connected to 1.25 volts [1]."
        ),
        "{}",
        a.text
    );
}

#[test]
fn a_question_for_a_number_gets_the_sentence_that_gives_one() {
    // The sentence that answers shares one word with the student's
    // ("input"); the passage is the closest in meaning and the question
    // asks for a resistance, so a sentence of it that gives a number
    // counts with a quarter of the words.
    let mut req = request(
        "how much does plugging the probe into a circuit disturb it? like what's its input \
         resistance?",
    );
    req.history.clear();
    let manual = |relevance| Passage {
        relevance,
        ..passage(
            1,
            "The probe inputs measure voltages within the ±5 volts range. Both have an input \
             impedance of 10M Ω. Calibrate them before use.",
        )
    };
    let aside = |relevance| Passage {
        relevance,
        ..passage(
            2,
            "Plugging the probe into a circuit changes nothing you can see on the screen. The \
             circuit must share the ground with the box. How much a probe disturbs a circuit \
             depends on the circuit's own resistance.",
        )
    };
    req.passages = vec![manual(Some(0.52)), aside(Some(0.31))];
    let a = Extractive::new().answer(&req);
    assert!(a.text.contains("input impedance of 10M Ω"), "{}", a.text);
    // Without the evidence of meaning, words alone decide.
    req.passages = vec![manual(None), aside(None)];
    let a = Extractive::new().answer(&req);
    assert!(!a.text.contains("10M"), "{}", a.text);

    // A number the question already holds is no answer: "1N4148" does not
    // make every sentence naming the diode answer "what ideality factor".
    let mut req = request("what ideality factor did they find for the 1N4148 diode?");
    req.history.clear();
    req.passages = vec![Passage {
        relevance: Some(0.62),
        ..passage(
            1,
            "The current through a diode is plotted against the voltage across it. Click on \
             FIT to calculate the diode ideality factor. The value of n for 1N4148 is 1.93 \
             and for the zener it is 1.5. Replace the 1N4148 diode with the zener and repeat.",
        )
    }];
    let a = Extractive::new().answer(&req);
    assert!(a.text.contains("1.93"), "{}", a.text);
}

#[test]
fn a_sentence_that_refers_back_carries_the_answer_on() {
    // "It should be fixed to T16 & T15" shares no word with the sentence
    // before it, but "It" is the microphone that sentence is about.
    let mut req = request("where do i plug in the microphone assembly?");
    req.history.clear();
    req.passages = vec![passage(
        1,
        "Microphone assembly: a condenser microphone with a biasing resistor and a blocking \
         capacitor. It should be fixed to T16 & T15, with the wire going to UPV. The buzzer \
         needs no terminal of its own.",
    )];
    let a = Extractive::new().answer(&req);
    assert!(a.text.contains("T16 & T15"), "{}", a.text);
}

#[test]
fn the_sentence_after_brings_the_number_a_question_asks_for() {
    // The sentence that matches the question's words gives no number; the
    // one after it does, sharing none of the question's words.
    let mut req = request("how many points can i get at most when i record at 12 bit resolution?");
    req.history.clear();
    req.passages = vec![
        passage(
            1,
            "These two functions record points at the higher 12 bit resolution. In that case \
             each value takes 2 bytes, so NP can go up to 900 for capture hr and to 450 for \
             capture2 hr.",
        ),
        passage(
            2,
            "The resolution of the converter is 12 bit for every input. Record the points \
             into a file to plot them later.",
        ),
    ];
    let a = Extractive::new().answer(&req);
    assert!(a.text.contains("450"), "{}", a.text);
    // A question that asks for no number keeps to the matching sentence.
    let mut req = request("what do these functions record at 12 bit resolution?");
    req.history.clear();
    req.passages = vec![passage(
        1,
        "These two functions record points at the higher 12 bit resolution. Capture hr \
         lists the samples by time.",
    )];
    let a = Extractive::new().answer(&req);
    assert!(!a.text.contains("lists the samples"), "{}", a.text);
}
