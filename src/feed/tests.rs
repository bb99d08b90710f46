//! Unit tests over the fixtures in `fixtures/feeds/`. Built documents are compared with
//! snapshots in `fixtures/feeds/snapshots/` (written when `HERALD_UPDATE_SNAPSHOTS=1`), so a
//! reviewer can read exactly what subscribers receive.

use std::path::PathBuf;

use super::*;

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/feeds")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn snapshot(name: &str, actual: &[u8]) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/feeds/snapshots")
        .join(name);
    if std::env::var("HERALD_UPDATE_SNAPSHOTS").is_ok_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().expect("parent")).expect("snapshot dir");
        std::fs::write(&path, actual).expect("write snapshot");
        return;
    }
    let expected = std::fs::read(&path).unwrap_or_else(|_| {
        panic!(
            "missing snapshot {}; run with HERALD_UPDATE_SNAPSHOTS=1",
            path.display()
        )
    });
    assert!(
        expected == actual,
        "snapshot {name} differs:\n--- expected\n{}\n--- actual\n{}",
        String::from_utf8_lossy(&expected),
        String::from_utf8_lossy(actual)
    );
}

fn feed(content_type: &str, name: &str) -> (Vec<u8>, Feed) {
    let body = fixture(name);
    match analyze(Some(content_type), &body) {
        Analysis::Feed(f) => (body, f),
        other => panic!("{name}: {other:?}"),
    }
}

fn identities(f: &Feed) -> Vec<&str> {
    f.entries.iter().map(|e| e.identity.as_str()).collect()
}

#[test]
fn recognises_every_fixture_and_finds_its_entries() {
    let cases: &[(&str, &str, FeedKind, usize)] = &[
        (
            "application/atom+xml",
            "gnusocial-ostatus.atom",
            FeedKind::Atom,
            3,
        ),
        (
            "application/atom+xml; charset=utf-8",
            "mastodon.atom",
            FeedKind::Atom,
            2,
        ),
        ("application/atom+xml", "wordpress.atom", FeedKind::Atom, 2),
        (
            "application/rss+xml; charset=UTF-8",
            "wordpress.rss",
            FeedKind::Rss2,
            3,
        ),
        ("application/atom+xml", "youtube.atom", FeedKind::Atom, 2),
        ("application/atom+xml", "blogger.atom", FeedKind::Atom, 2),
        (
            "application/rss+xml",
            "guid-not-permalink.rss",
            FeedKind::Rss2,
            2,
        ),
        ("application/rss+xml", "no-guid.rss", FeedKind::Rss2, 3),
        ("application/rdf+xml", "rss1.rdf", FeedKind::Rss1, 2),
        (
            "application/feed+json",
            "jsonfeed-1.1.json",
            FeedKind::JsonFeed,
            3,
        ),
        (
            "application/atom+xml",
            "duplicate-ids.atom",
            FeedKind::Atom,
            3,
        ),
        ("application/atom+xml", "no-ids.atom", FeedKind::Atom, 2),
        // Generic XML types are sniffed from the root element.
        ("text/xml", "wordpress.rss", FeedKind::Rss2, 3),
        ("application/xml", "mastodon.atom", FeedKind::Atom, 2),
    ];
    for (ct, name, kind, n) in cases {
        let (_, f) = feed(ct, name);
        assert_eq!(f.kind, *kind, "{name}");
        assert_eq!(f.entries.len(), *n, "{name}");
        let keys: std::collections::HashSet<_> = f.entries.iter().map(|e| &e.key).collect();
        assert_eq!(keys.len(), *n, "{name}: keys must be distinct");
    }
}

#[test]
fn identities_follow_the_documented_fallbacks() {
    let (_, f) = feed("application/atom+xml", "gnusocial-ostatus.atom");
    assert_eq!(
        identities(&f)[0],
        "tag:social.example.org,2013-05-17:noticeId=4817:objectType=note"
    );
    let (_, f) = feed("application/rss+xml", "guid-not-permalink.rss");
    assert_eq!(identities(&f), ["a81f-4c21-item-2", "a81f-4c21-item-1"]);
    let (_, f) = feed("application/rss+xml", "no-guid.rss");
    assert_eq!(identities(&f)[0], "https://podcast.example.net/episodes/42");
    assert!(
        identities(&f)[2].starts_with("title+link+date:Housekeeping"),
        "{:?}",
        identities(&f)
    );
    let (_, f) = feed("application/rdf+xml", "rss1.rdf");
    assert_eq!(
        identities(&f)[0],
        "https://journal.example.edu/articles/2026/11/soil"
    );
    let (_, f) = feed("application/feed+json", "jsonfeed-1.1.json");
    assert_eq!(
        identities(&f),
        ["3", "2", "https://notes.example.com/2026/hello"]
    );
    let (_, f) = feed("application/atom+xml", "no-ids.atom");
    assert_eq!(identities(&f)[0], "https://blog.example.org/no-id-but-link");
    // The same id twice: both entries kept, told apart by order.
    let (_, f) = feed("application/atom+xml", "duplicate-ids.atom");
    assert_eq!(f.entries[0].identity, "urn:uuid:same");
    assert_eq!(f.entries[1].identity, "urn:uuid:same\u{0}#2");
}

