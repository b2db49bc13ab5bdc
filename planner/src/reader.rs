//! The reader: a person's words to the command's structure.
//!
//! It does not know which objects the world holds. It normalises the words
//! (case, punctuation, speech-recogniser spellings such as "in to", typos
//! against its own vocabulary, colour and object synonyms, politeness and
//! filler) and reads them into [`Clause`]s whose arguments are noun phrases
//! ([`NounPhrase`]): referring expressions ("the cube left of the green
//! one"), lists ("the red and the green cube"), quantifiers ("all the cubes",
//! "both", "the two middle cubes"), exceptions ("except the red one"),
//! pronouns ("it", "the other bin") and "the bin of its colour". The grounder
//! ([`crate::compile`]) then resolves them against the world model.
//!
//! ```text
//! command  := segment (SEQ segment)*          SEQ := then | after that | finally | . | ; | : | ...
//! segment  := clause ((and | ,) clause)*       (split only where both sides read)
//! clause   := stop | wait N [seconds|minutes] | sort NP | go [back|over] to DEST
//!           | find NP | PUT NP PREP NP | PUT NP | PICK NP | NP go PREP NP | NP PREP NP | PREP NP | NP
//! NP       := [all|every|each|both|N] item ((and | ,) item)* [except item (and item)*]
//! item     := it | them | the other [KIND] | the KIND of its colour | referring expression
//! ```

use rosetta_common::ground::Expression;
use rosetta_common::ObjectKind;

/// What a phrase names, before grounding.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// "it", "them": what the command spoke of last.
    Pronoun,
    /// "the other one", "the other bin": the one of its kind not named yet.
    Other(Option<ObjectKind>),
    /// "the others", "the rest": all of its kind not named yet.
    Others(Option<ObjectKind>),
    /// "the bin of its colour", "the matching bin": per object.
    Matching,
    /// "everything": every graspable object.
    Everything,
    /// A referring expression; `plural` when its noun is ("the red cubes").
    Expr { expr: Expression, plural: bool },
}

/// How many of the described things the phrase means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quantity {
    /// One, or the listed items.
    Listed,
    /// "all", "every", "each", or a plural noun.
    All,
    /// "both": exactly two.
    Both,
    /// "two cubes", "the three leftmost cubes".
    Count(usize),
    /// "the two middle cubes".
    Middle(usize),
}

/// A noun phrase: items, how many, and exceptions.
#[derive(Debug, Clone, PartialEq)]
pub struct NounPhrase {
    pub quantity: Quantity,
    pub items: Vec<Item>,
    pub except: Vec<Item>,
    /// The words, for messages.
    pub words: String,
}

/// One thing the command asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Clause {
    Stop,
    Wait(f64),
    /// Put the objects into the target; no target: the one the command
    /// named before ("into the blue bin, put the red cube", "drop it in").
    Put {
        objects: NounPhrase,
        target: Option<NounPhrase>,
    },
    Pick(NounPhrase),
    /// Drive to a named place (its id, as the command says it) or an object.
    GoPlace(String),
    GoTo(NounPhrase),
    Find(NounPhrase),
    /// Each object into the container of its colour.
    Sort(NounPhrase),
    /// A bare noun phrase: what the next clause's "it" means.
    Topic(NounPhrase),
    /// A bare "into the blue bin": the next put's target.
    Target(NounPhrase),
    /// "clear the table", "tidy up": what the clauses after it spell out;
    /// alone, it does not say where to.
    Heading(NounPhrase),
}

/// Why words could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    #[error("the command is empty; say what the robot should do, e.g. \"put the red cube in the blue bin\"")]
    Empty,
    #[error("I won't do that: \"{0}\" asks for something outside what I may do safely (the plan language has no speeds, no collisions and no changes to my rules)")]
    Unsafe(String),
    #[error("I can't do \"{0}\"; I can put things into containers, pick up, go to, look for, sort by colour, wait and stop")]
    UnknownAction(String),
    #[error("I don't know what \"{0}\" is")]
    UnknownObject(String),
    /// Read, but part of it says nothing to do ("the other bin gets ..."):
    /// a plan without those words would drop what they meant.
    #[error("I don't know what to do with \"{0}\"; say what should happen to it")]
    Unused(String),
}

// ---------------------------------------------------------------- vocabulary

const COLOURS: &[(&str, &str)] = &[
    ("red", "red"),
    ("crimson", "red"),
    ("scarlet", "red"),
    ("ruby", "red"),
    ("cherry", "red"),
    ("green", "green"),
    ("emerald", "green"),
    ("lime", "green"),
    ("jade", "green"),
    ("blue", "blue"),
    ("navy", "blue"),
    ("azure", "blue"),
    ("cobalt", "blue"),
    ("sapphire", "blue"),
    ("yellow", "yellow"),
    ("golden", "yellow"),
    ("gold", "yellow"),
    ("lemon", "yellow"),
    ("canary", "yellow"),
    ("amber", "yellow"),
    ("orange", "orange"),
    ("tangerine", "orange"),
    ("purple", "purple"),
    ("violet", "purple"),
    ("magenta", "purple"),
    ("lilac", "purple"),
    ("pink", "pink"),
    ("rose", "pink"),
    ("brown", "brown"),
    ("chocolate", "brown"),
    ("black", "black"),
    ("white", "white"),
    ("grey", "grey"),
    ("gray", "grey"),
    ("silver", "grey"),
];

/// Colour words outside the basic terms that perception names: known, so
/// that "the cyan cube" is an unknown object rather than a typo of
/// something else.
const OTHER_COLOURS: &[&str] = &["cyan", "teal", "turquoise", "beige", "maroon", "olive"];

/// Nouns, singular and plural, with the canonical word the grounder reads.
const NOUNS: &[(&str, &str)] = &[
    ("cube", "cube"),
    ("cubes", "cubes"),
    ("block", "cube"),
    ("blocks", "cubes"),
    ("brick", "cube"),
    ("bricks", "cubes"),
    ("bin", "bin"),
    ("bins", "bins"),
    ("container", "bin"),
    ("containers", "bins"),
    ("basket", "bin"),
    ("baskets", "bins"),
    ("bucket", "bin"),
    ("buckets", "bins"),
    ("tub", "bin"),
    ("tubs", "bins"),
    ("receptacle", "bin"),
    ("receptacles", "bins"),
    ("crate", "bin"),
    ("crates", "bins"),
    ("tray", "bin"),
    ("trays", "bins"),
    ("bowl", "bin"),
    ("bowls", "bins"),
    ("box", "box"),
    ("boxes", "boxes"),
    ("carton", "box"),
    ("cartons", "boxes"),
    ("ball", "ball"),
    ("balls", "balls"),
    ("sphere", "ball"),
    ("spheres", "balls"),
    ("cylinder", "cylinder"),
    ("cylinders", "cylinders"),
    ("can", "cylinder"),
    ("cans", "cylinders"),
    ("tin", "cylinder"),
    ("tins", "cylinders"),
    ("bottle", "cylinder"),
    ("bottles", "cylinders"),
    ("mug", "mug"),
    ("mugs", "mugs"),
    ("cup", "mug"),
    ("cups", "mugs"),
    ("one", "one"),
    ("ones", "ones"),
    ("thing", "thing"),
    ("things", "things"),
    ("object", "object"),
    ("objects", "objects"),
    ("item", "item"),
    ("items", "items"),
];

const PLURALS: &[&str] = &[
    "cubes",
    "bins",
    "boxes",
    "balls",
    "cylinders",
    "mugs",
    "ones",
    "things",
    "objects",
    "items",
];

