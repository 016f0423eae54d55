//! Power actions: the pending action, the agent-side timer, and running the command.
//!
//! Lifecycle of an accepted shutdown or restart (the steps are called in this order by
//! `crate::request`, where the whole path reads top to bottom):
//! 1. [`PowerController::reserve`] checks privilege and limits, computes the argv with
//!    [`lightsout_protocol::power::plan`] and holds the pending slot;
//! 2. the caller writes and syncs the audit line, then [`Reservation::commit`] records the
//!    action as pending (or drops the reservation, and nothing has changed);
//! 3. the reply goes out;
//! 4. [`Execution::start`] waits the agent-side part of the delay (under a minute), then runs
//!    the command — the system's `shutdown`, or the configured stand-in.
//!
//! Every command run (a power action, a cancel, the cancel before a replacement) gets an
//! `execution` line in the audit log with its argv and exit status or error (synced: it may
//! be the last line before the machine goes down). A command that takes the machine down
//! usually never reports back; commit therefore records the action and the boot id in
//! [`crate::last_action`], and the next start audits that it took the machine down.
//!
//! An accepted action runs even when its reply could not be delivered: by then it is recorded
//! and logged, and the controller's retry (same request id) is answered with the original
//! reply rather than executed again. Refusing it instead would make the outcome depend on a
//! network accident the administrator cannot see.
//!
//! If the agent is stopped while it is still waiting the sub-minute part of a delay, it hands
//! the action to the system at once, rounded *up* to the next whole minute: an accepted action
//! is never silently dropped, and never happens earlier than announced.
//!
//! Everything that tells the system something (a power command, a cancel command) runs under
//! one lock, together with the bookkeeping of whether the system holds an action. So a cancel
//! or a replacement that arrives while a command is running waits for it and then knows that
//! the system has to be told to cancel; it never reports "cancelled" for an action the system
//! received a moment later.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lightsout_protocol::health::ActionRecord;
use lightsout_protocol::power::{PowerPlan, cancel_argv, plan};
use lightsout_protocol::response::CancelReply;
use lightsout_protocol::{
    ErrorBody, ErrorKind, Outcome, PendingAction, PowerAction, PowerParams, PowerReply,
    RequestKind, Response, TargetOs,
};
use tokio::process::Command;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::audit::{AuditEntry, AuditLog};
use crate::config::Config;
use crate::last_action::{self, LastAction};

/// Longest a power command may run before it is considered hung and killed.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// Owns the pending action and runs power commands. Cheap to clone.
#[derive(Debug, Clone)]
pub struct PowerController {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    os: TargetOs,
    command: Option<PathBuf>,
    dry_run: bool,
    privileged: bool,
    audit: Option<Arc<AuditLog>>,
    /// Where the committed action is recorded, with the boot id it was accepted in.
    last_action: Option<PathBuf>,
    boot_id: Option<String>,
    state: Mutex<State>,
    /// Held while a command runs that tells the system something (see the module docs).
    system: tokio::sync::Mutex<()>,
    stop: CancellationToken,
    tasks: TaskTracker,
}

#[derive(Debug, Default)]
struct State {
    pending: Option<Pending>,
    last: Option<ActionRecord>,
    /// The system was handed an action (a power command succeeded) that no system cancel has
    /// withdrawn since. It may be an action this agent no longer tracks as pending: one that
    /// was replaced, or cancelled while its command was running.
    system_holds: bool,
}

#[derive(Debug)]
struct Pending {
    info: PendingAction,
    /// Cancels the agent-side timer.
    abort: CancellationToken,
    /// Whether the system already has it (its command ran successfully).
    handed_over: bool,
}

/// What [`PowerController::reserve`] decided for an acceptable shutdown or restart.
#[derive(Debug)]
pub enum Reserved<'a> {
    /// A rehearsal: nothing is pending, nothing will run; this is the reply.
    Rehearsal(PowerReply),
    /// A live action holding the pending slot, to be committed once it is audited.
    Live(Reservation<'a>),
}

/// A live action holding the pending slot (the state is locked: no other power request can
/// change it in between). [`commit`](Self::commit) makes it the pending action; dropping it
/// changes nothing.
#[derive(Debug)]
#[must_use = "commit the reservation once its audit line is written, or drop it to refuse"]
pub struct Reservation<'a> {
    state: MutexGuard<'a, State>,
    inner: &'a Inner,
    info: PendingAction,
    reply: PowerReply,
    message: Option<String>,
    plan: PowerPlan,
}