#[test]
fn entities_in_identities_are_decoded_only_when_predefined() {
    let body = br#"<rss version="2.0"><channel><item><guid>a&amp;b&#x21;&custom;</guid></item></channel></rss>"#;
    let Analysis::Feed(f) = analyze(Some("application/rss+xml"), body) else {
        panic!()
    };
    assert_eq!(f.entries[0].identity, "a&b!&custom;");
}

#[test]
fn non_feeds_and_broken_feeds_are_told_apart() {
    assert_eq!(
        analyze(
            Some("text/html; charset=UTF-8"),
            b"<!doctype html><html></html>"
        ),
        Analysis::NotFeed
    );
    assert_eq!(analyze(Some("text/plain"), b"hello  \n"), Analysis::NotFeed);
    assert_eq!(
        analyze(Some("application/json"), br#"{"items": []}"#),
        Analysis::NotFeed
    );
    assert_eq!(
        analyze(Some("image/png"), b"\x89PNG\r\n"),
        Analysis::NotFeed
    );
    assert_eq!(
        analyze(Some("application/xml"), b"<html><body/></html>"),
        Analysis::NotFeed
    );
    let broken = fixture("malformed.atom");
    assert!(
        matches!(analyze(Some("application/atom+xml"), &broken), Analysis::Invalid(r) if r.contains("malformed XML"))
    );
    assert!(matches!(
        analyze(Some("application/rss+xml"), b"{}"),
        Analysis::Invalid(_)
    ));
}

#[test]
fn hostile_documents_are_bounded() {
    // Entity declarations are never expanded: the bomb is just a small feed.
    let bomb = fixture("billion-laughs.atom");
    let start = std::time::Instant::now();
    match analyze(Some("application/atom+xml"), &bomb) {
        Analysis::Feed(f) => assert_eq!(f.entries[0].identity, "&lol9;"),
        other => panic!("{other:?}"),
    }
    assert!(start.elapsed() < std::time::Duration::from_secs(1));
    let deep = format!(
        "<feed>{}{}</feed>",
        "<x>".repeat(MAX_DEPTH + 5),
        "</x>".repeat(MAX_DEPTH + 5)
    );
    assert!(
        matches!(analyze(Some("application/atom+xml"), deep.as_bytes()), Analysis::Invalid(r) if r.contains("deeper"))
    );
    let many = format!("<feed>{}</feed>", "<entry/>".repeat(MAX_ENTRIES + 1));
    assert!(
        matches!(analyze(Some("application/atom+xml"), many.as_bytes()), Analysis::Invalid(r) if r.contains("entries"))
    );
}

#[test]
fn a_ten_megabyte_feed_parses_in_one_pass() {
    let big = samples::big_atom(10 * 1024 * 1024);
    let start = std::time::Instant::now();
    let Analysis::Feed(f) = analyze(Some("application/atom+xml"), &big) else {
        panic!()
    };
    assert!(f.entries.len() > 1000);
    // Generous: this guards against quadratic behaviour, not for speed.
    assert!(
        start.elapsed() < std::time::Duration::from_secs(20),
        "{:?}",
        start.elapsed()
    );
    let one = build(&f, &big, |i| i == 0);
    assert!(one.len() < 20_000);
}

#[test]
fn diffs_keep_the_envelope_byte_for_byte() {
    for (ct, name) in [
        ("application/atom+xml", "gnusocial-ostatus.atom"),
        ("application/rss+xml", "wordpress.rss"),
        ("application/rdf+xml", "rss1.rdf"),
        ("application/feed+json", "jsonfeed-1.1.json"),
        ("application/atom+xml", "youtube.atom"),
    ] {
        let (body, f) = feed(ct, name);
        // Everything kept: the original exactly.
        assert_eq!(build(&f, &body, |_| true), body, "{name}");
        // Only the first entry: a readable snapshot.
        let first = build(&f, &body, |i| i == 0);
        snapshot(&format!("{name}.first-only"), &first);
        // The result is still a feed with exactly that entry.
        let Analysis::Feed(again) = analyze(Some(ct), &first) else {
            panic!("{name}: rebuilt document does not parse")
        };
        assert_eq!(again.entries.len(), 1, "{name}");
        assert_eq!(again.entries[0].identity, f.entries[0].identity, "{name}");
        assert_eq!(
            again.entries[0].hash, f.entries[0].hash,
            "{name}: the entry is byte-identical"
        );
    }
}

#[test]
fn single_entry_documents_for_each_entry() {
    let (body, f) = feed("application/atom+xml", "gnusocial-ostatus.atom");
    for i in 0..f.entries.len() {
        let one = build(&f, &body, |j| j == i);
        snapshot(&format!("gnusocial-ostatus.atom.single-{i}"), &one);
        let parsed = atom_syndication::Feed::read_from(&one[..]).expect("a valid Atom feed");
        assert_eq!(parsed.entries().len(), 1);
        assert_eq!(
            parsed.id(),
            "https://social.example.org/api/statuses/user_timeline/1.atom"
        );
    }
    let (body, f) = feed("application/feed+json", "jsonfeed-1.1.json");
    let none = build(&f, &body, |_| false);
    let v: serde_json::Value = serde_json::from_slice(&none).expect("valid JSON");
    assert_eq!(v["items"].as_array().map(Vec::len), Some(0));
    let last = build(&f, &body, |i| i == 2);
    let v: serde_json::Value = serde_json::from_slice(&last).expect("valid JSON");
    assert_eq!(v["items"][0]["url"], "https://notes.example.com/2026/hello");
}

#[test]
fn selection_finds_new_and_changed_entries() {
    let (_, f) = feed("application/rss+xml", "wordpress.rss");
    let mut known = Known::new();
    assert_eq!(
        select(&f, &known).indexes(),
        [0, 1, 2],
        "first fetch: everything"
    );
    for e in &f.entries {
        known.insert(e.key.clone(), e.hash.clone());
    }
    assert!(select(&f, &known).is_empty(), "nothing new");
    known.insert(f.entries[1].key.clone(), "edited".into());
    known.remove(&f.entries[0].key);
    let s = select(&f, &known);
    assert_eq!((s.new.clone(), s.changed.clone()), (vec![0], vec![1]));
}

#[test]
fn no_prefix_of_any_fixture_makes_the_parser_panic() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/feeds");
    for entry in std::fs::read_dir(&dir).expect("fixtures") {
        let path = entry.expect("entry").path();
        if !path.is_file() {
            continue;
        }
        let body = std::fs::read(&path).expect("read");
        for ct in [
            "application/atom+xml",
            "application/rss+xml",
            "application/feed+json",
            "",
        ] {
            for cut in (0..body.len()).step_by(7) {
                let prefix = &body[..cut];
                if let Analysis::Feed(f) = analyze(Some(ct), prefix) {
                    let _ = build(&f, prefix, |i| i % 2 == 0);
                }
            }
        }
    }
}

