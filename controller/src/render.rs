//! Rendering results as text: a table for people (sorted by host), one JSON document or one
//! JSON line per host for scripts, and the status board. Nothing here prints;
//! [`crate::print`](mod@crate::print) decides where the text goes.
//!
//! Every piece of text that came from an agent goes through [`sanitize`] before it reaches the
//! terminal: a compromised or buggy lab machine must not be able to send escape sequences
//! to the administrator's terminal.

use lightsout_protocol::health::Session;
use lightsout_protocol::response::{CancelOutcome, CancelReply};
use lightsout_protocol::{Health, Outcome, PowerReply, Reply, WakeReply};
use serde_json::{Value, json};

use crate::board::Note;
use crate::duration::human;
use crate::result::{HostOutcome, HostResult, Status, WaitEnd, WaitOutcome};
use crate::text::natural_cmp;

pub use lightsout_protocol::text::sanitize;

/// Shell-like rendering of an argv for display (quotes around arguments with spaces).
pub fn show_argv(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            let a = sanitize(a);
            if a.is_empty() || a.contains(|c: char| c.is_whitespace() || c == '\'' || c == '"') {
                format!("'{}'", a.replace('\'', "'\\''"))
            } else {
                a
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn power_detail(p: &PowerReply) -> String {
    let when = if p.delay_secs == 0 {
        "now".to_string()
    } else {
        format!("in {}", human(p.delay_secs))
    };
    let wait = if p.agent_wait_secs > 0 {
        format!(" after the agent waits {}s,", p.agent_wait_secs)
    } else {
        String::new()
    };
    if p.dry_run {
        format!(
            "dry run: {} {when};{wait} would run `{}`",
            p.action,
            show_argv(&p.argv)
        )
    } else {
        format!(
            "{} accepted, {when};{wait} runs `{}`",
            p.action,
            show_argv(&p.argv)
        )
    }
}

fn cancel_detail(c: &CancelReply) -> String {
    let what = match &c.cancelled {
        Some(p) => format!(
            "cancelled pending {} (request {})",
            p.action,
            sanitize(&p.request_id)
        ),
        None => "nothing was pending here".to_string(),
    };
    if c.dry_run {
        return format!("dry run: {what}; would run `{}`", show_argv(&c.argv));
    }
    let exit = c
        .exit_code
        .map_or_else(String::new, |code| format!(", exit {code}"));
    let ran = format!("`{}`{exit}", show_argv(&c.argv));
    let missing = c.audit_missing.as_deref().map_or_else(String::new, |r| {
        format!(" — warning: its audit line is missing ({})", sanitize(r))
    });
    match c.outcome {
        Some(CancelOutcome::Withdrawn) => {
            format!("{what}; withdrawn from the system ({ran}){missing}")
        }
        Some(CancelOutcome::StoppedBeforeSystem) => {
            format!("{what} before it reached the system; nothing to cancel there{missing}")
        }
        Some(CancelOutcome::NothingPending) if c.cancelled.is_some() => {
            format!("{what}; the system held nothing to withdraw ({ran}){missing}")
        }
        Some(CancelOutcome::NothingPending) => {
            format!("{what}; the system held nothing either ({ran}){missing}")
        }
        // Agents that predate `outcome` (or a newer outcome): what they did, as they said it.
        None | Some(CancelOutcome::Unknown) => {
            format!("{what}; ran {ran}{missing}")
        }
    }
}

/// One occupying session for people: `alice on tty1 (active, idle 3m)`.
pub fn session_summary(s: &Session) -> String {
    let mut facts = Vec::new();
    if let Some(state) = s.state {
        facts.push(state.as_str().to_owned());
    }
    if let Some(idle) = s.idle_secs {
        facts.push(if idle == 0 {
            "in use".to_owned()
        } else {
            format!("idle {}", human(idle))
        });
    }
    let facts = if facts.is_empty() {
        String::new()
    } else {
        format!(" ({})", facts.join(", "))
    };
    format!("{} on {}{facts}", sanitize(&s.user), sanitize(&s.place()))
}

fn echo_detail(payload: &str, h: &Health) -> String {
    let users = h
        .logged_in_users
        .map_or_else(|| "users ?".into(), |u| format!("{u} users"));
    let mut flags = Vec::new();
    if h.dry_run {
        flags.push("dry-run");
    }
    if !h.privileged {
        flags.push("unprivileged");
    }
    let flags = if flags.is_empty() {
        String::new()
    } else {
        format!(", {}", flags.join(", "))
    };
    format!(
        "{:?} from {} (up {}, load {:.2}, {users}{flags})",
        sanitize(payload),
        sanitize(&h.hostname),
        human(h.uptime_secs),
        h.load_avg[0],
    )
}

fn wake_detail(w: &WakeReply, via: Option<&str>) -> String {
    let macs: Vec<String> = w.sent.iter().map(ToString::to_string).collect();
    let by = via.map_or_else(String::new, |v| format!(" by {}", sanitize(v)));
    if w.dry_run {
        format!(
            "dry run: would send magic packets for {}{by} to {}:{}",
            macs.join(", "),
            w.broadcast,
            w.port
        )
    } else {
        format!(
            "magic packets sent for {}{by} to {}:{}",
            macs.join(", "),
            w.broadcast,
            w.port
        )
    }
}

/// One line of detail for a host.
pub fn detail(result: &HostResult) -> String {
    let main = match &result.outcome {
        HostOutcome::Error(e) => sanitize(&e.to_string()),
        HostOutcome::Skipped(reason) => format!("skipped: {}", sanitize(reason)),
        HostOutcome::Done { detail, .. } => sanitize(detail),
        HostOutcome::Response(response) => match &response.outcome {
            Outcome::Error(e) => format!("{}: {}", e.kind, sanitize(&e.message)),
            Outcome::Ok(Reply::Echo { payload, health }) => echo_detail(payload, health),
            Outcome::Ok(Reply::Shutdown(p) | Reply::Restart(p)) => power_detail(p),
            Outcome::Ok(Reply::Cancel(c)) => cancel_detail(c),
            Outcome::Ok(Reply::Wake(w)) => wake_detail(w, None),
        },
    };
    match &result.wait {
        Some(w) => format!("{main}; {}", wait_detail(w)),
        None => main,
    }
}

/// How a `--wait` ended, for the table: `back after 3.2s (new boot_id …)`,
/// `NOT BACK after 20.0s: …`, `off after 1.1s (stopped answering …)`, `STILL UP after …`,
/// `ACTION FAILED after …`, `CANCELLED after …`, `nothing to wait for: …`.
fn wait_detail(w: &WaitOutcome) -> String {
    let detail = sanitize(&w.detail);
    let after = seconds(w.after);
    match w.end {
        WaitEnd::Back => format!("back after {after} ({detail})"),
        WaitEnd::Off => format!("off after {after} ({detail})"),
        WaitEnd::NothingToWaitFor => format!("nothing to wait for: {detail}"),
        WaitEnd::NotBack => format!("NOT BACK after {after}: {detail}"),
        WaitEnd::StillUp => format!("STILL UP after {after}: {detail}"),
        WaitEnd::ActionFailed => format!("ACTION FAILED after {after}: {detail}"),
        WaitEnd::Cancelled => format!("CANCELLED after {after}: {detail}"),
    }
}

/// Detail for a wake sent through an agent.
pub fn wake_via_detail(w: &WakeReply, via: &str) -> String {
    wake_detail(w, Some(via))
}

fn seconds(d: std::time::Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

fn elapsed(result: &HostResult) -> String {
    if matches!(result.outcome, HostOutcome::Skipped(_)) {
        return "-".into();
    }
    let ms = result.elapsed.as_secs_f64() * 1000.0;
    if ms < 1000.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{:.1} s", ms / 1000.0)
    }
}

/// Aligns `rows` under `headers`; columns listed in `right` are right-aligned, the last
/// column is never padded. Every cell must already be sanitised.
pub fn render_table(headers: &[&str], rows: &[Vec<String>], right: &[usize]) -> String {
    let columns = headers.len();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(columns) {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let last = i + 1 == cells.len();
            let pad = widths[i].saturating_sub(cell.chars().count());
            if i > 0 {
                out.push_str("  ");
            }
            if right.contains(&i) {
                out.push_str(&" ".repeat(pad));
                out.push_str(cell);
            } else {
                out.push_str(cell);
                if !last {
                    out.push_str(&" ".repeat(pad));
                }
            }
        }
        out.truncate(out.trim_end().len());
        out.push('\n');
        out
    };
    let mut out = line(headers.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// Results sorted by host name, naturally (`lab-2` before `lab-10`).
pub fn sorted(results: &[HostResult]) -> Vec<&HostResult> {
    let mut sorted: Vec<&HostResult> = results.iter().collect();
    sorted.sort_by(|a, b| natural_cmp(&a.host.label(), &b.host.label()));
    sorted
}

/// The human table, one row per host sorted by host, then a summary line.
pub fn table(results: &[HostResult]) -> String {
    let rows: Vec<Vec<String>> = sorted(results)
        .into_iter()
        .map(|r| {
            let status = match r.status() {
                Status::Ok => "ok",
                Status::Failed => "FAILED",
                Status::Skipped => "skipped",
            };
            vec![
                sanitize(&r.host.label()),
                status.into(),
                elapsed(r),
                detail(r),
            ]
        })
        .collect();
    let mut out = render_table(&["HOST", "STATUS", "TIME", "DETAIL"], &rows, &[2]);
    out.push_str(&summary(results));
    out.push('\n');
    out
}

/// Counts of each status.
pub fn counts(results: &[HostResult]) -> (usize, usize, usize) {
    let count = |s| results.iter().filter(|r| r.status() == s).count();
    (
        count(Status::Ok),
        count(Status::Failed),
        count(Status::Skipped),
    )
}

/// `N ok, N failed`, and `, N skipped` when any were.
pub fn summary(results: &[HostResult]) -> String {
    let (ok, failed, skipped) = counts(results);
    if skipped > 0 {
        format!("{ok} ok, {failed} failed, {skipped} skipped")
    } else {
        format!("{ok} ok, {failed} failed")
    }
}

/// The `--json` document: one object per host (in the order resolved), plus counts.
pub fn json(command: &str, results: &[HostResult]) -> Value {
    let hosts: Vec<Value> = results.iter().map(host_json).collect();
    let (ok, failed, skipped) = counts(results);
    json!({
        "command": command,
        "results": hosts,
        "summary": { "total": results.len(), "ok": ok, "failed": failed, "skipped": skipped },
    })
}

/// One `--jsonl` line: the host object plus the command's name.
pub fn jsonl_line(command: &str, r: &HostResult) -> String {
    let mut obj = host_json(r);
    obj["command"] = json!(command);
    json_text(&obj)
}

/// `value` as JSON text that is safe on a terminal too. JSON escapes C0 control characters
/// itself; agent text may also hold C1 controls (`\u{9b}` starts an escape sequence on many
/// terminals) and Unicode bidirectional overrides, which JSON leaves raw. They are written as
/// `\uXXXX` escapes instead: the same JSON value for a script, inert on a screen.
pub fn json_text(value: &Value) -> String {
    let mut out = String::new();
    for c in value.to_string().chars() {
        // C0 controls cannot occur raw here: serde_json has escaped them already.
        if lightsout_protocol::text::is_unsafe(c) {
            out.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

/// One host's JSON object: `target`, `host`, `status`, `ok`, `elapsed_ms`, and `response`,
/// `error` or `reason` (skipped); `note` (the status board's facts) with a health snapshot;
/// `wait` after `--wait`.
pub fn host_json(r: &HostResult) -> Value {
    let mut obj = json!({
        "target": r.host.target.to_string(),
        "host": r.host.label(),
        "status": r.status().as_str(),
        "ok": r.ok(),
        "elapsed_ms": (r.elapsed.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0,
    });
    match &r.outcome {
        HostOutcome::Error(e) => {
            obj["error"] =
                json!({ "kind": e.kind(), "message": e.to_string(), "source": "controller" })
        }
        HostOutcome::Skipped(reason) => obj["reason"] = json!(reason),
        HostOutcome::Done { data, .. } => obj["response"] = data.clone(),
        HostOutcome::Response(response) => {
            obj["request_id"] = json!(response.id);
            match &response.outcome {
                Outcome::Ok(reply) => {
                    obj["response"] = serde_json::to_value(reply).unwrap_or(Value::Null)
                }
                Outcome::Error(e) => {
                    obj["error"] =
                        json!({ "kind": e.kind.as_str(), "message": e.message, "source": "agent" });
                    if let Some(p) = &e.pending {
                        obj["error"]["pending"] = serde_json::to_value(p).unwrap_or(Value::Null);
                    }
                }
            }
        }
    }
    if let Some(days) = r.cert_expires_in_days() {
        obj["cert_expires_in_days"] = json!(days);
    }
    if let Some(Reply::Echo { health, .. }) = r.reply() {
        obj["note"] = Note::of(&r.host.label(), health, r.cert_expires_in_days()).json();
    }
    if let Some(w) = &r.wait {
        obj["wait"] = json!({
            "ok": w.ok(),
            "end": w.end.as_str(),
            "back": w.end == WaitEnd::Back,
            "after_ms": (w.after.as_secs_f64() * 1000.0).round(),
            "detail": w.detail,
        });
    }
    obj
}

fn bytes_human(b: u64) -> String {
    const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
    let gib = b as f64 / GIB;
    if gib >= 10.0 {
        format!("{gib:.0}G")
    } else {
        format!("{gib:.1}G")
    }
}

/// The status board: one row per host from its health snapshot, sorted by host, then
/// `N up, N down`.
pub fn status_board(results: &[HostResult]) -> String {
    let yes_no = |b: bool| if b { "yes" } else { "no" }.to_string();
    let rows: Vec<Vec<String>> = sorted(results)
        .into_iter()
        .map(|r| {
            let host = sanitize(&r.host.label());
            match r.reply() {
                Some(Reply::Echo { health: h, .. }) => {
                    let used = h
                        .memory_total_bytes
                        .saturating_sub(h.memory_available_bytes);
                    let mem = match used.saturating_mul(100).checked_div(h.memory_total_bytes) {
                        Some(percent) => {
                            format!("{percent}% of {}", bytes_human(h.memory_total_bytes))
                        }
                        None => "?".into(),
                    };
                    let os = match (&h.os_name, &h.os_version) {
                        (Some(n), Some(v)) => format!("{n} {v}"),
                        (Some(n), None) => n.clone(),
                        _ => "?".into(),
                    };
                    let note = Note::of(&r.host.label(), h, r.cert_expires_in_days()).text();
                    vec![
                        host,
                        "up".into(),
                        human(h.uptime_secs),
                        format!("{:.2}", h.load_avg[0]),
                        mem,
                        h.logged_in_users.map_or("?".into(), |u| u.to_string()),
                        sanitize(&os),
                        sanitize(&h.agent_version),
                        yes_no(h.privileged),
                        yes_no(h.dry_run),
                        sanitize(&note),
                    ]
                }
                _ => {
                    let mut row = vec![host, "DOWN".into()];
                    row.extend(std::iter::repeat_n("-".to_string(), 8));
                    row.push(detail(r));
                    row
                }
            }
        })
        .collect();
    let mut out = render_table(
        &[
            "HOST", "STATE", "UPTIME", "LOAD", "MEMORY", "USERS", "OS", "AGENT", "PRIV", "DRY-RUN",
            "NOTE",
        ],
        &rows,
        &[2, 3, 4, 5],
    );
    let up = results.iter().filter(|r| r.ok()).count();
    out.push_str(&format!("{up} up, {} down\n", results.len() - up));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use lightsout_protocol::PowerAction;
    use lightsout_protocol::health::SessionState;
    use lightsout_protocol::response::PendingAction;

    fn cancel(outcome: Option<CancelOutcome>, pending: bool, argv: &[&str]) -> CancelReply {
        CancelReply {
            argv: argv.iter().map(|s| (*s).to_owned()).collect(),
            dry_run: false,
            cancelled: pending.then(|| PendingAction {
                action: PowerAction::Shutdown,
                request_id: "r1".into(),
                requested_by: "alice".into(),
                due_unix: 0,
                argv: vec![],
                message: None,
            }),
            exit_code: (argv[0] == "shutdown").then_some(0),
            audit_missing: None,
            outcome,
        }
    }

    #[test]
    fn a_cancel_says_which_of_the_three_things_happened() {
        let sd = ["shutdown", "-c"];
        let logind = ["logind", "CancelScheduledShutdown"];
        assert_eq!(
            cancel_detail(&cancel(Some(CancelOutcome::StoppedBeforeSystem), true, &sd)),
            "cancelled pending shutdown (request r1) before it reached the system; nothing to cancel there"
        );
        assert_eq!(
            cancel_detail(&cancel(Some(CancelOutcome::Withdrawn), true, &sd)),
            "cancelled pending shutdown (request r1); withdrawn from the system (`shutdown -c`, exit 0)"
        );
        assert_eq!(
            cancel_detail(&cancel(Some(CancelOutcome::Withdrawn), true, &logind)),
            "cancelled pending shutdown (request r1); withdrawn from the system (`logind CancelScheduledShutdown`)"
        );
        assert_eq!(
            cancel_detail(&cancel(Some(CancelOutcome::NothingPending), false, &logind)),
            "nothing was pending here; the system held nothing either (`logind CancelScheduledShutdown`)"
        );
        // An older agent, without `outcome`: as before.
        assert_eq!(
            cancel_detail(&cancel(None, false, &sd)),
            "nothing was pending here; ran `shutdown -c`, exit 0"
        );
    }

    #[test]
    fn a_session_is_named_with_its_place_state_and_idle_time() {
        let mut s = Session {
            user: "alice".into(),
            tty: Some("tty1".into()),
            seat: Some("seat0".into()),
            remote_host: None,
            state: Some(SessionState::Active),
            idle_secs: Some(180),
        };
        assert_eq!(session_summary(&s), "alice on tty1 (active, idle 3m)");
        s.tty = Some("pts/0".into());
        s.remote_host = Some("10.0.0.5\u{1b}[2J".into());
        s.state = None;
        s.idle_secs = Some(0);
        assert_eq!(
            session_summary(&s),
            "alice on pts/0 from 10.0.0.5?[2J (in use)"
        );
    }

    #[test]
    fn json_output_escapes_what_json_leaves_raw() {
        let value = json!({"hostname": "lab\u{9b}2J\u{202e}01\u{1b}"});
        let text = json_text(&value);
        assert!(
            text.chars()
                .all(|c| !lightsout_protocol::text::is_unsafe(c)),
            "{text}"
        );
        assert_eq!(text, r#"{"hostname":"lab\u009b2J\u202e01\u001b"}"#);
        // Still the same JSON value for a script.
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), value);
    }

    #[test]
    fn columns_align_and_the_last_is_not_padded() {
        let rows = vec![
            vec!["lab-10".to_string(), "1 ms".into(), "x".into()],
            vec!["a".to_string(), "100 ms".into(), "yy".into()],
        ];
        assert_eq!(
            render_table(&["HOST", "TIME", "DETAIL"], &rows, &[1]),
            "HOST      TIME  DETAIL\nlab-10    1 ms  x\na       100 ms  yy\n"
        );
    }

    #[test]
    fn argv_display_quotes_spaces() {
        let argv: Vec<String> = ["shutdown", "-h", "+5", "Lab closes now"]
            .map(String::from)
            .to_vec();
        assert_eq!(show_argv(&argv), "shutdown -h +5 'Lab closes now'");
    }
}
