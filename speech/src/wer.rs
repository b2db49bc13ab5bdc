//! Word error rate, after the normalisation that speech benchmarks use:
//! lower case, no punctuation, numbers as words.

/// Lower case, punctuation to spaces (apostrophes kept inside words), small
/// numbers spelled out, so that "Wait 5 seconds." equals "wait five seconds".
pub fn normalize(text: &str) -> Vec<String> {
    const NUMBERS: [&str; 21] = [
        "zero",
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
        "ten",
        "eleven",
        "twelve",
        "thirteen",
        "fourteen",
        "fifteen",
        "sixteen",
        "seventeen",
        "eighteen",
        "nineteen",
        "twenty",
    ];
    let cleaned: String = text
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '\'' {
                c
            } else {
                ' '
            }
        })
        .collect();
    cleaned
        .split_whitespace()
        .map(|w| w.trim_matches('\''))
        .filter(|w| !w.is_empty())
        .map(|w| match w.parse::<usize>() {
            Ok(n) if n < NUMBERS.len() => NUMBERS[n].to_string(),
            _ => w.to_string(),
        })
        .collect()
}

/// Word edit distance (substitutions, insertions, deletions) between the
/// reference and the hypothesis, after [`normalize`], and the reference's
/// word count.
pub fn word_errors(reference: &str, hypothesis: &str) -> (usize, usize) {
    let r = normalize(reference);
    let h = normalize(hypothesis);
    let mut prev: Vec<usize> = (0..=h.len()).collect();
    for (i, rw) in r.iter().enumerate() {
        let mut cur = vec![i + 1; h.len() + 1];
        for (j, hw) in h.iter().enumerate() {
            let sub = prev[j] + usize::from(rw != hw);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    (prev[h.len()], r.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_ignores_case_punctuation_and_digits() {
        assert_eq!(
            normalize("Wait 5 seconds, then go to the dock."),
            ["wait", "five", "seconds", "then", "go", "to", "the", "dock"]
        );
        assert_eq!(word_errors("put the red cube", "Put the red cube!"), (0, 4));
    }

    #[test]
    fn substitutions_insertions_and_deletions_each_count_once() {
        assert_eq!(word_errors("put the red cube", "put a red cube"), (1, 4));
        assert_eq!(word_errors("put the red cube", "put the cube"), (1, 4));
        assert_eq!(
            word_errors("put the red cube", "put the red red cube"),
            (1, 4)
        );
        assert_eq!(word_errors("go", ""), (1, 1));
    }
}
