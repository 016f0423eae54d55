//! Wake-on-LAN: MAC addresses, the `wake` request's parameters, and the magic packet.
//!
//! A magic packet is six `0xff` bytes followed by the target's MAC address sixteen times,
//! sent as one UDP datagram to a broadcast address (port 9 by convention). The network card of
//! a sleeping machine recognises it and powers the machine on.
//!
//! MAC addresses are a type, not a string: whatever reaches a sender has been parsed strictly
//! (six two-digit hex groups, one separator kind), and addresses that cannot belong to one
//! network card — all zeros, broadcast, multicast — are refused. A `wake` request carries
//! nothing but MACs, a broadcast address and a port.

use std::net::Ipv4Addr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The conventional Wake-on-LAN port (discard); 7 (echo) is the other one in use.
pub const DEFAULT_WAKE_PORT: u16 = 9;
/// Where magic packets go unless told otherwise: the limited broadcast address.
pub const DEFAULT_BROADCAST: Ipv4Addr = Ipv4Addr::BROADCAST;
/// Most MAC addresses in one `wake` request (a whole room, with room to spare; the frame
/// stays far below the size limit).
pub const MAX_WAKE_MACS: usize = 256;
/// Length of a magic packet.
pub const MAGIC_PACKET_LEN: usize = 6 + 16 * 6;

/// A unicast MAC address (EUI-48) of one network interface.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr([u8; 6]);

impl MacAddr {
    /// Parses `aa:bb:cc:dd:ee:ff` or `aa-bb-cc-dd-ee-ff` (either case, one separator kind).
    ///
    /// # Errors
    /// A readable reason: wrong shape, not hex, or an address no single network card has
    /// (all zeros, broadcast, multicast).
    pub fn parse(s: &str) -> Result<Self, String> {
        let shape = || {
            format!("{s:?} is not a MAC address (expected six hex pairs, e.g. 52:54:00:12:34:56)")
        };
        let bytes = s.as_bytes();
        if bytes.len() != 17 {
            return Err(shape());
        }
        let sep = bytes[2];
        if sep != b':' && sep != b'-' {
            return Err(shape());
        }
        let mut octets = [0u8; 6];
        for (i, octet) in octets.iter_mut().enumerate() {
            let start = i * 3;
            if i > 0 && bytes[start - 1] != sep {
                return Err(shape());
            }
            let pair = &s[start..start + 2];
            if !pair.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(shape());
            }
            *octet = u8::from_str_radix(pair, 16).map_err(|_| shape())?;
        }
        let mac = MacAddr(octets);
        if octets == [0; 6] {
            return Err(format!(
                "{s:?}: the all-zero MAC address belongs to no card"
            ));
        }
        if octets[0] & 1 == 1 {
            return Err(format!(
                "{s:?} is a broadcast or multicast address, not one network card's"
            ));
        }
        Ok(mac)
    }

    /// The six octets.
    pub fn octets(&self) -> [u8; 6] {
        self.0
    }

    /// The Wake-on-LAN magic packet for this address.
    pub fn magic_packet(&self) -> [u8; MAGIC_PACKET_LEN] {
        let mut packet = [0xffu8; MAGIC_PACKET_LEN];
        for chunk in packet[6..].chunks_exact_mut(6) {
            chunk.copy_from_slice(&self.0);
        }
        packet
    }
}

impl std::fmt::Display for MacAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let o = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            o[0], o[1], o[2], o[3], o[4], o[5]
        )
    }
}

impl std::fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MacAddr({self})")
    }
}

impl std::str::FromStr for MacAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::parse(s)
    }
}

impl Serialize for MacAddr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MacAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        MacAddr::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// The `wake` request: send magic packets for these MACs to `broadcast:port`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WakeParams {
    /// The cards to wake (strictly parsed: anything else fails to decode).
    pub macs: Vec<MacAddr>,
    /// Destination address; default [`DEFAULT_BROADCAST`]. The agent accepts only the limited
    /// broadcast, a directed broadcast of one of its own networks, or loopback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broadcast: Option<Ipv4Addr>,
    /// Destination UDP port; default [`DEFAULT_WAKE_PORT`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

/// Why the parameters of a wake request are refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WakeParamsError {
    /// No MAC address.
    #[error("wake needs at least one MAC address")]
    NoMac,
    /// More than [`MAX_WAKE_MACS`].
    #[error("{count} MAC addresses exceed the maximum of {MAX_WAKE_MACS} per request")]
    TooManyMacs {
        /// How many were sent.
        count: usize,
    },
    /// Port 0.
    #[error("wake port must be 1-65535")]
    PortZero,
}

