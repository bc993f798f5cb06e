//! What the simulator's end-to-end tests share: an in-process sandbox with faults, and the
//! target that points a simulation at it with the sandbox's demo client.

use gcx::config::Secret;
use gcx::desk::Target;
use gcx_sandbox::{Faults, Sandbox, SandboxOptions};

pub async fn sandbox(faults: Faults) -> Sandbox {
    Sandbox::start(SandboxOptions {
        faults,
        ..SandboxOptions::default()
    })
    .await
    .unwrap()
}

pub fn target(sb: &Sandbox) -> Target {
    Target {
        api_base: sb.base_url(),
        login_base: sb.base_url(),
        origin: "test".into(),
        client_id: "gcx-demo".into(),
        client_secret: Secret::new("gcx-demo-secret"),
    }
}
