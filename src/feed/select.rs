//! Which entries are new or changed, against what the topic already delivered.

use std::collections::HashMap;

use super::Feed;

/// The entries a topic delivered before: key → content hash.
pub type Known = HashMap<String, String>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    /// Indexes (in document order) of entries never delivered.
    pub new: Vec<usize>,
    /// Indexes of entries delivered before with other content.
    pub changed: Vec<usize>,
    /// Per entry of the document, whether it is new or changed: `contains` in constant time
    /// (a diff of a 20,000-entry feed asks once per entry).
    chosen: Vec<bool>,
}

impl Selection {
    pub fn is_empty(&self) -> bool {
        self.new.is_empty() && self.changed.is_empty()
    }

    /// New and changed entries, in document order.
    pub fn indexes(&self) -> Vec<usize> {
        let mut all: Vec<usize> = self.new.iter().chain(&self.changed).copied().collect();
        all.sort_unstable();
        all
    }

    pub fn contains(&self, i: usize) -> bool {
        self.chosen.get(i).copied().unwrap_or(false)
    }
}

pub fn select(feed: &Feed, known: &Known) -> Selection {
    let mut selection = Selection {
        new: Vec::new(),
        changed: Vec::new(),
        chosen: vec![false; feed.entries.len()],
    };
    for (i, entry) in feed.entries.iter().enumerate() {
        match known.get(&entry.key) {
            None => selection.new.push(i),
            Some(hash) if *hash != entry.hash => selection.changed.push(i),
            Some(_) => continue,
        }
        selection.chosen[i] = true;
    }
    selection
}
