//! The machine's MAC addresses, for Wake-on-LAN.
//!
//! On Linux each interface has `/sys/class/net/NAME/address`; loopback (type 772) and
//! all-zero addresses (tunnels, some virtual links) are left out. Other platforms report none
//! rather than a guess.

use lightsout_protocol::InterfaceMac;

/// The interfaces' MAC addresses, sorted by interface name.
#[cfg(target_os = "linux")]
pub fn read() -> Vec<InterfaceMac> {
    read_from(std::path::Path::new("/sys/class/net"))
}

/// The interfaces' MAC addresses (none: not known on this platform).
#[cfg(not(target_os = "linux"))]
pub fn read() -> Vec<InterfaceMac> {
    Vec::new()
}

/// ARPHRD_LOOPBACK in `/sys/class/net/NAME/type`.
#[cfg(target_os = "linux")]
const LOOPBACK_TYPE: &str = "772";

#[cfg(target_os = "linux")]
fn read_from(dir: &std::path::Path) -> Vec<InterfaceMac> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut macs: Vec<InterfaceMac> = entries
        .flatten()
        .filter_map(|entry| {
            let interface = entry.file_name().to_str()?.to_owned();
            let path = entry.path();
            let kind = std::fs::read_to_string(path.join("type")).unwrap_or_default();
            if interface == "lo" || kind.trim() == LOOPBACK_TYPE {
                return None;
            }
            let mac = std::fs::read_to_string(path.join("address")).ok()?;
            let mac = mac.trim().to_ascii_lowercase();
            // Ethernet-style addresses only (InfiniBand and others are longer), never zero.
            if mac.len() != 17 || mac == "00:00:00:00:00:00" {
                return None;
            }
            Some(InterfaceMac { interface, mac })
        })
        .collect();
    macs.sort_by(|a, b| a.interface.cmp(&b.interface));
    macs
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn skips_loopback_and_zero_addresses() {
        let dir = tempfile::tempdir().unwrap();
        for (name, kind, mac) in [
            ("lo", "772", "00:00:00:00:00:00"),
            ("eth0", "1", "52:54:00:AB:CD:01"),
            ("tun0", "65534", "00:00:00:00:00:00"),
            (
                "ib0",
                "32",
                "80:00:00:48:fe:80:00:00:00:00:00:00:00:00:00:00:00:00:00:00",
            ),
            ("wlan0", "1", "02:11:22:33:44:55\n"),
        ] {
            let d = dir.path().join(name);
            std::fs::create_dir(&d).unwrap();
            std::fs::write(d.join("type"), format!("{kind}\n")).unwrap();
            std::fs::write(d.join("address"), mac).unwrap();
        }
        let got = read_from(dir.path());
        let pairs: Vec<(&str, &str)> = got
            .iter()
            .map(|m| (m.interface.as_str(), m.mac.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("eth0", "52:54:00:ab:cd:01"),
                ("wlan0", "02:11:22:33:44:55")
            ]
        );
        assert!(read_from(&dir.path().join("missing")).is_empty());
    }
}