/// Verb forms to their canonical verb.
const VERBS: &[(&str, &str)] = &[
    ("put", "put"),
    ("putting", "put"),
    ("puts", "put"),
    ("place", "place"),
    ("placing", "place"),
    ("drop", "drop"),
    ("dropping", "drop"),
    ("move", "move"),
    ("moving", "move"),
    ("bring", "bring"),
    ("bringing", "bring"),
    ("throw", "throw"),
    ("toss", "toss"),
    ("stick", "stick"),
    ("deposit", "deposit"),
    ("set", "set"),
    ("transfer", "transfer"),
    ("load", "load"),
    ("stash", "stash"),
    ("dump", "dump"),
    ("pop", "pop"),
    ("chuck", "chuck"),
    ("carry", "carry"),
    ("deliver", "deliver"),
    ("relocate", "relocate"),
    ("shift", "shift"),
    ("tidy", "tidy"),
    ("clear", "clear"),
    ("pick", "pick"),
    ("picking", "pick"),
    ("grab", "grab"),
    ("grabbing", "grab"),
    ("take", "take"),
    ("taking", "take"),
    ("lift", "lift"),
    ("hold", "hold"),
    ("fetch", "fetch"),
    ("collect", "collect"),
    ("retrieve", "retrieve"),
    ("get", "get"),
    ("getting", "get"),
    ("go", "go"),
    ("goes", "go"),
    ("going", "go"),
    ("drive", "drive"),
    ("driving", "drive"),
    ("navigate", "navigate"),
    ("head", "head"),
    ("return", "return"),
    ("come", "come"),
    ("travel", "travel"),
    ("roll", "roll"),
    ("find", "find"),
    ("locate", "locate"),
    ("look", "look"),
    ("search", "search"),
    ("where", "where"),
    ("stop", "stop"),
    ("halt", "halt"),
    ("freeze", "freeze"),
    ("wait", "wait"),
    ("pause", "pause"),
    ("sleep", "sleep"),
    ("sort", "sort"),
    ("clean", "clean"),
    ("park", "park"),
    ("spot", "spot"),
    ("organise", "sort"),
    ("organize", "sort"),
    ("arrange", "sort"),
];

const PUT_VERBS: &[&str] = &[
    "put", "place", "drop", "move", "bring", "throw", "toss", "stick", "deposit", "set",
    "transfer", "load", "stash", "dump", "pop", "chuck", "carry", "deliver", "relocate", "shift",
    "tidy", "clear", "clean", "take", "get", "return",
];
const PICK_VERBS: &[&str] = &[
    "pick", "grab", "take", "lift", "hold", "fetch", "collect", "retrieve", "get", "bring",
];
const GO_VERBS: &[&str] = &[
    "go", "drive", "navigate", "head", "return", "come", "move", "travel", "roll", "park", "take",
    "get",
];
const FIND_VERBS: &[&str] = &["find", "locate", "look", "search", "where", "spot"];

/// Prepositions that introduce a put's target.
const PREPS: &[&str] = &["into", "in", "inside", "onto", "on", "to", "within"];

/// Words the grounder's referring expressions read, beyond nouns and colours.
const RELATION_WORDS: &[&str] = &[
    "left",
    "right",
    "leftmost",
    "rightmost",
    "front",
    "behind",
    "next",
    "beside",
    "near",
    "between",
    "nearest",
    "closest",
    "farthest",
    "furthest",
    "biggest",
    "largest",
    "smallest",
    "tiniest",
    "first",
    "second",
    "third",
    "fourth",
    "far",
    "middle",
    "other",
];

const FUNCTION_WORDS: &[&str] = &[
    "the", "a", "an", "of", "to", "in", "into", "on", "onto", "and", "then", "it", "them", "all",
    "every", "each", "both", "except", "but", "up", "for", "from", "with", "its", "their", "at",
    "after", "that", "this", "is", "by", "back", "over", "around", "inside", "seconds", "minutes",
];

const NUMBERS: &[(&str, f64)] = &[
    ("one", 1.0),
    ("two", 2.0),
    ("three", 3.0),
    ("four", 4.0),
    ("five", 5.0),
    ("six", 6.0),
    ("seven", 7.0),
    ("eight", 8.0),
    ("nine", 9.0),
    ("ten", 10.0),
    ("fifteen", 15.0),
    ("twenty", 20.0),
    ("thirty", 30.0),
];

/// Words that mark a command as asking for unsafe motion or a change of
/// the robot's rules. The plan language cannot express any of it; a
/// command that asks is refused whole rather than half carried out.
const UNSAFE: &[&str] = &[
    "fast",
    "faster",
    "fastest",
    "speed",
    "speeds",
    "velocity",
    "mph",
    "kmh",
    "crash",
    "ram",
    "smash",
    "hit",
    "collide",
    "ignore",
    "instructions",
    "instruction",
    "system",
    "disable",
    "safety",
    "override",
    "developer",
    "jailbreak",
    "sudo",
    "limits",
    "limit",
    "forever",
    "hard",
    "wall",
    "walls",
    "window",
    "stairs",
    "edge",
    "person",
    "people",
    "human",
    "someone",
    "kill",
    "hurt",
    "attack",
    "destroy",
    "break",
    "maintenance",
    "pretend",
    "obey",
    "rules",
    "unsafe",
    "recklessly",
    "maximum",
    "max",
    "full",
    "collision",
    "collisions",
    "avoidance",
    "sensors",
    "sensor",
    "lidar",
    "bumper",
    "brakes",
    "emergency",
    "shutdown",
    "reboot",
    "firmware",
    // Motion a wheeled base cannot make: asked for, it is not a drive to
    // the nearest thing it can reach.
    "climb",
    "jump",
    "fly",
    "swim",
];

/// Politeness and filler, dropped before reading.
const FILLERS: &[&str] = &[
    "please",
    "pls",
    "plz",
    "kindly",
    "um",
    "umm",
    "uh",
    "uhh",
    "er",
    "erm",
    "hmm",
    "ok",
    "okay",
    "so",
    "just",
    "basically",
    "actually",
    "robot",
    "hey",
    "thanks",
    "thank",
    "you",
    "could",
    "would",
    "can",
    "will",
    "i",
    "me",
    "now",
    "quickly",
    "carefully",
    "gently",
    "also",
    "alright",
    "right",
    "well",
    "like",
    "want",
    "need",
    "id",
    "lets",
    "let",
    "us",
    "mind",
    // Hedges about the speaker's own mind ("let me think", "I guess", "you
    // know"): never a step, and never a typo of "thing".
    "think",
    "guess",
    "suppose",
    "know",
    "go",
    "ahead",
    "try",
    "be",
    "so",
    "kind",
    "as",
    "you",
    "youre",
    "there",
    "again",
    "yeah",
    "oh",
    "maybe",
    "buddy",
    "hi",
    "hello",
    "if",
    "great",
    "guess",
    "whatever",
    "anyway",
    "yep",
    "cheers",
];

/// Words before a colour that only shade it ("sky blue", "dark red").
const COLOUR_MODIFIERS: &[&str] = &[
    "light", "dark", "bright", "pale", "deep", "sky", "forest", "navy", "mustard", "royal", "baby",
    "lime", "blood", "fire", "grass", "sea", "ocean",
];

/// Adjectives that do not tell these objects apart: dropped.
const DROPPED_ADJECTIVES: &[&str] = &[
    "square",
    "cubic",
    "wooden",
    "plastic",
    "single",
    "little",
    "immediately",
    "directly",
    "too",
    "also",
    "rubbish",
    "litter",
    "recycling",
    "waste",
];

