//! A fake systemd-logind for the tests: the subset of `org.freedesktop.login1.Manager` the
//! agent uses, and session objects for occupancy, served on a private bus the test started
//! (`dbus-daemon --session --address=unix:path=TMP/bus`). It never does anything to the
//! machine: "scheduling" is a value in memory, and every call is appended as one JSON line
//! to the `--record` file for the test to read.
//!
//! ```text
//! fake-logind --bus ADDRESS --record FILE [--fail-schedule] [--sessions FILE]
//!             [--scheduled KIND:USEC]
//! ```
//! `--fail-schedule`: `ScheduleShutdown` answers with an access-denied error (as logind does
//! for a caller polkit refuses). `--sessions FILE`: a JSON array of sessions
//! (`{"id","user","class","state","tty","seat","remote_host","idle_since_usec"}`).
//! `--scheduled`: something is already scheduled (as by `shutdown +5` outside lightsout).
//! Prints `ready` on stdout once it owns `org.freedesktop.login1`.

#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde::Deserialize;
use serde_json::json;
use zbus::zvariant::{ObjectPath, OwnedObjectPath};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
struct SessionSpec {
    id: String,
    user: String,
    uid: u32,
    class: String,
    state: String,
    tty: String,
    seat: String,
    remote_host: String,
    /// 0: not idle.
    idle_since_usec: u64,
}

#[derive(Debug)]
struct Recorder {
    file: Mutex<std::fs::File>,
}

impl Recorder {
    fn record(&self, method: &str, args: serde_json::Value) {
        let mut file = self.file.lock().unwrap();
        writeln!(file, "{}", json!({ "method": method, "args": args })).unwrap();
        file.flush().unwrap();
    }
}

#[derive(Debug)]
struct Manager {
    recorder: Arc<Recorder>,
    fail_schedule: bool,
    scheduled: Mutex<(String, u64)>,
    sessions: Vec<SessionSpec>,
}

fn session_path(id: &str) -> OwnedObjectPath {
    ObjectPath::try_from(format!("/org/freedesktop/login1/session/_{id}"))
        .unwrap()
        .into()
}

#[zbus::interface(name = "org.freedesktop.login1.Manager")]
impl Manager {
    async fn schedule_shutdown(&self, kind: String, usec: u64) -> zbus::fdo::Result<()> {
        self.recorder
            .record("ScheduleShutdown", json!([kind.clone(), usec]));
        if self.fail_schedule {
            return Err(zbus::fdo::Error::AccessDenied(
                "Permission denied (fake logind told to refuse)".into(),
            ));
        }
        *self.scheduled.lock().unwrap() = (kind, usec);
        Ok(())
    }

    async fn cancel_scheduled_shutdown(&self) -> bool {
        self.recorder.record("CancelScheduledShutdown", json!([]));
        let mut scheduled = self.scheduled.lock().unwrap();
        let had = scheduled.1 != 0;
        *scheduled = (String::new(), 0);
        had
    }

    async fn set_wall_message(&self, message: String, enable: bool) {
        self.recorder
            .record("SetWallMessage", json!([message, enable]));
    }

    async fn power_off(&self, interactive: bool) {
        self.recorder.record("PowerOff", json!([interactive]));
    }

    async fn reboot(&self, interactive: bool) {
        self.recorder.record("Reboot", json!([interactive]));
    }

    async fn list_sessions(&self) -> Vec<(String, u32, String, String, OwnedObjectPath)> {
        self.recorder.record("ListSessions", json!([]));
        self.sessions
            .iter()
            .map(|s| {
                (
                    s.id.clone(),
                    s.uid,
                    s.user.clone(),
                    s.seat.clone(),
                    session_path(&s.id),
                )
            })
            .collect()
    }

    #[zbus(property)]
    async fn scheduled_shutdown(&self) -> (String, u64) {
        self.scheduled.lock().unwrap().clone()
    }
}

#[derive(Debug)]
struct Session(SessionSpec);

#[zbus::interface(name = "org.freedesktop.login1.Session")]
impl Session {
    #[zbus(property)]
    fn id(&self) -> String {
        self.0.id.clone()
    }
    #[zbus(property)]
    fn name(&self) -> String {
        self.0.user.clone()
    }
    #[zbus(property)]
    fn class(&self) -> String {
        self.0.class.clone()
    }
    #[zbus(property)]
    fn state(&self) -> String {
        self.0.state.clone()
    }
    #[zbus(property, name = "TTY")]
    fn tty(&self) -> String {
        self.0.tty.clone()
    }
    #[zbus(property)]
    fn seat(&self) -> (String, OwnedObjectPath) {
        let path = if self.0.seat.is_empty() {
            "/".to_owned()
        } else {
            format!("/org/freedesktop/login1/seat/{}", self.0.seat)
        };
        (
            self.0.seat.clone(),
            ObjectPath::try_from(path).unwrap().into(),
        )
    }
    #[zbus(property)]
    fn remote(&self) -> bool {
        !self.0.remote_host.is_empty()
    }
    #[zbus(property)]
    fn remote_host(&self) -> String {
        self.0.remote_host.clone()
    }
    #[zbus(property)]
    fn idle_hint(&self) -> bool {
        self.0.idle_since_usec != 0
    }
    #[zbus(property)]
    fn idle_since_hint(&self) -> u64 {
        self.0.idle_since_usec
    }
}

struct Options {
    bus: String,
    record: PathBuf,
    fail_schedule: bool,
    sessions: Vec<SessionSpec>,
    scheduled: (String, u64),
}

fn options() -> Options {
    let mut args = std::env::args().skip(1);
    let mut o = Options {
        bus: String::new(),
        record: PathBuf::new(),
        fail_schedule: false,
        sessions: Vec::new(),
        scheduled: (String::new(), 0),
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--bus" => o.bus = args.next().unwrap(),
            "--record" => o.record = args.next().unwrap().into(),
            "--fail-schedule" => o.fail_schedule = true,
            "--sessions" => {
                let text = std::fs::read_to_string(args.next().unwrap()).unwrap();
                o.sessions = serde_json::from_str(&text).unwrap();
            }
            "--scheduled" => {
                let value = args.next().unwrap();
                let (kind, usec) = value.split_once(':').unwrap();
                o.scheduled = (kind.to_owned(), usec.parse().unwrap());
            }
            other => panic!("fake-logind: unknown argument {other}"),
        }
    }
    assert!(
        !o.bus.is_empty() && !o.record.as_os_str().is_empty(),
        "usage: fake-logind --bus ADDRESS --record FILE [...]"
    );
    o
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> zbus::Result<()> {
    let o = options();
    let recorder = Arc::new(Recorder {
        file: Mutex::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&o.record)
                .unwrap(),
        ),
    });
    let mut builder = zbus::connection::Builder::address(o.bus.as_str())?.serve_at(
        "/org/freedesktop/login1",
        Manager {
            recorder,
            fail_schedule: o.fail_schedule,
            scheduled: Mutex::new(o.scheduled),
            sessions: o.sessions.clone(),
        },
    )?;
    for s in o.sessions {
        builder = builder.serve_at(session_path(&s.id), Session(s))?;
    }
    let _conn = builder.name("org.freedesktop.login1")?.build().await?;
    println!("ready");
    std::io::stdout().flush().unwrap();
    std::future::pending::<()>().await;
    Ok(())
}
