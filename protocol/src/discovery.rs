//! LAN discovery: the probe a controller broadcasts and the announcement an opted-in agent
//! answers with.
//!
//! Both travel as single UDP datagrams on the agent's port. The probe is a fixed marker padded
//! to [`PROBE_LEN`] bytes, and an announcement is never longer than the probe it answers, so
//! an agent cannot be used to amplify traffic towards a spoofed source. An announcement
//! carries exactly four facts — name, address, port, certificate fingerprint — and nothing
//! an unauthenticated stranger on the LAN should not learn. It proves nothing: the controller
//! still verifies the agent's certificate against the lab CA when it connects.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// What a probe starts with; the rest of it is zero padding.
pub const PROBE_MARKER: &[u8] = b"lightsout-discover/1\n";
/// Exact length of a probe, and the most an announcement may take.
pub const PROBE_LEN: usize = 512;
/// Longest agent name in an announcement (a DNS name's maximum).
pub const MAX_NAME_LEN: usize = 253;

/// A discovery probe.
pub fn probe() -> Vec<u8> {
    let mut p = vec![0u8; PROBE_LEN];
    p[..PROBE_MARKER.len()].copy_from_slice(PROBE_MARKER);
    p
}

/// Whether `datagram` is a well-formed probe: exact length, marker, zero padding.
pub fn is_probe(datagram: &[u8]) -> bool {
    datagram.len() == PROBE_LEN
        && datagram.starts_with(PROBE_MARKER)
        && datagram[PROBE_MARKER.len()..].iter().all(|b| *b == 0)
}

/// An agent's answer to a probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Announcement {
    /// Format version, 1.
    pub lightsout_discovery: u32,
    /// The agent certificate's common name (a name its certificate is valid for).
    pub name: String,
    /// The address controllers should dial.
    pub address: IpAddr,
    /// The TCP port the agent listens on.
    pub port: u16,
    /// SHA-256 of the agent's certificate, lower-case hex.
    pub fingerprint: String,
}

impl Announcement {
    /// An announcement in the current format.
    pub fn new(name: String, address: IpAddr, port: u16, fingerprint: String) -> Self {
        Self {
            lightsout_discovery: 1,
            name,
            address,
            port,
            fingerprint,
        }
    }

    /// The datagram, or `None` when it would exceed [`PROBE_LEN`] (no amplification).
    pub fn to_bytes(&self) -> Option<Vec<u8>> {
        serde_json::to_vec(self)
            .ok()
            .filter(|b| b.len() <= PROBE_LEN)
    }

    /// Parses and checks an announcement received from the network.
    ///
    /// # Errors
    /// A readable reason: not JSON of this shape, another version, an empty or overlong
    /// name, port 0, or a fingerprint that is not 64 hex digits.
    pub fn parse(datagram: &[u8]) -> Result<Self, String> {
        if datagram.len() > PROBE_LEN {
            return Err(format!("{} bytes, more than {PROBE_LEN}", datagram.len()));
        }
        let a: Announcement =
            serde_json::from_slice(datagram).map_err(|e| format!("not an announcement: {e}"))?;
        if a.lightsout_discovery != 1 {
            return Err(format!("unknown version {}", a.lightsout_discovery));
        }
        if a.name.is_empty() || a.name.len() > MAX_NAME_LEN {
            return Err("name must be 1 to 253 bytes".into());
        }
        if a.port == 0 {
            return Err("port 0".into());
        }
        if a.fingerprint.len() != 64
            || !a
                .fingerprint
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err("fingerprint must be 64 lower-case hex digits".into());
        }
        Ok(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_is_recognised_exactly() {
        let p = probe();
        assert!(is_probe(&p));
        assert!(!is_probe(&p[..PROBE_LEN - 1]));
        let mut longer = p.clone();
        longer.push(0);
        assert!(!is_probe(&longer));
        let mut dirty = p.clone();
        dirty[PROBE_LEN - 1] = 1;
        assert!(!is_probe(&dirty));
        assert!(!is_probe(b"lightsout-discover/1\n"));
    }

    #[test]
    fn announcement_round_trip_and_limits() {
        let a = Announcement::new(
            "lab-01".into(),
            "10.0.0.21".parse().unwrap(),
            7474,
            "ab".repeat(32),
        );
        let bytes = a.to_bytes().unwrap();
        assert!(bytes.len() <= PROBE_LEN);
        assert_eq!(Announcement::parse(&bytes).unwrap(), a);

        let long = Announcement::new("x".repeat(500), a.address, 1, a.fingerprint.clone());
        assert!(long.to_bytes().is_none(), "never larger than the probe");

        for bad in [
            &br#"{"lightsout_discovery":1,"name":"a","address":"10.0.0.1","port":1,"fingerprint":"zz"}"#[..],
            br#"{"lightsout_discovery":2,"name":"a","address":"10.0.0.1","port":1,"fingerprint":"x"}"#,
            br#"{"lightsout_discovery":1,"name":"","address":"10.0.0.1","port":1,"fingerprint":"x"}"#,
            br#"{"lightsout_discovery":1,"name":"a","address":"10.0.0.1","port":1,"fingerprint":"x","os":"linux"}"#,
            b"\xff\xfe",
        ] {
            assert!(Announcement::parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