/// Speech-recogniser and common misspellings, word for word.
const RESPELL: &[(&str, &str)] = &[
    ("teh", "the"),
    ("hte", "the"),
    ("th", "the"),
    ("inn", "in"),
    ("int", "into"),
    ("itno", "into"),
    ("inot", "into"),
    ("onot", "onto"),
    ("been", "bin"),
    ("bean", "bin"),
    ("ben", "bin"),
    ("blew", "blue"),
    ("read", "red"),
    ("reed", "red"),
    ("rad", "red"),
    ("queue", "cube"),
    ("cue", "cube"),
    ("cubed", "cube"),
    ("cute", "cube"),
    ("greene", "green"),
    ("yello", "yellow"),
    ("colour", "color"),
    ("colours", "color"),
    ("colors", "color"),
    ("coloured", "colored"),
    ("centre", "middle"),
    ("center", "middle"),
    ("centre", "middle"),
    ("trashcan", "bin"),
    ("pail", "bin"),
    ("couple", "2"),
    ("yourself", "you"),
    ("dustbin", "bin"),
    ("wastebasket", "bin"),
    ("charger", "dock"),
    ("thru", "through"),
    ("2nd", "second"),
    ("1st", "first"),
    ("3rd", "third"),
    ("secs", "seconds"),
    ("sec", "seconds"),
    ("s", "seconds"),
    ("mins", "minutes"),
    ("min", "minutes"),
    ("minute", "minutes"),
    ("second", "second"),
];

fn lookup<'a, T: Copy>(table: &'a [(&'a str, T)], w: &str) -> Option<T> {
    table.iter().find(|(k, _)| *k == w).map(|(_, v)| *v)
}

/// Every word the reader knows, for typo correction (content words only:
/// a typo is never "corrected" into a function word, so "the ball" cannot
/// become "the all").
fn content_vocabulary() -> Vec<&'static str> {
    let mut v: Vec<&str> = Vec::new();
    v.extend(COLOURS.iter().map(|(w, _)| *w));
    v.extend(OTHER_COLOURS);
    v.extend(
        NOUNS
            .iter()
            .map(|(w, _)| *w)
            .filter(|w| w.len() >= 3 && *w != "one"),
    );
    v.extend(VERBS.iter().map(|(w, _)| *w).filter(|w| w.len() >= 3));
    v.extend(["then", "park", "spot"]);
    v.extend(RELATION_WORDS);
    v.extend([
        "dock",
        "table",
        "start",
        "station",
        "charging",
        "seconds",
        "everything",
    ]);
    v.extend(["except", "inside", "into", "onto", "between"]);
    v.extend(UNSAFE.iter().filter(|w| w.len() > 4));
    v.extend(NUMBERS.iter().map(|(w, _)| *w).filter(|w| w.len() > 3));
    v
}

/// Damerau-Levenshtein distance (optimal string alignment), capped at 3.
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    if a.len().abs_diff(b.len()) > 2 {
        return 3;
    }
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()].min(3)
}

fn is_known(w: &str) -> bool {
    lookup(COLOURS, w).is_some()
        || OTHER_COLOURS.contains(&w)
        || lookup(NOUNS, w).is_some()
        || lookup(VERBS, w).is_some()
        || RELATION_WORDS.contains(&w)
        || FUNCTION_WORDS.contains(&w)
        || FILLERS.contains(&w)
        || UNSAFE.contains(&w)
        || lookup(NUMBERS, w).is_some()
        || w.chars().all(|c| c.is_ascii_digit() || c == '.')
        || [
            "dock",
            "table",
            "start",
            "station",
            "charging",
            "home",
            "seconds",
            "second",
            "minutes",
            "everything",
            "up",
            "down",
            "same",
            "matching",
            "own",
            "color",
            "colored",
            "shaped",
            "where",
            "started",
            "began",
            "your",
            "you",
            "are",
            "done",
            "finished",
            "when",
            "once",
            "first",
            "finally",
            "afterwards",
            "next",
            "lastly",
            "sure",
            "make",
            "moment",
            "bit",
            "as",
            "well",
            "plus",
            "besides",
            "excluding",
            "apart",
            "than",
            "not",
            "leave",
            "alone",
            "touch",
            "through",
            "me",
            "trash",
            "garbage",
            "waste",
            "can",
            "starting",
            "point",
            "position",
            "spot",
            "original",
            "initial",
            "front",
            "way",
            "table's",
            "remaining",
            "rest",
            "single",
            "last",
            "these",
            "those",
            "emergency",
            "moving",
            "motion",
            "still",
            "stay",
            "there",
            "is",
            "are",
            "what",
            "whats",
            "too",
            "turn",
            "off",
            "switch",
            "deactivate",
            "should",
        ]
        .contains(&w)
}

