//! The Genesys Cloud CLI's profile file (`~/.gc/config.toml`) through gcx's reader
//! (`config::profile::read`), with no profile named (`DEFAULT`) and with one named.
//! Asserts: a refusal has a message; a profile's values are trimmed and non-empty; the
//! profile's debug output does not depend on its secret.
#![no_main]

use gcx::config::Secret;
use gcx::config::profile::{Profile, read};
use gcx_fuzz::scratch_file;
use libfuzzer_sys::fuzz_target;

fn check(profile: &Profile) {
    for value in [&profile.environment, &profile.client_id] {
        if let Some(v) = value {
            assert!(!v.is_empty() && v.trim() == v, "{v:?}");
        }
    }
    if let Some(secret) = &profile.client_secret {
        let secret = secret.expose();
        assert!(!secret.is_empty() && secret.trim() == secret);
        // The debug output does not depend on the secret.
        let other = Profile {
            client_secret: Some(Secret::new("another")),
            ..profile.clone()
        };
        assert_eq!(format!("{profile:?}"), format!("{other:?}"));
    }
}

fuzz_target!(|data: &[u8]| {
    let path = scratch_file("config.toml", data);
    for named in [None, Some("prod")] {
        match read(&path, named) {
            Ok(Some(profile)) => check(&profile),
            Ok(None) => assert!(named.is_none()),
            Err(e) => assert!(!e.to_string().is_empty()),
        }
    }
});
