//! Authenticated connections: counted per source address and per certificate, and the last
//! connection slots kept for reserved roles.
//!
//! The connection cap bounds what all clients together cost, and the handshake cap
//! ([`crate::handshakes`]) what one address costs before it has proved who it is. Neither
//! bounds what a client costs *after* its handshake: one `monitor` certificate, from a few
//! addresses, could otherwise hold every slot with connections kept alive inside the idle
//! timeout and lock the administrators out. So once the identity is known, a connection takes
//! a place per source address and per certificate (fingerprint), each capped; and connections
//! of roles that are not reserved (by default every role but `admin`) may hold at most
//! `max_connections - reserved_connections` slots, so the last ones stay free for the roles
//! that must always get in. A controller opens one connection per agent per command and never
//! comes near these caps.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use lightsout_pki::Identity;

use crate::config::Limits;
use crate::handshakes::{release, source};

/// Places of authenticated connections, with their caps.
#[derive(Debug)]
pub struct Admission {
    per_source: usize,
    per_cert: usize,
    /// Slots connections of other roles may hold together.
    unreserved: usize,
    reserved: usize,
    max_connections: usize,
    reserved_roles: Vec<String>,
    counts: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    per_source: HashMap<IpAddr, usize>,
    per_cert: HashMap<String, usize>,
    unreserved: usize,
}

/// One authenticated connection's place; released when dropped (the connection ended).
#[derive(Debug)]
pub struct Admitted {
    owner: Arc<Admission>,
    source: IpAddr,
    fingerprint: String,
    reserved: bool,
}

/// Why an authenticated connection was refused: which cap, and what to do about it. The
/// message is sent to the client (`busy`) and written to the audit log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The source address holds its share.
    #[error(
        "connection refused: this source address already holds {limit} connections to this \
         agent (max_connections_per_ip); close idle connections or let them finish, then retry"
    )]
    PerAddress {
        /// The cap.
        limit: usize,
    },
    /// The certificate holds its share.
    #[error(
        "connection refused: this certificate already holds {limit} connections to this agent \
         (max_connections_per_cert); close idle connections or let them finish, then retry"
    )]
    PerCertificate {
        /// The cap.
        limit: usize,
    },
    /// Only the reserved slots are left, and the caller's role is not a reserved one.
    #[error(
        "connection refused: the agent is busy; the last {reserved} of its {max} connections are \
         kept for the roles {roles} (reserved_connections, reserved_roles); retry later"
    )]
    Reserved {
        /// Slots kept for reserved roles.
        reserved: usize,
        /// The connection cap.
        max: usize,
        /// The reserved roles, as a list.
        roles: String,
    },
}

impl Admission {
    /// The caps in `limits`.
    pub fn new(limits: &Limits) -> Arc<Self> {
        Arc::new(Self {
            per_source: limits.max_connections_per_ip,
            per_cert: limits.max_connections_per_cert,
            unreserved: limits.max_connections - limits.reserved_slots(),
            reserved: limits.reserved_slots(),
            max_connections: limits.max_connections,
            reserved_roles: limits.reserved_roles.clone(),
            counts: Mutex::new(Counts::default()),
        })
    }

    /// A place for a connection from `ip` authenticated as `who`, or which cap it is over.
    ///
    /// # Errors
    /// The [`Refusal`] naming the cap.
    pub fn try_admit(self: &Arc<Self>, ip: IpAddr, who: &Identity) -> Result<Admitted, Refusal> {
        let ip = source(ip);
        let reserved = who
            .role
            .as_deref()
            .is_some_and(|role| self.reserved_roles.iter().any(|r| r == role));
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let from_cert = counts.per_cert.get(&who.fingerprint).copied().unwrap_or(0);
        if from_cert >= self.per_cert {
            return Err(Refusal::PerCertificate {
                limit: self.per_cert,
            });
        }
        let from_source = counts.per_source.get(&ip).copied().unwrap_or(0);
        if from_source >= self.per_source {
            return Err(Refusal::PerAddress {
                limit: self.per_source,
            });
        }
        if !reserved && counts.unreserved >= self.unreserved {
            return Err(Refusal::Reserved {
                reserved: self.reserved,
                max: self.max_connections,
                roles: self.reserved_roles.join(", "),
            });
        }
        *counts.per_cert.entry(who.fingerprint.clone()).or_insert(0) += 1;
        *counts.per_source.entry(ip).or_insert(0) += 1;
        if !reserved {
            counts.unreserved += 1;
        }
        Ok(Admitted {
            owner: self.clone(),
            source: ip,
            fingerprint: who.fingerprint.clone(),
            reserved,
        })
    }
}

