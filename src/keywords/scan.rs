//! Finds the keyword objects of an answer while the model is still writing it, so each
//! keyword can reach the client as soon as its closing brace arrives instead of after the
//! whole answer (generation, not the prompt, is what takes seconds on a CPU).

/// Scans streamed JSON text of the shape `{"keywords":[{…},{…}]}` and returns each object of
/// the array as soon as it is complete. It only tracks nesting and strings; whether an object
/// is a valid keyword is for the caller to decide.
#[derive(Debug, Default)]
pub struct ItemScanner {
    depth: usize,
    in_string: bool,
    escaped: bool,
    /// Text of the array item being read, from its opening brace.
    item: Option<String>,
}

/// Nesting depth of the items: inside the answer object (1) and its array (2).
const ITEM_DEPTH: usize = 2;

impl ItemScanner {
    /// Feeds the next piece of the answer; returns the items completed by it, in order.
    pub fn feed(&mut self, piece: &str) -> Vec<String> {
        let mut done = Vec::new();
        for c in piece.chars() {
            if let Some(item) = self.item.as_mut() {
                item.push(c);
            }
            if self.in_string {
                match (self.escaped, c) {
                    (true, _) => self.escaped = false,
                    (false, '\\') => self.escaped = true,
                    (false, '"') => self.in_string = false,
                    _ => {}
                }
                continue;
            }
            match c {
                '"' => self.in_string = true,
                '{' | '[' => {
                    if c == '{' && self.depth == ITEM_DEPTH {
                        self.item = Some(String::from('{'));
                    }
                    self.depth += 1;
                }
                '}' | ']' => {
                    self.depth = self.depth.saturating_sub(1);
                    if self.depth == ITEM_DEPTH
                        && let Some(item) = self.item.take()
                    {
                        done.push(item);
                    }
                }
                _ => {}
            }
        }
        done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_come_out_as_soon_as_they_close_whatever_the_chunking() {
        let answer = r#"{"keywords": [{"text":"서울역","category":"place"}, {"text":"a \"}\" b","category":"topic"},{"text":"x","category":"event"}]}"#;
        let whole = ItemScanner::default().feed(answer);
        assert_eq!(
            whole,
            [
                r#"{"text":"서울역","category":"place"}"#,
                r#"{"text":"a \"}\" b","category":"topic"}"#,
                r#"{"text":"x","category":"event"}"#,
            ]
        );
        // One character at a time (tokens split anywhere, even inside escapes).
        let mut scanner = ItemScanner::default();
        let mut seen = Vec::new();
        let mut closed_at = Vec::new();
        for (i, c) in answer.char_indices() {
            for item in scanner.feed(&c.to_string()) {
                closed_at.push(i);
                seen.push(item);
            }
        }
        assert_eq!(seen, whole);
        // The first item is out before the second one starts.
        assert!(closed_at[0] < answer.find("a \\\"").unwrap());
    }

    #[test]
    fn nothing_comes_out_of_other_shapes() {
        assert!(ItemScanner::default().feed(r#"{"words": 3}"#).is_empty());
        assert!(
            ItemScanner::default()
                .feed("not json at all }}]]")
                .is_empty()
        );
        assert!(
            ItemScanner::default()
                .feed(r#"{"keywords":[{"text":"unfinished"#)
                .is_empty()
        );
    }
}
