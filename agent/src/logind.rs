//! The D-Bus client for systemd-logind (`org.freedesktop.login1.Manager` and its sessions):
//! the few calls the logind power backend and the occupancy reading need, nothing else.
//!
//! Why the agent talks to logind itself instead of running `shutdown(8)`: systemd's
//! `shutdown -h +N` asks logind to schedule the action, and when it cannot reach logind (the
//! system bus down, a minimal install) it falls back to powering off *at once*, exit status 0
//! — an accepted delayed action would happen early. Talking to logind directly, the agent
//! knows whether the system holds the action before it answers, and a failure is a refusal,
//! never an immediate power-off.
//!
//! Every call opens its own connection (like running a command: nothing to keep alive, and a
//! bus that restarted in between is simply reached again) and runs under [`CALL_TIMEOUT`].
//! The bus is the system bus, or — tests only — exactly the address given with the hidden
//! `--logind-bus` option, never the system bus as a fallback.

use std::collections::HashMap;
use std::time::Duration;

use zbus::proxy::CacheProperties;
use zbus::zvariant::{OwnedObjectPath, OwnedValue};

/// Longest one exchange with logind (connect and call) may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Which D-Bus the logind backend talks to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogindBus {
    /// The system bus, where systemd-logind runs.
    System,
    /// This address and nothing else (tests: a private bus with a fake logind).
    Address(String),
}

impl std::fmt::Display for LogindBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LogindBus::System => f.write_str("the system bus"),
            LogindBus::Address(a) => write!(f, "the bus {a}"),
        }
    }
}

/// Why an exchange with logind failed.
#[derive(Debug, thiserror::Error)]
pub enum LogindError {
    /// No connection to the bus, or logind is not on it.
    #[error("systemd-logind is not reachable on {bus} ({source})")]
    Unreachable {
        /// The bus tried.
        bus: LogindBus,
        /// Why.
        source: zbus::Error,
    },
    /// logind answered with an error.
    #[error("systemd-logind refused it ({0})")]
    Refused(#[source] zbus::Error),
    /// No answer in time.
    #[error("systemd-logind did not answer on {0} within {secs}s", secs = CALL_TIMEOUT.as_secs())]
    Timeout(LogindBus),
}

#[zbus::proxy(
    interface = "org.freedesktop.login1.Manager",
    default_service = "org.freedesktop.login1",
    default_path = "/org/freedesktop/login1",
    gen_blocking = false
)]
trait Manager {
    fn schedule_shutdown(&self, kind: &str, usec: u64) -> zbus::Result<()>;
    fn cancel_scheduled_shutdown(&self) -> zbus::Result<bool>;
    fn set_wall_message(&self, message: &str, enable: bool) -> zbus::Result<()>;
    fn list_sessions(&self) -> zbus::Result<Vec<(String, u32, String, String, OwnedObjectPath)>>;
    #[zbus(property)]
    fn scheduled_shutdown(&self) -> zbus::Result<(String, u64)>;
}

/// One session as logind lists it, before occupancy decides whether it counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawSession {
    /// logind's session id.
    pub id: String,
    /// User name.
    pub user: String,
    /// `user`, `greeter`, `lock-screen`, `background`, `manager`...
    pub class: String,
    /// `online`, `active`, `closing`.
    pub state: String,
    /// Terminal, empty when none.
    pub tty: String,
    /// Seat id, empty when none.
    pub seat: String,
    /// Whether it is a remote session.
    pub remote: bool,
    /// Remote host, empty when none.
    pub remote_host: String,
    /// Whether logind considers it idle.
    pub idle_hint: bool,
    /// Since when (CLOCK_REALTIME, microseconds), when idle.
    pub idle_since_usec: u64,
}

/// A connection to logind.
#[derive(Debug)]
pub struct Logind {
    conn: zbus::Connection,
    bus: LogindBus,
}

/// Runs `f` under [`CALL_TIMEOUT`].
async fn timed<T>(
    bus: &LogindBus,
    f: impl Future<Output = Result<T, LogindError>>,
) -> Result<T, LogindError> {
    tokio::time::timeout(CALL_TIMEOUT, f)
        .await
        .unwrap_or_else(|_| Err(LogindError::Timeout(bus.clone())))
}

impl Logind {
    /// Connects to `bus`.
    ///
    /// # Errors
    /// [`LogindError::Unreachable`] or [`LogindError::Timeout`].
    pub async fn connect(bus: &LogindBus) -> Result<Self, LogindError> {
        timed(bus, async {
            let conn = match bus {
                LogindBus::System => zbus::Connection::system().await,
                LogindBus::Address(address) => {
                    match zbus::connection::Builder::address(address.as_str()) {
                        Ok(builder) => builder.build().await,
                        Err(e) => Err(e),
                    }
                }
            };
            conn.map(|conn| Self {
                conn,
                bus: bus.clone(),
            })
            .map_err(|source| LogindError::Unreachable {
                bus: bus.clone(),
                source,
            })
        })
        .await
    }

