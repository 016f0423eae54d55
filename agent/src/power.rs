//! Power actions: the pending action, how it reaches the system, and what the agent reports.
//!
//! Two backends, chosen once in configuration ([`PowerBackend`]); the request path reads the
//! same for both. Lifecycle of an accepted shutdown or restart (the steps are called in this
//! order by `crate::request`, where the whole path reads top to bottom):
//! 1. [`PowerController::reserve`] checks privilege and limits, plans the action (the argv
//!    from [`lightsout_protocol::power::plan`], or logind's description) and holds the
//!    pending slot;
//! 2. the caller writes and syncs the audit line, then [`Reservation::hand_over`]: with the
//!    **logind** backend, systemd-logind is given the action now (`SetWallMessage`,
//!    `ScheduleShutdown` with the exact due time in microseconds) — if it cannot take it, the
//!    request is refused and nothing changes; with the **command** backend nothing happens yet;
//! 3. [`Reservation::commit`] records the action as pending (or the reservation is dropped,
//!    and nothing has changed);
//! 4. the reply goes out;
//! 5. [`Execution::start`], command backend only: wait the agent-side part of the delay
//!    (under a minute), then run the command — the system's `shutdown`, or the stand-in.
//!
//! Why logind is asked directly on systemd machines: `shutdown -h +N` asks logind too, but
//! when it cannot reach it (system bus down) it powers off *at once* and exits 0, so an
//! accepted delayed action would happen early. Asking logind ourselves before replying, the
//! agent knows the system holds the action — or refuses the request, and the machine stays up.
//!
//! Everything that tells the system something (a power command, a hand-over, a cancel) gets an
//! `execution` line in the audit log with its argv (for logind, a description like
//! `logind ScheduleShutdown poweroff +90s`) and exit status or error (synced: it may be the
//! last line before the machine goes down). Taking the machine down usually never reports
//! back; commit therefore records the action, who asked, its due time and the boot id in
//! [`crate::last_action`], and the next start audits that it took the machine down.
//!
//! An accepted action runs even when its reply could not be delivered: by then it is recorded
//! and logged, and the controller's retry (same request id) is answered with the original
//! reply rather than executed again. Refusing it instead would make the outcome depend on a
//! network accident the administrator cannot see.
//!
//! Command backend: if the agent is stopped while it is still waiting the sub-minute part of a
//! delay, it hands the action to the system at once, rounded *up* to the next whole minute: an
//! accepted action is never silently dropped, and never happens earlier than announced. The
//! logind backend needs none of this: logind holds the action from acceptance, across agent
//! stops and restarts, and a starting agent reads it back ([`PowerController::restore`]) so
//! that `status` shows it and `cancel` withdraws it.
//!
//! Everything that tells the system something runs under one lock, together with the
//! bookkeeping of whether the system holds an action. So a cancel or a replacement that
//! arrives while a command (or a hand-over) is running waits for it and then knows whether the
//! system has to be told to cancel; it never reports "cancelled" for an action the system
//! received a moment later. A cancel reply says which it was ([`CancelOutcome`]): withdrawn
//! from the system, stopped before it reached the system, or nothing pending.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lightsout_protocol::health::ActionRecord;
use lightsout_protocol::power::{
    PowerPlan, cancel_argv, logind_cancel_argv, logind_kind, logind_plan, plan,
};
use lightsout_protocol::response::{CancelOutcome, CancelReply};
use lightsout_protocol::{
    ErrorBody, ErrorKind, Outcome, PendingAction, PowerAction, PowerParams, PowerReply,
    RequestKind, Response, TargetOs,
};
use tokio::process::Command;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::audit::{AuditEntry, AuditLog};
use crate::config::{Config, PowerBackend};
use crate::last_action::{self, LastAction};
use crate::logind::Logind;

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
    backend: PowerBackend,
    command: Option<PathBuf>,
    dry_run: bool,
    privileged: bool,
    audit: Option<Arc<AuditLog>>,
    /// Where the committed action is recorded, with the boot id it was accepted in.
    last_action: Option<PathBuf>,
    boot_id: Option<String>,
    state: Mutex<State>,
    /// Held by a [`Reservation`] from reserve to commit or drop: one power request at a time
    /// between its checks and its commit, across the logind hand-over's await.
    slot: tokio::sync::Mutex<()>,
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

