//! URL normalisation, the allow-list matcher and the Link header builder on arbitrary text.
#![no_main]

use herald::domain::{
    access::TopicAllowList,
    link::{delivery_link_header, links_with_rel},
    url::HubUrl,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let _ = text.parse::<TopicAllowList>();
    if let Ok(url) = HubUrl::parse(text) {
        let again = HubUrl::parse(url.as_str()).expect("normalised URLs parse");
        assert_eq!(again.as_str(), url.as_str());
        let list: TopicAllowList = "https://site.example/feeds".parse().expect("valid");
        let _ = list.permits(&url);
    }
    let header = delivery_link_header("https://hub.example/", text);
    assert_eq!(links_with_rel(&header, "hub"), ["https://hub.example/"]);
});