/// Gives the place back: the maps only ever hold sources and certificates with connections
/// open.
impl Drop for Admitted {
    fn drop(&mut self) {
        let mut counts = self
            .owner
            .counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        release(&mut counts.per_source, &self.source);
        release(&mut counts.per_cert, &self.fingerprint);
        if !self.reserved {
            counts.unreserved = counts.unreserved.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(name: &str, role: &str) -> Identity {
        Identity {
            name: name.into(),
            fingerprint: format!("fp-{name}"),
            role: Some(role.into()),
            serial: "01".into(),
        }
    }

    fn admission(max: usize, reserved: usize, per_ip: usize, per_cert: usize) -> Arc<Admission> {
        Admission::new(&Limits {
            max_connections: max,
            reserved_connections: reserved,
            max_connections_per_ip: per_ip,
            max_connections_per_cert: per_cert,
            ..Limits::default()
        })
    }

    #[test]
    fn per_certificate_and_per_address_caps() {
        let caps = admission(100, 0, 3, 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let mon = who("mon", "monitor");
        let first = caps.try_admit(a, &mon).unwrap();
        let _second = caps.try_admit(b, &mon).unwrap();
        assert_eq!(
            caps.try_admit("10.0.0.3".parse().unwrap(), &mon)
                .unwrap_err(),
            Refusal::PerCertificate { limit: 2 },
            "a certificate's share holds across addresses"
        );
        let _other = caps.try_admit(a, &who("op", "operator")).unwrap();
        let _third = caps.try_admit(a, &who("op2", "operator")).unwrap();
        assert_eq!(
            caps.try_admit(a, &who("op3", "admin")).unwrap_err(),
            Refusal::PerAddress { limit: 3 },
            "the per-address cap holds for every role"
        );
        // One IPv6 /64 is one source; the mapped IPv4 address is the IPv4 address.
        let _v6 = caps
            .try_admit("2001:db8::1".parse().unwrap(), &who("v1", "admin"))
            .unwrap();
        let _v6 = caps
            .try_admit("2001:db8::2".parse().unwrap(), &who("v2", "admin"))
            .unwrap();
        let _v6 = caps
            .try_admit("2001:db8::3".parse().unwrap(), &who("v3", "admin"))
            .unwrap();
        assert!(matches!(
            caps.try_admit("2001:db8::4".parse().unwrap(), &who("v4", "admin")),
            Err(Refusal::PerAddress { .. })
        ));
        drop(first);
        assert!(
            caps.try_admit("::ffff:10.0.0.1".parse().unwrap(), &mon)
                .is_ok()
        );
    }

    #[test]
    fn the_last_slots_are_kept_for_reserved_roles() {
        let caps = admission(4, 2, 100, 100);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let held: Vec<_> = (0..2)
            .map(|i| {
                caps.try_admit(ip, &who(&format!("m{i}"), "monitor"))
                    .unwrap()
            })
            .collect();
        let refused = caps
            .try_admit(ip, &who("m9", "monitor"))
            .expect_err("other roles stop short of the reserve");
        assert!(refused.to_string().contains("admin"), "{refused}");
        let no_role = Identity {
            role: None,
            ..who("anon", "-")
        };
        assert!(matches!(
            caps.try_admit(ip, &no_role),
            Err(Refusal::Reserved { .. })
        ));
        let _admin = caps.try_admit(ip, &who("root", "admin")).unwrap();
        drop(held);
        assert!(caps.try_admit(ip, &who("m9", "monitor")).is_ok());
    }

    #[test]
    fn the_maps_forget_closed_connections() {
        let caps = admission(100, 0, 1, 1);
        for i in 0..50u8 {
            drop(
                caps.try_admit(IpAddr::from([10, 0, 0, i]), &who(&i.to_string(), "monitor"))
                    .unwrap(),
            );
        }
        let counts = caps.counts.lock().unwrap();
        assert!(counts.per_source.is_empty() && counts.per_cert.is_empty());
        assert_eq!(counts.unreserved, 0);
    }
}