/// The word a typo most likely meant, if exactly one known word is that
/// close; on a tie between a verb or colour and another word ("plase":
/// place or please), the verb or colour: it is what commands are made of.
fn correct(w: &str, vocab: &[&'static str]) -> Option<&'static str> {
    if w.len() < 3 || w.chars().any(|c| c.is_ascii_digit()) {
        return None;
    }
    let limit = if w.len() >= 8 { 2 } else { 1 };
    let mut best: Vec<(usize, &'static str)> = vocab
        .iter()
        .map(|v| (edit_distance(w, v), *v))
        .filter(|(d, _)| *d <= limit)
        .collect();
    best.sort();
    best.dedup();
    let d0 = best.first()?.0;
    let nearest: Vec<&'static str> = best
        .iter()
        .filter(|(d, _)| *d == d0)
        .map(|(_, v)| *v)
        .collect();
    match nearest.as_slice() {
        [one] => Some(one),
        // "cubee": cube or cubes; the shorter, the plural adds a letter.
        [a, b] if b.strip_suffix('s') == Some(a) || a.strip_suffix('s') == Some(b) => {
            Some(if a.len() < b.len() { a } else { b })
        }
        many => {
            let content: Vec<&'static str> = many
                .iter()
                .copied()
                .filter(|v| lookup(VERBS, v).is_some() || lookup(COLOURS, v).is_some())
                .collect();
            match content.as_slice() {
                [one] => Some(one),
                _ => None,
            }
        }
    }
}

/// A rough sound key: the first letter, then the consonants in order, each
/// run written once; vowels, `h`, `w` and `y` carry little of how a word
/// is heard. "grin" and "green" are `grn`; "blew" and "blue" are `bl`.
fn sound_key(w: &str) -> String {
    let mut key = String::new();
    for (i, c) in w.chars().enumerate() {
        let silent = matches!(c, 'a' | 'e' | 'i' | 'o' | 'u' | 'h' | 'w' | 'y');
        if (i == 0 || !silent) && !key.ends_with(c) {
            key.push(c);
        }
    }
    key
}

/// The one content word that an unknown word sounds like and is two edits
/// from, as speech recognisers mishear ("grin" for "green", "blew" for
/// "blue"). Two edits at most, so that "bowl" never becomes "blue": a thing
/// the robot does not know stays unknown and is refused.
fn sounds_like(w: &str, vocab: &[&'static str]) -> Option<&'static str> {
    if w.len() < 3 || !w.chars().all(|c| c.is_ascii_lowercase()) {
        return None;
    }
    let key = sound_key(w);
    let mut near: Vec<&'static str> = vocab
        .iter()
        .copied()
        .filter(|v| edit_distance(w, v) <= 2 && sound_key(v) == key)
        .collect();
    near.sort_unstable();
    near.dedup();
    match near.as_slice() {
        [one] => Some(one),
        _ => None,
    }
}

/// A word with every doubled letter written once ("greeen" -> "gren"
/// -> not known; "puut" -> "put"), and with one doubled letter kept
/// ("greeen" -> "green").
fn undouble(w: &str) -> Option<String> {
    let mut out = String::new();
    let mut last = None;
    for c in w.chars() {
        if Some(c) != last {
            out.push(c);
        }
        last = Some(c);
    }
    if out != w && is_known(&out) {
        return Some(out);
    }
    // Keep one doubled pair: "greeen" -> "green", "cuube" -> "cube".
    let chars: Vec<char> = w.chars().collect();
    let mut runs: Vec<(char, usize)> = Vec::new();
    for c in chars {
        match runs.last_mut() {
            Some((x, n)) if *x == c => *n += 1,
            _ => runs.push((c, 1)),
        }
    }
    (0..runs.len())
        .filter(|i| runs[*i].1 >= 2)
        .find_map(|keep| {
            let cand: String = runs
                .iter()
                .enumerate()
                .map(|(i, (c, n))| {
                    let k = if i == keep { 2 } else { 1.min(*n) };
                    std::iter::repeat_n(*c, k).collect::<String>()
                })
                .collect();
            is_known(&cand).then_some(cand)
        })
}

/// Function words typed without their space.
const GLUED: &[(&str, &[&str])] = &[
    ("inthe", &["in", "the"]),
    ("intothe", &["into", "the"]),
    ("onthe", &["on", "the"]),
    ("tothe", &["to", "the"]),
    ("ofthe", &["of", "the"]),
    ("andthe", &["and", "the"]),
    ("andthen", &["then"]),
    ("pickup", &["pick"]),
];

/// Splits a word glued from two known words ("yellowcube", "bluebin").
fn unglue(w: &str) -> Option<(String, String)> {
    (3..w.len().saturating_sub(2)).find_map(|i| {
        let (a, b) = w.split_at(i);
        let known = |x: &str| {
            lookup(COLOURS, x).is_some() || lookup(NOUNS, x).is_some() || lookup(VERBS, x).is_some()
        };
        (known(a) && known(b)).then(|| (a.to_string(), b.to_string()))
    })
}

/// Lower-cased words and separators; arrows read as "into".
fn raw_tokens(text: &str) -> Vec<String> {
    let text = text
        .to_lowercase()
        .replace("->", " into ")
        .replace("=>", " into ")
        .replace('→', " into ")
        .replace('&', " and ")
        .replace(['’', '`'], "'");
    let mut out = Vec::new();
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut Vec<String>| {
        if !word.is_empty() {
            out.push(std::mem::take(word));
        }
    };
    for c in text.chars() {
        if c.is_alphanumeric() {
            word.push(c);
        } else if c == '\'' {
            // "don't" -> "dont", "robot's" -> "robots"
        } else if c == '.' && word.chars().all(|d| d.is_ascii_digit()) && !word.is_empty() {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            if matches!(c, ',' | ';' | ':' | '.' | '!' | '?') {
                out.push(c.to_string());
            }
        }
    }
    flush(&mut word, &mut out);
    // "5." at the end of a sentence is a number and a full stop.
    out.into_iter()
        .flat_map(|w| match w.strip_suffix('.') {
            Some(n) if !n.is_empty() => vec![n.to_string(), ".".to_string()],
            _ => vec![w],
        })
        .collect()
}

/// Canonical words: respelt, typos corrected, glued words split, synonyms
/// and multi-word phrases replaced, filler dropped.
pub fn normalise(text: &str) -> Vec<String> {
    let vocab = content_vocabulary();
    let mut words: Vec<String> = Vec::new();
    for w in raw_tokens(text) {
        let w = lookup(RESPELL, &w).map(str::to_string).unwrap_or(w);
        if is_known(&w) || w.len() == 1 && !w.chars().all(char::is_alphanumeric) {
            words.push(w);
        } else if let Some((a, b)) = unglue(&w) {
            words.push(a);
            words.push(b);
        } else if let Some(c) = correct(&w, &vocab) {
            words.push(c.to_string());
        } else if let Some(c) = undouble(&w).filter(|u| is_known(u)) {
            // "puut", "greeen", "redd": a key held too long.
            words.push(c);
        } else if let Some(glued) = GLUED.iter().find(|(g, _)| *g == w) {
            words.extend(glued.1.iter().map(|x| x.to_string()));
        } else if let Some(c) = sounds_like(&w, &vocab) {
            words.push(c.to_string());
        } else {
            words.push(w);
        }
    }
    let words = phrases(unstutter(words));
    // Canonical colours, nouns and verbs.
    words
        .into_iter()
        .map(|w| {
            lookup(COLOURS, &w)
                .or_else(|| lookup(NOUNS, &w))
                .or_else(|| lookup(VERBS, &w))
                .map(str::to_string)
                .unwrap_or(w)
        })
        .collect()
}

/// A word or a pair of words said twice in a row ("the the", "in the in
/// the"), as people and speech recognisers do, said once.
fn unstutter(words: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for w in words {
        out.push(w);
        let n = out.len();
        if n >= 2 && out[n - 1] == out[n - 2] && out[n - 1].chars().all(char::is_alphabetic) {
            out.pop();
        } else if n >= 4 && out[n - 1] == out[n - 3] && out[n - 2] == out[n - 4] {
            out.truncate(n - 2);
        }
    }
    out
}

/// Multi-word phrases and what they mean (pattern, replacement), for
/// [`phrases`]: the first pattern that matches at a word wins.
const PHRASES: &[(&[&str], &[&str])] = &[
    (&["in", "to"], &["into"]),
    (&["on", "to"], &["onto"]),
    (&["in", "side"], &["into"]),
    (&["inside", "of"], &["into"]),
    (&["on", "top", "of"], &["onto"]),
    (&["trash", "can"], &["bin"]),
    (&["garbage", "can"], &["bin"]),
    (&["waste", "bin"], &["bin"]),
    (&["box", "shaped"], &[]),
    (&["cube", "shaped"], &[]),
    (&["charging", "station"], &["dock"]),
    (&["charging", "dock"], &["dock"]),
    (&["docking", "station"], &["dock"]),
    (&["your", "dock"], &["dock"]),
    (&["your", "charger"], &["dock"]),
    (&["where", "you", "started"], &["start"]),
    (&["where", "you", "began"], &["start"]),
    (&["where", "you", "start"], &["start"]),
    (&["starting", "point"], &["start"]),
    (&["starting", "position"], &["start"]),
    (&["start", "position"], &["start"]),
    (&["start", "point"], &["start"]),
    (&["original", "position"], &["start"]),
    (&["initial", "position"], &["start"]),
    (&["your", "start"], &["start"]),
    (&["front", "of", "the", "table"], &["table"]),
    (&["emergency", "stop"], &["stop"]),
    (&["e", "stop"], &["stop"]),
    (&["estop"], &["stop"]),
    (&["stop", "moving"], &["stop"]),
    (&["stop", "everything"], &["stop"]),
    (&["stop", "all", "motion"], &["stop"]),
    (&["stop", "right", "now"], &["stop"]),
    (&["hold", "on"], &["stop"]),
    (&["dont", "move"], &["stop"]),
    (&["do", "not", "move"], &["stop"]),
    (&["dont", "go", "anywhere"], &["stop"]),
    (&["left", "on", "the"], &["left", "of", "the"]),
    (&["right", "on", "the"], &["right", "of", "the"]),
    (&["for", "you", "to"], &[]),
    (&["hold", "still"], &["stop"]),
    (&["stay", "still"], &["stop"]),
    (&["stand", "still"], &["stop"]),
    (&["right", "now"], &[]),
    (&["right", "away"], &[]),
    (&["for", "me"], &[]),
    (&["thank", "you"], &[]),
    (&["if", "you", "can"], &[]),
    (&["if", "you", "dont", "mind"], &[]),
    (&["would", "like"], &[]),
    (&["as", "well", "as"], &["and"]),
    (&["and", "then"], &["then"]),
    (&["and", "after", "that"], &["then"]),
    (&["after", "that"], &["then"]),
    (&["after", "this"], &["then"]),
    (&["and", "finally"], &["then"]),
    (&["once", "you", "are", "done"], &["then"]),
    (&["once", "youre", "done"], &["then"]),
    (&["when", "you", "are", "done"], &["then"]),
    (&["when", "youre", "done"], &["then"]),
    (&["once", "done"], &["then"]),
    (&["when", "done"], &["then"]),
    (&["when", "finished"], &["then"]),
    (&["afterwards"], &["then"]),
    (&["finally"], &["then"]),
    (&["lastly"], &["then"]),
    (&["other", "than"], &["except"]),
    (&["apart", "from"], &["except"]),
    (&["except", "for"], &["except"]),
    (&["but", "not"], &["except"]),
    (&["excluding"], &["except"]),
    (&["but", "leave"], &["except"]),
    (&["but", "dont", "touch"], &["except"]),
    (&["but", "dont", "move"], &["except"]),
    (&["leave", "out"], &["except"]),
    (&["of", "its", "color"], &["matching"]),
    (&["of", "their", "color"], &["matching"]),
    (&["of", "the", "same", "color"], &["matching"]),
    (&["with", "the", "same", "color"], &["matching"]),
    (&["that", "matches", "its", "color"], &["matching"]),
    (&["that", "match", "their", "color"], &["matching"]),
    (&["by", "color"], &[]),
    (&["according", "to", "color"], &[]),
    (&["a", "second"], &["1", "seconds"]),
    (&["one", "second"], &["1", "seconds"]),
    (&["a", "moment"], &["1", "seconds"]),
    (&["a", "sec"], &["1", "seconds"]),
    (&["a", "minute"], &["60", "seconds"]),
    (&["a", "bit"], &["2", "seconds"]),
    (&["look", "around", "for"], &["find"]),
    (&["look", "for"], &["find"]),
    (&["search", "for"], &["find"]),
    (&["hunt", "for"], &["find"]),
    (&["where", "is"], &["find"]),
    (&["wheres"], &["find"]),
    (&["pick", "up"], &["pick"]),
];

/// Multi-word phrases to what they mean, and filler dropped.
fn phrases(words: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    let at = |i: usize, pat: &[&str]| -> bool {
        pat.iter()
            .enumerate()
            .all(|(k, p)| words.get(i + k).map(String::as_str) == Some(*p))
    };
    while i < words.len() {
        let w = words[i].as_str();
        if let Some((pat, rep)) = PHRASES.iter().find(|(pat, _)| at(i, pat)) {
            out.extend(rep.iter().map(|s| s.to_string()));
            i += pat.len();
            continue;
        }
        // "lemon coloured", "red colored": the colour word says it all.
        if (w == "colored" || w == "color")
            && out.last().is_some_and(|p| lookup(COLOURS, p).is_some())
        {
            i += 1;
            continue;
        }
        // "pick it up", "tidy up", "drive up to": the particle adds nothing.
        if w == "up" {
            i += 1;
            continue;
        }
        // "sky blue", "dark green", "left-hand bin": the modifier adds nothing here.
        let next = words.get(i + 1).map(String::as_str).unwrap_or("");
        if COLOUR_MODIFIERS.contains(&w) && lookup(COLOURS, next).is_some() {
            i += 1;
            continue;
        }
        if DROPPED_ADJECTIVES.contains(&w) {
            i += 1;
            continue;
        }
        if w == "hand" && out.last().is_some_and(|p| p == "left" || p == "right") {
            i += 1;
            continue;
        }
        // Politeness and filler ("could you", "please", "um", "go ahead and").
        // "go" is filler only in "go ahead"; "right" is a direction unless it
        // ends "all right"; "can" is filler in "can you".
        let filler = FILLERS.contains(&w)
            && (w != "go" || at(i, &["go", "ahead"]))
            && (w != "right" || out.last().is_none_or(|p| p == "all" || p == "alright"))
            && (w != "can" || at(i + 1, &["you"]));
        if filler {
            // ", um, ": the commas around a dropped filler go with it.
            if words.get(i + 1).is_some_and(|n| n == ",") {
                if out.last().is_some_and(|p| p == ",") {
                    out.pop();
                }
                i += 1;
            }
            i += 1;
            continue;
        }
        out.push(words[i].clone());
        i += 1;
    }
    // "go ahead and put": "and" left at the start.
    while out
        .first()
        .is_some_and(|w| w == "and" || w == "," || w == "to")
    {
        out.remove(0);
    }
    out
}

// ---------------------------------------------------------------- reading

fn is_sep(w: &str) -> bool {
    matches!(w, "then" | "." | ";" | ":" | "!" | "?")
}

/// Reads a command into clauses.
pub fn read(text: &str) -> Result<Vec<Clause>, ReadError> {
    if text.trim().is_empty() {
        return Err(ReadError::Empty);
    }
    let words = normalise(text);
    if let Some(w) = words.iter().find(|w| UNSAFE.contains(&w.as_str())) {
        return Err(ReadError::Unsafe(w.clone()));
    }
    // "don't put ...", "never go ...": a negated action is not a plan.
    let negated = words.windows(2).any(|p| {
        matches!(p[0].as_str(), "dont" | "never" | "not" | "do")
            && verb(&p[1]).is_some()
            && p[0] != "do"
    });
    if negated {
        return Err(ReadError::UnknownAction(text.trim().to_string()));
    }
    let words = self_repair(words);
    let mut segments: Vec<Vec<String>> = vec![vec![]];
    for w in words {
        if is_sep(&w) {
            segments.push(vec![]);
        } else if let Some(s) = segments.last_mut() {
            s.push(w);
        }
    }
    // "next to" is a relation, not a sequence word: the splitter above only
    // sees "next" alone when the words around it are a sequence.
    segments.retain(|s| s.iter().any(|w| w != "," && w != "and"));
    if segments.is_empty() {
        return Err(ReadError::Empty);
    }
    let mut clauses = Vec::new();
    for s in &segments {
        let s: Vec<&str> = s.iter().map(String::as_str).collect();
        clauses.extend(read_segment(trim(&s))?);
    }
    Ok(clauses)
}

/// Speech repairs a phrase in place: "put the red cube in the blue bin,
/// no wait, the red bin", "... actually, the other bin", "I mean the red
/// one". The words after the marker replace the last phrase before it that
/// has the same noun (or the last phrase, when they have none).
fn self_repair(words: Vec<String>) -> Vec<String> {
    const MARKERS: &[&[&str]] = &[
        &["no", "wait"],
        &["actually", "no"],
        &["no", "actually"],
        &["i", "mean"],
        &["sorry"],
        &["correction"],
        &["rather"],
        &["no"],
    ];
    let text: Vec<&str> = words.iter().map(String::as_str).collect();
    let found = (1..text.len()).find_map(|i| {
        MARKERS
            .iter()
            .find(|m| text[i..].starts_with(m))
            .map(|m| (i, i + m.len()))
    });
    let Some((at, after)) = found else {
        return words;
    };
    let is_punct = |w: &str| matches!(w, "," | "." | ";" | "!" | "-");
    let left: Vec<&str> = text[..at]
        .iter()
        .copied()
        .filter(|w| !is_punct(w))
        .collect();
    let right: Vec<&str> = text[after..]
        .iter()
        .copied()
        .filter(|w| !is_punct(w))
        .collect();
    if right.is_empty() || left.is_empty() {
        return words;
    }
    let noun_in = |ws: &[&str]| {
        ws.iter()
            .rposition(|w| lookup(NOUNS, w).is_some() || *w == "dock" || *w == "table")
    };
    let Some(rn) = noun_in(&right) else {
        return words;
    };
    let head = right[rn];
    let li = left
        .iter()
        .rposition(|w| *w == head || lookup(NOUNS, w) == lookup(NOUNS, head))
        .or_else(|| noun_in(&left));
    let Some(li) = li else {
        return words;
    };
    let start = left[..li]
        .iter()
        .rposition(|w| matches!(*w, "the" | "a" | "an") || PREPS.contains(w))
        .map_or(li, |s| if PREPS.contains(&left[s]) { s + 1 } else { s });
    let mut out: Vec<String> = left[..start].iter().map(|w| w.to_string()).collect();
    out.extend(right[..=rn].iter().map(|w| w.to_string()));
    out.extend(left[li + 1..].iter().map(|w| w.to_string()));
    out.extend(right[rn + 1..].iter().map(|w| w.to_string()));
    out
}

fn trim<'a, 'b>(mut s: &'a [&'b str]) -> &'a [&'b str] {
    while let [",", rest @ ..] | ["and", rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., ","] | [rest @ .., "and"] = s {
        s = rest;
    }
    s
}

/// A segment is one clause, or several joined by "and" or commas.
fn read_segment(words: &[&str]) -> Result<Vec<Clause>, ReadError> {
    match read_clause(words) {
        Ok(c) => Ok(vec![c]),
        Err(first) => {
            // Where the segment may split: at commas first, then at "and",
            // then before a verb (a run-on "pick up the cube put it in the bin").
            let at = |pred: &dyn Fn(&str) -> bool| -> Vec<usize> {
                (1..words.len()).filter(|i| pred(words[*i])).collect()
            };
            let mut splits = at(&|w| w == ",");
            splits.extend(at(&|w| w == "and"));
            splits.extend(at(&|w| {
                verb(w).is_some_and(|v| !matches!(v, "go" | "where" | "set" | "hold"))
            }));
            for i in splits {
                let skip = usize::from(matches!(words[i], "," | "and"));
                let (left, right) = (trim(&words[..i]), trim(&words[i + skip..]));
                if left.is_empty() || right.is_empty() {
                    continue;
                }
                if let Ok(l) = read_clause(left) {
                    if let Ok(mut r) = read_segment(right) {
                        let mut all = vec![l];
                        all.append(&mut r);
                        return Ok(all);
                    }
                }
            }
            Err(first)
        }
    }
}

fn verb(w: &str) -> Option<&'static str> {
    lookup(VERBS, w)
}

/// Whether a word says what to act on or where (a colour, a noun, a place,
/// a number, a relation): words that a reading may never skip.
fn is_content(w: &str) -> bool {
    lookup(COLOURS, w).is_some()
        || OTHER_COLOURS.contains(&w)
        || lookup(NOUNS, w).is_some()
        || RELATION_WORDS.contains(&w)
        || number(w).is_some()
        || matches!(
            w,
            "dock" | "table" | "start" | "home" | "all" | "every" | "each" | "both"
        )
}

fn read_clause(words: &[&str]) -> Result<Clause, ReadError> {
    let first_try = read_clause_exact(words);
    if first_try.is_ok() {
        return first_try;
    }
    // Words before the verb that name nothing ("thanks in advance, could
    // you move ...", "what I need is to put ..."): the command starts at the verb.
    if let Some(v) = words
        .iter()
        .position(|w| verb(w).is_some())
        .filter(|v| *v > 0)
    {
        if !words[..v].iter().any(|w| is_content(w)) {
            if let Ok(c) = read_clause_exact(&words[v..]) {
                return Ok(c);
            }
        }
    }
    // One or two trailing words that name nothing ("... into the red bin I guess").
    for cut in 1..=2usize.min(words.len().saturating_sub(1)) {
        let (head, tail) = words.split_at(words.len() - cut);
        if !tail.iter().any(|w| is_content(w) || PREPS.contains(w)) {
            if let Ok(c) = read_clause_exact(head) {
                return Ok(c);
            }
        }
    }
    first_try
}

fn read_clause_exact(words: &[&str]) -> Result<Clause, ReadError> {
    let text = words.join(" ");
    let Some(first) = words.first() else {
        return Err(ReadError::Empty);
    };
    let v = verb(first);
    let rest = &words[1..];
    if let Some(read) = read_led(words) {
        return read;
    }
    // "to the dock" after "go to the table, then": the verb of the clause before.
    if *first == "to" && !rest.is_empty() {
        return read_destination(rest);
    }
    if let Some(read) = read_verb_clause(v, first, rest, &text) {
        return read;
    }
    if let Some(read) = read_goes_into(words) {
        return read;
    }
    if v.is_some() && !["one", "ones"].contains(first) {
        return Err(ReadError::UnknownAction(text));
    }
    read_verbless(words).unwrap_or(Err(ReadError::UnknownAction(text)))
}

/// A clause led by a word that only orders or moves: "first put ...",
/// "next go ...", "go find it", "come and pick up" (the verb after it
/// acts), and "go to the table first" (the order word adds nothing at the
/// end either). `None` when no such word leads, or what follows it does
/// not read.
fn read_led(words: &[&str]) -> Option<Result<Clause, ReadError>> {
    let (first, rest) = words.split_first()?;
    let v = verb(first);
    if let [head @ .., "first"] = words {
        if !head.is_empty() {
            if let Ok(c) = read_clause(head) {
                return Some(Ok(c));
            }
        }
    }
    if matches!(*first, "first" | "next") && rest.len() > 1 {
        if let Ok(c) = read_clause(rest) {
            return Some(Ok(c));
        }
    }
    let leads = matches!(*first, "first" | "next" | "back")
        || (matches!(v, Some("go" | "come")) && rest.first().is_some_and(|w| verb(w).is_some()));
    if leads
        && rest.len() > 1
        && rest
            .first()
            .is_some_and(|w| verb(w).is_some() || *w == "to")
    {
        return Some(read_clause(rest));
    }
    None
}

/// A clause that starts with its verb `v` (the canonical verb of `first`):
/// stop, wait, sort, find, go and put or pick. `None` for another verb, or
/// a go verb without a destination.
fn read_verb_clause(
    v: Option<&str>,
    first: &str,
    rest: &[&str],
    text: &str,
) -> Option<Result<Clause, ReadError>> {
    let unknown = || ReadError::UnknownAction(text.to_string());
    // "stop for two seconds": a wait.
    if matches!(v, Some("stop" | "halt" | "freeze")) && rest.first() == Some(&"for") {
        return Some(read_wait(rest).ok_or_else(unknown));
    }
    // stop / halt / freeze
    if matches!(v, Some("stop" | "halt" | "freeze")) && rest.len() <= 2 {
        return Some(Ok(Clause::Stop));
    }
    // wait N seconds
    if matches!(v, Some("wait" | "pause" | "sleep")) {
        return Some(read_wait(rest).ok_or_else(unknown));
    }
    if v == Some("sort") {
        return Some(read_sort(rest));
    }
    if v.is_some_and(|v| FIND_VERBS.contains(&v)) || first == "find" {
        return Some(noun_phrase(rest).map(Clause::Find));
    }
    let v = v?;
    if GO_VERBS.contains(&v) {
        if let Some(dest) = go_destination(v, rest) {
            return Some(read_destination(dest));
        }
    }
    if PUT_VERBS.contains(&v) || PICK_VERBS.contains(&v) {
        return Some(read_put_or_pick(v, rest));
    }
    None
}

/// "sort the cubes" (all of them when no object is named).
fn read_sort(rest: &[&str]) -> Result<Clause, ReadError> {
    let np = if rest.is_empty() {
        noun_phrase(&["all", "cubes"])?
    } else {
        let end = rest
            .iter()
            .position(|w| PREPS.contains(w))
            .unwrap_or(rest.len());
        noun_phrase(&rest[..end])?
    };
    Ok(Clause::Sort(np))
}

/// Where a go verb `v` goes: go [back|over|up|down] to DEST, "go home",
/// "park at DEST", a bare "return" (to the start).
fn go_destination<'a, 'b>(v: &str, rest: &'a [&'b str]) -> Option<&'a [&'b str]> {
    let mut r = rest;
    while let ["back" | "over" | "up" | "down" | "right" | "on" | "along", tail @ ..] = r {
        r = tail;
    }
    match r {
        ["to" | "towards" | "toward" | "near" | "by", tail @ ..] => Some(tail),
        ["next", "to", tail @ ..] => Some(tail),
        ["home"] => Some(&["dock"][..]),
        ["at", tail @ ..] if v == "park" => Some(tail),
        [] if v == "return" => Some(&["start"][..]),
        _ => None,
    }
}

