//! The parsers of operators' values — durations, retry schedules, rate limits, address
//! lists — on arbitrary text: they never panic, and what they take is within their bounds.
#![no_main]

use herald::domain::{
    duration::{MAX_DURATION, parse_duration},
    rate::RateSetting,
    retry::RetrySchedule,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(d) = parse_duration(text) {
        assert!(d <= MAX_DURATION, "{text:?} read as {d:?}");
    }
    if let Ok(schedule) = text.parse::<RetrySchedule>() {
        assert!(schedule.delays().iter().all(|d| *d <= MAX_DURATION));
    }
    let _ = text.parse::<RateSetting>();
    let _ = text.parse::<herald::config::AddressRanges>();
});
