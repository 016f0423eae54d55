//! Handshakes in progress, counted per source address.
//!
//! A TLS handshake is the one phase a client spends on the agent before proving who it is. The
//! connection cap alone would let a single unauthenticated machine hold every slot with silent
//! connections (each for the whole handshake deadline) and lock the controllers out; a small
//! cap per source address means an attacker needs many addresses to do that, while a
//! controller — which opens one connection per agent — never comes near it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

/// Handshakes in progress per source address, with a limit.
#[derive(Debug)]
pub struct PendingHandshakes {
    limit: usize,
    counts: Mutex<HashMap<IpAddr, usize>>,
}

/// One handshake's place; released when dropped (handshake done, failed or abandoned).
#[derive(Debug)]
pub struct HandshakeSlot {
    owner: Arc<PendingHandshakes>,
    ip: IpAddr,
}

impl PendingHandshakes {
    /// At most `limit` handshakes in progress per source address.
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            limit,
            counts: Mutex::new(HashMap::new()),
        })
    }

    /// A place for a handshake from `ip`, or `None` when that source is at its limit.
    pub fn try_begin(self: &Arc<Self>, ip: IpAddr) -> Option<HandshakeSlot> {
        let ip = source(ip);
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let count = counts.entry(ip).or_insert(0);
        if *count >= self.limit {
            return None;
        }
        *count += 1;
        Some(HandshakeSlot {
            owner: self.clone(),
            ip,
        })
    }

    /// Handshakes in progress from `ip`.
    #[cfg(test)]
    pub fn in_progress(&self, ip: IpAddr) -> usize {
        let counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        counts.get(&source(ip)).copied().unwrap_or(0)
    }
}

/// What counts as one source: an IPv4 address (IPv4-mapped IPv6 included), or an IPv6 /64 —
/// one IPv6 machine can pick any address in its /64, so counting addresses would not limit it.
pub(crate) fn source(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(std::net::Ipv6Addr::from(
            u128::from(v6) & !u128::from(u64::MAX),
        )),
        v4 => v4,
    }
}

impl Drop for HandshakeSlot {
    fn drop(&mut self) {
        let mut counts = self
            .owner
            .counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // The map only ever holds addresses mid-handshake.
        release(&mut counts, &self.ip);
    }
}

/// Gives back one place counted under `key`, forgetting the key at zero so that a map of
/// places holds only keys in use (bounded by what is in progress, not by who ever came).
pub(crate) fn release<K: std::hash::Hash + Eq>(counts: &mut HashMap<K, usize>, key: &K) {
    if let Some(count) = counts.get_mut(key) {
        *count -= 1;
        if *count == 0 {
            counts.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_address_limit_and_release() {
        let pending = PendingHandshakes::new(2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let first = pending.try_begin(a).unwrap();
        let _second = pending.try_begin(mapped).unwrap();
        assert!(
            pending.try_begin(a).is_none(),
            "the mapped address counts as the same"
        );
        assert!(
            pending.try_begin(b).is_some(),
            "other addresses are unaffected"
        );
        // One IPv6 /64 is one source, whatever address in it the client picks.
        let _v6 = pending.try_begin("2001:db8::1".parse().unwrap()).unwrap();
        let _v6b = pending
            .try_begin("2001:db8::ffff:2".parse().unwrap())
            .unwrap();
        assert!(pending.try_begin("2001:db8::3".parse().unwrap()).is_none());
        assert!(
            pending
                .try_begin("2001:db8:0:1::3".parse().unwrap())
                .is_some()
        );
        drop(first);
        assert_eq!(pending.in_progress(a), 1);
        assert!(pending.try_begin(a).is_some());
    }

    #[test]
    fn the_map_forgets_finished_addresses() {
        let pending = PendingHandshakes::new(1);
        for i in 0..100u8 {
            drop(pending.try_begin(IpAddr::from([10, 0, 0, i])).unwrap());
        }
        assert!(pending.counts.lock().unwrap().is_empty());
    }
}
