//! The machine's MAC addresses, for Wake-on-LAN.
//!
//! On Linux each interface has `/sys/class/net/NAME/address`. Only interfaces that can wake
//! the machine are reported, judged by what they are rather than by name: a physical device
//! (a `device` link to the hardware; bridges, veth pairs, `ifb`, `dummy`, tunnels and VPNs
//! have none) whose link is up (`operstate` is `up`: a NIC with no cable carries no magic
//! packet). Loopback (type 772) and all-zero addresses are left out too. Other platforms
//! report none rather than a guess.

use lightsout_protocol::InterfaceMac;

/// The interfaces' MAC addresses, sorted by interface name, from `/sys/class/net` (or
/// `sysfs_net`, a stand-in directory for tests).
#[cfg(target_os = "linux")]
pub fn read(sysfs_net: Option<&std::path::Path>) -> Vec<InterfaceMac> {
    read_from(sysfs_net.unwrap_or(std::path::Path::new("/sys/class/net")))
}

/// The interfaces' MAC addresses (none: not known on this platform).
#[cfg(not(target_os = "linux"))]
pub fn read(_sysfs_net: Option<&std::path::Path>) -> Vec<InterfaceMac> {
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
            // `device` is a symlink to the hardware: its absence means a virtual link.
            if std::fs::symlink_metadata(path.join("device")).is_err() {
                return None;
            }
            let operstate = std::fs::read_to_string(path.join("operstate")).unwrap_or_default();
            if operstate.trim() != "up" {
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

    /// A fake `/sys/class/net/NAME`: type, address, operstate, and a `device` symlink when
    /// the interface is physical.
    fn interface(
        root: &std::path::Path,
        name: &str,
        kind: &str,
        mac: &str,
        up: bool,
        physical: bool,
    ) -> std::io::Result<()> {
        let d = root.join(name);
        std::fs::create_dir(&d)?;
        std::fs::write(d.join("type"), format!("{kind}\n"))?;
        std::fs::write(d.join("address"), mac)?;
        std::fs::write(d.join("operstate"), if up { "up\n" } else { "down\n" })?;
        if physical {
            let hw = root.join(format!(".hw-{name}"));
            std::fs::create_dir(&hw)?;
            std::os::unix::fs::symlink(&hw, d.join("device"))?;
        }
        Ok(())
    }

    fn pairs(got: &[InterfaceMac]) -> Vec<(&str, &str)> {
        got.iter()
            .map(|m| (m.interface.as_str(), m.mac.as_str()))
            .collect()
    }

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
            interface(dir.path(), name, kind, mac, true, true).unwrap();
        }
        assert_eq!(
            pairs(&read_from(dir.path())),
            [
                ("eth0", "52:54:00:ab:cd:01"),
                ("wlan0", "02:11:22:33:44:55")
            ]
        );
        assert!(read_from(&dir.path().join("missing")).is_empty());
    }

    #[test]
    fn virtual_and_down_interfaces_are_left_out_whatever_their_name() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        // The ones seen on a real lab machine: ifb0/ifb1 (no device), plus a bridge and a
        // veth with innocent names, a physical NIC without a cable, and the one that wakes.
        interface(root, "ifb0", "1", "a6:1c:00:00:00:01", true, false).unwrap();
        interface(root, "ifb1", "1", "a6:1c:00:00:00:02", true, false).unwrap();
        interface(root, "lan", "1", "02:00:00:00:00:03", true, false).unwrap();
        interface(root, "uplink", "1", "02:00:00:00:00:04", true, false).unwrap();
        interface(root, "enp3s0", "1", "52:54:00:00:00:05", false, true).unwrap();
        interface(root, "enp2s0", "1", "52:54:00:00:00:06", true, true).unwrap();
        // An operstate file that is missing or "unknown" is not "up".
        interface(root, "enp4s0", "1", "52:54:00:00:00:07", true, true).unwrap();
        std::fs::write(root.join("enp4s0/operstate"), "unknown\n").unwrap();
        assert_eq!(pairs(&read_from(root)), [("enp2s0", "52:54:00:00:00:06")]);
    }
}