    /// A method error that says logind is absent is "not reachable", any other is a refusal.
    fn classify(&self, e: zbus::Error) -> LogindError {
        let absent = match &e {
            zbus::Error::MethodError(name, _, _) => matches!(
                name.as_str(),
                "org.freedesktop.DBus.Error.ServiceUnknown"
                    | "org.freedesktop.DBus.Error.NameHasNoOwner"
                    | "org.freedesktop.DBus.Error.NoReply"
                    | "org.freedesktop.DBus.Error.Disconnected"
            ),
            zbus::Error::FDO(fdo) => matches!(
                **fdo,
                zbus::fdo::Error::ServiceUnknown(_)
                    | zbus::fdo::Error::NameHasNoOwner(_)
                    | zbus::fdo::Error::NoReply(_)
                    | zbus::fdo::Error::Disconnected(_)
            ),
            zbus::Error::InputOutput(_) => true,
            _ => false,
        };
        if absent {
            LogindError::Unreachable {
                bus: self.bus.clone(),
                source: e,
            }
        } else {
            LogindError::Refused(e)
        }
    }

    async fn manager(&self) -> Result<ManagerProxy<'_>, LogindError> {
        ManagerProxy::builder(&self.conn)
            .cache_properties(CacheProperties::No)
            .build()
            .await
            .map_err(|e| self.classify(e))
    }

    /// `SetWallMessage(wall, true)` then `ScheduleShutdown(kind, due_usec)`: logind warns
    /// logged-in users (with `wall` as the text, when not empty), creates `/run/nologin`
    /// shortly before, and carries the action out at `due_usec` (CLOCK_REALTIME, µs) —
    /// also when the agent is stopped or restarted in between.
    ///
    /// # Errors
    /// A [`LogindError`]: then nothing was scheduled.
    pub async fn schedule(&self, kind: &str, due_usec: u64, wall: &str) -> Result<(), LogindError> {
        timed(&self.bus, async {
            let manager = self.manager().await?;
            manager
                .set_wall_message(wall, true)
                .await
                .map_err(|e| self.classify(e))?;
            manager
                .schedule_shutdown(kind, due_usec)
                .await
                .map_err(|e| self.classify(e))
        })
        .await
    }

    /// `CancelScheduledShutdown`: whether logind had one to cancel.
    ///
    /// # Errors
    /// A [`LogindError`]: then whatever was scheduled still is.
    pub async fn cancel(&self) -> Result<bool, LogindError> {
        timed(&self.bus, async {
            self.manager()
                .await?
                .cancel_scheduled_shutdown()
                .await
                .map_err(|e| self.classify(e))
        })
        .await
    }

    /// The `ScheduledShutdown` property: the kind (`poweroff`, `reboot`...) and due time
    /// (CLOCK_REALTIME, µs) of the scheduled action; `None` when nothing is scheduled.
    ///
    /// # Errors
    /// A [`LogindError`].
    pub async fn scheduled(&self) -> Result<Option<(String, u64)>, LogindError> {
        timed(&self.bus, async {
            let (kind, usec) = self
                .manager()
                .await?
                .scheduled_shutdown()
                .await
                .map_err(|e| self.classify(e))?;
            Ok((usec != 0 && !kind.is_empty()).then_some((kind, usec)))
        })
        .await
    }

    /// Every session logind lists, with the properties occupancy needs (one `GetAll` each).
    /// A session that ends between the listing and its properties is left out.
    ///
    /// # Errors
    /// A [`LogindError`] from the listing.
    pub async fn sessions(&self) -> Result<Vec<RawSession>, LogindError> {
        timed(&self.bus, async {
            let listed = self
                .manager()
                .await?
                .list_sessions()
                .await
                .map_err(|e| self.classify(e))?;
            let mut sessions = Vec::with_capacity(listed.len());
            for (id, _uid, user, seat, path) in listed {
                let Ok(props) = self.session_properties(path).await else {
                    continue;
                };
                let text = |key: &str| {
                    props
                        .get(key)
                        .and_then(|v| String::try_from(v.try_clone().ok()?).ok())
                        .unwrap_or_default()
                };
                let flag = |key: &str| {
                    props
                        .get(key)
                        .and_then(|v| bool::try_from(v).ok())
                        .unwrap_or(false)
                };
                let seat_prop = props
                    .get("Seat")
                    .and_then(|v| <(String, OwnedObjectPath)>::try_from(v.try_clone().ok()?).ok())
                    .map(|(s, _)| s)
                    .unwrap_or_default();
                let name = text("Name");
                sessions.push(RawSession {
                    id,
                    user: if name.is_empty() { user } else { name },
                    class: text("Class"),
                    state: text("State"),
                    tty: text("TTY"),
                    seat: if seat_prop.is_empty() {
                        seat
                    } else {
                        seat_prop
                    },
                    remote: flag("Remote"),
                    remote_host: text("RemoteHost"),
                    idle_hint: flag("IdleHint"),
                    idle_since_usec: props
                        .get("IdleSinceHint")
                        .and_then(|v| u64::try_from(v).ok())
                        .unwrap_or(0),
                });
            }
            Ok(sessions)
        })
        .await
    }

    async fn session_properties(
        &self,
        path: OwnedObjectPath,
    ) -> Result<HashMap<String, OwnedValue>, zbus::Error> {
        let props = zbus::fdo::PropertiesProxy::builder(&self.conn)
            .destination("org.freedesktop.login1")?
            .path(path)?
            .cache_properties(CacheProperties::No)
            .build()
            .await?;
        let iface = zbus::names::InterfaceName::from_static_str("org.freedesktop.login1.Session")?;
        Ok(props.get_all(iface).await?)
    }
}
