//! Transcription deltas that are true increments: once a word is sent it is never taken back,
//! and the deltas of an item concatenate to its `completed` transcript.
//!
//! sori's partials re-decode the whole open utterance, so their text can change anywhere. A
//! word is sent from partials only once two partials in a row agree on it and it is not among
//! the last [`UNSTABLE_TAIL_WORDS`] (where a re-decode most often changes its mind). The final
//! then sends the rest; if it disagrees with words already sent, those stay and the final's
//! words after them follow, so what the client has always reads as one transcript.

/// Words at the end of a partial that are never sent from it.
const UNSTABLE_TAIL_WORDS: usize = 2;

/// One item's (one utterance's) transcript as sent so far.
#[derive(Debug, Default)]
pub struct Deltas {
    /// The words sent, in order.
    sent: Vec<String>,
    previous_partial: Vec<String>,
}

impl Deltas {
    /// A partial's text: the delta to send now, if any.
    pub fn partial(&mut self, text: &str) -> Option<String> {
        let words: Vec<String> = text.split_whitespace().map(str::to_owned).collect();
        let agreed = common_prefix(&self.previous_partial, &words);
        let stable = agreed.min(words.len().saturating_sub(UNSTABLE_TAIL_WORDS));
        self.previous_partial = words;
        if stable <= self.sent.len()
            || common_prefix(&self.sent, &self.previous_partial) < self.sent.len()
        {
            return None;
        }
        let new = self.previous_partial[self.sent.len()..stable].to_vec();
        Some(self.extend(new))
    }

    /// The final's text: the last delta (possibly empty) and the completed transcript, which
    /// is everything sent.
    pub fn finish(&mut self, text: &str) -> (String, String) {
        let words: Vec<String> = text.split_whitespace().map(str::to_owned).collect();
        let agreed = common_prefix(&self.sent, &words);
        // Where the final disagrees with what was sent, its words past that many follow.
        let from = if agreed == self.sent.len() {
            agreed
        } else {
            self.sent.len().min(words.len())
        };
        let rest = words[from..].to_vec();
        let delta = if rest.is_empty() {
            String::new()
        } else {
            self.extend(rest)
        };
        (delta, self.sent.join(" "))
    }

    /// Appends `words` to what was sent; returns their delta (a leading space after earlier
    /// words, so the deltas concatenate with single spaces).
    fn extend(&mut self, words: Vec<String>) -> String {
        let joined = words.join(" ");
        let delta = if self.sent.is_empty() {
            joined
        } else {
            format!(" {joined}")
        };
        self.sent.extend(words);
        delta
    }
}

/// Leading words `a` and `b` share, compared without case and edge punctuation.
fn common_prefix(a: &[String], b: &[String]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| same_word(x, y)).count()
}

fn same_word(a: &str, b: &str) -> bool {
    let bare = |w: &str| {
        w.trim_matches(|c: char| !c.is_alphanumeric())
            .to_lowercase()
    };
    bare(a) == bare(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn concat(deltas: &[Option<String>]) -> String {
        deltas.iter().flatten().cloned().collect()
    }

    #[test]
    fn stable_words_go_out_once_and_the_deltas_make_the_completed_text() {
        let mut d = Deltas::default();
        let mut sent = vec![
            d.partial("And so my"),
            d.partial("And so my fellow Americans"),
            d.partial("And so, my fellow Americans, ask not"),
        ];
        // Two partials agree on "And so my" (the tail held back), then on two more words.
        assert_eq!(concat(&sent), "And so my fellow Americans,", "{sent:?}");
        let (last, completed) =
            d.finish("And so, my fellow Americans, ask not what your country can do for you.");
        sent.push(Some(last));
        assert_eq!(concat(&sent), completed);
        assert!(completed.ends_with("can do for you."), "{completed}");
    }

    #[test]
    fn a_final_that_disagrees_keeps_what_was_sent_and_adds_its_rest() {
        let mut d = Deltas::default();
        let first = d.partial("the quick brown fox jumps");
        let second = d.partial("the quick brown fox jumps over");
        let (last, completed) = d.finish("a quick brown fox jumped over the dog");
        assert_eq!(concat(&[first, second, Some(last)]), completed);
        assert_eq!(completed, "the quick brown fox jumped over the dog");
    }

    #[test]
    fn no_partials_means_one_delta_with_the_whole_final() {
        let mut d = Deltas::default();
        assert_eq!(
            d.finish("Hello there."),
            ("Hello there.".to_owned(), "Hello there.".to_owned())
        );
        let mut empty = Deltas::default();
        assert_eq!(empty.finish(""), (String::new(), String::new()));
    }
}
