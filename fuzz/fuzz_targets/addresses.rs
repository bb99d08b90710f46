//! What a client or an operator writes about addresses and filters: an `X-Forwarded-For`
//! header walked behind trusted proxies, address policies, admin filter text. Nothing panics;
//! the client found is the peer or an address the header names, never a proxy's; a policy
//! reads back as itself; a filter's LIKE pattern unescapes to its text.
#![no_main]

use std::net::IpAddr;

use herald::{
    domain::address::{AddressPolicy, forwarded_client, limit_key},
    store::views::like_literal,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (&str, u8)| {
    let (text, prefix) = input;
    let peer: IpAddr = "127.0.0.1".parse().expect("an address");
    let is_proxy = |ip: IpAddr| ip.is_loopback();
    if let Some(client) = forwarded_client(peer, text.split(','), is_proxy) {
        assert!(client == peer || !is_proxy(client), "{text:?} gave the proxy {client}");
        let _ = limit_key(client, prefix);
    }
    if let Ok(policy) = text.parse::<AddressPolicy>() {
        assert_eq!(policy.to_string().parse::<AddressPolicy>().ok(), Some(policy));
    }
    let pattern = like_literal(text);
    let mut unescaped = String::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        unescaped.push(if c == '\\' { chars.next().expect("an escaped character") } else { c });
    }
    assert_eq!(unescaped, text);
});