impl Reservation<'_> {
    /// The reply the action gets once committed.
    pub fn reply(&self) -> &PowerReply {
        &self.reply
    }

    /// Step "commit": the reserved action replaces any pending one and becomes the pending
    /// action. Returns its reply and the execution to start once the reply is on its way.
    pub fn commit(mut self) -> (PowerReply, Execution) {
        if let Some(previous) = &self.state.pending {
            info!(replaced = %previous.info.request_id, "replacing the pending action");
            // If the system already has it, the replacement's execution cancels it first.
            previous.abort.cancel();
        }
        let abort = CancellationToken::new();
        let execution = Execution {
            request_id: self.info.request_id.clone(),
            action: self.info.action,
            message: self.message.take(),
            plan: self.plan.clone(),
            due_unix: self.info.due_unix,
            abort: abort.clone(),
        };
        info!(request_id = %self.info.request_id, action = %self.info.action,
              delay_secs = self.reply.delay_secs, argv = ?self.info.argv, "power action accepted");
        if let (Some(path), Some(boot_id)) = (&self.inner.last_action, &self.inner.boot_id) {
            let last = LastAction {
                request_id: self.info.request_id.clone(),
                kind: self.info.action.into(),
                boot_id: boot_id.clone(),
            };
            // Attribution only: the audit line is already on disk, so the action goes ahead.
            if let Err(e) = last_action::record(path, &last) {
                warn!(path = %path.display(), error = %e, "cannot record the last accepted action");
            }
        }
        self.state.pending = Some(Pending {
            info: self.info.clone(),
            abort,
            handed_over: false,
        });
        (self.reply.clone(), execution)
    }
}

/// An accepted power action, to be started once its reply is on its way.
#[derive(Debug)]
#[must_use = "an accepted power action must be started"]
pub struct Execution {
    request_id: String,
    action: PowerAction,
    message: Option<String>,
    plan: PowerPlan,
    due_unix: u64,
    abort: CancellationToken,
}

/// An error reply carrying `body`.
pub fn error_response(id: &str, body: ErrorBody) -> Response {
    Response {
        version: lightsout_protocol::PROTOCOL_VERSION,
        id: Some(id.to_owned()),
        outcome: Outcome::Error(body),
    }
}