#[test]
fn refresh_hints_come_from_ttl_or_the_syndication_module() {
    let hint = |doc: &str| match analyze(Some("application/xml"), doc.as_bytes()) {
        Analysis::Feed(f) => f.refresh_hint,
        other => panic!("{other:?}"),
    };
    let secs = |s| Some(std::time::Duration::from_secs(s));
    assert_eq!(
        hint(
            "<rss version=\"2.0\"><channel><title>t</title><ttl>90</ttl><item><guid>a</guid><ttl>1</ttl></item></channel></rss>"
        ),
        secs(5400)
    );
    let sy = "xmlns:sy=\"http://purl.org/rss/1.0/modules/syndication/\"";
    assert_eq!(
        hint(&format!(
            "<rss version=\"2.0\" {sy}><channel><sy:updatePeriod>daily</sy:updatePeriod><sy:updateFrequency>4</sy:updateFrequency></channel></rss>"
        )),
        secs(21_600)
    );
    assert_eq!(
        hint(&format!(
            "<feed xmlns=\"http://www.w3.org/2005/Atom\" {sy}><sy:updatePeriod> hourly </sy:updatePeriod><entry><id>x</id></entry></feed>"
        )),
        secs(3600)
    );
    assert_eq!(
        hint("<feed xmlns=\"http://www.w3.org/2005/Atom\"><entry><id>x</id></entry></feed>"),
        None
    );
    assert_eq!(
        hint("<rss version=\"2.0\"><channel><ttl>soon</ttl></channel></rss>"),
        None
    );
}

