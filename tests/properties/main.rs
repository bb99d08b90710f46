//! Properties of the code that reads what strangers send: it never panics, and what it builds
//! reads back as intended. Run with the rest (`cargo test --test properties`); cases are
//! generated, 256 per property unless `PROPTEST_CASES` says otherwise.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use herald::{
    domain::{
        access::TopicAllowList,
        address::{AddressPolicy, LoopbackPorts, forwarded_client, limit_key},
        duration::{DurationError, MAX_DURATION, parse_duration},
        hub_request::{HubRequest, parse_form},
        link::{delivery_link_header, links_with_rel},
        url::HubUrl,
    },
    feed::{self, Analysis},
};
use proptest::prelude::*;

/// Text that looks like URLs some of the time.
fn url_like() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ -~]{0,60}",
        "https?://[a-zA-Z0-9.-]{1,20}(:[0-9]{1,5})?(/[a-zA-Z0-9%._~,;<>\"-]{0,12}){0,4}(\\?[a-z=&%0-9]{0,12})?",
    ]
}

/// An `X-Forwarded-For` entry: an address (some of them trusted proxies), with a port, or junk.
fn forwarded_entry() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("127.0.0.1".to_owned()),
        Just("10.0.0.5".to_owned()),
        (1u8..=254, 1u8..=254).prop_map(|(a, b)| format!("203.0.{a}.{b}")),
        (1u8..=254).prop_map(|a| format!("198.51.100.{a}:8080")),
        Just("[2001:db8::7]:443".to_owned()),
        "[ -~]{0,12}",
    ]
}