impl WakeParams {
    /// Checks the limits every agent enforces.
    ///
    /// # Errors
    /// No MAC, more than [`MAX_WAKE_MACS`], or port 0.
    pub fn validate(&self) -> Result<(), WakeParamsError> {
        if self.macs.is_empty() {
            return Err(WakeParamsError::NoMac);
        }
        if self.macs.len() > MAX_WAKE_MACS {
            return Err(WakeParamsError::TooManyMacs {
                count: self.macs.len(),
            });
        }
        if self.port == Some(0) {
            return Err(WakeParamsError::PortZero);
        }
        Ok(())
    }

    /// The destination after defaults.
    pub fn destination(&self) -> (Ipv4Addr, u16) {
        (
            self.broadcast.unwrap_or(DEFAULT_BROADCAST),
            self.port.unwrap_or(DEFAULT_WAKE_PORT),
        )
    }
}

/// Sends one magic packet per MAC (duplicates once) to `destination` from `socket`, which
/// must allow broadcast. Returns the MACs sent, in order.
///
/// # Errors
/// The first send that fails.
pub fn send_magic_packets(
    socket: &std::net::UdpSocket,
    macs: &[MacAddr],
    destination: std::net::SocketAddr,
) -> std::io::Result<Vec<MacAddr>> {
    let mut sent: Vec<MacAddr> = Vec::with_capacity(macs.len());
    for mac in macs {
        if sent.contains(mac) {
            continue;
        }
        socket.send_to(&mac.magic_packet(), destination)?;
        sent.push(*mac);
    }
    Ok(sent)
}

/// A UDP socket for sending magic packets: IPv4, any local port, broadcast allowed.
///
/// # Errors
/// The socket cannot be created.
pub fn broadcast_socket() -> std::io::Result<std::net::UdpSocket> {
    let socket = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
    socket.set_broadcast(true)?;
    Ok(socket)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_parsing() {
        let mac = MacAddr::parse("52:54:00:AB:cd:0f").unwrap();
        assert_eq!(mac.to_string(), "52:54:00:ab:cd:0f");
        assert_eq!(MacAddr::parse("52-54-00-ab-cd-0f").unwrap(), mac);
        for bad in [
            "",
            "52:54:00:ab:cd",
            "52:54:00:ab:cd:0f:11",
            "52:54-00:ab:cd:0f",
            "52.54.00.ab.cd.0f",
            "5254.00ab.cd0f",
            "52:54:00:ab:cd:0g",
            "52:54:00:ab:cd:+f",
            " 52:54:00:ab:cd:0f",
            "52:54:00:ab:cd:0f\n",
            "00:00:00:00:00:00",
            "ff:ff:ff:ff:ff:ff",
            "01:00:5e:00:00:01",
            "1.2.3.4; rm -rf /",
            "52:54:00:ab:cd:é",
        ] {
            assert!(MacAddr::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn magic_packet_layout() {
        let mac = MacAddr::parse("02:23:45:67:89:ab").unwrap();
        let p = mac.magic_packet();
        assert_eq!(p.len(), 102);
        assert_eq!(&p[..6], &[0xff; 6]);
        for i in 0..16 {
            assert_eq!(&p[6 + i * 6..12 + i * 6], &mac.octets());
        }
    }

    #[test]
    fn params_are_only_macs() {
        let p: WakeParams = serde_json::from_str(r#"{"macs":["52:54:00:00:00:01"]}"#).unwrap();
        assert_eq!(p.destination(), (Ipv4Addr::BROADCAST, 9));
        assert!(p.validate().is_ok());
        for bad in [
            r#"{"macs":["52:54:00:00:00:01; reboot"]}"#,
            r#"{"macs":[1]}"#,
            r#"{"macs":["52:54:00:00:00:01"],"broadcast":"ff02::1"}"#,
            r#"{"macs":["52:54:00:00:00:01"],"command":"x"}"#,
        ] {
            assert!(serde_json::from_str::<WakeParams>(bad).is_err(), "{bad}");
        }
        let empty = WakeParams {
            macs: vec![],
            broadcast: None,
            port: None,
        };
        assert!(empty.validate().is_err());
        let too_many = WakeParams {
            macs: vec![MacAddr([2, 0, 0, 0, 0, 1]); MAX_WAKE_MACS + 1],
            broadcast: None,
            port: Some(9),
        };
        assert!(too_many.validate().is_err());
    }

    #[test]
    fn sends_to_a_loopback_listener() {
        let listener = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        listener
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let socket = broadcast_socket().unwrap();
        let mac = MacAddr::parse("52:54:00:00:00:07").unwrap();
        let sent =
            send_magic_packets(&socket, &[mac, mac], listener.local_addr().unwrap()).unwrap();
        assert_eq!(sent, vec![mac], "duplicates are sent once");
        let mut buf = [0u8; 200];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], &mac.magic_packet()[..]);
    }
}
