//! The feed scanner and the diff / single-entry builds on arbitrary documents: no panic, and
//! what a build keeps reads back as a feed with the entries it kept.
#![no_main]

use herald::feed::{self, Analysis};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let content_type = if selector & 1 == 0 {
        "application/atom+xml"
    } else {
        "application/feed+json"
    };
    if let Analysis::Feed(parsed) = feed::analyze(Some(content_type), body) {
        let keep = |i: usize| (i + selector as usize) % 3 != 0;
        let diff = feed::build(&parsed, body, keep);
        if let Analysis::Feed(reread) = feed::analyze(Some(content_type), &diff) {
            let kept = parsed.entries.iter().enumerate().filter(|(i, _)| keep(*i)).count();
            assert_eq!(reread.entries.len(), kept);
        }
    }
});