proptest! {
    #[test]
    fn the_forwarded_client_is_never_left_of_an_untrusted_or_unreadable_entry(
        entries in proptest::collection::vec(forwarded_entry(), 0..8),
    ) {
        let proxy = |ip: IpAddr| ip == IpAddr::V4(Ipv4Addr::LOCALHOST) || ip == IpAddr::V4(Ipv4Addr::new(10, 0, 0, 5));
        let peer = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let header = entries.join(",");
        let parse = |e: &str| e.trim().parse::<IpAddr>().ok()
            .or_else(|| e.trim().parse::<std::net::SocketAddr>().ok().map(|s| s.ip()));
        let client = forwarded_client(peer, header.split(','), proxy);
        // The entry the walk stops at, from the right: the first that is unreadable or no proxy.
        let stop = header.split(',').rev().find(|e| parse(e).is_none_or(|ip| !proxy(ip)));
        match stop {
            None => prop_assert_eq!(client, Some(peer)),
            Some(e) => prop_assert_eq!(client, parse(e)),
        }
    }

    #[test]
    fn ipv6_limit_keys_keep_exactly_the_prefix(bits in any::<u128>(), prefix in 1u8..=128) {
        let key = limit_key(IpAddr::V6(Ipv6Addr::from(bits)), prefix);
        let mask = u128::MAX << (128 - u32::from(prefix));
        if let IpAddr::V6(v6) = key {
            prop_assert_eq!(u128::from(v6), bits & mask);
        } else {
            // Only an IPv4-mapped address becomes IPv4.
            prop_assert!(Ipv6Addr::from(bits).to_ipv4_mapped().is_some());
        }
    }

    #[test]
    fn the_duration_parser_never_panics_nor_takes_more_than_its_maximum(text in "[ -~]{0,40}") {
        if let Ok(d) = parse_duration(&text) {
            prop_assert!(d <= MAX_DURATION, "{text:?} read as {d:?}");
        }
    }

    #[test]
    fn a_duration_reads_as_what_it_says_or_is_refused_as_too_long(
        n in any::<u64>(),
        unit in prop_oneof![Just(("ms", 1u128)), Just(("s", 1_000)), Just(("m", 60_000)),
            Just(("h", 3_600_000)), Just(("d", 86_400_000))],
    ) {
        let text = format!("{n}{}", unit.0);
        let ms = u128::from(n) * unit.1;
        match parse_duration(&text) {
            Ok(d) => prop_assert_eq!(d.as_millis(), ms),
            Err(DurationError::TooLong(_)) => prop_assert!(ms > MAX_DURATION.as_millis(), "{text}"),
            Err(other) => prop_assert!(false, "{text}: {other}"),
        }
    }

    #[test]
    fn the_hub_form_parser_never_panics(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(pairs) = parse_form(&body) {
            let _ = HubRequest::try_from(pairs.as_slice());
        }
    }

    #[test]
    fn hub_forms_built_from_pairs_never_panic(
        pairs in proptest::collection::vec(
            (prop_oneof![
                Just("hub.mode".to_owned()), Just("hub.topic".to_owned()),
                Just("hub.callback".to_owned()), Just("hub.url".to_owned()),
                Just("hub.lease_seconds".to_owned()), Just("hub.secret".to_owned()),
                Just("hub.verify".to_owned()), "[a-z.]{1,12}"
            ], url_like()),
            0..8,
        )
    ) {
        let _ = HubRequest::try_from(pairs.as_slice());
    }

    #[test]
    fn url_normalisation_is_idempotent(raw in url_like()) {
        if let Ok(url) = HubUrl::parse(&raw) {
            let again = HubUrl::parse(url.as_str()).expect("a normalised URL parses");
            prop_assert_eq!(again.as_str(), url.as_str());
        }
    }

    #[test]
    fn a_topic_url_never_adds_a_link(raw in url_like()) {
        let header = delivery_link_header("https://hub.example/", &raw);
        prop_assert_eq!(links_with_rel(&header, "hub"), vec!["https://hub.example/".to_owned()]);
        prop_assert_eq!(links_with_rel(&header, "self").len(), 1);
    }

    #[test]
    fn the_allow_list_admits_only_its_own_origin(raw in url_like()) {
        let list: TopicAllowList = "https://site.example/feeds".parse().expect("valid");
        if let Ok(topic) = HubUrl::parse(&raw)
            && list.permits(&topic)
        {
            let u = topic.as_url();
            prop_assert_eq!(u.scheme(), "https");
            prop_assert_eq!(u.host_str(), Some("site.example"));
            prop_assert_eq!(u.port_or_known_default(), Some(443));
            prop_assert!(u.path() == "/feeds" || u.path().starts_with("/feeds/"));
        }
    }

    #[test]
    fn allow_list_patterns_never_panic(raw in "[ -~]{0,40}") {
        let _ = raw.parse::<TopicAllowList>();
    }

    #[test]
    fn address_policies_parse_or_refuse_and_read_back_the_same(raw in "(loopback:)?[0-9, ]{0,20}|[a-z:]{0,12}") {
        if let Ok(policy) = raw.parse::<AddressPolicy>() {
            prop_assert_eq!(policy.to_string().parse::<AddressPolicy>().ok(), Some(policy));
        }
    }

    #[test]
    fn a_listed_loopback_port_opens_loopback_only_there(ports in proptest::collection::vec(1u16.., 1..5), port in 1u16..) {
        let list: Vec<String> = ports.iter().map(u16::to_string).collect();
        let policy: AddressPolicy = format!("loopback:{}", list.join(",")).parse().unwrap();
        let local = IpAddr::V4(Ipv4Addr::LOCALHOST);
        prop_assert_eq!(policy.permits(local, port), ports.contains(&port));
        prop_assert!(!policy.permits(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), port));
    }

    #[test]
    fn ipv6_forms_carrying_ipv4_are_judged_no_looser_than_ipv4(octets in any::<[u8; 4]>(), port in any::<u16>()) {
        let v4 = Ipv4Addr::from(octets);
        let loopback = AddressPolicy::AllowLoopback(LoopbackPorts::Any);
        for policy in [AddressPolicy::PublicOnly, loopback.clone(), "loopback:8000".parse().unwrap()] {
            let mapped = IpAddr::V6(v4.to_ipv6_mapped());
            prop_assert_eq!(policy.permits(mapped, port), policy.permits(IpAddr::V4(v4), port));
            // IPv4-compatible, 6to4 and NAT64 forms are refused whatever they carry.
            let [a, b, c, d] = octets;
            let compatible = IpAddr::V6(v4.to_ipv6_compatible());
            let six_to_four = IpAddr::V6(Ipv6Addr::new(0x2002, u16::from_be_bytes([a, b]), u16::from_be_bytes([c, d]), 0, 0, 0, 0, 1));
            let nat64 = IpAddr::V6(Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, u16::from_be_bytes([a, b]), u16::from_be_bytes([c, d])));
            if !(octets == [0, 0, 0, 1] && policy != AddressPolicy::PublicOnly) {
                prop_assert!(!policy.permits_any_port(compatible), "{compatible}");
            }
            prop_assert!(!policy.permits_any_port(six_to_four), "{six_to_four}");
            prop_assert!(!policy.permits_any_port(nat64), "{nat64}");
        }
    }

    #[test]
    fn the_feed_scanner_never_panics(body in proptest::collection::vec(any::<u8>(), 0..2048), json in any::<bool>()) {
        let content_type = if json { "application/feed+json" } else { "application/atom+xml" };
        let _ = feed::analyze(Some(content_type), &body);
    }

    #[test]
    fn diff_and_single_documents_read_back_as_the_entries_chosen(
        titles in proptest::collection::vec("[a-zA-Z0-9 <>&'\"]{0,16}", 1..12),
        chosen in proptest::collection::vec(any::<bool>(), 12),
        json in any::<bool>(),
    ) {
        let (content_type, body) = if json { json_feed(&titles) } else { atom_feed(&titles) };
        let Analysis::Feed(parsed) = feed::analyze(Some(content_type), body.as_bytes()) else {
            panic!("a generated feed is a feed: {body}");
        };
        prop_assert_eq!(parsed.entries.len(), titles.len());
        let keep = |i: usize| chosen[i];
        let diff = feed::build(&parsed, body.as_bytes(), keep);
        let Analysis::Feed(reread) = feed::analyze(Some(content_type), &diff) else {
            panic!("a diff reads back as a feed: {}", String::from_utf8_lossy(&diff));
        };
        let want: Vec<&str> = parsed.entries.iter().enumerate().filter(|(i, _)| keep(*i)).map(|(_, e)| e.key.as_str()).collect();
        let got: Vec<&str> = reread.entries.iter().map(|e| e.key.as_str()).collect();
        prop_assert_eq!(got, want);
        for i in 0..parsed.entries.len() {
            let single = feed::build(&parsed, body.as_bytes(), |j| j == i);
            let Analysis::Feed(one) = feed::analyze(Some(content_type), &single) else {
                panic!("a single-entry document reads back as a feed");
            };
            prop_assert_eq!(one.entries.len(), 1);
            prop_assert_eq!(&one.entries[0].key, &parsed.entries[i].key);
        }
    }
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn atom_feed(titles: &[String]) -> (&'static str, String) {
    let mut doc = String::from(
        "<?xml version=\"1.0\"?>\n<feed xmlns=\"http://www.w3.org/2005/Atom\"><id>urn:p</id><title>p</title>\n",
    );
    for (i, t) in titles.iter().enumerate() {
        doc.push_str(&format!(
            "  <entry><id>urn:p:{i}</id><title>{}</title></entry>\n",
            xml_escape(t)
        ));
    }
    doc.push_str("</feed>\n");
    ("application/atom+xml", doc)
}