/// A put or pick verb `v` and the words after it.
fn read_put_or_pick(v: &str, rest: &[&str]) -> Result<Clause, ReadError> {
    if let Some(c) = read_put(rest)? {
        return Ok(c);
    }
    if PICK_VERBS.contains(&v) {
        return Ok(Clause::Pick(noun_phrase(rest)?));
    }
    if matches!(v, "clear" | "tidy" | "clean") {
        // "clear the table into the red bin": every cube on it.
        if let Some(i) = rest.iter().position(|w| PREPS.contains(w) && *w != "on") {
            return Ok(Clause::Put {
                objects: noun_phrase(&["all", "cubes"])?,
                target: Some(noun_phrase(&rest[i + 1..])?),
            });
        }
        // "clear the table: all cubes into the red bin": a heading.
        return Ok(Clause::Heading(noun_phrase(&["all", "cubes"])?));
    }
    // "put yellow cube blue bin": the preposition was not heard.
    if PUT_VERBS.contains(&v) && !rest.iter().any(|w| PREPS.contains(w)) {
        for i in 1..rest.len() {
            let (a, b) = (&rest[..i], &rest[i..]);
            if !b.iter().any(|w| matches!(*w, "bin" | "bins")) {
                continue;
            }
            if let (Ok(objects), Ok(target)) = (noun_phrase(a), noun_phrase(b)) {
                return Ok(Clause::Put {
                    objects,
                    target: Some(target),
                });
            }
        }
    }
    // "drop it", "put the red cube": the target comes from elsewhere.
    Ok(Clause::Put {
        objects: noun_phrase(rest)?,
        target: None,
    })
}

