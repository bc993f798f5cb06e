//! Which gcx process this is, as audit records and PostgreSQL outbox leases name it:
//! `hostname:pid`.

/// This process: `hostname:pid`.
pub fn id() -> String {
    format!("{}:{}", hostname(), std::process::id())
}

/// The kernel's host name, else `HOSTNAME` or `COMPUTERNAME` from the environment, else
/// `localhost`: the first of them that is not empty.
pub fn hostname() -> String {
    let from_kernel = || {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|s| s.trim().to_string())
    };
    let from_env = |name: &str| std::env::var(name).ok();
    [
        from_kernel(),
        from_env("HOSTNAME"),
        from_env("COMPUTERNAME"),
    ]
    .into_iter()
    .flatten()
    .find(|name| !name.is_empty())
    .unwrap_or_else(|| "localhost".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_is_the_kernels_host_name_and_the_pid() {
        let id = id();
        let (host, pid) = id.rsplit_once(':').unwrap();
        assert_eq!(pid.parse::<u32>().unwrap(), std::process::id());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        assert_eq!(host, kernel.trim());
    }
}