#[test]
fn the_typical_gap_is_the_median_between_the_newest_entries_dates() {
    let gap = |doc: &str| match analyze(Some("application/xml"), doc.as_bytes()) {
        Analysis::Feed(f) => f.typical_gap,
        other => panic!("{other:?}"),
    };
    let atom = |dates: &[&str]| {
        let entries: String = dates
            .iter()
            .enumerate()
            .map(|(i, d)| format!("<entry><id>e{i}</id><updated>{d}</updated></entry>"))
            .collect();
        format!("<feed xmlns=\"http://www.w3.org/2005/Atom\">{entries}</feed>")
    };
    let hours = |h: u64| Some(std::time::Duration::from_secs(h * 3600));
    assert_eq!(
        gap(&atom(&[
            "2026-12-07T12:00:00Z",
            "2026-12-07T11:00:00Z",
            "2026-12-07T09:00:00Z",
            "2026-12-07T08:00:00Z"
        ])),
        hours(1)
    );
    // RSS dates, in any order.
    assert_eq!(
        gap("<rss version=\"2.0\"><channel>\
             <item><guid>a</guid><pubDate>Mon, 07 Dec 2026 06:00:00 GMT</pubDate></item>\
             <item><guid>b</guid><pubDate>Mon, 07 Dec 2026 12:00:00 GMT</pubDate></item>\
             <item><guid>c</guid><pubDate>Mon, 07 Dec 2026 00:00:00 GMT</pubDate></item>\
             </channel></rss>"),
        hours(6)
    );
    assert_eq!(
        gap(&atom(&["2026-12-07T12:00:00Z", "2026-12-07T11:00:00Z"])),
        None,
        "too few"
    );
    assert_eq!(
        gap(&atom(&[
            "2026-12-07T12:00:00Z",
            "2026-12-07T12:00:00Z",
            "2026-12-07T12:00:00Z"
        ])),
        None,
        "all alike"
    );
}

#[test]
fn a_feed_is_identified_by_what_it_says_of_itself() {
    let identity = |ct: &str, doc: &str| match analyze(Some(ct), doc.as_bytes()) {
        Analysis::Feed(f) => f.identity,
        other => panic!("{other:?}"),
    };
    let atom = "application/atom+xml";
    // The self link first, else the feed's id; an entry's links and ids are not the feed's.
    assert_eq!(
        identity(
            atom,
            "<feed xmlns=\"http://www.w3.org/2005/Atom\"><id>urn:f</id><link rel=\"alternate\" href=\"https://site/\"/><link rel=\"self\" href=\"https://site/feed\"/><entry><id>e</id><link rel=\"self\" href=\"https://site/e\"/></entry></feed>"
        )
        .as_deref(),
        Some("self https://site/feed")
    );
    assert_eq!(
        identity(
            atom,
            "<feed xmlns=\"http://www.w3.org/2005/Atom\"><id> urn:f </id><entry><id>e</id></entry></feed>"
        )
        .as_deref(),
        Some("id urn:f")
    );
    // RSS: atom:link rel=self; the channel's <link> is the site, shared by its posts and
    // comments feeds, and never an identity.
    assert_eq!(
        identity(
            "application/rss+xml",
            "<rss version=\"2.0\" xmlns:atom=\"http://www.w3.org/2005/Atom\"><channel><link>https://site/</link><atom:link rel=\"self\" href=\"https://site/rss\" type=\"application/rss+xml\"/><item><guid>a</guid></item></channel></rss>"
        )
        .as_deref(),
        Some("self https://site/rss")
    );
    assert_eq!(
        identity(
            "application/rss+xml",
            "<rss version=\"2.0\"><channel><link>https://site/</link><item><guid>a</guid></item></channel></rss>"
        ),
        None
    );
    assert_eq!(
        identity(
            "application/feed+json",
            r#"{"version":"https://jsonfeed.org/version/1.1","feed_url":"https://site/feed.json","items":[{"id":"1"}]}"#
        )
        .as_deref(),
        Some("self https://site/feed.json")
    );
}