fn json_feed(titles: &[String]) -> (&'static str, String) {
    let items: Vec<serde_json::Value> = titles
        .iter()
        .enumerate()
        .map(|(i, t)| serde_json::json!({"id": format!("urn:p:{i}"), "title": t}))
        .collect();
    let doc = serde_json::json!({
        "version": "https://jsonfeed.org/version/1.1",
        "title": "p",
        "items": items,
    });
    (
        "application/feed+json",
        serde_json::to_string_pretty(&doc).expect("json"),
    )
}

/// An admin filter's text, as the `LIKE` pattern the store builds, matches exactly the values
/// that contain it: `%`, `_` and `\` stand for themselves (SQLite; lower-case text, as SQLite's
/// `LIKE` ignores ASCII case).
#[test]
fn a_contains_filter_matches_exactly_the_values_containing_its_text() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let pool = rt
        .block_on(sqlx::SqlitePool::connect("sqlite::memory:"))
        .expect("an in-memory database");
    proptest!(|(needle in "[ab%_\\\\]{1,4}", hay in "[ab%_\\\\]{0,10}")| {
        let pattern = herald::store::views::like_literal(&needle);
        let matched: bool = rt
            .block_on(
                sqlx::query_scalar("SELECT $1 LIKE '%' || $2 || '%' ESCAPE '\\'")
                    .bind(&hay)
                    .bind(&pattern)
                    .fetch_one(&pool),
            )
            .expect("a LIKE");
        prop_assert_eq!(matched, hay.contains(&needle), "{:?} in {:?}", needle, hay);
    });
}