/// "the red cube goes into the blue bin", "into the blue bin goes the red cube".
fn read_goes_into(words: &[&str]) -> Option<Result<Clause, ReadError>> {
    let g = words.iter().position(|w| *w == "go")?;
    let put = |objects: &[&str], target: &[&str]| -> Result<Clause, ReadError> {
        Ok(Clause::Put {
            objects: noun_phrase(objects)?,
            target: Some(noun_phrase(target)?),
        })
    };
    let (a, b) = (&words[..g], &words[g + 1..]);
    if let (false, [p, tgt @ ..]) = (a.is_empty(), b) {
        if PREPS.contains(p) {
            return Some(put(a, tgt));
        }
    }
    if let ([p, tgt @ ..], false) = (a, b.is_empty()) {
        if PREPS.contains(p) {
            return Some(put(b, tgt));
        }
    }
    None
}

/// A clause without a verb of its own: a target ("into the blue bin", of a
/// put that follows), a put after "and" ("the red cube in the red bin"), a
/// bare place ("then the dock"), or a bare noun phrase (the topic of what
/// follows). `None` when the words read as none of these.
fn read_verbless(words: &[&str]) -> Option<Result<Clause, ReadError>> {
    let (first, rest) = words.split_first()?;
    if PREPS.contains(first) && *first != "to" {
        return Some(noun_phrase(rest).map(Clause::Target));
    }
    match read_put(words) {
        Ok(Some(c)) => return Some(Ok(c)),
        Ok(None) => {}
        Err(e) => return Some(Err(e)),
    }
    let content: Vec<&str> = words
        .iter()
        .copied()
        .filter(|w| !matches!(*w, "the" | "a" | "your"))
        .collect();
    if let [place] = content.as_slice() {
        if matches!(*place, "dock" | "table" | "start" | "home") {
            return Some(read_destination(&content));
        }
    }
    noun_phrase(words).ok().map(|np| Ok(Clause::Topic(np)))
}