/// A live action holding the pending slot (an async lock: no other power request can be
/// reserved or committed in between, and the logind hand-over may await while it is held).
/// [`hand_over`](Self::hand_over) gives it to logind (logind backend),
/// [`commit`](Self::commit) makes it the pending action; dropping it changes nothing here.
#[derive(Debug)]
#[must_use = "commit the reservation once its audit line is written, or drop it to refuse"]
pub struct Reservation<'a> {
    _slot: tokio::sync::MutexGuard<'a, ()>,
    inner: &'a Inner,
    info: PendingAction,
    reply: PowerReply,
    message: Option<String>,
    plan: PowerPlan,
    /// The exact due time, CLOCK_REALTIME µs (what logind is handed).
    due_usec: u64,
    /// The system already holds it (the logind backend's hand-over succeeded).
    handed_over: bool,
}

impl Reservation<'_> {
    /// The reply the action gets once committed.
    pub fn reply(&self) -> &PowerReply {
        &self.reply
    }

    /// Step "hand over", between the audit line and the commit: with the logind backend,
    /// `SetWallMessage` and `ScheduleShutdown` with the exact due time — from here on logind
    /// holds the action (its wall warnings, `/run/nologin`, and the action itself, whether
    /// the agent runs or not). The attempt gets an `execution` line in the audit log either
    /// way. With the command backend there is nothing to do yet: the command runs at
    /// [`Execution::start`].
    ///
    /// # Errors
    /// `unavailable` when logind is not reachable or refuses: nothing was scheduled (the
    /// previous pending action, if any, is still the one logind holds); drop the reservation.
    pub async fn hand_over(&mut self) -> Result<(), ErrorBody> {
        let PowerBackend::Logind(bus) = &self.inner.backend else {
            return Ok(());
        };
        let _system = self.inner.system.lock().await;
        let wall = self.message.as_deref().unwrap_or("");
        let scheduled = match Logind::connect(bus).await {
            Ok(logind) => {
                logind
                    .schedule(logind_kind(self.info.action), self.due_usec, wall)
                    .await
            }
            Err(e) => Err(e),
        };
        let error = scheduled.err().map(|e| {
            format!(
                "cannot schedule the {}: {e}; nothing was scheduled, the machine stays up",
                self.info.action
            )
        });
        let record = self.inner.conclude(
            &self.info.request_id,
            self.info.action.into(),
            &self.info.argv,
            None,
            error.clone(),
        );
        let mut state = self.inner.state();
        state.last = Some(record);
        match error {
            None => {
                state.system_holds = true;
                self.handed_over = true;
                Ok(())
            }
            Some(message) => Err(refuse(ErrorKind::Unavailable, message)),
        }
    }

    /// Step "commit": the reserved action replaces any pending one and becomes the pending
    /// action. Returns its reply and the execution to start once the reply is on its way.
    pub fn commit(mut self) -> (PowerReply, Execution) {
        let mut state = self.inner.state();
        if let Some(previous) = &state.pending {
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
            handed_over: self.handed_over,
        };
        info!(request_id = %self.info.request_id, action = %self.info.action,
              delay_secs = self.reply.delay_secs, argv = ?self.info.argv, "power action accepted");
        if let (Some(path), Some(boot_id)) = (&self.inner.last_action, &self.inner.boot_id) {
            let last = LastAction {
                request_id: self.info.request_id.clone(),
                kind: self.info.action.into(),
                boot_id: boot_id.clone(),
                requested_by: Some(self.info.requested_by.clone()),
                due_unix: Some(self.info.due_unix),
                message: self.info.message.clone(),
            };
            // Attribution only: the audit line is already on disk, so the action goes ahead.
            if let Err(e) = last_action::record(path, &last) {
                warn!(path = %path.display(), error = %e, "cannot record the last accepted action");
            }
        }
        state.pending = Some(Pending {
            info: self.info.clone(),
            abort,
            handed_over: self.handed_over,
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
    /// The system already holds it (logind): nothing left to run.
    handed_over: bool,
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

fn now_usec() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// What logind's `ScheduledShutdown` kind means for lightsout; `None` for the `dry-*` kinds
/// and anything else that powers nothing off.
fn action_of_logind_kind(kind: &str) -> Option<PowerAction> {
    match kind {
        "poweroff" | "halt" => Some(PowerAction::Shutdown),
        "reboot" | "kexec" | "soft-reboot" => Some(PowerAction::Restart),
        _ => None,
    }
}

/// Who asked for a pending action that logind holds but no lightsout request explains.
pub const OUTSIDE_LIGHTSOUT: &str = "scheduled outside lightsout";

impl Inner {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records how something that told the system something ended: an `execution` line in
    /// the audit log (synced: it may be the last line before the machine goes down) and the
    /// record the health snapshot shows.
    fn conclude(
        &self,
        request_id: &str,
        kind: RequestKind,
        argv: &[String],
        exit_code: Option<i32>,
        error: Option<String>,
    ) -> ActionRecord {
        match &error {
            None => info!(request_id, ?exit_code, argv = ?argv, "the system took it"),
            Some(e) => {
                error!(request_id, ?exit_code, argv = ?argv, error = %e, "the system did not take it")
            }
        }
        if let Some(audit) = &self.audit {
            let line = AuditEntry::execution(request_id, kind, argv, exit_code, error.clone());
            // It has happened: a missing line is logged, it cannot undo anything.
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

impl PowerController {
    /// A controller for the OS, command and mode in `config`.
    pub fn new(config: &Config, stop: CancellationToken, tasks: TaskTracker) -> Self {
        Self {
            inner: Arc::new(Inner {
                os: config.target_os,
                backend: config.power_backend.clone(),
                command: config.power_command.clone(),
                dry_run: config.dry_run,
                privileged: config.privileged,
                audit: config.audit.clone(),
                last_action: config.last_action.clone(),
                boot_id: last_action::boot_id(config),
                state: Mutex::new(State::default()),
                slot: tokio::sync::Mutex::new(()),
                system: tokio::sync::Mutex::new(()),
                stop,
                tasks,
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner.state()
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
    /// slot (waiting for a reservation in progress), and either rehearses it (`dry_run`, or
    /// the agent is in dry-run mode) or holds the slot for it. Nothing has changed yet: the
    /// previous action is still pending and nothing runs until the reservation is
    /// [handed over](Reservation::hand_over) and [committed](Reservation::commit), which the
    /// caller does once the action's audit line is on disk. Dropping it changes nothing.
    ///
    /// # Errors
    /// `not_privileged`, `bad_request` for a delay or message outside the limits, `busy`
    /// when another action is pending and `params.replace` is not set.
    pub async fn reserve(
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
        let plan = match self.inner.backend {
            PowerBackend::Command => plan(
                action,
                params.delay_secs,
                params.message.as_deref(),
                self.inner.os,
            ),
            PowerBackend::Logind(_) => logind_plan(action, params.delay_secs),
        };
        let due_usec = now_usec().saturating_add(params.delay_secs.saturating_mul(1_000_000));
        let due_unix = due_usec / 1_000_000;
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

        let slot = self.inner.slot.lock().await;
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
        drop(state);
        Ok(Reserved::Live(Reservation {
            _slot: slot,
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
            due_usec,
            handed_over: false,
        }))
    }

    /// Cancels the pending action: stops the agent-side timer and withdraws the action from
    /// the system (the cancel command, or logind's `CancelScheduledShutdown`). With nothing
    /// known to be pending, the system is still told (an action may have been scheduled
    /// before this agent started), and the reply's `outcome` says which case it was.
    ///
    /// # Errors
    /// `not_privileged`; `unavailable` when logind cannot be reached (whatever it holds is
    /// still scheduled, and still pending here); `internal` when the system held the action
    /// and its cancel command failed.
    pub async fn cancel(&self, id: &str, dry_run: bool) -> Result<CancelReply, ErrorBody> {
        self.check_privileged("cancel")?;
        let argv = match self.inner.backend {
            PowerBackend::Command => cancel_argv(self.inner.os),
            PowerBackend::Logind(_) => logind_cancel_argv(),
        };
        if dry_run || self.inner.dry_run {
            let (pending, _) = self.status();
            info!(request_id = %id, argv = ?argv, "dry run: would cancel");
            return Ok(CancelReply {
                argv,
                dry_run: true,
                cancelled: pending,
                exit_code: None,
                audit_missing: None,
                outcome: None,
            });
        }
        // A power command (or hand-over) running right now finishes first: then we know
        // whether the system holds the action.
        let _system = self.inner.system.lock().await;
        if let PowerBackend::Logind(bus) = &self.inner.backend {
            return self.cancel_in_logind(id, bus, argv).await;
        }
        let (taken, system_holds) = {
            let mut state = self.state();
            state.expire();
            (state.pending.take(), state.system_holds)
        };
        if let Some(p) = &taken {
            // Its execution checks this under the system lock, so it never runs now.
            p.abort.cancel();
        }
        let (exit_code, outcome) = if system_holds || taken.is_none() {
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
            let outcome = if system_holds {
                CancelOutcome::Withdrawn
            } else {
                CancelOutcome::NothingPending
            };
            (record.exit_code, outcome)
        } else {
            (None, CancelOutcome::StoppedBeforeSystem)
        };
        if let Some(p) = &taken {
            self.forget_last_action(Some(&p.info.request_id));
        }
        info!(request_id = %id, cancelled = ?taken.as_ref().map(|p| &p.info.request_id), ?outcome, "cancel done");
        Ok(CancelReply {
            argv,
            dry_run: false,
            cancelled: taken.map(|p| p.info),
            exit_code,
            audit_missing: None,
            outcome: Some(outcome),
        })
    }

    /// The logind backend's cancel (the system lock is held): `CancelScheduledShutdown`, and
    /// only once logind has answered is the pending action forgotten here.
    async fn cancel_in_logind(
        &self,
        id: &str,
        bus: &crate::logind::LogindBus,
        argv: Vec<String>,
    ) -> Result<CancelReply, ErrorBody> {
        let cancelled = match Logind::connect(bus).await {
            Ok(logind) => logind.cancel().await,
            Err(e) => Err(e),
        };
        let had_one = match cancelled {
            Ok(had_one) => had_one,
            Err(e) => {
                let message =
                    format!("cannot cancel: {e}; whatever systemd-logind holds is still scheduled");
                let record = self.inner.conclude(
                    id,
                    RequestKind::Cancel,
                    &argv,
                    None,
                    Some(message.clone()),
                );
                self.state().last = Some(record);
                return Err(refuse(ErrorKind::Unavailable, message));
            }
        };
        self.inner
            .conclude(id, RequestKind::Cancel, &argv, None, None);
        let taken = {
            let mut state = self.state();
            state.system_holds = false;
            state.pending.take()
        };
        if let Some(p) = &taken {
            p.abort.cancel();
        }
        self.forget_last_action(None);
        let outcome = if had_one {
            CancelOutcome::Withdrawn
        } else {
            CancelOutcome::NothingPending
        };
        info!(request_id = %id, cancelled = ?taken.as_ref().map(|p| &p.info.request_id), ?outcome, "cancel done");
        Ok(CancelReply {
            argv,
            dry_run: false,
            cancelled: taken.map(|p| p.info),
            exit_code: None,
            audit_missing: None,
            outcome: Some(outcome),
        })
    }

    /// At start-up, with the logind backend: an action logind still holds (the agent was
    /// restarted, or someone ran `shutdown +N`) becomes the pending action again, so that
    /// `status` shows it and `cancel` cancels it. Its request id and requester come from
    /// `last-action.json` when that file describes it (same kind, same due time), else it is
    /// described as [`OUTSIDE_LIGHTSOUT`]. A dry-run agent never calls D-Bus.
    pub async fn restore(&self) {
        let PowerBackend::Logind(bus) = &self.inner.backend else {
            return;
        };
        if self.inner.dry_run {
            return;
        }
        let scheduled = match Logind::connect(bus).await {
            Ok(logind) => logind.scheduled().await,
            Err(e) => Err(e),
        };
        let (kind, usec) = match scheduled {
            Ok(Some(scheduled)) => scheduled,
            Ok(None) => return,
            Err(e) => {
                warn!(error = %e, "cannot ask systemd-logind whether an action is scheduled");
                return;
            }
        };
        let Some(action) = action_of_logind_kind(&kind) else {
            info!(
                kind,
                "systemd-logind holds a scheduled action that powers nothing off"
            );
            return;
        };
        let due_unix = usec / 1_000_000;
        let known = self
            .inner
            .last_action
            .as_deref()
            .and_then(|path| last_action::load(path).ok().flatten())
            .filter(|last| {
                last.kind == RequestKind::from(action)
                    && last.due_unix.is_some_and(|d| d.abs_diff(due_unix) <= 1)
            });
        let (request_id, requested_by, message) = match known {
            Some(last) => (
                last.request_id,
                last.requested_by
                    .unwrap_or_else(|| OUTSIDE_LIGHTSOUT.to_owned()),
                last.message,
            ),
            None => (
                "outside-lightsout".to_owned(),
                OUTSIDE_LIGHTSOUT.to_owned(),
                None,
            ),
        };
        info!(%action, due_unix, request_id, requested_by, "systemd-logind holds a scheduled action: pending again");
        let mut state = self.state();
        state.system_holds = true;
        state.pending = Some(Pending {
            info: PendingAction {
                action,
                request_id,
                requested_by,
                due_unix,
                argv: logind_plan(action, due_unix.saturating_sub(now_unix())).argv,
                message,
            },
            abort: CancellationToken::new(),
            handed_over: true,
        });
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
        self.inner
            .conclude(request_id, kind, argv, exit_code, error)
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
        if self.handed_over {
            // logind holds it since the hand-over: nothing left to do here.
            return;
        }
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

    #[tokio::test]
    async fn a_dropped_reservation_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let power = controller(dir.path());
        let later = PowerParams {
            delay_secs: 600,
            ..Default::default()
        };
        let first = power
            .reserve("first", "alice", PowerAction::Shutdown, &later, false)
            .await
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
                .await
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
            .await
            .map(live)
            .unwrap()
            .commit();
        assert!(first.abort.is_cancelled());
        assert!(!second.abort.is_cancelled());
        assert_eq!(power.status().0.unwrap().request_id, "third");
    }

    #[tokio::test]
    async fn refusals_reserve_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let power = controller(dir.path());
        let bad = PowerParams {
            message: Some("-c".into()),
            ..Default::default()
        };
        let err = power
            .reserve("bad", "alice", PowerAction::Shutdown, &bad, false)
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::BadRequest);
        let ok = PowerParams {
            delay_secs: 600,
            ..Default::default()
        };
        let _ = power
            .reserve("a", "alice", PowerAction::Shutdown, &ok, false)
            .await
            .map(live)
            .unwrap()
            .commit();
        let busy = power
            .reserve("b", "alice", PowerAction::Shutdown, &ok, false)
            .await
            .unwrap_err();
        assert_eq!(busy.kind, ErrorKind::Busy);
        assert_eq!(busy.pending.unwrap().request_id, "a");
        // A rehearsal never touches the slot.
        assert!(matches!(
            power
                .reserve("c", "alice", PowerAction::Shutdown, &ok, true)
                .await,
            Ok(Reserved::Rehearsal(_))
        ));
    }
}
