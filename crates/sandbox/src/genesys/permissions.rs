//! Which injection permissions an OAuth client holds (PROTOCOL.md 9.1).
//!
//! Genesys grants permissions through roles, apart from OAuth scopes; the sandbox has no
//! roles, so every client holds all three injection permissions unless the
//! `genesys_withheld_permissions` fault lists some for it (a flag or `PUT /sandbox/faults`),
//! which is how a test makes a client that lacks one.

use gcx_protocol::genesys_events::ALL_PERMISSIONS;

use crate::faults::Faults;

/// Whether `client` holds `permission` under the current faults.
pub(crate) fn holds(faults: &Faults, client: &str, permission: &str) -> bool {
    ALL_PERMISSIONS.contains(&permission)
        && !faults
            .genesys_withheld_permissions
            .get(client)
            .is_some_and(|withheld| withheld.iter().any(|p| p == permission))
}

/// The 403 message, worded as Genesys Cloud words it.
pub(crate) fn missing_message(permission: &str) -> String {
    format!(
        "Unable to perform the requested action. You are missing the following permission(s): [{permission}]"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_client_holds_all_three_unless_withheld() {
        let mut f = Faults::default();
        assert!(holds(&f, "anyone", "presence:userPresence:inject"));
        assert!(!holds(&f, "anyone", "routing:routingstatus:view"));
        f.genesys_withheld_permissions
            .insert("qa".into(), vec!["routing:routingstatus:inject".into()]);
        assert!(!holds(&f, "qa", "routing:routingstatus:inject"));
        assert!(holds(&f, "qa", "presence:userPresence:inject"));
        assert!(holds(&f, "gcx-demo", "routing:routingstatus:inject"));
    }
}