/// `OBJECTS PREP TARGET`: the first preposition whose two sides both read.
fn read_put(words: &[&str]) -> Result<Option<Clause>, ReadError> {
    let mut first_err = None;
    for i in (1..words.len()).filter(|i| PREPS.contains(&words[*i])) {
        let (a, b) = (&words[..i], &words[i + 1..]);
        // "over to", "back into": a particle before the preposition.
        let a = match a {
            [x @ .., "over" | "back" | "down"] => x,
            x => x,
        };
        if b.is_empty() {
            // "drop it in": the target is the one named before.
            if let Ok(objects) = noun_phrase(a) {
                return Ok(Some(Clause::Put {
                    objects,
                    target: None,
                }));
            }
            continue;
        }
        // "put all of them in the blue bin except the red one": the
        // exception is of the objects, wherever it is said.
        let (b, moved): (&[&str], Vec<&str>) = match b.iter().position(|w| *w == "except") {
            Some(e) if !a.contains(&"except") => (&b[..e], b[e..].to_vec()),
            _ => (b, vec![]),
        };
        let a: Vec<&str> = a.iter().copied().chain(moved).collect();
        match (noun_phrase(&a), noun_phrase(b)) {
            (Ok(objects), Ok(target)) => {
                return Ok(Some(Clause::Put {
                    objects,
                    target: Some(target),
                }))
            }
            (Err(e), _) | (_, Err(e)) => {
                first_err.get_or_insert(e);
            }
        }
    }
    match first_err {
        Some(e) if !words.iter().any(|w| PREPS.contains(w)) => Err(e),
        _ => Ok(None),
    }
}

fn number(w: &str) -> Option<f64> {
    lookup(NUMBERS, w).or_else(|| w.parse::<f64>().ok().filter(|x| x.is_finite()))
}

fn read_wait(rest: &[&str]) -> Option<Clause> {
    // "wait to seconds", "wait for seconds": how a recogniser writes "two", "four".
    let rest: Vec<&str> = match rest {
        ["to" | "too", "seconds"] => vec!["2", "seconds"],
        ["for", "seconds"] => vec!["4", "seconds"],
        other => other.to_vec(),
    };
    let rest: Vec<&str> = rest
        .into_iter()
        .filter(|w| {
            !matches!(
                *w,
                "for" | "about" | "around" | "the" | "a" | "an" | "," | "of"
            )
        })
        .collect();
    match rest.as_slice() {
        [] => Some(Clause::Wait(1.0)),
        [n] => number(n).map(Clause::Wait),
        [n, "seconds" | "second"] => number(n).map(Clause::Wait),
        [n, "minutes"] => number(n).map(|m| Clause::Wait(m * 60.0)),
        _ => None,
    }
}

fn read_destination(words: &[&str]) -> Result<Clause, ReadError> {
    let content: Vec<&str> = words
        .iter()
        .copied()
        .filter(|w| !matches!(*w, "the" | "a" | "an" | "your" | "my" | "our"))
        .collect();
    match content.as_slice() {
        ["dock"] | ["home"] | ["base"] => Ok(Clause::GoPlace("dock".into())),
        ["table"] => Ok(Clause::GoPlace("table".into())),
        ["start"] => Ok(Clause::GoPlace("start".into())),
        [one] if !is_known(one) => Ok(Clause::GoPlace(one.to_string())),
        _ => Ok(Clause::GoTo(noun_phrase(words)?)),
    }
}

