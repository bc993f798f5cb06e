//! A simulation scenario's TOML through gcx's reader and checks
//! (`desk::Scenario::from_toml`: the raw shape, every field's rules, located errors).
//! Asserts: a refusal names at least one violation, each place inside the text; an accepted scenario passes the
//! checks again with no overrides.
#![no_main]

use gcx::desk::{Overrides, Scenario};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Scenario::from_toml(text, "fuzz.toml") {
        Ok(scenario) => {
            let again = scenario.clone().with_overrides(&Overrides::default());
            assert!(again.is_ok(), "{again:?}");
        }
        Err(e) => {
            assert!(!e.to_string().is_empty());
            assert!(!e.violations.is_empty(), "a refusal names a violation");
            let lines = 1 + text.matches('\n').count();
            for (line, column) in e.violations.iter().filter_map(|v| v.location) {
                assert!((1..=lines).contains(&line), "line {line} of {lines}");
                assert!(column >= 1);
            }
        }
    }
});
