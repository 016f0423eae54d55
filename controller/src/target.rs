//! What the administrator types to name a machine.

use lightsout_protocol::DEFAULT_PORT;

/// Why a target is not `host`, `host:port`, an IPv6 address or `[v6]:port`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// Nothing was typed.
    #[error("empty target")]
    Empty,
    /// `[v6` without the closing bracket.
    #[error("{0:?}: missing ']'")]
    MissingBracket(String),
    /// `[v6]` followed by something other than `:port`.
    #[error("{0:?}: expected ':' after ']'")]
    ExpectedColon(String),
    /// Several colons, and not an IPv6 address.
    #[error("{0:?}: not a host, host:port or IPv6 address (write [v6]:port)")]
    NotIpv6(String),
    /// `:port` alone.
    #[error("{0:?}: missing host")]
    MissingHost(String),
    /// A port that is not 1-65535.
    #[error("{0:?}: port must be 1-65535")]
    BadPort(String),
}

/// One host to reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl Target {
    /// Parses `host`, `host:port`, an IPv6 address, or `[v6]:port`; `default_port` applies
    /// when none is given.
    ///
    /// # Errors
    /// [`TargetError`]: empty host, bad port.
    pub fn parse(s: &str, default_port: u16) -> Result<Self, TargetError> {
        let (host, port) = Self::split(s)?;
        Ok(Self {
            host,
            port: port.unwrap_or(default_port),
        })
    }

    /// Splits `host`, `host:port`, an IPv6 address or `[v6]:port` into the host (IPv6
    /// without brackets) and the port, if one was given.
    ///
    /// # Errors
    /// [`TargetError`]: empty host, bad port.
    pub fn split(s: &str) -> Result<(String, Option<u16>), TargetError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(TargetError::Empty);
        }
        // [v6] or [v6]:port
        if let Some(rest) = s.strip_prefix('[') {
            let (host, after) = rest
                .split_once(']')
                .ok_or_else(|| TargetError::MissingBracket(s.to_owned()))?;
            let port = match after {
                "" => None,
                p => Some(parse_port(
                    s,
                    p.strip_prefix(':')
                        .ok_or_else(|| TargetError::ExpectedColon(s.to_owned()))?,
                )?),
            };
            return Ok((host.to_owned(), port));
        }
        // A bare IPv6 address has several colons.
        if s.matches(':').count() > 1 {
            return match s.parse::<std::net::Ipv6Addr>() {
                Ok(_) => Ok((s.to_owned(), None)),
                Err(_) => Err(TargetError::NotIpv6(s.to_owned())),
            };
        }
        match s.split_once(':') {
            Some((host, port)) if !host.is_empty() => {
                Ok((host.to_owned(), Some(parse_port(s, port)?)))
            }
            Some(_) => Err(TargetError::MissingHost(s.to_owned())),
            None => Ok((s.to_owned(), None)),
        }
    }

    /// Parses with the protocol's default port.
    ///
    /// # Errors
    /// See [`Target::parse`].
    pub fn parse_default(s: &str) -> Result<Self, TargetError> {
        Self::parse(s, DEFAULT_PORT)
    }
}

fn parse_port(whole: &str, p: &str) -> Result<u16, TargetError> {
    match p.parse::<u16>() {
        Ok(0) | Err(_) => Err(TargetError::BadPort(whole.to_owned())),
        Ok(port) => Ok(port),
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        let t = |s| Target::parse(s, 7474).unwrap();
        assert_eq!(
            t("lab-01"),
            Target {
                host: "lab-01".into(),
                port: 7474
            }
        );
        assert_eq!(
            t("lab-01:9000"),
            Target {
                host: "lab-01".into(),
                port: 9000
            }
        );
        assert_eq!(
            t("10.0.0.5"),
            Target {
                host: "10.0.0.5".into(),
                port: 7474
            }
        );
        assert_eq!(
            t("::1"),
            Target {
                host: "::1".into(),
                port: 7474
            }
        );
        assert_eq!(
            t("[::1]:80"),
            Target {
                host: "::1".into(),
                port: 80
            }
        );
        assert_eq!(
            t("[fe80::1]"),
            Target {
                host: "fe80::1".into(),
                port: 7474
            }
        );
        assert_eq!(t("[::1]:80").to_string(), "[::1]:80");
    }

    #[test]
    fn errors() {
        for bad in [
            "",
            "host:",
            "host:0",
            "host:70000",
            ":80",
            "[::1",
            "[::1]x",
            "a:b:c",
        ] {
            assert!(Target::parse(bad, 7474).is_err(), "{bad:?}");
        }
    }
}
