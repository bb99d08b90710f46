//! The hub URL's form parser on arbitrary bodies.
#![no_main]

use herald::domain::hub_request::{HubRequest, parse_form};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    if let Ok(pairs) = parse_form(body) {
        let _ = HubRequest::try_from(pairs.as_slice());
    }
});
