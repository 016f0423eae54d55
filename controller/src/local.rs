//! Recognising the machine the controller runs on, so it is not shut down by accident
//! (`lightsout shutdown all` from a lab machine that is itself in the inventory).
//!
//! A host is this machine when its address is loopback or unspecified, is one of this
//! machine's interface addresses, or its name (inventory name, or the host dialled) is this
//! machine's host name — with or without domain. Names are resolved with a deadline; a name
//! that does not resolve is not this machine (and will not be reachable either).

use std::net::IpAddr;
use std::time::Duration;

use crate::inventory::Host;

/// What identifies this machine.
#[derive(Debug, Clone)]
pub struct LocalMachine {
    addrs: Vec<IpAddr>,
    hostname: String,
}

impl LocalMachine {
    /// This machine's interface addresses and host name.
    pub fn probe() -> Self {
        let addrs = if_addrs::get_if_addrs()
            .map(|list| list.into_iter().map(|i| i.ip()).collect())
            .unwrap_or_default();
        Self {
            addrs,
            hostname: lightsout_pki::ca::local_hostname(),
        }
    }

    /// A machine with exactly these facts (tests).
    pub fn with(addrs: Vec<IpAddr>, hostname: &str) -> Self {
        Self {
            addrs,
            hostname: hostname.to_ascii_lowercase(),
        }
    }

    /// This machine's host name.
    pub fn hostname(&self) -> &str {
        &self.hostname
    }

    /// Whether `ip` is one of this machine's addresses (or loopback / unspecified).
    pub fn is_local_ip(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        ip.is_loopback() || ip.is_unspecified() || self.addrs.contains(&ip)
    }

    /// Whether `name` is this machine's host name (short or full).
    pub fn is_local_name(&self, name: &str) -> bool {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if name.is_empty() || self.hostname.is_empty() {
            return false;
        }
        let short = |s: &str| s.split('.').next().unwrap_or_default().to_owned();
        name == self.hostname
            || name == "localhost"
            || ((!name.contains('.') || !self.hostname.contains('.'))
                && short(&name) == short(&self.hostname))
    }

    /// Whether `host` is this machine; names are resolved within `deadline`.
    pub async fn is_self(&self, host: &Host, deadline: Duration) -> bool {
        let dialled = &host.target.host;
        if host.name.as_deref().is_some_and(|n| self.is_local_name(n)) {
            return true;
        }
        if let Ok(ip) = dialled.parse::<IpAddr>() {
            return self.is_local_ip(ip);
        }
        if self.is_local_name(dialled) {
            return true;
        }
        match tokio::time::timeout(
            deadline,
            tokio::net::lookup_host((dialled.as_str(), host.target.port)),
        )
        .await
        {
            Ok(Ok(mut addrs)) => addrs.any(|a| self.is_local_ip(a.ip())),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::Target;

    fn host(name: Option<&str>, dialled: &str) -> Host {
        Host {
            name: name.map(str::to_owned),
            ..Host::adhoc(Target {
                host: dialled.into(),
                port: 7474,
            })
        }
    }

    #[tokio::test]
    async fn recognises_itself_by_address_and_name() {
        let me = LocalMachine::with(vec!["10.1.2.3".parse().unwrap()], "desk-07.lab.example.edu");
        let d = Duration::from_secs(2);
        for (name, dialled) in [
            (None, "127.0.0.1"),
            (None, "127.0.0.42"),
            (None, "::1"),
            (None, "::ffff:127.0.0.1"),
            (None, "10.1.2.3"),
            (None, "0.0.0.0"),
            (None, "desk-07"),
            (None, "DESK-07.lab.example.edu"),
            (Some("desk-07"), "10.9.9.9"),
            (None, "localhost"),
        ] {
            assert!(
                me.is_self(&host(name, dialled), d).await,
                "{name:?} {dialled}"
            );
        }
        for (name, dialled) in [
            (None, "10.1.2.4"),
            (Some("lab-01"), "10.0.0.21"),
            (None, "desk-07.other.example.org"),
            (None, "desk-070"),
        ] {
            assert!(
                !me.is_self(&host(name, dialled), d).await,
                "{name:?} {dialled}"
            );
        }
    }
}