/// Reads a noun phrase (see the module's grammar).
pub fn noun_phrase(words: &[&str]) -> Result<NounPhrase, ReadError> {
    let phrase = words.join(" ");
    let unknown = || ReadError::UnknownObject(phrase.clone());
    // "all of the cubes", "both of them": the "of" belongs to the quantifier.
    let mut w: Vec<&str> = Vec::with_capacity(words.len());
    for (i, x) in words.iter().enumerate() {
        let after_quantifier = i > 0
            && matches!(
                words[i - 1],
                "all"
                    | "both"
                    | "each"
                    | "every"
                    | "any"
                    | "some"
                    | "none"
                    | "one"
                    | "two"
                    | "three"
                    | "four"
            );
        if *x == "of" && after_quantifier {
            continue;
        }
        w.push(match *x {
            "rest" | "remaining" => "others",
            other => other,
        });
    }
    // "the red cube on the table", "everything on the table": where cubes are anyway.
    if let [head @ .., "on" | "from", "the", "table"] = w.as_slice() {
        w = head.to_vec();
    }
    let except_at = w
        .iter()
        .position(|x| matches!(*x, "except" | "but" | "besides"));
    let (main, except) = match except_at {
        Some(i) => (w[..i].to_vec(), w[i + 1..].to_vec()),
        None => (w.clone(), vec![]),
    };
    let mut main: Vec<&str> = main
        .into_iter()
        .filter(|x| !matches!(*x, "the" | "a" | "an"))
        .collect();
    let mut quantity = Quantity::Listed;
    match main.first().copied() {
        Some("all" | "every" | "each" | "any") => {
            quantity = Quantity::All;
            main.remove(0);
            // "all four cubes": the count only confirms "all".
            if main.first().is_some_and(|n| number(n).is_some()) {
                main.remove(0);
            }
        }
        Some("both") => {
            quantity = Quantity::Both;
            main.remove(0);
        }
        Some("everything") if main.len() == 1 => {
            return Ok(NounPhrase {
                quantity: Quantity::All,
                items: vec![Item::Everything],
                except: items(&except, &unknown)?,
                words: phrase,
            })
        }
        Some(n) if number(n).is_some_and(|x| (2.0..=10.0).contains(&x) && x.fract() == 0.0) => {
            let k = number(n).unwrap_or(1.0) as usize;
            main.remove(0);
            if main.first() == Some(&"middle") {
                main.remove(0);
                quantity = Quantity::Middle(k);
            } else {
                quantity = Quantity::Count(k);
            }
        }
        _ => {}
    }
    if main.is_empty() {
        return match quantity {
            Quantity::Both | Quantity::All if !except.is_empty() || quantity == Quantity::Both => {
                // "both", "all but the red one": of the kind the context gives.
                Ok(NounPhrase {
                    quantity,
                    items: vec![Item::Everything],
                    except: items(&except, &unknown)?,
                    words: phrase,
                })
            }
            _ => Err(unknown()),
        };
    }
    let items_main = items(&main, &unknown)?;
    if items_main.is_empty() {
        return Err(unknown());
    }
    Ok(NounPhrase {
        quantity,
        items: items_main,
        except: items(&except, &unknown)?,
        words: phrase,
    })
}

/// A list of items joined by "and" or commas; an item without a noun
/// borrows the last item's ("the red and the green cube").
fn items(words: &[&str], unknown: &dyn Fn() -> ReadError) -> Result<Vec<Item>, ReadError> {
    let words: Vec<&str> = words
        .iter()
        .copied()
        .filter(|w| !matches!(*w, "the" | "a" | "an" | "for"))
        .collect();
    if words.is_empty() {
        return Ok(vec![]);
    }
    let mut parts: Vec<Vec<&str>> = vec![vec![]];
    for w in &words {
        // "between the red and the blue cube" keeps its "and".
        let inside_between = parts
            .last()
            .is_some_and(|p| p.contains(&"between") && !p.contains(&"and"));
        if (*w == "and" || *w == ",") && !inside_between {
            parts.push(vec![]);
        } else if let Some(p) = parts.last_mut() {
            p.push(w);
        }
    }
    parts.retain(|p| !p.is_empty());
    let last_noun = parts
        .last()
        .and_then(|p| p.iter().rev().find(|w| lookup(NOUNS, w).is_some()).copied());
    let mut out = Vec::new();
    for p in parts {
        let has_noun = p.iter().any(|w| lookup(NOUNS, w).is_some());
        let mut p = p;
        if !has_noun
            && p.iter()
                .any(|w| lookup(COLOURS, w).is_some() || OTHER_COLOURS.contains(w))
        {
            if let Some(n) = last_noun {
                p.push(n);
            }
        }
        out.push(item(&p).ok_or_else(unknown)?);
    }
    Ok(out)
}

fn kind_of_noun(w: &str) -> Option<ObjectKind> {
    ObjectKind::from_word(w)
}

fn item(words: &[&str]) -> Option<Item> {
    match words {
        ["it"]
        | ["them"]
        | ["that"]
        | ["this"]
        | ["those"]
        | ["these"]
        | ["that", "one"]
        | ["this", "one"]
        | ["same", "one"] => return Some(Item::Pronoun),
        ["everything"] | ["things"] | ["objects"] | ["items"] => return Some(Item::Everything),
        _ => {}
    }
    if words.contains(&"matching") || words.contains(&"own") {
        return Some(Item::Matching);
    }
    if words.contains(&"other") || words.contains(&"others") {
        let kind = words.iter().find_map(|w| kind_of_noun(w));
        let rest_ok = words.iter().all(|w| {
            matches!(*w, "other" | "others" | "one" | "ones")
                || kind_of_noun(w).is_some()
                || lookup(NOUNS, w).is_some()
        });
        let plural = words.iter().any(|w| *w == "others" || PLURALS.contains(w));
        return rest_ok.then_some(if plural {
            Item::Others(kind)
        } else {
            Item::Other(kind)
        });
    }
    if words.iter().any(|w| OTHER_COLOURS.contains(w)) {
        return None;
    }
    let plural = words.iter().any(|w| PLURALS.contains(w));
    let singular: Vec<&str> = words
        .iter()
        .map(|w| match *w {
            "cubes" => "cube",
            "bins" => "bin",
            "boxes" => "box",
            "balls" => "ball",
            "cylinders" => "cylinder",
            "mugs" => "mug",
            "ones" => "one",
            "things" => "thing",
            "objects" => "object",
            "items" => "item",
            "middle" => "middle",
            x => x,
        })
        .collect();
    // "the middle cube": the one between the outermost ones; the grounder
    // counts it from the left once it knows how many there are.
    if singular.contains(&"middle") {
        return None;
    }
    let expr = Expression::parse(&singular.join(" ")).ok()?;
    Some(Item::Expr { expr, plural })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rosetta_common::Color;

    /// The reader's word lists and the world model's (`from_word`, which
    /// scene files and the grounder read) must not drift apart: a word the
    /// reader knows as a kind or a colour means the same to both.
    #[test]
    fn the_readers_words_mean_what_the_world_model_says() {
        const GENERIC: &[&str] = &[
            "one", "ones", "thing", "things", "object", "objects", "item", "items",
        ];
        for (w, canon) in NOUNS.iter().filter(|(_, c)| !GENERIC.contains(c)) {
            let kind = ObjectKind::from_word(canon);
            assert!(kind.is_some(), "{canon:?} is no kind");
            assert_eq!(ObjectKind::from_word(w), kind, "{w:?} vs {canon:?}");
        }
        for (w, canon) in COLOURS {
            let colour = Color::from_word(canon);
            assert!(colour.is_some(), "{canon:?} is no colour");
            if let Some(c) = Color::from_word(w) {
                assert_eq!(Some(c), colour, "{w:?} vs {canon:?}");
            }
        }
        for w in OTHER_COLOURS {
            assert_eq!(Color::from_word(w), None, "{w:?} is a basic colour");
        }
    }
}