fn refuse(kind: ErrorKind, message: impl Into<String>) -> ErrorBody {
    ErrorBody {
        kind,
        message: message.into(),
        pending: None,
    }
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl PowerController {
    /// A controller for the OS, command and mode in `config`.
    pub fn new(config: &Config, stop: CancellationToken, tasks: TaskTracker) -> Self {
        Self {
            inner: Arc::new(Inner {
                os: config.target_os,
                command: config.power_command.clone(),
                dry_run: config.dry_run,
                privileged: config.privileged,
                audit: config.audit.clone(),
                last_action: config.last_action.clone(),
                boot_id: last_action::boot_id(config),
                state: Mutex::new(State::default()),
                system: tokio::sync::Mutex::new(()),
                stop,
                tasks,
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn check_privileged(&self, what: &str) -> Result<(), ErrorBody> {
        if self.inner.privileged {
            return Ok(());
        }
        Err(refuse(
            ErrorKind::NotPrivileged,
            format!(
                "{what} needs a privileged agent (root or elevated administrator); this agent runs as {}",
                crate::privilege::describe()
            ),
        ))
    }

    /// The pending action and the last command's outcome, for the health snapshot.
    pub fn status(&self) -> (Option<PendingAction>, Option<ActionRecord>) {
        let mut state = self.state();
        state.expire();
        (
            state.pending.as_ref().map(|p| p.info.clone()),
            state.last.clone(),
        )
    }

    /// Step "reserve" of a shutdown or restart: checks privilege, limits and the pending
    /// slot, and either rehearses it (`dry_run`, or the agent is in dry-run mode) or holds the
    /// slot for it. Nothing has changed yet: the previous action is still pending and nothing
    /// runs until the reservation is [committed](Reservation::commit), which the caller does
    /// once the action's audit line is on disk. Dropping the reservation changes nothing.
    ///
    /// # Errors
    /// `not_privileged`, `bad_request` for a delay or message outside the limits, `busy`
    /// when another action is pending and `params.replace` is not set.
    pub fn reserve(
        &self,
        request_id: &str,
        requested_by: &str,
        action: PowerAction,
        params: &PowerParams,
        dry_run: bool,
    ) -> Result<Reserved<'_>, ErrorBody> {
        // Checked in dry-run too: a rehearsal must fail where the real thing would.
        self.check_privileged(action.as_str())?;
        params
            .validate()
            .map_err(|e| refuse(ErrorKind::BadRequest, e.to_string()))?;
        let plan = plan(
            action,
            params.delay_secs,
            params.message.as_deref(),
            self.inner.os,
        );
        let due_unix = now_unix() + params.delay_secs;
        let dry_run = dry_run || self.inner.dry_run;
        let reply = PowerReply {
            action,
            delay_secs: params.delay_secs,
            message: params.message.clone(),
            agent_wait_secs: plan.agent_wait_secs,
            argv: plan.argv.clone(),
            dry_run,
            due_unix,
        };
        if dry_run {
            info!(request_id, %action, argv = ?plan.argv, "dry run: would execute");
            return Ok(Reserved::Rehearsal(reply));
        }

        let mut state = self.state();
        state.expire();
        if let Some(pending) = &state.pending {
            if !params.replace {
                return Err(ErrorBody {
                    kind: ErrorKind::Busy,
                    message: format!(
                        "a {} is already pending (request {}, by {}, due in {}s); send it again with replace to override",
                        pending.info.action,
                        pending.info.request_id,
                        pending.info.requested_by,
                        pending.info.due_unix.saturating_sub(now_unix()),
                    ),
                    pending: Some(Box::new(pending.info.clone())),
                });
            }
        }
        Ok(Reserved::Live(Reservation {
            state,
            inner: &self.inner,
            info: PendingAction {
                action,
                request_id: request_id.to_owned(),
                requested_by: requested_by.to_owned(),
                due_unix,
                argv: plan.argv.clone(),
                message: params.message.clone(),
            },
            reply,
            message: params.message.clone(),
            plan,
        }))
    }

    /// Cancels the pending action: stops the agent-side timer and runs the system's cancel
    /// command. With nothing known to be pending, the system command still runs (an action
    /// may have been scheduled before this agent started) and the reply says so.
    ///
    /// # Errors
    /// `not_privileged`.
    pub async fn cancel(&self, id: &str, dry_run: bool) -> Result<CancelReply, ErrorBody> {
        self.check_privileged("cancel")?;
        let argv = cancel_argv(self.inner.os);
        if dry_run || self.inner.dry_run {
            let (pending, _) = self.status();
            info!(request_id = %id, argv = ?argv, "dry run: would cancel");
            return Ok(CancelReply {
                argv,
                dry_run: true,
                cancelled: pending,
                exit_code: None,
                audit_missing: None,
            });
        }
        // A power command running right now finishes first: then we know whether the system
        // holds the action.
        let _system = self.inner.system.lock().await;
        let (taken, system_holds) = {
            let mut state = self.state();
            state.expire();
            (state.pending.take(), state.system_holds)
        };
        if let Some(p) = &taken {
            // Its execution checks this under the system lock, so it never runs now.
            p.abort.cancel();
        }
        let exit_code = if system_holds || taken.is_none() {
            let record = self.run_command(id, RequestKind::Cancel, &argv).await;
            match &record.error {
                None => {
                    self.state().system_holds = false;
                    self.forget_last_action(None);
                }
                Some(err) if system_holds => {
                    // The system had the action and refused to drop it: report failure.
                    return Err(refuse(
                        ErrorKind::Internal,
                        format!("cancel command failed: {err}"),
                    ));
                }
                Some(_) => {}
            }
            record.exit_code
        } else {
            None
        };
        if let Some(p) = &taken {
            self.forget_last_action(Some(&p.info.request_id));
        }
        info!(request_id = %id, cancelled = ?taken.as_ref().map(|p| &p.info.request_id), "cancel done");
        Ok(CancelReply {
            argv,
            dry_run: false,
            cancelled: taken.map(|p| p.info),
            exit_code,
            audit_missing: None,
        })
    }

    /// The action named (or any, with `None`) will not take the machine down after all.
    fn forget_last_action(&self, request_id: Option<&str>) {
        if let Some(path) = &self.inner.last_action {
            last_action::forget(path, request_id);
        }
    }

    /// Runs `argv` (with the stand-in as program when configured) for request `request_id`
    /// of `kind`, records how it ended and audits it (an `execution` line, synced).
    async fn run_command(
        &self,
        request_id: &str,
        kind: RequestKind,
        argv: &[String],
    ) -> ActionRecord {
        let program = self
            .inner
            .command
            .clone()
            .unwrap_or_else(|| PathBuf::from(&argv[0]));
        info!(request_id, program = %program.display(), argv = ?argv, "running power command");
        let mut cmd = Command::new(&program);
        cmd.args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let (exit_code, error) = match cmd.spawn() {
            Err(e) => (None, Some(format!("cannot run {}: {e}", program.display()))),
            Ok(child) => {
                match tokio::time::timeout(COMMAND_TIMEOUT, child.wait_with_output()).await {
                    Err(_) => (
                        None,
                        Some(format!(
                            "{} did not finish within {}s",
                            program.display(),
                            COMMAND_TIMEOUT.as_secs()
                        )),
                    ),
                    Ok(Err(e)) => (
                        None,
                        Some(format!("waiting for {} failed: {e}", program.display())),
                    ),
                    Ok(Ok(out)) if out.status.success() => (out.status.code(), None),
                    Ok(Ok(out)) => {
                        let stderr = String::from_utf8_lossy(&out.stderr);
                        let stderr: String = stderr.trim().chars().take(300).collect();
                        (
                            out.status.code(),
                            Some(format!(
                                "{} failed ({}): {stderr}",
                                program.display(),
                                out.status
                            )),
                        )
                    }
                }
            }
        };
        match &error {
            None => info!(request_id, ?exit_code, "power command succeeded"),
            Some(e) => error!(request_id, ?exit_code, error = %e, "power command failed"),
        }
        if let Some(audit) = &self.inner.audit {
            let line = AuditEntry::execution(request_id, kind, argv, exit_code, error.clone());
            // The command has run: a missing line is logged, it cannot undo anything.
            if let Err(e) = audit.write(&line, true) {
                warn!(path = %audit.path().display(), error = %e, request_id, "cannot write the audit log");
            }
        }
        ActionRecord {
            request_id: request_id.to_owned(),
            action: kind.power_action(),
            argv: argv.to_vec(),
            exit_code,
            error,
            finished_unix: now_unix(),
        }
    }
}

impl State {
    /// Forgets an action the system already carried out (its due time is past). With a
    /// stand-in command the machine never goes down, so without this it would stay pending.
    fn expire(&mut self) {
        if let Some(p) = &self.pending {
            if p.handed_over && p.info.due_unix + 5 < now_unix() {
                self.pending = None;
                self.system_holds = false;
            }
        }
    }
}

impl Execution {
    /// Starts the action in the background: wait the agent-side part of the delay, then run
    /// the command. Tracked, so a stopping agent waits for it.
    pub fn start(self, power: &PowerController) {
        let power = power.clone();
        power
            .inner
            .tasks
            .clone()
            .spawn(async move { self.execute(power).await });
    }

    async fn execute(self, power: PowerController) {
        let wait = Duration::from_secs(self.plan.agent_wait_secs);
        let argv = tokio::select! {
            biased;
            () = self.abort.cancelled() => {
                info!(request_id = %self.request_id, "pending action cancelled before it reached the system");
                return;
            }
            () = tokio::time::sleep(wait) => self.plan.argv.clone(),
            () = power.inner.stop.cancelled() => {
                let remaining = self.due_unix.saturating_sub(now_unix());
                let rounded = remaining.div_ceil(60) * 60;
                warn!(request_id = %self.request_id, remaining, handed_over_in = rounded,
                      "agent stopping: handing the pending action to the system now, rounded up to whole minutes");
                plan(self.action, rounded, self.message.as_deref(), power.inner.os).argv
            }
        };
        let _system = power.inner.system.lock().await;
        // Cancelled or replaced while a cancel or another command held the lock.
        if self.abort.is_cancelled() {
            info!(request_id = %self.request_id, "pending action cancelled before it reached the system");
            return;
        }
        if power.state().system_holds {
            // We replace an action the system already has: withdraw it first.
            let cancel = cancel_argv(power.inner.os);
            if power
                .run_command(&self.request_id, RequestKind::Cancel, &cancel)
                .await
                .error
                .is_none()
            {
                power.state().system_holds = false;
            }
        }
        let record = power
            .run_command(&self.request_id, self.action.into(), &argv)
            .await;
        if record.error.is_some() {
            power.forget_last_action(Some(&self.request_id));
        }
        let mut state = power.state();
        if record.error.is_none() {
            state.system_holds = true;
        }
        if let Some(p) = state
            .pending
            .as_mut()
            .filter(|p| p.info.request_id == self.request_id)
        {
            if record.error.is_some() {
                state.pending = None;
            } else {
                p.handed_over = true;
            }
        }
        state.last = Some(record);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lightsout_pki::{Ca, CertKind, IssueOptions, TlsFiles};

    /// A live (not dry-run), privileged controller whose executions are never started: no
    /// command runs in these tests.
    fn controller(dir: &std::path::Path) -> PowerController {
        let (ca, _) = Ca::create("test CA").unwrap();
        let bundle = dir.join("agent.pem");
        let issued = ca
            .issue(&IssueOptions::new(CertKind::Agent, "lab-01"))
            .unwrap();
        issued.write_bundle(&bundle, ca.cert_pem()).unwrap();
        let tls = lightsout_pki::tls::server_config(&TlsFiles::bundle(&bundle)).unwrap();
        let mut config = Config::new(tls);
        config.dry_run = false;
        config.privileged = true;
        config.power_command = Some(dir.join("never-run"));
        PowerController::new(&config, CancellationToken::new(), TaskTracker::new())
    }

    fn live(r: Reserved<'_>) -> Reservation<'_> {
        match r {
            Reserved::Live(r) => r,
            Reserved::Rehearsal(reply) => panic!("not live: {reply:?}"),
        }
    }

    #[test]
    fn a_dropped_reservation_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let power = controller(dir.path());
        let later = PowerParams {
            delay_secs: 600,
            ..Default::default()
        };
        let first = power
            .reserve("first", "alice", PowerAction::Shutdown, &later, false)
            .map(live)
            .unwrap();
        let (_, first) = first.commit();
        let replace = PowerParams {
            delay_secs: 60,
            replace: true,
            ..Default::default()
        };
        // The replacement is reserved, then its audit line fails: it is dropped.
        drop(
            power
                .reserve("second", "alice", PowerAction::Restart, &replace, false)
                .map(live)
                .unwrap(),
        );
        // The first action is still the pending one, and its timer was not cancelled.
        let (pending, _) = power.status();
        assert_eq!(pending.unwrap().request_id, "first");
        assert!(!first.abort.is_cancelled());
        // Committed, the replacement takes the slot and stops the first one's timer.
        let (_, second) = power
            .reserve("third", "alice", PowerAction::Restart, &replace, false)
            .map(live)
            .unwrap()
            .commit();
        assert!(first.abort.is_cancelled());
        assert!(!second.abort.is_cancelled());
        assert_eq!(power.status().0.unwrap().request_id, "third");
    }

    #[test]
    fn refusals_reserve_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let power = controller(dir.path());
        let bad = PowerParams {
            message: Some("-c".into()),
            ..Default::default()
        };
        let err = power
            .reserve("bad", "alice", PowerAction::Shutdown, &bad, false)
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::BadRequest);
        let ok = PowerParams {
            delay_secs: 600,
            ..Default::default()
        };
        let _ = power
            .reserve("a", "alice", PowerAction::Shutdown, &ok, false)
            .map(live)
            .unwrap()
            .commit();
        let busy = power
            .reserve("b", "alice", PowerAction::Shutdown, &ok, false)
            .unwrap_err();
        assert_eq!(busy.kind, ErrorKind::Busy);
        assert_eq!(busy.pending.unwrap().request_id, "a");
        // A rehearsal never touches the slot.
        assert!(matches!(
            power.reserve("c", "alice", PowerAction::Shutdown, &ok, true),
            Ok(Reserved::Rehearsal(_))
        ));
    }
}
